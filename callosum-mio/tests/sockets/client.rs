//! The client's sockets: attempts connect, read at most what the core allows and close when
//! told; pooled connections move to their own tokens, are probed while idle, carry the
//! application's bytes while leased, and close when the core hands them back.

use std::io::{Read, Write};
use std::time::Duration;

use callosum_mio::{
    ClientConfig, ClientEvent, ConnectFailure, HandshakeFailure, RemoveCause, ServerConfig,
    ServerConnId,
};

use crate::harness::{DEADLINE, Harness, connect, read_to_end};

/// One attempt at a time, no fill, and a long interval: only the first attempt runs.
fn one_attempt(max_slots: usize) -> ClientConfig {
    let mut config = ClientConfig::original();
    config.pool.max_slots = max_slots;
    config.rover.interval = Duration::from_secs(60);
    config.rover.jitter = Duration::ZERO;
    config.rover.max_in_flight = 1;
    config.rover.fill = false;
    config
}

/// One attempt at a time, each 20 ms after the last.
fn steady(max_slots: usize) -> ClientConfig {
    let mut config = ClientConfig::original();
    config.pool.max_slots = max_slots;
    config.rover.interval = Duration::from_millis(20);
    config.rover.jitter = Duration::ZERO;
    config.rover.max_in_flight = 1;
    config
}

/// The rover's outcomes and the pool's changes the client reported.
fn events(h: &Harness) -> &[ClientEvent] {
    &h.client_log
}

/// A client holding one idle connection, slot 0 of a harness server, and that
/// connection's id on the server.
fn one_pooled() -> (Harness, ServerConnId) {
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(one_attempt(1), 2);
    let addr = h.server_addr();
    h.client().add_server(addr);
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let (conn, slot) = h.accepted()[0];
    assert_eq!(slot, 0);
    (h, conn)
}

#[test]
fn a_pool_of_100_fills_and_every_accepted_connection_reaches_it() {
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(ClientConfig::original(), 5);
    let addr = h.server_addr();
    h.client().add_server(addr);
    h.until("a full pool", |h| h.client().status().pool.held == 100);
    h.until("the attempts in flight to land", |h| {
        h.client().status().attempts_in_flight == 0
    });
    // Every connection the server accepted was offered: no attempt's socket was lost.
    let accepted = h.accepted().len() as u64;
    assert_eq!(h.client().status().stats.pool.offered, accepted);
    let slots = &h.client().status().servers[0].slots;
    assert_eq!(*slots, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_refused_port_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = closed.local_addr().unwrap();
    drop(closed);
    let mut h = Harness::new().with_client(one_attempt(4), 1);
    h.client().add_server(server);
    h.until("an outcome", |h| !h.client_log.is_empty());
    assert_eq!(
        events(&h),
        [ClientEvent::Unreachable {
            server,
            reason: ConnectFailure::Refused
        }]
    );
    assert_eq!(h.client().status().attempts_in_flight, 0);
}

#[test]
fn a_server_that_never_writes_fails_the_handshake_and_its_socket_is_closed() {
    let mut config = one_attempt(4);
    config.rover.handshake_timeout = Duration::from_millis(200);
    let mut h = Harness::new().with_client(config, 3);
    let server = h.with_listener();
    h.client().add_server(server);
    let mut silent = h.accept_from_listener();
    h.until("an outcome", |h| !h.client_log.is_empty());
    assert_eq!(
        events(&h),
        [ClientEvent::HandshakeFailed {
            server,
            reason: HandshakeFailure::TimedOut
        }]
    );
    assert_eq!(
        read_to_end(&mut silent),
        b"",
        "the client closed its socket"
    );
}

#[test]
fn the_end_of_stream_before_the_line_fails_the_handshake() {
    let mut h = Harness::new().with_client(one_attempt(4), 3);
    let server = h.with_listener();
    h.client().add_server(server);
    let mut short = h.accept_from_listener();
    short.write_all(b"12").unwrap();
    drop(short);
    h.until("an outcome", |h| !h.client_log.is_empty());
    let expected = callosum_mio::callosum_proto::slot_line::decode(b"12").unwrap_err();
    assert_eq!(
        events(&h),
        [ClientEvent::HandshakeFailed {
            server,
            reason: HandshakeFailure::Decode(expected)
        }]
    );
}

#[test]
fn a_removed_servers_attempt_is_closed_and_nothing_of_it_is_delivered() {
    let mut h = Harness::new().with_client(one_attempt(4), 4);
    let server = h.with_listener();
    h.client().add_server(server);
    let mut late = h.accept_from_listener();
    assert_eq!(h.client().status().attempts_in_flight, 1);
    assert!(h.client().remove_server(server));
    late.write_all(b"0\r\n").unwrap();
    assert_eq!(
        read_to_end(&mut late),
        b"",
        "the attempt's socket is closed"
    );
    h.turn(std::time::Instant::now());
    assert!(
        !events(&h)
            .iter()
            .any(|e| matches!(e, ClientEvent::Kept { .. })),
        "{:?}",
        h.client_log
    );
    let status = h.client().status();
    assert_eq!((status.attempts_in_flight, status.pool.held), (0, 0));
}

#[test]
fn bytes_after_the_slot_line_remove_the_connection_before_it_is_ever_lent() {
    let mut h = Harness::new().with_client(one_attempt(4), 5);
    let server = h.with_listener();
    h.client().add_server(server);
    let mut peer = h.accept_from_listener();
    // One write: the line and 16 bytes more. However TCP cuts them, the server spoke
    // before it was asked, and its connection never reaches a caller.
    peer.write_all(b"7\r\n0123456789abcdef").unwrap();
    assert_eq!(
        h.until_removed(1),
        [(7, RemoveCause::UnsolicitedData)],
        "{:?}",
        h.client_log
    );
    assert!(h.client().checkout().is_none());
    let status = h.client().status();
    assert_eq!((status.pool.held, status.stats.pool.checkouts), (0, 0));
    assert_eq!(status.stats.removed.unsolicited_data, 1);
    assert_eq!(read_to_end(&mut peer), b"", "the client closed it");
}

#[test]
fn an_idle_connection_the_server_closes_is_removed_at_once() {
    let (mut h, conn) = one_pooled();
    assert!(h.server().close(conn));
    assert_eq!(h.until_removed(1), [(0, RemoveCause::ClosedByServer)]);
    assert_eq!(h.client().status().pool.held, 0);
    assert_eq!(h.client().status().stats.removed.closed_by_server, 1);
}

#[test]
fn an_idle_connection_that_receives_bytes_is_removed_and_closed() {
    let (mut h, conn) = one_pooled();
    h.server().write(conn, b"surprise").unwrap();
    assert_eq!(h.until_removed(1), [(0, RemoveCause::UnsolicitedData)]);
    // The client closed it, so the server frees the slot.
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn a_returned_connection_is_watched_again() {
    let (mut h, conn) = one_pooled();
    let lease = h.client().checkout().unwrap();
    h.client().checkin(lease);
    h.drain();
    assert_eq!(h.client().status().pool.idle, 1, "{:?}", h.client_log);
    h.server().write(conn, b"!").unwrap();
    assert_eq!(h.until_removed(1), [(0, RemoveCause::UnsolicitedData)]);
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn a_leased_connection_carries_a_request_and_its_reply() {
    let (mut h, _) = one_pooled();
    h.echo = true;
    let lease = h.client().checkout().unwrap();
    let id = lease.id();
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"ping\n")
        .unwrap();
    let mut reply = Vec::new();
    h.until("the reply", |h| {
        if h.ready_log.iter().any(|r| r.lease == id && r.readable) {
            let conn = h.client.as_mut().unwrap().conn_mut(&lease).unwrap();
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                reply.extend_from_slice(&buf[..n]);
            }
        }
        reply == b"ping\n"
    });
    h.client().checkin(lease);
    h.drain();
    let status = h.client().status().pool;
    assert_eq!((status.held, status.idle), (1, 1), "{:?}", h.client_log);
}

#[test]
fn a_lease_returned_with_its_reply_unread_is_returned_broken() {
    let (mut h, _) = one_pooled();
    h.echo = true;
    let lease = h.client().checkout().unwrap();
    let id = lease.id();
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"ping\n")
        .unwrap();
    h.until("the reply to arrive", |h| {
        h.ready_log.iter().any(|r| r.lease == id && r.readable)
    });
    // The exchange did not finish: the reply would reach the next caller.
    h.client().checkin(lease);
    h.drain();
    assert_eq!(h.removed(), [(0, RemoveCause::Broken)]);
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn a_connection_returned_broken_is_closed_and_reported() {
    let (mut h, _) = one_pooled();
    let lease = h.client().checkout().unwrap();
    h.client().checkin_broken(lease);
    h.drain();
    assert_eq!(h.removed(), [(0, RemoveCause::Broken)]);
    assert_eq!(h.client().status().stats.removed.broken, 1);
    assert_eq!(h.client().status().pool.held, 0);
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn a_connection_evicted_while_leased_stays_usable_and_closes_when_checked_in() {
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(steady(1), 4);
    h.echo = true;
    let addr = h.server_addr();
    let raw = connect(addr);
    h.until("the raw connection", |h| h.accepted().len() == 1);
    h.client().add_server(addr);
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let lease = h.client().checkout().unwrap();
    assert_eq!(lease.slot(), 1);
    drop(raw);
    h.until("an eviction", |h| {
        h.client_log.contains(&ClientEvent::Evicted {
            server: addr,
            slot: 1,
        })
    });
    let status = h.client().status();
    assert_eq!(
        (status.pool.held, status.pool.evicted_awaiting_return),
        (1, 1)
    );
    assert!(!h.freed().contains(&1), "not closed under its user");
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"still here\n")
        .unwrap();
    h.until("the echo", |h| {
        h.received.values().any(|bytes| bytes == b"still here\n")
    });
    h.client().checkin(lease);
    h.until("slot 1 freed", |h| h.freed().contains(&1));
    assert_eq!(h.client().status().servers[0].slots, [0]);
}

#[test]
fn removing_a_server_closes_its_idle_connections_now_and_its_leased_ones_on_checkin() {
    let mut config = one_attempt(2);
    config.rover.fill = true;
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(config, 6);
    let addr = h.server_addr();
    h.client().add_server(addr);
    h.until("a full pool", |h| h.client().status().pool.held == 2);
    let lease = h.client().checkout().unwrap();
    assert_eq!(lease.slot(), 0);
    assert!(h.client().remove_server(addr));
    h.drain();
    // Both are reported at once; both places are free at once.
    let mut removed = h.removed();
    removed.sort_unstable();
    assert_eq!(
        removed,
        [
            (0, RemoveCause::ServerRemoved),
            (1, RemoveCause::ServerRemoved)
        ]
    );
    let status = h.client().status().pool;
    assert_eq!((status.held, status.evicted_awaiting_return), (0, 1));
    h.until("slot 1 freed", |h| h.freed() == [1]);
    // The leased one stays usable until it comes back.
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"last\n")
        .unwrap();
    h.client().checkin(lease);
    h.until("slot 0 freed", |h| h.freed() == [1, 0]);
    assert_eq!(h.removed().len(), 2, "reported once, at removal");
    assert!(h.client().checkout().is_none());
}

#[test]
fn closing_the_client_closes_idle_connections_now_and_leases_on_checkin() {
    let mut config = one_attempt(2);
    config.rover.fill = true;
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(config, 7);
    let addr = h.server_addr();
    h.client().add_server(addr);
    h.until("a full pool", |h| h.client().status().pool.held == 2);
    let lease = h.client().checkout().unwrap();
    h.client().close();
    h.until("the idle one closed", |h| h.freed().len() == 1);
    assert!(h.client().checkout().is_none());
    h.client().checkin(lease);
    h.until("both closed", |h| h.freed().len() == 2);
    assert_eq!(h.client().status().stats.removed.client_closed, 2);
}

#[test]
fn dropping_the_client_closes_its_connections() {
    let (mut h, _) = one_pooled();
    h.client = None;
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn components_share_one_poll_without_token_collisions() {
    // The harness fails on any event outside the components' ranges; the plain listener
    // shares the poll under a token of its own.
    let (mut h, _) = one_pooled();
    h.with_listener();
    assert!(!h.server().handles(mio::Token(5)));
    assert!(!h.client().handles(mio::Token(5)));
    assert!(h.server().handles(mio::Token(10)));
    let needed = h.client().tokens_needed();
    assert!(h.client().handles(mio::Token(1000)));
    assert!(h.client().handles(mio::Token(1000 + needed - 1)));
    assert!(!h.client().handles(mio::Token(1000 + needed)));
    let _peer = connect(h.server_addr());
    h.accept_nth(1);
}

#[test]
fn a_lease_dropped_untouched_goes_back_to_idle() {
    let (mut h, _) = one_pooled();
    let lease = h.client().checkout().unwrap();
    drop(lease);
    let now = std::time::Instant::now();
    assert!(
        h.client()
            .poll_timeout()
            .is_some_and(|at| at <= now + DEADLINE),
        "a dropped lease makes the client due at once"
    );
    h.drain();
    let status = h.client().status();
    assert_eq!((status.pool.idle, status.pool.leased), (1, 0));
    assert!(h.removed().is_empty(), "{:?}", h.client_log);
    // It is lent again, as any idle connection.
    let again = h.client().checkout().unwrap();
    assert_eq!(again.slot(), 0);
    h.client().checkin(again);
}

#[test]
fn a_lease_dropped_mid_exchange_is_closed_as_interrupted_and_its_reply_reaches_nobody() {
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(steady(1), 8);
    let addr = h.server_addr();
    h.client().add_server(addr);
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let lease = h.client().checkout().unwrap();
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"abandoned\n")
        .unwrap();
    h.until("the request to arrive", |h| {
        h.received.values().any(|bytes| bytes == b"abandoned\n")
    });
    // The server answers after the lease is gone, as a reply to a timed-out request does.
    drop(lease);
    let conn = h.accepted()[0].0;
    h.server().write(conn, b"abandoned\n").unwrap();
    assert_eq!(h.until_removed(1), [(0, RemoveCause::Interrupted)]);
    assert_eq!(h.client().status().stats.removed.interrupted, 1);
    h.until("slot 0 freed", |h| h.freed() == [0]);
    // The rover refills the pool; the new connection carries no stale byte.
    h.echo = true;
    h.until("a new connection", |h| h.client().status().pool.idle == 1);
    let lease = h.client().checkout().unwrap();
    let id = lease.id();
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"mine\n")
        .unwrap();
    let mut reply = Vec::new();
    h.until("the reply", |h| {
        if h.ready_log.iter().any(|r| r.lease == id && r.readable) {
            let conn = h.client.as_mut().unwrap().conn_mut(&lease).unwrap();
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                reply.extend_from_slice(&buf[..n]);
            }
        }
        reply.len() >= 5
    });
    assert_eq!(reply, b"mine\n");
    h.client().checkin(lease);
    h.drain();
    assert_eq!(h.client().status().pool.idle, 1, "{:?}", h.client_log);
}

#[test]
fn a_lease_is_send_and_may_be_dropped_on_another_thread() {
    let (mut h, _) = one_pooled();
    let lease = h.client().checkout().unwrap();
    h.client().conn_mut(&lease).unwrap();
    std::thread::spawn(move || drop(lease)).join().unwrap();
    assert_eq!(h.until_removed(1), [(0, RemoveCause::Interrupted)]);
    assert_eq!(h.client().status().pool.held, 0);
}

#[test]
fn a_lease_that_outlives_its_client_is_harmless() {
    let (mut h, _) = one_pooled();
    let lease = h.client().checkout().unwrap();
    h.client = None;
    drop(lease);
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

/// A server that accepts and resets at once is a handshake failure, whether the reset lands
/// before the client saw its connect complete (the reset comes as the connect's error) or
/// after (it comes at the first read of the line).
#[test]
fn a_server_that_accepts_and_resets_is_always_a_handshake_failure() {
    for trial in 0..50 {
        let mut h = Harness::new().with_client(one_attempt(4), trial);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        h.client().add_server(server);
        // One turn: the rover's first attempt opens its socket.
        h.until("the attempt", |h| {
            h.client().status().attempts_in_flight == 1
        });
        let (peer, _) = listener.accept().unwrap();
        if trial % 2 == 1 {
            // Let the client see its connect complete first, when it does in one turn.
            h.turn(std::time::Instant::now() + Duration::from_millis(20));
        }
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        h.until("an outcome", |h| !h.client_log.is_empty());
        assert_eq!(
            events(&h),
            [ClientEvent::HandshakeFailed {
                server,
                reason: HandshakeFailure::ReadFailed
            }],
            "trial {trial}"
        );
    }
}

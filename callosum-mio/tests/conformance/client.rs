//! The client's conformance on loopback (PROTOCOL.md sections 3 and 4): the rover's
//! outcomes and the pool's choices through real sockets, bounded by deadlines.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use callosum_mio::callosum_proto::slot_line::decode;
use callosum_mio::{
    ClientConfig, ClientEvent, ConnectFailure, HandshakeFailure, PoolConfig, RemoveCause,
    RoverConfig, ServerConfig, ServerEvent, TokenRange,
};

use crate::harness::{DEADLINE, Harness, connect, read_once, read_to_end};

/// One attempt at a time, no fill, and a long interval: only the attempt at start runs.
fn one_attempt(max_slots: usize) -> ClientConfig {
    ClientConfig {
        pool: PoolConfig { max_slots },
        rover: RoverConfig {
            interval: Duration::from_secs(60),
            jitter: Duration::ZERO,
            max_in_flight: 1,
            fill: false,
            ..RoverConfig::default()
        },
    }
}

/// A harness with a client (not a server) and a plain listener standing in for a server.
fn with_listener(config: ClientConfig) -> (Harness, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    (Harness::new().with_client(config, 11), listener)
}

/// Accepts the client's connection on `listener`, running the client meanwhile.
fn accept_from(h: &mut Harness, listener: &TcpListener) -> TcpStream {
    let mut accepted = None;
    h.until("the client to connect", |h| {
        match listener.accept() {
            Ok((stream, _)) => accepted = Some(stream),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                // Nothing queued yet: one short turn of the client's loop, then look again.
                h.turn(Instant::now() + Duration::from_millis(5));
            }
            Err(error) => panic!("accept failed: {error}"),
        }
        accepted.is_some()
    });
    let stream = accepted.unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

fn outcomes(h: &Harness) -> Vec<ClientEvent> {
    h.client_log
        .iter()
        .copied()
        .filter(|e| {
            !matches!(
                e,
                ClientEvent::Readable { .. } | ClientEvent::Writable { .. }
            )
        })
        .collect()
}

#[test]
fn fill_mode_brings_a_pool_of_100_to_full_quickly() {
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(ClientConfig::default(), 5);
    let addr = h.server_addr();
    h.client().add_server(addr);
    let start = Instant::now();
    h.client().start();
    h.until("a full pool", |h| h.client().status().pool.held == 100);
    let took = start.elapsed();
    eprintln!("fill mode: 100 connections in {took:?}");
    assert!(took < DEADLINE);
    // Attempts still in flight hold lower slots than the last ones kept: once they land,
    // they replace the highest, and the pool holds exactly slots 0..100.
    h.until("the attempts in flight to land", |h| {
        h.client().status().in_flight == 0
    });
    // Every connection the server accepted reached the pool: no attempt's socket was lost.
    let accepted = h.accepted().len() as u64;
    assert_eq!(h.client().stats().offered, accepted);
    let slots = &h.client().status().servers[0].slots;
    assert_eq!(*slots, (0..100).collect::<Vec<_>>());
}

#[test]
fn the_pool_keeps_low_slots_evicts_the_highest_and_lends_the_lowest() {
    let config = ClientConfig {
        pool: PoolConfig { max_slots: 2 },
        rover: RoverConfig {
            interval: Duration::from_millis(20),
            jitter: Duration::ZERO,
            max_in_flight: 1,
            ..RoverConfig::default()
        },
    };
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(config, 3);
    let addr = h.server_addr();
    // Raw connections hold slots 0..=3, so the client's first ones get 4 and 5.
    let mut raw: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    h.until("4 raw connections", |h| h.accepted().len() == 4);
    h.client().add_server(addr);
    h.client().start();
    h.until("a full pool", |h| h.client().status().pool.held == 2);
    assert_eq!(h.client().status().servers[0].slots, [4, 5]);
    // Free slot 0: the next attempt gets it, and the pool evicts 5 for it.
    drop(raw.remove(0));
    h.until("an eviction", |h| {
        h.client_log
            .iter()
            .any(|e| matches!(e, ClientEvent::Evicted { .. }))
    });
    let at = h
        .client_log
        .iter()
        .position(|e| matches!(e, ClientEvent::Evicted { .. }))
        .expect("an eviction");
    // A replacement is reported as the new connection kept, then the old one evicted.
    assert!(
        matches!(
            h.client_log[at - 1..=at],
            [
                ClientEvent::Kept { slot: 0, .. },
                ClientEvent::Evicted { slot: 5, addr: a, .. }
            ] if a == addr
        ),
        "{:?}",
        &h.client_log[at - 1..=at]
    );
    assert_eq!(h.client().status().servers[0].slots, [0, 4]);
    // The evicted connection was idle: closed at once, so the server frees slot 5.
    h.until("slot 5 freed", |h| h.freed().contains(&5));
    let first = h.client().checkout().unwrap();
    assert_eq!(first.slot(), 0);
    let second = h.client().checkout().unwrap();
    assert_eq!(second.slot(), 4);
    assert!(h.client().checkout().is_none());
    h.client().checkin(first);
    h.client().checkin(second);
    assert_eq!(h.client().status().pool.idle, 2);
}

#[test]
fn a_connection_evicted_while_leased_stays_usable_and_closes_when_checked_in() {
    let config = ClientConfig {
        pool: PoolConfig { max_slots: 1 },
        rover: RoverConfig {
            interval: Duration::from_millis(20),
            jitter: Duration::ZERO,
            max_in_flight: 1,
            ..RoverConfig::default()
        },
    };
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(config, 4);
    h.echo = true;
    let addr = h.server_addr();
    let raw = connect(addr);
    h.until("the raw connection", |h| h.accepted().len() == 1);
    h.client().add_server(addr);
    h.client().start();
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let lease = h.client().checkout().unwrap();
    assert_eq!(lease.slot(), 1);
    drop(raw);
    h.until("an eviction", |h| {
        h.client_log
            .iter()
            .any(|e| matches!(e, ClientEvent::Evicted { slot: 1, .. }))
    });
    let status = h.client().status();
    assert_eq!(
        (status.pool.held, status.pool.evicted_awaiting_return),
        (1, 1)
    );
    assert!(
        !h.freed().contains(&1),
        "a leased connection is not closed under its user"
    );
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
    assert!(h.client().checkout().is_some_and(|lease| {
        let slot = lease.slot();
        h.client().checkin(lease);
        slot == 0
    }));
}

#[test]
fn a_refused_port_is_unreachable() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut h = Harness::new().with_client(one_attempt(4), 1);
    let server = h.client().add_server(addr);
    h.client().start();
    h.until("an outcome", |h| !outcomes(h).is_empty());
    assert_eq!(
        outcomes(&h),
        [ClientEvent::Unreachable {
            server,
            addr,
            reason: ConnectFailure::Refused
        }]
    );
    assert_eq!(h.client().status().in_flight, 0);
}

#[test]
fn a_server_that_never_writes_fails_the_handshake_and_its_socket_is_closed() {
    let mut config = one_attempt(4);
    config.rover.handshake_timeout = Duration::from_millis(200);
    let (mut h, listener) = with_listener(config);
    let addr = listener.local_addr().unwrap();
    let server = h.client().add_server(addr);
    h.client().start();
    let mut silent = accept_from(&mut h, &listener);
    h.until("an outcome", |h| !outcomes(h).is_empty());
    assert_eq!(
        outcomes(&h),
        [ClientEvent::HandshakeFailed {
            server,
            addr,
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
fn a_malformed_line_fails_the_handshake_with_the_decoders_error() {
    let (mut h, listener) = with_listener(one_attempt(4));
    let addr = listener.local_addr().unwrap();
    let server = h.client().add_server(addr);
    h.client().start();
    let mut bad = accept_from(&mut h, &listener);
    bad.write_all(b"-1\r\n").unwrap();
    h.until("an outcome", |h| !outcomes(h).is_empty());
    let expected = decode(b"-1\r\n").unwrap_err();
    assert_eq!(
        outcomes(&h),
        [ClientEvent::HandshakeFailed {
            server,
            addr,
            reason: HandshakeFailure::Decode(expected)
        }]
    );
    assert_eq!(read_to_end(&mut bad), b"");
}

#[test]
fn the_end_of_stream_before_the_line_fails_the_handshake() {
    let (mut h, listener) = with_listener(one_attempt(4));
    let addr = listener.local_addr().unwrap();
    h.client().add_server(addr);
    h.client().start();
    let mut short = accept_from(&mut h, &listener);
    short.write_all(b"12").unwrap();
    drop(short);
    h.until("an outcome", |h| !outcomes(h).is_empty());
    let expected = decode(b"12").unwrap_err();
    assert!(
        matches!(
            outcomes(&h)[..],
            [ClientEvent::HandshakeFailed { reason: HandshakeFailure::Decode(e), .. }] if e == expected
        ),
        "{:?}",
        h.client_log
    );
}

#[test]
fn no_servers_is_an_event_not_a_panic() {
    let mut h = Harness::new().with_client(ClientConfig::default(), 1);
    h.client().start();
    h.drain();
    assert_eq!(h.client_log, [ClientEvent::NoServers]);
}

#[test]
fn a_dropped_servers_attempt_is_not_delivered() {
    let (mut h, listener) = with_listener(one_attempt(4));
    let addr = listener.local_addr().unwrap();
    let server = h.client().add_server(addr);
    h.client().start();
    let mut late = accept_from(&mut h, &listener);
    assert_eq!(h.client().status().in_flight, 1);
    assert!(h.client().remove_server(server));
    late.write_all(b"0\r\n").unwrap();
    assert_eq!(
        read_to_end(&mut late),
        b"",
        "the attempt's socket is closed"
    );
    h.turn(Instant::now());
    assert_eq!(outcomes(&h), [], "nothing of a dropped server is delivered");
    let status = h.client().status();
    assert_eq!((status.in_flight, status.pool.held), (0, 0));
}

/// A client holding one connection to a harness server, and that connection's server id.
fn one_pooled() -> (Harness, callosum_mio::ServerConnId) {
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(one_attempt(1), 2);
    let addr = h.server_addr();
    h.client().add_server(addr);
    h.client().start();
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let (conn, slot) = h.accepted()[0];
    assert_eq!(slot, 0);
    (h, conn)
}

#[test]
fn an_idle_connection_the_server_closes_is_removed_at_once() {
    let (mut h, conn) = one_pooled();
    assert!(h.server().close(conn));
    h.until("the removal", |h| {
        h.client_log
            .iter()
            .any(|e| matches!(e, ClientEvent::Removed { .. }))
    });
    assert!(matches!(
        h.client_log.last(),
        Some(ClientEvent::Removed {
            slot: 0,
            cause: RemoveCause::PeerClosed,
            ..
        })
    ));
    assert_eq!(h.client().status().pool.held, 0);
    assert_eq!(h.client().stats().removed_broken, 1);
}

#[test]
fn an_idle_connection_that_receives_bytes_is_removed_and_closed_at_once() {
    let (mut h, conn) = one_pooled();
    h.server().write(conn, b"surprise").unwrap();
    h.until("the removal", |h| {
        h.client_log
            .iter()
            .any(|e| matches!(e, ClientEvent::Removed { .. }))
    });
    assert!(matches!(
        h.client_log.last(),
        Some(ClientEvent::Removed {
            cause: RemoveCause::UnsolicitedBytes,
            ..
        })
    ));
    // The client closed it, so the server frees the slot.
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn bytes_after_the_slot_line_are_given_to_the_application() {
    let (mut h, listener) = with_listener(one_attempt(4));
    let addr = listener.local_addr().unwrap();
    h.client().add_server(addr);
    h.client().start();
    let mut server = accept_from(&mut h, &listener);
    server.write_all(b"7\r\nhello").unwrap();
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let lease = h.client().checkout().unwrap();
    assert_eq!(lease.slot(), 7);
    let conn = h.client().conn_mut(&lease).unwrap();
    assert_eq!(conn.buffered(), b"hello");
    let mut buf = [0u8; 16];
    assert_eq!(conn.read(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert!(conn.buffered().is_empty());
    h.client().checkin(lease);
    assert_eq!(h.client().status().pool.idle, 1);
}

#[test]
fn a_connection_checked_in_with_bytes_unread_from_the_slot_lines_read_is_removed() {
    let (mut h, listener) = with_listener(one_attempt(4));
    let addr = listener.local_addr().unwrap();
    h.client().add_server(addr);
    h.client().start();
    let mut server = accept_from(&mut h, &listener);
    server.write_all(b"7\r\nhello").unwrap();
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let lease = h.client().checkout().unwrap();
    assert_eq!(h.client().conn_mut(&lease).unwrap().buffered(), b"hello");
    h.client().checkin(lease);
    h.drain();
    assert!(
        matches!(
            h.client_log.last(),
            Some(ClientEvent::Removed {
                slot: 7,
                cause: RemoveCause::UnsolicitedBytes,
                ..
            })
        ),
        "{:?}",
        h.client_log
    );
    assert_eq!(h.client().status().pool.held, 0);
    assert_eq!(read_to_end(&mut server), b"", "the client closed it");
}

#[test]
fn the_handshake_reads_no_more_than_the_longest_line_and_later_bytes_are_unsolicited() {
    let (mut h, listener) = with_listener(one_attempt(4));
    let addr = listener.local_addr().unwrap();
    let server = h.client().add_server(addr);
    h.client().start();
    let mut peer = accept_from(&mut h, &listener);
    // One write: the line and 16 bytes more. 12 bytes are read with the line (the line and
    // 9 bytes for the application); the 7 after them arrive unasked on an idle connection.
    peer.write_all(b"7\r\n0123456789abcdef").unwrap();
    h.until("the removal", |h| {
        h.client_log
            .iter()
            .any(|e| matches!(e, ClientEvent::Removed { .. }))
    });
    assert_eq!(
        outcomes(&h),
        [
            ClientEvent::Kept {
                server,
                addr,
                slot: 7
            },
            ClientEvent::Removed {
                server,
                addr,
                slot: 7,
                cause: RemoveCause::UnsolicitedBytes
            }
        ]
    );
    // Closed with bytes unread: a reset, or an end of stream.
    let mut rest = Vec::new();
    match peer.read_to_end(&mut rest) {
        Ok(_) => assert_eq!(rest, b""),
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
    }
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
        if h.client_log.contains(&ClientEvent::Readable { lease: id }) {
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
fn a_connection_returned_broken_is_removed_and_frees_its_place() {
    let (mut h, _) = one_pooled();
    let lease = h.client().checkout().unwrap();
    h.client().checkin_broken(lease);
    assert_eq!(h.client().status().pool.held, 0);
    // Fill mode is off; the freed slot shows on the server once the socket is closed.
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn a_connection_returned_broken_is_reported_removed() {
    let (mut h, _) = one_pooled();
    let lease = h.client().checkout().unwrap();
    h.client().checkin_broken(lease);
    h.drain();
    assert!(
        matches!(
            h.client_log.last(),
            Some(ClientEvent::Removed {
                slot: 0,
                cause: RemoveCause::Broken,
                ..
            })
        ),
        "{:?}",
        h.client_log
    );
    assert_eq!(h.client().stats().removed_broken, 1);
}

#[test]
fn components_share_one_poll_without_token_collisions() {
    // The harness fails on any event outside the components' ranges; here a user's own
    // source shares the poll under a token of its own.
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(one_attempt(1), 9);
    let addr: SocketAddr = h.server_addr();
    h.client().add_server(addr);
    h.client().start();
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    assert!(!h.server().handles(mio::Token(5)));
    assert!(!h.client().handles(mio::Token(5)));
    assert!(h.server().handles(mio::Token(10)));
    assert!(h.client().handles(mio::Token(1000)));
    let mut peer = connect(addr);
    assert_eq!(read_once_served(&mut h, &mut peer), b"1\r\n");
}

fn read_once_served(h: &mut Harness, peer: &mut TcpStream) -> Vec<u8> {
    let before = h.accepted().len();
    h.until("the connection accepted", |h| h.accepted().len() > before);
    assert!(matches!(
        h.server_log.last(),
        Some(ServerEvent::Accepted { .. }) | Some(_)
    ));
    read_once(peer)
}

/// Checks a connection out and back in, so that its pool id is the one checkin gave it.
fn returned_once(h: &mut Harness) {
    let lease = h.client().checkout().unwrap();
    h.client().checkin(lease);
    h.drain();
    assert_eq!(h.client().status().pool.idle, 1, "{:?}", h.client_log);
}

/// Runs the client until a connection is removed, and returns why.
fn removal(h: &mut Harness) -> RemoveCause {
    h.until("the removal", |h| {
        h.client_log
            .iter()
            .any(|e| matches!(e, ClientEvent::Removed { .. }))
    });
    let cause = h.client_log.iter().find_map(|e| match e {
        ClientEvent::Removed { cause, .. } => Some(*cause),
        _ => None,
    });
    cause.unwrap()
}

#[test]
fn a_returned_connection_the_server_closes_is_removed_without_a_panic() {
    let (mut h, conn) = one_pooled();
    returned_once(&mut h);
    assert!(h.server().close(conn));
    assert_eq!(removal(&mut h), RemoveCause::PeerClosed);
    assert_eq!(h.client().status().pool.held, 0);
    assert_eq!(h.client().stats().removed_broken, 1);
}

#[test]
fn a_returned_connection_that_receives_a_byte_is_removed_without_a_panic() {
    let (mut h, conn) = one_pooled();
    returned_once(&mut h);
    h.server().write(conn, b"!").unwrap();
    assert_eq!(removal(&mut h), RemoveCause::UnsolicitedBytes);
    assert_eq!(h.client().status().pool.held, 0);
    h.until("slot 0 freed", |h| h.freed() == [0]);
}

#[test]
fn removing_a_server_closes_its_idle_connections_now_and_its_leased_ones_on_checkin() {
    let config = ClientConfig {
        pool: PoolConfig { max_slots: 2 },
        rover: RoverConfig {
            interval: Duration::from_secs(60),
            jitter: Duration::ZERO,
            max_in_flight: 1,
            ..RoverConfig::default()
        },
    };
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client(config, 6);
    let addr = h.server_addr();
    let server = h.client().add_server(addr);
    h.client().start();
    h.until("a full pool", |h| h.client().status().pool.held == 2);
    let lease = h.client().checkout().unwrap();
    assert_eq!(lease.slot(), 0);
    assert!(h.client().remove_server(server));
    h.drain();
    let dropped = |slot| ClientEvent::Removed {
        server,
        addr,
        slot,
        cause: RemoveCause::ServerDropped,
    };
    assert_eq!(h.client_log.last(), Some(&dropped(1)), "{:?}", h.client_log);
    let status = h.client().status().pool;
    assert_eq!(
        (status.held, status.idle, status.evicted_awaiting_return),
        (0, 0, 1)
    );
    h.until("slot 1 freed", |h| h.freed() == [1]);
    // The leased one stays usable until it comes back.
    assert!(!h.freed().contains(&0));
    h.client()
        .conn_mut(&lease)
        .unwrap()
        .write_all(b"last\n")
        .unwrap();
    h.client().checkin(lease);
    h.drain();
    assert_eq!(h.client_log.last(), Some(&dropped(0)), "{:?}", h.client_log);
    h.until("slot 0 freed", |h| h.freed() == [1, 0]);
    assert_eq!(h.client().status().pool.evicted_awaiting_return, 0);
    assert!(h.client().checkout().is_none());
}

#[test]
fn fill_goes_on_after_a_delivered_connection_found_no_token() {
    let config = ClientConfig {
        pool: PoolConfig { max_slots: 1 },
        rover: RoverConfig {
            interval: Duration::from_secs(60),
            jitter: Duration::ZERO,
            max_in_flight: 1,
            ..RoverConfig::default()
        },
    };
    // One token for the attempt, one for a pooled connection.
    let mut h = Harness::new()
        .with_server(ServerConfig::default())
        .with_client_tokens(config, 8, TokenRange::new(1000..1002));
    let addr = h.server_addr();
    let first = h.client().add_server(addr);
    h.client().start();
    h.until("a kept connection", |h| h.client().status().pool.held == 1);
    let lease = h.client().checkout().unwrap();
    // Its place in the pool is free now, but the lease keeps the only token until it is
    // checked in: the next connection delivered finds none.
    assert!(h.client().remove_server(first));
    h.client().add_server(addr);
    h.until("a connection with no token", |h| {
        h.client_log.iter().any(|e| {
            matches!(
                e,
                ClientEvent::Removed {
                    cause: RemoveCause::OutOfTokens,
                    ..
                }
            )
        })
    });
    // Closing the lease frees the token and leaves the pool's count as it was: fill must
    // go on by itself, not wait for the interval.
    h.client().checkin(lease);
    h.until("a new connection in the pool", |h| {
        h.client().status().pool.held == 1
    });
}

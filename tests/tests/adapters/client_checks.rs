//! PROTOCOL.md sections 3 and 4, written once and run against each adapter's client: with a
//! real server of either adapter (every client x server pair, which is the interop), or
//! with a plain listener playing a faulty server.

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use callosum_proto::DecodeError;
use callosum_proto::RoverConfig;
use callosum_proto::rover::{ConnectFailure, HandshakeFailure};

use callosum_proto::client::{ClientEvent, RemoveCause};
use callosum_tests::conformance::{
    Adapter, Cancellation, ClientSpec, ClientUnderTest, DEADLINE, DelayedEcho, FAILURE_ANSWER,
    ServerUnderTest, accept_within, closed_port, connect, one_attempt, quick_rover, raw_listener,
    read_once, read_to_end,
};
use callosum_tests::{each_adapter, each_pair};

each_pair!(
    round_trip_on_the_lowest_idle_connection,
    keeps_low_slots_and_evicts_the_highest,
    held_never_exceeds_max_slots,
    fill_mode_fills_a_pool_of_20_without_waiting_for_the_interval,
);

each_adapter!(
    refused_port_is_unreachable,
    silent_server_fails_the_handshake_and_is_closed,
    malformed_line_fails_the_handshake,
    idle_connection_closed_by_its_server_is_removed,
    bytes_after_the_slot_line_remove_the_connection,
    returned_connection_closed_by_its_server_is_removed,
    a_failure_the_server_answered_closes_the_connection,
    unsolicited_bytes_while_idle_remove_the_connection,
    no_servers_is_an_event,
    given_up_requests_never_hand_their_reply_to_another_caller,
);

fn round_trip_on_the_lowest_idle_connection(client: Adapter, server: Adapter) {
    let server = ServerUnderTest::start(server, None);
    let addr = server.addr;
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 2, quick_rover()));
    for slot in [0, 1] {
        let kept = client.event_where("kept", |e| matches!(e, ClientEvent::Kept { .. }));
        assert_eq!(kept, ClientEvent::Kept { server: addr, slot });
    }
    for request in ["ping", "pong"] {
        let reply = client.round_trip(request).unwrap();
        assert_eq!(reply.line, request, "echoed");
        assert_eq!(
            (reply.server, reply.slot),
            (addr, 0),
            "the lowest idle slot"
        );
    }
}

/// Also returns the `Kept` and `Evicted` events the client reported, in order, up to the
/// eviction, for the check that the examples agree.
pub fn keeps_low_slots_and_evicts_the_highest(
    client: Adapter,
    server: Adapter,
) -> Vec<ClientEvent> {
    let server = ServerUnderTest::start(server, None);
    let addr = server.addr;
    // Raw connections hold slots 0, 1 and 2, so the client's first slot is 3.
    let mut raw: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for (slot, stream) in raw.iter_mut().enumerate() {
        assert_eq!(read_once(stream), format!("{slot}\r\n"));
    }
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 1, quick_rover()));
    let pool_changes =
        |e: &ClientEvent| matches!(e, ClientEvent::Kept { .. } | ClientEvent::Evicted { .. });
    let mut seen = vec![client.event_where("first kept", pool_changes)];
    assert_eq!(
        seen[0],
        ClientEvent::Kept {
            server: addr,
            slot: 3
        }
    );
    assert_eq!(client.slots(), [(addr, vec![3])]);

    drop(raw.remove(0)); // slot 0 frees on the server
    while !matches!(seen.last(), Some(ClientEvent::Evicted { .. })) {
        seen.push(client.event_where("slot 3 evicted", pool_changes));
    }
    assert_eq!(
        seen.last(),
        Some(&ClientEvent::Evicted {
            server: addr,
            slot: 3
        })
    );
    assert_eq!(client.slots(), [(addr, vec![0])]);
    seen
}

fn held_never_exceeds_max_slots(client: Adapter, server: Adapter) {
    let servers = [
        ServerUnderTest::start(server, None),
        ServerUnderTest::start(server, None),
    ];
    let addrs = [servers[0].addr, servers[1].addr];
    let client = ClientUnderTest::start(client, ClientSpec::new(&addrs, 3, quick_rover()));
    // Until each server's slot 0 is held, the pool never holds more than three.
    let started = Instant::now();
    loop {
        client.event_where("a pool change", |e| {
            matches!(
                e,
                ClientEvent::Kept { .. }
                    | ClientEvent::Rejected { .. }
                    | ClientEvent::Evicted { .. }
            )
        });
        let status = client.status();
        let held: usize = status.iter().map(|held| held.slots.len()).sum();
        assert!(held <= 3, "{status:?}");
        if status.iter().all(|held| held.slots.first() == Some(&0)) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "slot 0 of both servers: {status:?}"
        );
    }
}

fn fill_mode_fills_a_pool_of_20_without_waiting_for_the_interval(client: Adapter, server: Adapter) {
    let server = ServerUnderTest::start(server, None);
    let addr = server.addr;
    // An interval longer than any test: without fill mode, only the first attempt (at start)
    // would ever run, and the pool would stop at one connection.
    let rover = RoverConfig {
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        ..RoverConfig::default()
    };
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 20, rover));
    for _ in 0..20 {
        client.event_where("a pool of 20", |e| matches!(e, ClientEvent::Kept { .. }));
    }
    assert_eq!(client.held(), 20);
    server.wait_live(20, "20 connections on the server");
}

fn refused_port_is_unreachable(client: Adapter) {
    let addr = closed_port();
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 1, one_attempt()));
    let event = client.event_where("unreachable", |e| {
        matches!(e, ClientEvent::Unreachable { .. })
    });
    assert_eq!(
        event,
        ClientEvent::Unreachable {
            server: addr,
            reason: ConnectFailure::Refused
        }
    );
}

fn silent_server_fails_the_handshake_and_is_closed(client: Adapter) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    let event = client.event_where("handshake failed", |e| {
        matches!(e, ClientEvent::HandshakeFailed { .. })
    });
    assert_eq!(
        event,
        ClientEvent::HandshakeFailed {
            server: addr,
            reason: HandshakeFailure::TimedOut
        }
    );
    assert_eq!(
        read_to_end(&mut accepted),
        b"",
        "the client closed its socket"
    );
}

fn malformed_line_fails_the_handshake(client: Adapter) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    accepted.write_all(b"-1\r\n").unwrap();
    let event = client.event_where("handshake failed", |e| {
        matches!(e, ClientEvent::HandshakeFailed { .. })
    });
    let invalid = DecodeError::InvalidByte {
        byte: b'-',
        offset: 0,
    };
    assert_eq!(
        event,
        ClientEvent::HandshakeFailed {
            server: addr,
            reason: HandshakeFailure::Decode(invalid)
        }
    );
    assert_eq!(
        read_to_end(&mut accepted),
        b"",
        "the client closed its socket"
    );
}

/// A client of `adapter` with a pool of one, on a plain listener that accepted its one
/// attempt and sent slot 0, which the client kept: the client, the accepted socket, the
/// listener's address, and the listener, kept open so that no other test's server can take
/// the port while the client may still try it.
fn kept_from_a_raw_server(
    adapter: Adapter,
) -> (ClientUnderTest, TcpStream, SocketAddr, TcpListener) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    accepted.write_all(b"0\r\n").unwrap();
    let kept = client.event_where("kept", |e| matches!(e, ClientEvent::Kept { .. }));
    assert_eq!(
        kept,
        ClientEvent::Kept {
            server: addr,
            slot: 0
        }
    );
    (client, accepted, addr, listener)
}

/// The raw server's side of one exchange, on a thread: reads a request line, writes `answer`
/// and a newline, and hands the socket back.
fn answer_once(mut accepted: TcpStream, answer: &'static str) -> JoinHandle<TcpStream> {
    thread::spawn(move || {
        let mut request = String::new();
        BufReader::new(&accepted).read_line(&mut request).unwrap();
        accepted
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        accepted
    })
}

fn idle_connection_closed_by_its_server_is_removed(client: Adapter) {
    let (client, accepted, addr, _listener) = kept_from_a_raw_server(client);
    drop(accepted);
    let (server, slot, cause) = client.removed("removed");
    assert_eq!(
        (server, slot, cause),
        (addr, 0, RemoveCause::ClosedByServer)
    );
    assert_eq!(client.held(), 0);
}

/// A server speaks only when spoken to: bytes right after the slot line, in the same write,
/// remove the connection as unsolicited data before it is ever lent, as bytes in a later
/// write do while it is idle.
fn bytes_after_the_slot_line_remove_the_connection(client: Adapter) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    accepted.write_all(b"0\r\nhello\n").unwrap();
    let removed = client.event_where("removed", |e| {
        matches!(e, ClientEvent::Removed { .. } | ClientEvent::Kept { .. })
    });
    assert_eq!(
        removed,
        ClientEvent::Removed {
            server: addr,
            slot: 0,
            cause: RemoveCause::UnsolicitedData
        },
        "never kept"
    );
    assert_eq!(
        read_to_end(&mut accepted),
        b"",
        "the client closed its socket"
    );
    assert_eq!(client.held(), 0);
    assert!(client.round_trip("request").is_err(), "never lent");
}

fn returned_connection_closed_by_its_server_is_removed(client: Adapter) {
    let (client, accepted, addr, _listener) = kept_from_a_raw_server(client);
    // The raw server answers one request, then closes the connection while it is idle.
    let answering = answer_once(accepted, "hello");
    assert_eq!(client.round_trip("request").unwrap().line, "hello");
    drop(answering.join().unwrap());
    let (server, slot, cause) = client.removed("removed");
    assert_eq!(
        (server, slot, cause),
        (addr, 0, RemoveCause::ClosedByServer)
    );
    assert_eq!(client.held(), 0);
}

/// The application returns a connection whose answer said the server is failing: it is
/// closed and removed as such (not kept idle), and counted; the backoff it starts is the core's
/// (`a_server_that_answers_failures_backs_off_until_an_exchange_finishes`).
fn a_failure_the_server_answered_closes_the_connection(client: Adapter) {
    let (client, accepted, addr, _listener) = kept_from_a_raw_server(client);
    let answering = answer_once(accepted, FAILURE_ANSWER);
    assert_eq!(client.round_trip("request").unwrap().line, FAILURE_ANSWER);
    let mut accepted = answering.join().unwrap();
    let (server, slot, cause) = client.removed("removed");
    assert_eq!((server, slot, cause), (addr, 0, RemoveCause::ServerFailed));
    assert_eq!(
        read_to_end(&mut accepted),
        b"",
        "the client closed its socket"
    );
    assert_eq!(client.client_status().stats.removed.server_failed, 1);
    assert_eq!(client.held(), 0);
}

/// Bytes in a later write than the line, while idle: the very outcome of bytes in the same
/// write as the line (`bytes_after_the_slot_line_remove_the_connection`), whatever TCP did
/// with the segments: removed as unsolicited data, its socket closed, nothing held.
fn unsolicited_bytes_while_idle_remove_the_connection(client: Adapter) {
    let (client, mut accepted, addr, _listener) = kept_from_a_raw_server(client);
    accepted.write_all(b"unasked").unwrap();
    let (server, slot, cause) = client.removed("removed");
    assert_eq!(
        (server, slot, cause),
        (addr, 0, RemoveCause::UnsolicitedData)
    );
    assert_eq!(
        read_to_end(&mut accepted),
        b"",
        "the client closed its socket"
    );
    assert_eq!(client.held(), 0);
}

fn no_servers_is_an_event(client: Adapter) {
    let addr = closed_port();
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 1, quick_rover()));
    assert!(client.remove_server(addr));
    assert!(!client.remove_server(addr), "removed already");
    client.event_where("no servers", |e| *e == ClientEvent::NoServers);
}

/// Eight tasks share a pool of four connections to a server that answers after 5 ms; one
/// request in three is given up after 3 ms, the way each adapter's users give up (a timer
/// around the request, a dropped lease). A connection given up mid-exchange must be closed,
/// never lent again: its late answer would reach the next caller as its own (1,064 of 1,600
/// answers did, before). Every answer is its request's own, each abandoned connection is
/// removed as interrupted, and the pool fills again.
fn given_up_requests_never_hand_their_reply_to_another_caller(client: Adapter) {
    let server = DelayedEcho::start(Duration::from_millis(5));
    let addr = server.addr;
    // Fill mode alone refills the pool: with no scheduled attempt, no better slot ever evicts
    // a leased connection, so every abandoned one is removed as interrupted, not evicted.
    let rover = RoverConfig {
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        ..RoverConfig::default()
    };
    let client = ClientUnderTest::start(client, ClientSpec::new(&[addr], 4, rover));
    for _ in 0..4 {
        client.event_where("a pool of 4", |e| matches!(e, ClientEvent::Kept { .. }));
    }
    let spec = Cancellation {
        requests: 1_200,
        tasks: 8,
        abandon_every: 3,
        abandon_after: Duration::from_millis(3),
    };
    let tally = client.cancellation(spec);
    eprintln!("cancellation: {tally:?}");
    assert_eq!(
        tally.wrong, 0,
        "answers that were another request's: {tally:?}"
    );
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(tally.own + tally.abandoned, spec.requests, "{tally:?}");
    // 400 are given up at 3 ms; on a busy machine a late timer lets a few finish first.
    assert!(tally.abandoned >= 200, "{tally:?}");
    let removed = client.client_status().stats.removed;
    assert_eq!(
        removed.interrupted as usize, tally.abandoned,
        "each abandoned connection removed as interrupted: {removed:?}"
    );
    let started = Instant::now();
    while client.held() < 4 {
        assert!(started.elapsed() < DEADLINE, "the pool fills again");
        client.event_where("a connection kept", |e| {
            matches!(e, ClientEvent::Kept { .. })
        });
    }
}

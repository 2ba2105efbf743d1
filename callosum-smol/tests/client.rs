//! The client's conformance with PROTOCOL.md sections 3 and 4, over loopback sockets.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callosum_proto::DecodeError;
use callosum_proto::rover::{ConnectFailure, HandshakeFailure};
use callosum_smol::{Client, ClientEvent, RemoveCause, RoverConfig, ServerConfig};
use futures_lite::io::BufReader;
use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use support::{
    client, event_where, live_reaches, quick_rover, raw_listener, raw_slot, read_to_close,
    reading_server, until, within,
};

/// A client (pool of one, quick rover) of a raw server, and the server's side of the first
/// connection, on which the test writes what it wants the client to see.
async fn client_of_a_raw_server() -> (Client, SocketAddr, TcpStream) {
    let (listener, addr) = raw_listener().await;
    let client = client(1, quick_rover());
    client.add_server(addr);
    let (accepted, _) = within("accept", listener.accept()).await.unwrap();
    (client, addr, accepted)
}

/// Waits for the client to report its slot-0 connection to `server` removed, for `cause`.
async fn assert_removed(client: &Client, server: SocketAddr, cause: RemoveCause) {
    let removed = event_where(client, "removed", |event| {
        matches!(event, ClientEvent::Removed { .. })
    })
    .await;
    assert_eq!(
        removed,
        ClientEvent::Removed {
            server,
            slot: 0,
            cause
        }
    );
}

fn kept(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Kept { .. })
}

/// An address where nothing listens: bound, then released.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn the_pool_keeps_low_slots_and_evicts_the_highest_when_a_lower_one_arrives() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        // Raw connections hold slots 0, 1 and 2, so the client's first slot is 3.
        let (low, _) = raw_slot(addr).await;
        let (_one, _) = raw_slot(addr).await;
        let (_two, _) = raw_slot(addr).await;
        let client = client(1, quick_rover());
        client.add_server(addr);
        let first = event_where(&client, "first connection kept", kept).await;
        assert_eq!(
            first,
            ClientEvent::Kept {
                server: addr,
                slot: 3
            }
        );

        drop(low); // slot 0 frees on the server
        let evicted = event_where(&client, "slot 3 evicted", |event| {
            matches!(event, ClientEvent::Evicted { .. })
        })
        .await;
        assert_eq!(
            evicted,
            ClientEvent::Evicted {
                server: addr,
                slot: 3
            }
        );
        let status = client.status();
        assert_eq!(status.servers[0].slots, [0]);
        assert_eq!(status.pool.held, 1);
    });
}

#[test]
fn get_lends_the_lowest_slot_and_held_never_exceeds_max_slots() {
    smol::block_on(async {
        let (_a, first) = reading_server(ServerConfig::default());
        let (_b, second) = reading_server(ServerConfig::default());
        let client = client(3, quick_rover());
        client.add_server(first);
        client.add_server(second);
        // Watch twenty rover outcomes; the pool never holds more than three.
        for _ in 0..20 {
            event_where(&client, "an outcome", |event| {
                matches!(
                    event,
                    ClientEvent::Kept { .. } | ClientEvent::Rejected { .. }
                )
            })
            .await;
            assert!(client.status().pool.held <= 3);
        }
        let a = within("get", client.get()).await.unwrap();
        let b = within("get", client.get()).await.unwrap();
        let c = within("get", client.get()).await.unwrap();
        let mut slots = [a.slot(), b.slot(), c.slot()];
        assert!(a.slot() <= b.slot() && b.slot() <= c.slot(), "{slots:?}");
        let lowest = a.slot();
        drop(a);
        let again = within("get", client.get()).await.unwrap();
        assert_eq!(again.slot(), lowest, "the lowest idle slot is lent first");
        slots.sort_unstable();
        assert_eq!(
            &slots[..2],
            [0, 0],
            "each server's slot 0 is held: {slots:?}"
        );
    });
}

#[test]
fn a_refused_port_is_unreachable() {
    smol::block_on(async {
        let client = client(4, quick_rover());
        let addr = closed_port();
        client.add_server(addr);
        let event = event_where(&client, "unreachable", |event| {
            matches!(event, ClientEvent::Unreachable { .. })
        })
        .await;
        assert_eq!(
            event,
            ClientEvent::Unreachable {
                server: addr,
                reason: ConnectFailure::Refused
            }
        );
    });
}

#[test]
fn a_server_that_never_writes_fails_the_handshake_and_its_socket_is_closed() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        let event = event_where(&client, "handshake failed", |event| {
            matches!(event, ClientEvent::HandshakeFailed { .. })
        })
        .await;
        assert_eq!(
            event,
            ClientEvent::HandshakeFailed {
                server: addr,
                reason: HandshakeFailure::TimedOut
            }
        );
        assert_eq!(
            within("client closes", read_to_close(&mut accepted)).await,
            b""
        );
    });
}

#[test]
fn a_malformed_line_fails_the_handshake_with_the_decoders_error() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"-1\r\n").await.unwrap();
        let event = event_where(&client, "handshake failed", |event| {
            matches!(event, ClientEvent::HandshakeFailed { .. })
        })
        .await;
        assert_eq!(
            event,
            ClientEvent::HandshakeFailed {
                server: addr,
                reason: HandshakeFailure::Decode(DecodeError::InvalidByte {
                    byte: b'-',
                    offset: 0
                })
            }
        );
        assert_eq!(
            event.to_string(),
            format!(
                "handshake failed {addr}: bad slot line: invalid byte 0x2d at offset 0 of the slot line"
            )
        );
        within("client closes", read_to_close(&mut accepted)).await;
    });
}

#[test]
fn no_servers_is_an_event_not_a_panic() {
    smol::block_on(async {
        let client = client(1, quick_rover());
        let addr = closed_port();
        client.add_server(addr);
        client.remove_server(addr);
        event_where(&client, "no servers", |event| {
            *event == ClientEvent::NoServers
        })
        .await;
    });
}

#[test]
fn a_dropped_servers_attempt_is_not_delivered() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        assert!(client.remove_server(addr));
        // The line comes too late: the attempt was aborted and its socket closed.
        let _ = accepted.write_all(b"0\r\n").await;
        within("client closes", read_to_close(&mut accepted)).await;
        assert_eq!(client.status().pool.held, 0);
        while let Some(event) = client.try_next_event() {
            assert!(!kept(&event), "{event}");
        }
    });
}

#[test]
fn fill_mode_brings_a_pool_of_100_to_full_quickly() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let client = client(100, RoverConfig::default());
        let started = Instant::now();
        client.add_server(addr);
        within("pool full", async {
            let mut kept_count = 0;
            while kept_count < 100 {
                if kept(&client.next_event().await) {
                    kept_count += 1;
                }
            }
        })
        .await;
        let took = started.elapsed();
        eprintln!("fill mode: 100 connections in {took:?}");
        assert_eq!(client.status().pool.held, 100);
        // The default interval is one second: without fill mode this would take 100 s.
        assert!(took < Duration::from_secs(10), "{took:?}");
    });
}

#[test]
fn bytes_after_the_slot_line_reach_the_application() {
    smol::block_on(async {
        let (client, _, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\nhello\n").await.unwrap();
        let mut conn = within("get", client.get()).await.unwrap();
        let mut greeting = String::new();
        BufReader::new(&mut conn)
            .read_line(&mut greeting)
            .await
            .unwrap();
        assert_eq!(greeting, "hello\n");
    });
}

#[test]
fn an_idle_connection_the_server_closes_is_removed_at_once() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\n").await.unwrap();
        event_where(&client, "kept", kept).await;
        drop(accepted);
        assert_removed(&client, addr, RemoveCause::ClosedByServer).await;
    });
}

#[test]
fn an_idle_connection_that_receives_bytes_is_removed_and_closed() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\n").await.unwrap();
        event_where(&client, "kept", kept).await;
        // A checkout and return first, so the connection is idle under a renewed id.
        drop(within("get", client.get()).await.unwrap());
        accepted.write_all(b"unsolicited").await.unwrap();
        assert_removed(&client, addr, RemoveCause::UnsolicitedData).await;
        within("client closes", read_to_close(&mut accepted)).await;
    });
}

#[test]
fn a_failed_read_marks_the_lease_broken_and_it_is_not_returned() {
    smol::block_on(async {
        let (client, _, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\n").await.unwrap();
        let mut conn = within("get", client.get()).await.unwrap();
        drop(accepted);
        let mut buf = [0u8; 8];
        assert_eq!(
            within("read the end", conn.read(&mut buf)).await.unwrap(),
            0
        );
        assert!(conn.is_broken());
        drop(conn);
        let status = client.status();
        assert_eq!((status.pool.held, status.stats.removed_broken), (0, 1));
    });
}

#[test]
fn get_with_a_timeout_never_waits_past_it() {
    smol::block_on(async {
        let client = client(1, quick_rover());
        client.add_server(closed_port());
        let started = Instant::now();
        let waited = Duration::from_millis(200);
        let result = within("get times out", client.get_timeout(waited)).await;
        assert!(result.is_err());
        assert!(started.elapsed() >= waited);
    });
}

#[test]
fn a_removed_server_gives_up_its_connections_even_if_it_is_added_again() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let client = client(2, quick_rover());
        client.add_server(addr);
        event_where(&client, "first kept", kept).await;
        event_where(&client, "second kept", kept).await;
        let leased = within("get", client.get()).await.unwrap();
        assert!(client.remove_server(addr));
        let status = client.status();
        assert_eq!(status.pool.held, 0, "both places freed at once");
        assert_eq!(status.pool.evicted_awaiting_return, 1);
        assert!(client.add_server(addr));
        drop(leased); // closed on return, not pooled under the re-added server
        until("every old connection closed", || {
            let status = client.status();
            server.status().live as usize == status.pool.held
                && status.pool.evicted_awaiting_return == 0
                && status.servers[0].slots.len() == status.pool.held
        })
        .await;
    });
}

#[test]
fn a_connection_returned_after_the_client_is_dropped_is_closed() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let client = client(2, quick_rover());
        client.add_server(addr);
        event_where(&client, "first kept", kept).await;
        event_where(&client, "second kept", kept).await;
        let kept_out = within("get", client.get()).await.unwrap();
        let returned = within("get", client.get()).await.unwrap();
        drop(client);
        drop(returned); // `kept_out` still holds the client's state alive
        live_reaches(&server, 1, "the returned one closed").await;
        drop(kept_out);
    });
}

#[test]
fn bytes_left_unread_at_return_remove_the_connection() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\nbanner").await.unwrap();
        let conn = within("get", client.get()).await.unwrap();
        drop(conn); // the banner was never read
        assert_removed(&client, addr, RemoveCause::UnsolicitedData).await;
        within("client closes", read_to_close(&mut accepted)).await;
    });
}

#[test]
fn an_evicted_lease_is_closed_on_return_and_detach_frees_its_place() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let (low, _) = raw_slot(addr).await;
        let client = client(1, quick_rover());
        client.add_server(addr);
        event_where(&client, "slot 1 kept", kept).await;
        let leased = within("get", client.get()).await.unwrap();
        assert_eq!(leased.slot(), 1);
        drop(low);
        event_where(&client, "slot 1 evicted", |event| {
            matches!(event, ClientEvent::Evicted { slot: 1, .. })
        })
        .await;
        drop(leased);
        live_reaches(&server, 1, "slot 1 closed").await;
        let conn = within("get slot 0", client.get()).await.unwrap();
        assert_eq!(conn.slot(), 0);
        let (stream, unread) = conn.detach();
        assert!(unread.is_empty());
        // Its place is free (the rover may already have filled it, with a higher slot:
        // slot 0 stays with the detached stream, which is still open).
        assert!(!client.status().servers[0].slots.contains(&0));
        assert!(server.status().live >= 1);
        drop(stream);
    });
}

#[test]
fn events_capacity_zero_keeps_no_event() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let config = callosum_smol::ClientConfig {
            events_capacity: 0,
            rover: quick_rover(),
            ..callosum_smol::ClientConfig::default()
        };
        let (client, driver) = Client::new(config).unwrap();
        smol::spawn(driver).detach();
        client.add_server(addr);
        drop(within("get", client.get()).await.unwrap());
        assert_eq!(client.try_next_event(), None);
        assert!(client.status().events_dropped > 0);
    });
}

#[test]
fn waiting_gets_are_served_first_and_in_order() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let client = client(1, quick_rover());
        client.add_server(addr);
        event_where(&client, "kept", kept).await;
        let held = within("get", client.get()).await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                smol::spawn(async move {
                    let conn = client.get_timeout(Duration::from_secs(10)).await.unwrap();
                    drop(conn);
                })
            })
            .collect();
        until("both are waiting", || client.status().waiting_gets == 2).await;
        drop(held);
        // The caller that just returned the connection does not get it back ahead of them.
        assert!(client.try_get().is_none());
        for waiter in waiters {
            within("a waiter is served", waiter).await;
        }
        assert_eq!(client.status().waiting_gets, 0);
        assert!(client.try_get().is_some());
    });
}

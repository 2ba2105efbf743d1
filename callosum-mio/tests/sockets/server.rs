//! The server's sockets: connections in a table indexed by slot, with tokens derived from
//! their slot; every end of a connection reported to the core once.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use callosum_mio::{CloseCause, ServerConfig, ServerConnId, ServerEvent, TokenRange};

use crate::harness::{Harness, connect, read_once, read_to_end};

fn unlimited() -> ServerConfig {
    ServerConfig::default()
}

#[test]
fn slots_are_the_lowest_free_and_a_freed_slot_and_its_token_are_reused() {
    let mut h = Harness::new().with_server(unlimited());
    let addr = h.server_addr();
    let mut peers = Vec::new();
    for expected in 0..3u32 {
        let mut peer = connect(addr);
        let (conn, slot) = h.accept_nth(expected as usize);
        assert_eq!((slot, conn.slot()), (expected, expected));
        assert_eq!(read_once(&mut peer), format!("{expected}\r\n").as_bytes());
        peers.push(peer);
    }
    drop(peers.remove(1));
    h.until("slot 1 to be freed", |h| h.freed() == [1]);
    let mut again = connect(addr);
    let (conn, slot) = h.accept_nth(3);
    assert_eq!(slot, 1);
    assert_eq!(read_once(&mut again), b"1\r\n");
    assert_eq!(h.server().status().live, 3);
    // The new connection on slot 1 has slot 1's token: its bytes reach it, not the old one.
    again.write_all(b"hello\n").unwrap();
    h.until("the bytes", |h| {
        h.received.get(&conn).is_some_and(|b| b == b"hello\n")
    });
}

#[test]
fn the_slot_line_arrives_in_one_read() {
    let mut h = Harness::new().with_server(unlimited());
    let mut peers: Vec<_> = (0..12).map(|_| connect(h.server_addr())).collect();
    h.until("12 connections", |h| h.accepted().len() == 12);
    for (slot, peer) in peers.iter_mut().enumerate() {
        assert_eq!(read_once(peer), format!("{slot}\r\n").as_bytes());
    }
}

#[test]
fn a_slot_is_freed_when_the_peer_closes_with_fin() {
    let mut h = Harness::new().with_server(unlimited());
    let mut peer = connect(h.server_addr());
    let (conn, _) = h.accept_nth(0);
    assert_eq!(read_once(&mut peer), b"0\r\n");
    peer.shutdown(Shutdown::Write).unwrap();
    h.until("the slot to be freed", |h| !h.freed().is_empty());
    assert_eq!(
        h.server_log.last(),
        Some(&ServerEvent::Closed {
            conn,
            slot: 0,
            cause: CloseCause::PeerClosed
        })
    );
    assert_eq!(h.server().status().live, 0);
    assert!(!h.server().close(conn), "a stale id changes nothing");
    assert_eq!(h.server().status().stats.closed, 1);
}

#[test]
fn a_slot_is_freed_when_the_peer_resets() {
    let mut h = Harness::new().with_server(unlimited());
    let mut peer = connect(h.server_addr());
    h.accept_nth(0);
    assert_eq!(read_once(&mut peer), b"0\r\n");
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    h.until("the slot to be freed", |h| !h.freed().is_empty());
    let Some(ServerEvent::Closed { slot: 0, cause, .. }) = h.server_log.last().copied() else {
        panic!("expected slot 0 freed, got {:?}", h.server_log);
    };
    assert_eq!(
        cause,
        CloseCause::Failed(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(h.freed(), [0], "freed exactly once");
}

#[test]
fn a_slot_is_freed_when_the_application_closes_the_connection() {
    let mut h = Harness::new().with_server(unlimited());
    let mut peer = connect(h.server_addr());
    let (conn, _) = h.accept_nth(0);
    assert!(h.server().close(conn));
    assert!(!h.server().close(conn));
    h.drain();
    assert_eq!(
        h.server_log.last(),
        Some(&ServerEvent::Closed {
            conn,
            slot: 0,
            cause: CloseCause::Closed
        })
    );
    assert_eq!(read_to_end(&mut peer), b"0\r\n");
    assert_eq!(h.freed(), [0]);
    assert!(h.server().read(conn, &mut [0u8; 8]).is_err());
    assert!(h.server().conn(conn).is_none());
}

#[test]
fn dropping_the_server_closes_every_connection() {
    let mut h = Harness::new().with_server(unlimited());
    let mut a = connect(h.server_addr());
    let mut b = connect(h.server_addr());
    h.until("2 connections", |h| h.accepted().len() == 2);
    h.server = None;
    assert_eq!(read_to_end(&mut a), b"0\r\n");
    assert_eq!(read_to_end(&mut b), b"1\r\n");
}

#[test]
fn a_client_that_leaves_before_its_line_is_counted_and_its_slot_freed() {
    let mut h = Harness::new().with_server(unlimited());
    let addr = h.server_addr();
    // Reset while still in the accept queue: gone before the server could write its line.
    let doomed = connect(addr);
    socket2::SockRef::from(&doomed)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(doomed);
    let mut good = connect(addr);
    let local = good.local_addr().unwrap();
    h.until("the good connection to be accepted", |h| {
        h.server_log
            .iter()
            .any(|e| matches!(e, ServerEvent::Accepted { peer, .. } if *peer == local))
    });
    let good_line = read_once(&mut good);
    // If the reset connection was accepted at all it took a slot, and it must be freed.
    h.until("only the good connection to hold a slot", |h| {
        h.server().status().live == 1
    });
    let stats = h.server().status().stats;
    // A connection lost before its line is never announced, but it is counted.
    assert_eq!(
        stats.accepted - stats.lost_before_line,
        h.accepted().len() as u64,
        "{:?}",
        h.server_log
    );
    assert_eq!(
        stats.closed,
        stats.lost_before_line + h.freed().len() as u64
    );
    let good_slot: u32 = std::str::from_utf8(&good_line)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut third = connect(addr);
    h.accept_nth(h.accepted().len());
    let expected = if good_slot == 0 { 1 } else { 0 };
    assert_eq!(read_once(&mut third), format!("{expected}\r\n").as_bytes());
}

#[test]
fn at_max_slots_a_connection_is_closed_without_a_line() {
    let mut config = ServerConfig::default();
    config.max_slots = Some(1);
    let mut h = Harness::new().with_server(config);
    let mut first = connect(h.server_addr());
    h.accept_nth(0);
    assert_eq!(read_once(&mut first), b"0\r\n");
    let mut second = connect(h.server_addr());
    let local = second.local_addr().unwrap();
    h.until("the second connection to be refused", |h| {
        h.server_log.contains(&ServerEvent::Refused { peer: local })
    });
    assert_eq!(read_to_end(&mut second), b"");
    assert_eq!(h.server().status().stats.refused_full, 1);
}

#[test]
fn an_unlimited_server_numbers_no_more_slots_than_its_tokens() {
    // The listener's token and one connection's.
    let mut h = Harness::new().with_server_tokens(unlimited(), TokenRange::new(10..12));
    let mut first = connect(h.server_addr());
    h.accept_nth(0);
    assert_eq!(read_once(&mut first), b"0\r\n");
    let mut second = connect(h.server_addr());
    let local = second.local_addr().unwrap();
    h.until("the second connection to be refused", |h| {
        h.server_log.contains(&ServerEvent::Refused { peer: local })
    });
    assert_eq!(read_to_end(&mut second), b"");
    drop(first);
    h.until("slot 0 freed", |h| h.freed() == [0]);
    let mut third = connect(h.server_addr());
    assert_eq!(h.accept_nth(1).1, 0);
    assert_eq!(read_once(&mut third), b"0\r\n");
}

#[test]
fn no_event_is_lost_when_several_arrive_in_one_poll() {
    let mut h = Harness::new().with_server(unlimited());
    let mut peers: Vec<_> = (0..8).map(|_| connect(h.server_addr())).collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        peer.write_all(format!("hello {i}\n").as_bytes()).unwrap();
    }
    h.until("8 connections and their bytes", |h| {
        h.accepted().len() == 8 && h.received.values().filter(|b| b.ends_with(b"\n")).count() == 8
    });
    let mut slots: Vec<u32> = h.accepted().iter().map(|&(_, slot)| slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, (0..8).collect::<Vec<_>>());
}

#[test]
fn the_application_reads_and_writes_after_the_slot_line() {
    let mut h = Harness::new().with_server(unlimited());
    h.echo = true;
    let mut peer = connect(h.server_addr());
    peer.write_all(b"ping\n").unwrap();
    let (conn, _) = h.accept_nth(0);
    h.until("the request", |h| {
        h.received.get(&conn).is_some_and(|b| b == b"ping\n")
    });
    let mut got = Vec::new();
    while got.len() < b"0\r\nping\n".len() {
        got.extend(read_once(&mut peer));
    }
    assert_eq!(got, b"0\r\nping\n");
}

/// The `Writable` events the server reported for `conn` so far.
fn writables(h: &Harness, conn: ServerConnId) -> usize {
    h.server_log
        .iter()
        .filter(|event| matches!(event, ServerEvent::Writable { conn: c } if *c == conn))
        .count()
}

/// Writes to `conn` until a write would block; returns how many bytes went out.
fn fill(h: &mut Harness, conn: ServerConnId) -> usize {
    let chunk = vec![b'.'; 64 * 1024];
    let mut sent = 0;
    loop {
        match h.server().write(conn, &chunk) {
            Ok(n) => sent += n,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return sent,
            Err(error) => panic!("write failed: {error}"),
        }
    }
}

#[test]
fn a_new_connection_that_never_blocks_gets_no_writable_event() {
    let mut h = Harness::new().with_server(unlimited());
    h.echo = true;
    let mut peer = connect(h.server_addr());
    let (conn, _) = h.accept_nth(0);
    assert_eq!(read_once(&mut peer), b"0\r\n");
    // The socket was writable from its accept on: a writable interest would have been
    // reported by the time the request is read (in an earlier poll, or with it).
    peer.write_all(b"ping\n").unwrap();
    h.until("the request", |h| {
        h.received.get(&conn).is_some_and(|b| b == b"ping\n")
    });
    assert_eq!(read_once(&mut peer), b"ping\n");
    peer.write_all(b"pong\n").unwrap();
    h.until("the second request", |h| {
        h.received
            .get(&conn)
            .is_some_and(|b| b.ends_with(b"pong\n"))
    });
    assert_eq!(writables(&h, conn), 0, "{:?}", h.server_log);
}

#[test]
fn writable_comes_once_after_a_write_that_would_block_and_again_after_the_next() {
    let mut h = Harness::new().with_server(unlimited());
    let mut peer = connect(h.server_addr());
    let (conn, _) = h.accept_nth(0);
    assert_eq!(read_once(&mut peer), b"0\r\n");
    for round in 1..=2 {
        let sent = fill(&mut h, conn);
        assert!(sent > 0);
        // A second write that would block asks for nothing more: one event per wait.
        assert_eq!(
            h.server().write(conn, b"more").unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        let mut drained = vec![0u8; sent];
        peer.read_exact(&mut drained).unwrap();
        h.until("the writable event", |h| writables(h, conn) == round);
        // Writable again, the interest taken away: the peer's bytes bring `Readable` only.
        assert_eq!(h.server().write(conn, b"tail\n").unwrap(), 5);
        let mut tail = [0u8; 5];
        peer.read_exact(&mut tail).unwrap();
        assert_eq!(&tail, b"tail\n");
        let ask = format!("ask {round}\n");
        peer.write_all(ask.as_bytes()).unwrap();
        h.until("the peer's bytes", |h| {
            h.received
                .get(&conn)
                .is_some_and(|b| b.ends_with(ask.as_bytes()))
        });
        assert_eq!(writables(&h, conn), round, "{:?}", h.server_log);
    }
    assert_eq!(h.server().status().live, 1);
}

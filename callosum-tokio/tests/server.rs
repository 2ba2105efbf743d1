//! The tokio server's own behaviour, on both runtime flavours: IPv4 and IPv6, a slot freed
//! exactly once however its connection ends, shutdown. The protocol's rules for servers are
//! in the conformance suite of `callosum-tests`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use callosum_tokio::{Server, ServerConfig, ServerError, ShutDown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::DEADLINE;

on_both_runtimes!(
    binds_port_0_on_ipv4_and_ipv6,
    a_slot_is_freed_once_whatever_ends_its_connection,
    max_slots_closes_the_next_without_a_line,
    shutdown_ends_a_pending_accept_and_wait_idle_waits_for_the_rest,
);

/// Connects and reads the slot line (one read: it comes whole).
async fn line_of(addr: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).await.unwrap();
    (stream, String::from_utf8(buf[..n].to_vec()).unwrap())
}

async fn binds_port_0_on_ipv4_and_ipv6() {
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let server = Server::bind(listen.parse().unwrap(), ServerConfig::default()).unwrap();
        let addr = server.local_addr();
        assert_eq!(addr.is_ipv6(), listen.starts_with('['));
        assert_ne!(addr.port(), 0);
        let client = tokio::spawn(line_of(addr));
        let conn = server.accept().await.unwrap();
        assert_eq!((conn.slot(), conn.peer_addr().ip()), (0, addr.ip()));
        assert_eq!(client.await.unwrap().1, "0\r\n");
    }
    // The same port twice: the operating system's error, kept.
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    let Err(error) = Server::bind(server.local_addr(), ServerConfig::default()) else {
        panic!("a port in use")
    };
    assert!(
        matches!(&error, ServerError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    );
    assert!(error.to_string().starts_with("cannot listen on 127.0.0.1:"));
}

async fn a_slot_is_freed_once_whatever_ends_its_connection() {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    let addr = server.local_addr();

    // Ended by the client (a read sees the end), then dropped by the application.
    let client = tokio::spawn(line_of(addr));
    let mut conn = server.accept().await.unwrap();
    let (stream, line) = client.await.unwrap();
    assert_eq!(line, "0\r\n");
    drop(stream);
    let mut buf = [0u8; 8];
    assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
    assert!(conn.has_ended());
    assert_eq!(server.status().live, 0, "freed at the end of the stream");
    drop(conn);

    // Dropped by the application while the client is still there: the client sees the end.
    let client = tokio::spawn(line_of(addr));
    let conn = server.accept().await.unwrap();
    assert_eq!(conn.slot(), 0, "slot 0 is free again");
    let (mut stream, _) = client.await.unwrap();
    assert_eq!(server.status().live, 1);
    drop(conn);
    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);

    // Echoes through the connection, then ended by a write after the client left.
    let client = tokio::spawn(line_of(addr));
    let mut conn = server.accept().await.unwrap();
    let (mut stream, _) = client.await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    conn.read_exact(&mut buf[..4]).await.unwrap();
    conn.write_all(&buf[..4]).await.unwrap();
    stream.read_exact(&mut buf[..4]).await.unwrap();
    assert_eq!(&buf[..4], b"ping");
    drop(conn);

    let stats = server.status().stats;
    assert_eq!(
        (stats.accepted, stats.closed, stats.bad_releases),
        (3, 3, 0)
    );
}

async fn max_slots_closes_the_next_without_a_line() {
    let mut config = ServerConfig::default();
    config.max_slots = Some(1);
    let server = Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap());
    let addr = server.local_addr();
    let accepting = Arc::clone(&server);
    let accepted = tokio::spawn(async move {
        let first = accepting.accept().await.unwrap();
        // The second is refused inside this accept, which then waits for a third.
        let third = accepting.accept().await.unwrap();
        (first, third)
    });
    let (_first, line) = line_of(addr).await;
    assert_eq!(line, "0\r\n");
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(DEADLINE, refused.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a line");
    assert_eq!(server.status().stats.refused_full, 1);
    assert!(!accepted.is_finished());
    let invalid = {
        let mut config = ServerConfig::default();
        config.max_slots = Some(0);
        Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap_err()
    };
    assert!(matches!(invalid, ServerError::Config(_)), "{invalid}");
    server.shutdown();
    assert!(
        accepted.await.is_err(),
        "the second accept ended in ShutDown"
    );
}

async fn shutdown_ends_a_pending_accept_and_wait_idle_waits_for_the_rest() {
    let server =
        Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap());
    let addr = server.local_addr();
    let client = tokio::spawn(line_of(addr));
    let conn = server.accept().await.unwrap();
    let (_stream, _) = client.await.unwrap();
    let accepting = Arc::clone(&server);
    let pending = tokio::spawn(async move { accepting.accept().await.err() });
    tokio::task::yield_now().await;
    server.shutdown();
    assert!(server.is_shut_down());
    assert_eq!(pending.await.unwrap(), Some(ShutDown));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
    let waiting = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.wait_idle().await })
    };
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "one connection still holds its slot"
    );
    drop(conn);
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.status().live, 0);
}

//! The server's conformance with PROTOCOL.md section 2, over loopback sockets.

mod support;

use std::io::Read;
use std::time::Duration;

use callosum_smol::{Server, ServerConfig, ShutDown};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use socket2::SockRef;
use support::{DEADLINE, live_reaches, raw_slot, reading_server, until, within};

#[test]
fn connections_get_the_lowest_free_slot_and_freed_slots_are_reused() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let (_a, zero) = raw_slot(addr).await;
        let (b, one) = raw_slot(addr).await;
        let (_c, two) = raw_slot(addr).await;
        assert_eq!([zero, one, two], ["0\r\n", "1\r\n", "2\r\n"]);
        drop(b);
        live_reaches(&server, 2, "slot 1 freed").await;
        let (_b_again, reused) = raw_slot(addr).await;
        assert_eq!(reused, "1\r\n");
        assert_eq!(raw_slot(addr).await.1, "3\r\n");
    });
}

#[test]
fn a_slot_is_freed_when_the_client_closes() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let (stream, _) = raw_slot(addr).await;
        drop(stream); // FIN
        live_reaches(&server, 0, "slot freed on FIN").await;
        assert_eq!(server.status().stats.closed, 1);
        assert_eq!(raw_slot(addr).await.1, "0\r\n");
    });
}

#[test]
fn a_slot_is_freed_when_the_client_resets() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let (stream, _) = raw_slot(addr).await;
        SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream); // RST
        live_reaches(&server, 0, "slot freed on RST").await;
        assert_eq!(raw_slot(addr).await.1, "0\r\n");
    });
}

#[test]
fn a_slot_is_freed_when_the_application_drops_the_connection() {
    smol::block_on(async {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
        let addr = server.local_addr();
        let client = smol::spawn(async move {
            let (mut stream, line) = raw_slot(addr).await;
            let rest = support::read_to_close(&mut stream).await;
            (line, rest)
        });
        let conn = within("accept", server.accept()).await.unwrap();
        assert_eq!(server.status().live, 1);
        drop(conn);
        assert_eq!(server.status().live, 0);
        assert_eq!(client.await, ("0\r\n".to_owned(), Vec::new()));
    });
}

#[test]
fn a_slot_is_freed_when_the_end_is_read_even_before_the_drop() {
    smol::block_on(async {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
        let addr = server.local_addr();
        let client = smol::spawn(raw_slot(addr));
        let mut conn = within("accept", server.accept()).await.unwrap();
        drop(client.await);
        let mut buf = [0u8; 8];
        assert_eq!(
            within("read the end", conn.read(&mut buf)).await.unwrap(),
            0
        );
        assert!(conn.has_ended());
        assert_eq!(
            server.status().live,
            0,
            "freed while the application still holds it"
        );
    });
}

#[test]
fn a_client_that_leaves_before_its_line_costs_no_slot() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        for _ in 0..20 {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(stream); // reset, most likely before the server has even accepted
        }
        until("every early leaver accounted for", || {
            let status = server.status();
            status.live == 0 && status.stats.accepted == 20 && status.stats.closed == 20
        })
        .await;
        assert_eq!(raw_slot(addr).await.1, "0\r\n");
    });
}

#[test]
fn the_slot_line_arrives_in_one_read() {
    let (server, addr) = reading_server(ServerConfig::default());
    let held: Vec<_> = (0..12)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"12\r\n", "the whole line in the first read");
    drop((held, server));
}

#[test]
fn a_full_server_closes_new_connections_without_a_line() {
    smol::block_on(async {
        let config = ServerConfig { max_slots: Some(1) };
        let (server, addr) = reading_server(config);
        let (first, line) = raw_slot(addr).await;
        assert_eq!(line, "0\r\n");
        let mut second = smol::net::TcpStream::connect(addr).await.unwrap();
        let received = within("refused", support::read_to_close(&mut second)).await;
        assert_eq!(received, b"", "no line for a connection beyond max_slots");
        assert_eq!(server.status().stats.refused_full, 1);
        drop(first);
        live_reaches(&server, 0, "slot freed").await;
        assert_eq!(raw_slot(addr).await.1, "0\r\n");
    });
}

#[test]
fn zero_max_slots_is_a_configuration_error() {
    let config = ServerConfig { max_slots: Some(0) };
    let error = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid server configuration: a slot limit of 0 would refuse every connection"
    );
}

#[test]
fn shutdown_stops_accepting_and_lets_connections_finish() {
    smol::block_on(async {
        let server = std::sync::Arc::new(
            Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap(),
        );
        let addr = server.local_addr();
        let client = smol::spawn(raw_slot(addr));
        let mut conn = within("accept", server.accept()).await.unwrap();
        let (mut stream, _) = client.await;

        let pending = {
            let server = std::sync::Arc::clone(&server);
            smol::spawn(async move { server.accept().await.err() })
        };
        server.shutdown();
        assert_eq!(within("pending accept ends", pending).await, Some(ShutDown));
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "listener closed"
        );

        // The existing connection still works both ways.
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        within("read", conn.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(stream);
        let mut rest = Vec::new();
        within("end", conn.read_to_end(&mut rest)).await.unwrap();
        within("idle", server.wait_idle()).await;
    });
}

#[test]
fn a_half_close_ends_the_connection_and_frees_its_slot() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let (mut stream, line) = raw_slot(addr).await;
        assert_eq!(line, "0\r\n");
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        live_reaches(&server, 0, "slot freed on half-close").await;
        // The server shut its side down too: the old connection cannot act any more.
        assert_eq!(
            within("end", support::read_to_close(&mut stream)).await,
            b""
        );
        assert_eq!(raw_slot(addr).await.1, "0\r\n");
    });
}

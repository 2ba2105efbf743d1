//! The smol server's own behaviour over loopback sockets: when a `ServerConn` frees its
//! slot, shutting down, and its status. What every adapter's server must do (PROTOCOL.md
//! section 2) is checked once for all of them by the conformance suite in `callosum-tests`.

mod support;

use std::time::Duration;

use callosum_smol::{Server, ServerConfig, ShutDown};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use socket2::SockRef;
use support::{live_reaches, raw_slot, reading_server, until, within};

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
fn zero_max_slots_is_a_configuration_error() {
    let mut config = ServerConfig::default();
    config.max_slots = Some(0);
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

//! Helpers for the socket tests: deadlines instead of sleeps, and raw peers. Each helper here
//! is used by both test files; the ones only a client test needs are in `client.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use callosum_smol::{Server, ServerConfig};
use futures_lite::{AsyncReadExt, future};
use smol::net::TcpStream;

/// How long any single step may take before the test fails; generous for a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `step`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    future::or(step, async {
        Timer::after(DEADLINE).await;
        panic!("{what}: not done within {DEADLINE:?}")
    })
    .await
}

/// Waits until `done` holds, checking every few milliseconds, failing after [`DEADLINE`].
/// For states that change on other threads with no event to wait on (a server's count of
/// live connections).
pub async fn until(what: &str, done: impl Fn() -> bool) {
    within(what, async {
        while !done() {
            Timer::after(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until `server` has exactly `live` connections.
pub async fn live_reaches(server: &Server, live: u32, what: &str) {
    until(what, || server.status().live == live).await;
}

/// A server on loopback whose every connection is read until it ends, then dropped.
pub fn reading_server(config: ServerConfig) -> (Arc<Server>, SocketAddr) {
    let server = Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap());
    let addr = server.local_addr();
    let accepting = Arc::clone(&server);
    smol::spawn(async move {
        while let Ok(mut conn) = accepting.accept().await {
            smol::spawn(async move {
                let mut sink = [0u8; 64];
                while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .detach();
        }
    })
    .detach();
    (server, addr)
}

/// Connects a raw socket and reads exactly the bytes of one slot line.
pub async fn raw_slot(addr: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "the stream ended after {line:?}");
        line.push(byte[0]);
    }
    (stream, String::from_utf8(line).unwrap())
}

/// Reads until the peer closes; returns what arrived (bounded, for tests).
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

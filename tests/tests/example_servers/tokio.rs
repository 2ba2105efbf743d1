//! tokio's example line server (`callosum-tokio/examples/shared/lines.rs`), on a
//! current-thread runtime: the [`threaded`](crate::threaded) cases, and how it serves lines.

#[path = "../../../callosum-tokio/examples/shared/lines.rs"]
mod lines;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use callosum_proto::server::DrainReport;

use callosum_tests::memory::{read_len, read_to_end, serial};
use callosum_tokio::{Server, ServerConfig};

use crate::threaded::{self, LineServer};

/// tokio's example, for the [`threaded`] cases.
struct TokioLines;

impl threaded::Lines for TokioLines {
    const NAME: &str = "tokio";
    const MAX_LINE: usize = lines::MAX_LINE;
    const TOO_LONG: &[u8] = lines::TOO_LONG;
    type Server = Server;

    fn serve(started: mpsc::Sender<Arc<Server>>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = Arc::new(
                Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap(),
            );
            started.send(Arc::clone(&server)).unwrap();
            while let Ok(conn) = server.accept().await {
                tokio::spawn(lines::serve_lines(conn, Duration::ZERO));
            }
        });
    }

    fn addr(server: &Server) -> SocketAddr {
        server.local_addr()
    }

    fn live(server: &Server) -> usize {
        server.status().live as usize
    }

    fn shutdown(server: &Server) {
        server.shutdown();
    }

    fn drain(server: &Server, deadline: Instant) -> DrainReport {
        // The server's sockets are on the server thread's runtime; the drain's timer on
        // this one.
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(server.drain(deadline))
    }
}

threaded::threaded_cases!(TokioLines);

#[test]
fn several_lines_in_one_write_come_back_in_order() {
    let _serial = serial();
    let server = LineServer::<TokioLines>::start();
    let mut stream = server.connect();
    stream.write_all(b"one\ntwo\n\nthree\n").unwrap();
    assert_eq!(read_len(&mut stream, 15), b"one\ntwo\n\nthree\n");
}

#[test]
fn a_line_split_across_writes_comes_back_whole() {
    let _serial = serial();
    let server = LineServer::<TokioLines>::start();
    let mut stream = server.connect();
    // The pauses let the server read each part before the next is sent.
    for part in [&b"hel"[..], b"lo\nwor", b"ld\r", b"\n"] {
        stream.write_all(part).unwrap();
        thread::sleep(Duration::from_millis(50));
    }
    // A CRLF line comes back ending in `\n`, as the codec gives it.
    assert_eq!(read_len(&mut stream, 12), b"hello\nworld\n");
}

#[test]
fn the_longest_lines_allowed_come_back() {
    let _serial = serial();
    let server = LineServer::<TokioLines>::start();
    let mut stream = server.connect();
    // MAX_LINE bytes, the newline included, with either ending.
    let mut longest = vec![b'x'; lines::MAX_LINE - 1];
    longest.push(b'\n');
    stream.write_all(&longest).unwrap();
    assert_eq!(read_len(&mut stream, longest.len()), longest);
    let mut longest_crlf = vec![b'y'; lines::MAX_LINE - 2];
    longest_crlf.extend_from_slice(b"\r\n");
    stream.write_all(&longest_crlf).unwrap();
    let mut expected = vec![b'y'; lines::MAX_LINE - 2];
    expected.push(b'\n');
    assert_eq!(read_len(&mut stream, expected.len()), expected);
    // The buffer those lines grew (past KEEP_IDLE) is let go of once they are answered; the
    // connection goes on with a new one.
    stream.write_all(b"still here\n").unwrap();
    assert_eq!(read_len(&mut stream, 11), b"still here\n");
}

#[test]
fn a_line_that_is_not_utf8_closes_the_connection_without_a_reply() {
    let _serial = serial();
    let server = LineServer::<TokioLines>::start();
    let mut stream = server.connect();
    stream
        .write_all(b"fine\n\xff\xfe\nnever answered\n")
        .unwrap();
    assert_eq!(read_to_end(&mut stream), b"fine\n");
}

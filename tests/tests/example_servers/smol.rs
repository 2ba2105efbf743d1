//! smol's example line server (`callosum-smol/examples/shared/lines.rs`), on one
//! `LocalExecutor`: the [`threaded`](crate::threaded) cases, and how it serves lines.

#[path = "../../../callosum-smol/examples/shared/lines.rs"]
mod lines;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use callosum_proto::server::DrainReport;

use callosum_smol::{Server, ServerConfig};
use callosum_tests::memory::{read_len, serial};
use smol::LocalExecutor;

use crate::threaded::{self, LineServer};

/// smol's example, for the [`threaded`] cases.
struct SmolLines;

impl threaded::Lines for SmolLines {
    const NAME: &str = "smol";
    const MAX_LINE: usize = lines::MAX_LINE;
    const TOO_LONG: &[u8] = lines::TOO_LONG;
    type Server = Server;

    fn serve(started: mpsc::Sender<Arc<Server>>) {
        let server = Arc::new(
            Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap(),
        );
        started.send(Arc::clone(&server)).unwrap();
        let executor = LocalExecutor::new();
        smol::block_on(executor.run(async {
            while let Ok(conn) = server.accept().await {
                executor
                    .spawn(lines::serve_lines(conn, Duration::ZERO))
                    .detach();
            }
        }));
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
        // async-io's reactor is the process's: the drain runs on any thread.
        smol::block_on(server.drain(deadline))
    }
}

threaded::threaded_cases!(SmolLines);

#[test]
fn lines_come_back_in_order_however_they_are_split() {
    let _serial = serial();
    let server = LineServer::<SmolLines>::start();
    let mut stream = server.connect();
    // Two lines in one write, a line in two writes, a CRLF line: each comes back as sent.
    stream.write_all(b"one\ntwo\nthr").unwrap();
    stream.write_all(b"ee\r\n").unwrap();
    assert_eq!(read_len(&mut stream, 15), b"one\ntwo\nthree\r\n");
    // The longest line allowed, its newline included.
    let mut longest = vec![b'x'; lines::MAX_LINE - 1];
    longest.push(b'\n');
    stream.write_all(&longest).unwrap();
    assert_eq!(read_len(&mut stream, longest.len()), longest);
    stream.write_all(b"still here\n").unwrap();
    assert_eq!(read_len(&mut stream, 11), b"still here\n");
}

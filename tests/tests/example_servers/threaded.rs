//! The cases of an example line server that runs on a thread of its own (smol's, tokio's),
//! written once: the server on its thread (one executor or current-thread runtime, one
//! allocator arena), and its clients blocking sockets on the test's thread, which hold no
//! memory of the process beyond their file descriptors. Each adapter's module runs each case
//! for its example as a test of its own.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use callosum_proto::server::DrainReport;
use callosum_tests::memory::{
    IdleHolder, connect, isolated, peak_rss_growth, read_len, read_to_end, room_for, rss, serial,
};

/// An adapter's example line server, as these cases run it.
pub trait Lines {
    /// The adapter, in the figures printed.
    const NAME: &str;
    /// The example's longest line, its newline included.
    const MAX_LINE: usize;
    /// The example's reply to a longer line, after which it closes the connection.
    const TOO_LONG: &[u8];
    /// The adapter's server.
    type Server: Send + Sync + 'static;

    /// On the server's thread: binds a server on loopback, gives it to `started`, then runs
    /// the example's line service (no service time) on each connection it accepts, until
    /// [`Lines::shutdown`]; then every connection's task is dropped with the executor.
    fn serve(started: mpsc::Sender<Arc<Self::Server>>);
    /// The server's address.
    fn addr(server: &Self::Server) -> SocketAddr;
    /// The server's open connections.
    fn live(server: &Self::Server) -> usize;
    /// Ends the server's accept loop.
    fn shutdown(server: &Self::Server);
    /// Drains the server, on the test's thread, until it is done.
    fn drain(server: &Self::Server, deadline: Instant) -> DrainReport;
}

/// The example's line server on loopback, on a thread of its own, until dropped.
pub struct LineServer<L: Lines> {
    server: Arc<L::Server>,
    thread: Option<JoinHandle<()>>,
}

impl<L: Lines> LineServer<L> {
    pub fn start() -> LineServer<L> {
        let (started, bound) = mpsc::channel();
        let thread = thread::spawn(move || L::serve(started));
        LineServer {
            server: bound.recv().unwrap(),
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        L::addr(&self.server)
    }

    /// A client of this server: see [`callosum_tests::memory::connect`].
    pub fn connect(&self) -> TcpStream {
        connect(self.addr())
    }
}

impl<L: Lines> Drop for LineServer<L> {
    fn drop(&mut self) {
        L::shutdown(&self.server);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

pub fn a_line_one_byte_too_long_gets_the_error_and_the_connection_closes<L: Lines>() {
    let _serial = serial();
    let server = LineServer::<L>::start();
    let mut stream = server.connect();
    let mut too_long = vec![b'x'; L::MAX_LINE];
    too_long.push(b'\n');
    // The server may close before it has read it all: a failed write is fine.
    let _ = stream.write_all(&too_long);
    assert_eq!(read_to_end(&mut stream), L::TOO_LONG);
}

pub fn a_line_that_never_ends_costs_at_most_the_cap<L: Lines>() {
    isolated(|| {
        let server = LineServer::<L>::start();
        let mut stream = server.connect();
        const SENT: usize = 1024 * 1024;
        let chunk = [b'a'; 16 * 1024];
        let (reply, growth) = peak_rss_growth(|| {
            let mut sent = 0;
            while sent < SENT {
                match stream.write(&chunk) {
                    Ok(n) => sent += n,
                    // Closed by the server (reset, broken pipe): it stopped at the cap.
                    Err(_) => break,
                }
            }
            read_to_end(&mut stream)
        });
        println!(
            "{}: a 1 MiB line without a newline: peak RSS growth {} KiB",
            L::NAME,
            growth / 1024
        );
        assert_eq!(reply, L::TOO_LONG, "the error reply, then the close");
        // One line's buffer of at most 64 KiB (128 KiB in tokio's codec, which grows by
        // doubling), and slack for the allocator.
        assert!(
            growth < 512 * 1024,
            "grew {growth} bytes on a line that never ends"
        );
    });
}

pub fn a_client_that_never_reads_its_replies_stalls_itself_not_the_server<L: Lines>() {
    isolated(|| {
        let server = LineServer::<L>::start();
        let mut stream = server.connect();
        // A request of 1 KiB, sent again and again; the replies are never read.
        let mut request = [b'r'; 1024];
        request[1023] = b'\n';
        let requests: Vec<u8> = request.repeat(16);
        // A server without backpressure would read this much and more; the kernel's buffers
        // alone take a few megabytes before the writes stall.
        const GIVE_UP: usize = 128 * 1024 * 1024;
        // A write that cannot go on for this long: the server has stopped reading.
        stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let (sent, growth) = peak_rss_growth(|| {
            let mut sent = 0;
            while sent < GIVE_UP {
                match stream.write(&requests) {
                    Ok(n) => sent += n,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return sent,
                    Err(error) => panic!("the server closed the connection: {error}"),
                }
            }
            panic!("sent {sent} bytes and the server still reads: no backpressure")
        });
        println!(
            "{}: a client that never reads: stalled after {} KiB sent, peak RSS growth {} KiB",
            L::NAME,
            sent / 1024,
            growth / 1024
        );
        assert!(growth < 1024 * 1024, "grew {growth} bytes");
        // The server was answering all along: the replies come back, in order, once read.
        let replies = read_len(&mut stream, requests.len());
        assert_eq!(replies, requests);
    });
}

pub fn ten_thousand_idle_connections_cost_little_each<L: Lines>() {
    isolated(|| {
        // Fewer if the file descriptors cannot be had (reported).
        let count = room_for(crate::IDLE);
        assert!(
            count >= 1000,
            "only {count} connections fit under RLIMIT_NOFILE"
        );
        let server = LineServer::<L>::start();
        // One round trip first, so that the server's one-time allocations are behind us.
        let mut first = server.connect();
        first.write_all(b"warm\n").unwrap();
        assert_eq!(read_len(&mut first, 5), b"warm\n");
        let start = rss();
        let mut holder = IdleHolder::spawn(crate::HOLDER, server.addr(), count);
        holder.wait_held();
        let growth = rss().saturating_sub(start);
        assert_eq!(L::live(&server.server), count + 1);
        // Still serving, with all of them open.
        first.write_all(b"still\n").unwrap();
        assert_eq!(read_len(&mut first, 6), b"still\n");
        holder.finish();

        let per_connection = growth / count;
        println!(
            "{}: {count} idle connections: RSS growth {} KiB, {per_connection} bytes per \
             connection",
            L::NAME,
            growth / 1024
        );
        assert!(
            per_connection < 2048,
            "{per_connection} bytes per idle connection"
        );
    });
}

pub fn a_drain_closes_an_idle_connection_at_once<L: Lines>() {
    let _serial = serial();
    let server = LineServer::<L>::start();
    let mut idle = server.connect();
    // Between two requests: one answered, none sent since.
    idle.write_all(b"one\n").unwrap();
    assert_eq!(read_len(&mut idle, 4), b"one\n");
    // A deadline no test waits for: the drain is done when the idle connection is closed.
    let deadline = Instant::now() + Duration::from_secs(600);
    let report = L::drain(&server.server, deadline);
    assert_eq!((report.drained, report.closed_at_deadline), (1, 0));
    assert_eq!(read_to_end(&mut idle), b"", "closed without another byte");
    assert_eq!(L::live(&server.server), 0);
}

/// The cases above, each a test of the module that invokes this for its [`Lines`].
macro_rules! threaded_cases {
    ($lines:ty) => {
        #[test]
        fn a_line_one_byte_too_long_gets_the_error_and_the_connection_closes() {
            $crate::threaded::a_line_one_byte_too_long_gets_the_error_and_the_connection_closes::<
                $lines,
            >();
        }

        #[test]
        fn a_line_that_never_ends_costs_at_most_the_cap() {
            $crate::threaded::a_line_that_never_ends_costs_at_most_the_cap::<$lines>();
        }

        #[test]
        fn a_client_that_never_reads_its_replies_stalls_itself_not_the_server() {
            $crate::threaded::a_client_that_never_reads_its_replies_stalls_itself_not_the_server::<
                $lines,
            >();
        }

        #[test]
        fn a_drain_closes_an_idle_connection_at_once() {
            $crate::threaded::a_drain_closes_an_idle_connection_at_once::<$lines>();
        }

        #[test]
        fn ten_thousand_idle_connections_cost_little_each() {
            $crate::threaded::ten_thousand_idle_connections_cost_little_each::<$lines>();
        }
    };
}
pub(crate) use threaded_cases;

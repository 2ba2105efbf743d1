//! The examples' line server (`examples/shared/lines.rs`, which `smol-server` and
//! `smol-cluster` run) against clients that misbehave: its memory stays bounded with a line
//! that never ends, with a client that never reads its replies, and with 10,000 idle
//! connections. Linux only: memory is read from `/proc/self/status`.
//!
//! The server runs on a thread of its own (one executor, one allocator arena); the clients
//! are blocking sockets on the test's thread, which hold no memory of the process beyond
//! their file descriptors, or, for the idle connections, in a child process (this test
//! binary again, running [`idle_connection_holder`]), so that both ends of 10,000
//! connections need not fit under one process's limit of open files. Each test takes
//! [`SERIAL`], so that no other test of this file allocates while one measures. The figures
//! are printed (`--nocapture` shows them).

#![cfg(target_os = "linux")]

#[path = "../examples/shared/lines.rs"]
mod lines;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use callosum_smol::{Server, ServerConfig};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use smol::LocalExecutor;

/// How long any blocking step may take before the test fails; generous for a busy machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// One test at a time: each measures the memory of the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The example's line server on loopback, on a thread of its own, until dropped.
struct LineServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl LineServer {
    fn start() -> LineServer {
        let (started, bound) = mpsc::channel();
        let thread = thread::spawn(move || {
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
        });
        LineServer {
            server: bound.recv().unwrap(),
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A client of this server: see [`connect`].
    fn connect(&self) -> TcpStream {
        connect(self.addr())
    }
}

/// Connects a blocking socket (reads and writes bounded by [`DEADLINE`]) and reads its slot
/// line.
fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    stream
}

impl Drop for LineServer {
    fn drop(&mut self) {
        // The accept loop ends; the executor, and every connection task with it, is dropped.
        self.server.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: usize = line.trim().trim_end_matches(" kB").parse().unwrap();
    kib * 1024
}

/// The resident memory now.
fn rss() -> usize {
    status_bytes("VmRSS")
}

/// Measures how far resident memory rises above what it is now while `run` runs: the
/// peak (`VmHWM`, reset to the current figure first), minus the figure at the start.
fn peak_growth<T>(run: impl FnOnce() -> T) -> (T, usize) {
    // Writing 5 resets the peak to the current resident memory (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let start = rss();
    let result = run();
    (result, status_bytes("VmHWM").saturating_sub(start))
}

/// Reads until the peer closes or the connection fails; returns what arrived.
fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads exactly `len` bytes.
fn read_len(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn lines_come_back_in_order_however_they_are_split() {
    let _serial = serial();
    let server = LineServer::start();
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

#[test]
fn a_line_one_byte_too_long_gets_the_error_and_the_connection_closes() {
    let _serial = serial();
    let server = LineServer::start();
    let mut stream = server.connect();
    let mut too_long = vec![b'x'; lines::MAX_LINE];
    too_long.push(b'\n');
    // The server may close before it has read it all: a failed write is fine.
    let _ = stream.write_all(&too_long);
    assert_eq!(read_to_end(&mut stream), lines::TOO_LONG);
}

#[test]
fn a_line_that_never_ends_costs_at_most_the_cap() {
    let _serial = serial();
    let server = LineServer::start();
    let mut stream = server.connect();
    const SENT: usize = 1024 * 1024;
    let chunk = [b'a'; 16 * 1024];
    let (reply, growth) = peak_growth(|| {
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
        "a 1 MiB line without a newline: peak RSS growth {} KiB",
        growth / 1024
    );
    assert_eq!(reply, lines::TOO_LONG, "the error reply, then the close");
    // One buffer of at most 64 KiB, and slack for the allocator.
    assert!(
        growth < 512 * 1024,
        "grew {growth} bytes on a line that never ends"
    );
}

#[test]
fn a_client_that_never_reads_its_replies_stalls_itself_not_the_server() {
    let _serial = serial();
    let server = LineServer::start();
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
    let (sent, growth) = peak_growth(|| {
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
        "a client that never reads: stalled after {} KiB sent, peak RSS growth {} KiB",
        sent / 1024,
        growth / 1024
    );
    assert!(growth < 1024 * 1024, "grew {growth} bytes");
    // The server was answering all along: the replies come back, in order, once read.
    let replies = read_len(&mut stream, requests.len());
    assert_eq!(replies, requests);
}

/// The idle connections to hold; fewer if the file descriptors cannot be had (reported).
const IDLE: usize = 10_000;

/// Set in the child process that holds the client ends: the server's address.
const HOLDER_ADDR: &str = "CALLOSUM_IDLE_HOLDER_ADDR";
/// Set in the child process that holds the client ends: how many.
const HOLDER_COUNT: &str = "CALLOSUM_IDLE_HOLDER_COUNT";

/// Raises the limit on open files so that `connections` sockets fit, with some to spare;
/// returns how many fit (fewer when the hard limit is lower and cannot be raised).
fn room_for(connections: usize) -> usize {
    const SPARE: u64 = 256;
    let needed = connections as u64 + SPARE;
    let hard = getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX);
    let raised = Rlimit {
        current: Some(needed),
        maximum: Some(hard.max(needed)),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        // Not allowed above the hard limit: as far as it goes.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    soft.saturating_sub(SPARE).min(connections as u64) as usize
}

/// Not a test of its own (run without the holder's environment, it returns at once): the
/// child process of [`ten_thousand_idle_connections_cost_little_each`], which holds the
/// client ends of the idle connections so that they cost the server's process nothing but its
/// own ends.
#[test]
fn idle_connection_holder() {
    let (Ok(addr), Ok(count)) = (std::env::var(HOLDER_ADDR), std::env::var(HOLDER_COUNT)) else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let count: usize = count.parse().unwrap();
    assert_eq!(room_for(count), count, "RLIMIT_NOFILE");
    let held: Vec<TcpStream> = (0..count).map(|_| connect(addr)).collect();
    println!("held {}", held.len());
    io::stdout().flush().unwrap();
    // Until the parent is done: it closes our stdin.
    let _ = io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn ten_thousand_idle_connections_cost_little_each() {
    let _serial = serial();
    let count = room_for(IDLE);
    assert!(
        count >= 1000,
        "only {count} connections fit under RLIMIT_NOFILE"
    );
    let server = LineServer::start();
    // One round trip first, so that the server's one-time allocations are behind us.
    let mut first = server.connect();
    first.write_all(b"warm\n").unwrap();
    assert_eq!(read_len(&mut first, 5), b"warm\n");
    let start = rss();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["idle_connection_holder", "--exact", "--nocapture"])
        .env(HOLDER_ADDR, server.addr().to_string())
        .env(HOLDER_COUNT, count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    while !said.starts_with("held ") {
        said = lines
            .next()
            .expect("the holder ended before it held its connections")
            .unwrap();
    }
    assert_eq!(said, format!("held {count}"));
    let growth = rss().saturating_sub(start);
    assert_eq!(server.server.status().live as usize, count + 1);
    // Still serving, with all of them open.
    first.write_all(b"still\n").unwrap();
    assert_eq!(read_len(&mut first, 6), b"still\n");
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());

    let per_connection = growth / count;
    println!(
        "{count} idle connections: RSS growth {} KiB, {per_connection} bytes per connection",
        growth / 1024
    );
    assert!(
        per_connection < 2048,
        "{per_connection} bytes per idle connection"
    );
}

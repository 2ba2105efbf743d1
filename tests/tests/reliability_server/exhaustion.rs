//! Descriptor exhaustion: with the process's limit on open files filled, the server keeps
//! its connections, retries accepting at a low rate rather than spinning, and accepts again
//! once descriptors are free.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use socket2::{Domain, Socket, Type};

use crate::counted::Counted;
use callosum_tests::conformance::{Adapter, DEADLINE, connect, read_once};

each_server_in_child!(exhaustion);

/// Connections the server holds before the limit is filled.
const HELD: usize = 3;
/// Connections that arrive while no descriptor is left.
const WAITING: usize = 2;
/// How long accept errors are counted while the limit stays filled.
const WINDOW: Duration = Duration::from_secs(2);
/// More accept errors a second than this is spinning; the backoff (10 ms doubling to 1 s)
/// allows a handful.
const MAX_ERRORS_PER_SECOND: f64 = 50.0;

/// Lowers the process's soft limit on open files to a few more than are open, and opens
/// `/dev/null` until no descriptor is left. Dropping the files frees them.
fn fill_descriptor_limit() -> Vec<File> {
    let lowest_free = File::open("/dev/null").unwrap().as_raw_fd();
    let limit = getrlimit(Resource::Nofile);
    let lowered = Rlimit {
        current: Some(u64::try_from(lowest_free).unwrap() + 16),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, lowered).unwrap();
    let mut files = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => files.push(file),
            Err(error) if Errno::from_io_error(&error) == Some(Errno::MFILE) => return files,
            Err(error) => panic!("filling the descriptor limit: {error}"),
        }
    }
}

/// Waits until `counted` has had an accept error; its count has no event to wait on, so
/// this looks every few milliseconds until [`DEADLINE`].
fn wait_for_an_accept_error(counted: &Counted) {
    let deadline = Instant::now() + DEADLINE;
    while counted.accept_errors() == 0 {
        assert!(
            Instant::now() < deadline,
            "no accept error within {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

pub fn exhaustion(adapter: Adapter) {
    let counted = Counted::start(adapter);
    let server = &counted.server;
    let mut held: Vec<TcpStream> = (0..HELD).map(|_| connect(server.addr)).collect();
    for (slot, stream) in held.iter_mut().enumerate() {
        assert_eq!(read_once(stream), format!("{slot}\r\n"));
    }
    server.wait_live(HELD as u32, "the first connections hold their slots");
    // Their sockets are made now: connecting takes no new descriptor, making a socket does.
    let waiting: Vec<Socket> = (0..WAITING)
        .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).unwrap())
        .collect();

    let fillers = fill_descriptor_limit();
    assert!(!fillers.is_empty(), "the limit left room to fill");
    for socket in &waiting {
        socket.connect(&server.addr.into()).unwrap();
    }
    wait_for_an_accept_error(&counted);
    let window_start = Instant::now();
    let errors_before = counted.accept_errors();
    // Measuring a rate over a window, not waiting for anything.
    thread::sleep(WINDOW);
    let errors = counted.accept_errors() - errors_before;
    let window = window_start.elapsed();
    let rate = errors as f64 / window.as_secs_f64();
    assert!(
        errors > 0,
        "no accept retried in {window:?}: the server stopped"
    );
    assert!(
        rate < MAX_ERRORS_PER_SECOND,
        "{errors} accept errors in {window:?}: the server spins"
    );
    for (i, stream) in held.iter_mut().enumerate() {
        let request = format!("still there {i}\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = vec![0; request.len()];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(answer, request.as_bytes(), "a held connection echoes");
    }
    server.wait_live(HELD as u32, "the held connections keep their slots");

    let freed_at = Instant::now();
    drop(fillers);
    // Kept open until the count is checked: a closed one would free its slot again.
    let mut accepted: Vec<TcpStream> = waiting.into_iter().map(TcpStream::from).collect();
    for (i, stream) in accepted.iter_mut().enumerate() {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        assert_eq!(read_once(stream), format!("{}\r\n", HELD + i));
    }
    server.wait_live((HELD + WAITING) as u32, "the waiting connections got slots");
    println!(
        "exhaustion {adapter:?}: {errors} accept errors in {window:?} while full ({rate:.1}/s), \
         {} in all; the waiting connections accepted {:?} after descriptors were freed",
        counted.accept_errors(),
        freed_at.elapsed()
    );
}

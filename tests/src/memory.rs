//! What a server costs in memory, measured from inside the test process: the harness of the
//! adapters' example-server tests (`tests/example_servers/`). Linux only: the figures come
//! from `/proc/self/status`, and the limit on open files is raised with `setrlimit`.
//!
//! - **Resident memory**: [`rss`] now, and [`peak_rss_growth`], how far the peak rises while
//!   some code runs (the kernel's high-water mark `VmHWM`, reset first by [`reset_peak`]), so
//!   that a peak between two looks is not missed.
//! - **A process of its own**: [`isolated`] runs a measuring test in a child process, this
//!   test binary run again for that one test, so that what other tests left in the allocator
//!   (freed but resident, and reused) hides nothing of what it measures.
//! - **One test at a time**: every test of such a binary holds [`serial`] (an isolated test,
//!   for as long as its process runs), so that none loads the machine while another measures.
//! - **Room for many connections**: [`room_for`] raises `RLIMIT_NOFILE` and says how many
//!   connections fit under it.
//! - **Idle connections held elsewhere**: an [`IdleHolder`] is a child process (the test
//!   binary run again, for one test that calls [`hold_if_asked`]) holding the client ends of
//!   thousands of idle connections, so that they cost the measured process nothing but the
//!   server's ends, and neither process needs descriptors for both ends.
//! - **Blocking clients**: [`connect`] (which reads the slot line), [`read_len`] and
//!   [`read_to_end`], whose sockets hold no memory of the process beyond their descriptors.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// How long a blocking read or write of [`connect`]'s sockets may take before it fails;
/// generous for a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long the holder waits for any one slot line: its server may be a loop that turns
/// between other work.
const HOLD_DEADLINE: Duration = Duration::from_secs(60);

/// Set in the holder's environment: the server's address.
const HOLDER_ADDR: &str = "CALLOSUM_IDLE_HOLDER_ADDR";
/// Set in the holder's environment: how many connections to hold.
const HOLDER_COUNT: &str = "CALLOSUM_IDLE_HOLDER_COUNT";

/// Set in the environment of an [`isolated`] test's process: the test's name.
const ISOLATED: &str = "CALLOSUM_ISOLATED_TEST";
/// What an [`isolated`] test's process prints, each on a line of its own, before and after
/// the test, which ran to its end if the second is there.
const ISOLATED_BEGINS: &str = "(isolated test begins)";
const ISOLATED_ENDS: &str = "(isolated test ends)";

/// What the holder prints, on a line of its own, once it holds its connections.
const HELD: &str = "held ";

/// The holder opens this many connections before it reads their slot lines, so that a
/// server's accept queue (`mio` listens with a backlog of 128) never overflows: an overflow
/// costs a second of SYN retransmission.
const BATCH: usize = 64;

/// The descriptors [`room_for`] keeps beyond the connections: the test harness's, the
/// server's listener and poll, pipes to a child.
const SPARE: u64 = 256;

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time: held for the whole of every test of a binary whose tests measure
/// memory (by [`isolated`], for a measuring test, as long as its process runs), so that no
/// other test loads the machine while one measures. A test that failed while holding it does
/// not fail the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `test`, the body of the test on whose thread it is called, in a process of its own:
/// this test binary run again for only this test (the thread's name, which the test harness
/// gives it), which calls `test` there. Holds [`serial`] meanwhile. What the test printed
/// comes back through this test's output (shown by `--nocapture`, or when it fails), and it
/// fails if the test failed, or did not run to its end, in its process.
///
/// For a test that measures the process's memory: the allocator of a process in which other
/// tests ran holds memory they freed, resident and ready for reuse, in which an allocation
/// that should show can hide.
pub fn isolated(test: impl FnOnce()) {
    let name = thread::current()
        .name()
        .expect("a test's thread, named after the test")
        .to_owned();
    let _serial = serial();
    if let Ok(asked) = std::env::var(ISOLATED) {
        // The process of its own.
        assert_eq!(asked, name, "the test this process was started for");
        say(ISOLATED_BEGINS);
        test();
        say(ISOLATED_ENDS);
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            &name,
            "--exact",
            "--nocapture",
            "--quiet",
            "--test-threads=1",
        ])
        .env(ISOLATED, &name)
        .env_remove(HOLDER_ADDR)
        .env_remove(HOLDER_COUNT)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let printed = stdout
        .split_once(ISOLATED_BEGINS)
        .and_then(|(_, rest)| rest.split_once(ISOLATED_ENDS))
        .map(|(printed, _)| printed.trim_start_matches('\n').trim_end());
    match printed {
        Some(printed) if output.status.success() => {
            if !printed.is_empty() {
                println!("{printed}");
            }
        }
        _ => {
            print!("{stdout}");
            panic!("{name} failed in a process of its own: {}", output.status);
        }
    }
}

/// Prints `line` on a line of its own, straight to stdout (past the test harness's capture).
fn say(line: &str) {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "\n{line}").unwrap();
    stdout.flush().unwrap();
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: usize = kib.trim().trim_end_matches(" kB").parse().unwrap();
    kib * 1024
}

/// The process's resident memory now (`VmRSS`), in bytes.
pub fn rss() -> usize {
    status_bytes("VmRSS")
}

/// The highest resident memory of the process (`VmHWM`) since it started or since
/// [`reset_peak`], in bytes.
pub fn peak_rss() -> usize {
    status_bytes("VmHWM")
}

/// Resets the peak that [`peak_rss`] gives to the resident memory now.
pub fn reset_peak() {
    // Writing 5 to clear_refs resets VmHWM (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Runs `run` and measures how far resident memory rose above what it was at the start: the
/// peak while it ran, reset first, minus the figure at the start. Returns what `run`
/// returned and the growth in bytes.
pub fn peak_rss_growth<T>(run: impl FnOnce() -> T) -> (T, usize) {
    reset_peak();
    let start = rss();
    let result = run();
    (result, peak_rss().saturating_sub(start))
}

/// Raises the limit on open files so that `connections` sockets fit, with some to spare;
/// returns how many fit (fewer when the hard limit is lower and cannot be raised).
pub fn room_for(connections: usize) -> usize {
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

/// Connects a blocking socket (reads and writes bounded by [`DEADLINE`]) and reads its slot
/// line.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    read_slot_line(&mut stream);
    stream
}

/// Reads the line a server sends first on each connection, up to its `\r\n`.
fn read_slot_line(stream: &mut TcpStream) {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("a slot line");
        line.push(byte[0]);
    }
}

/// Reads until the peer closes or the connection fails; returns what arrived.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
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
pub fn read_len(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply).unwrap();
    reply
}

/// A child process holding the client ends of idle connections to a server: the test
/// binary run again for one test, which calls [`hold_if_asked`]. It connects, reads each
/// connection's slot line, says so (see [`IdleHolder::wait_held`]) and holds them until
/// [`IdleHolder::finish`] closes its stdin (or the holder is dropped, which ends it too).
#[derive(Debug)]
pub struct IdleHolder {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    /// What the child printed since the last whole line.
    line: Vec<u8>,
    count: usize,
    held: bool,
}

impl IdleHolder {
    /// Starts the holder of `count` connections to `addr`: this test binary again, running
    /// only `holder_test`, the full name of a test that calls [`hold_if_asked`] (its module
    /// path in the binary, without the crate's name, as `--exact` wants it). `count` must fit
    /// under the limit on open files: see [`room_for`], whose raised limit the child inherits.
    pub fn spawn(holder_test: &str, addr: SocketAddr, count: usize) -> IdleHolder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([holder_test, "--exact", "--nocapture", "--test-threads=1"])
            .env(HOLDER_ADDR, addr.to_string())
            .env(HOLDER_COUNT, count.to_string())
            .env_remove(ISOLATED)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        IdleHolder {
            child: Some(child),
            stdout,
            line: Vec::new(),
            count,
            held: false,
        }
    }

    /// Waits until the holder holds its connections. Fails if it ends first, or holds another
    /// number than it was asked to.
    pub fn wait_held(&mut self) {
        while !self.read_lines(false) {}
    }

    /// Whether the holder holds its connections yet, without waiting: for a test whose own
    /// thread runs the server, which must go on turning for the holder to be served. Fails if
    /// the holder ended before it held them, or holds another number.
    pub fn try_held(&mut self) -> bool {
        self.read_lines(true)
    }

    /// Reads what the child printed, without blocking if `nonblocking`, until a whole line
    /// says how many it holds (true), or (if `nonblocking`) nothing more is there (false).
    fn read_lines(&mut self, nonblocking: bool) -> bool {
        rustix::io::ioctl_fionbio(self.stdout.get_ref(), nonblocking).unwrap();
        while !self.held {
            match self.stdout.read_until(b'\n', &mut self.line) {
                Ok(0) => panic!(
                    "the holder ended before it held its connections: {}",
                    self.child.as_mut().unwrap().wait().unwrap()
                ),
                Ok(_) if self.line.ends_with(b"\n") => {
                    let line = String::from_utf8_lossy(&self.line);
                    if let Some(held) = line.trim_end().strip_prefix(HELD) {
                        assert_eq!(held, self.count.to_string(), "connections held");
                        self.held = true;
                    }
                    self.line.clear();
                }
                // A part of a line: the rest is still to come.
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => panic!("reading the holder's output: {error}"),
            }
        }
        true
    }

    /// Ends the holder (its connections close) and fails unless it succeeded.
    pub fn finish(mut self) {
        let mut child = self.child.take().unwrap();
        // Its stdin closes: it lets go of its connections and exits.
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert!(status.success(), "the holder failed: {status}");
    }
}

impl Drop for IdleHolder {
    /// A test that failed before [`IdleHolder::finish`]: the holder ends with it.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The holder's part, for the test that [`IdleHolder::spawn`] names: in the holder's
/// environment, opens the connections it asks for, says that it holds them (`held N`, on a
/// line of its own) and holds them until its stdin closes. Without that environment (run as
/// a test like any other) it returns at once.
///
/// It opens the connections in batches, each connection's slot line read before the next
/// batch, so that the server's accept queue never overflows.
pub fn hold_if_asked() {
    let (Ok(addr), Ok(count)) = (std::env::var(HOLDER_ADDR), std::env::var(HOLDER_COUNT)) else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let count: usize = count.parse().unwrap();
    assert_eq!(room_for(count), count, "RLIMIT_NOFILE");
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    while held.len() < count {
        let start = held.len();
        for _ in start..count.min(start + BATCH) {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(HOLD_DEADLINE)).unwrap();
            held.push(stream);
        }
        for stream in &mut held[start..] {
            read_slot_line(stream);
        }
    }
    // Whatever the test harness printed before it.
    say(&format!("{HELD}{}", held.len()));
    // Until the parent is done: it closes our stdin.
    let _ = io::stdin().read_to_end(&mut Vec::new());
}

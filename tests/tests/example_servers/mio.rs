//! mio's example server's service (`callosum-mio/examples/shared/echo.rs`, which
//! `mio-server` runs) against hostile clients: a line that never ends, a client that never
//! reads its replies, and 10,000 idle connections. Each measures the process's resident
//! memory and asserts a bound. Every wait is bounded by a deadline, none is a fixed sleep.
//!
//! Each test runs on one thread: the server, the service and the test's clients share one
//! `mio` poll, turned as the example turns it.

#[path = "../../../callosum-mio/examples/shared/echo.rs"]
mod echo;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callosum_mio::{Server, ServerConfig, ServerEvent, TokenRange, timeout_until};
use callosum_proto::server::DrainReport;
use callosum_tests::memory::{IdleHolder, isolated, peak_rss_growth, room_for, rss, serial};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use echo::{Echo, HIGH_WATER, MAX_LINE, TOO_LONG};

/// How long a test may take before it fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// The server's tokens; the test's own sockets have tokens below.
const SERVER_TOKENS: usize = 1_000;

/// The example server's loop, one turn at a time: the server and the service on one poll,
/// with the test's client sockets.
struct Loop {
    poll: Poll,
    events: Events,
    server: Server,
    echo: Echo,
    /// When the service wants to be woken.
    wake_at: Option<Instant>,
    closed: usize,
    /// The drain's report, once the server said it is done.
    drained: Option<DrainReport>,
}

impl Loop {
    /// A loop whose service answers each line after `service`.
    fn new(service: Duration) -> Loop {
        let poll = Poll::new().unwrap();
        let mut server =
            Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
        server
            .register(poll.registry(), TokenRange::new(SERVER_TOKENS..usize::MAX))
            .unwrap();
        Loop {
            poll,
            events: Events::with_capacity(1024),
            server,
            echo: Echo::new(service),
            wake_at: None,
            closed: 0,
            drained: None,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A client socket on the loop's poll under `token` (below [`SERVER_TOKENS`]).
    fn client(&mut self, token: usize) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr()).unwrap();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        stream
    }

    /// One turn: poll until an event, the service's wake-up or `wait`, then everything the
    /// example server does with what came.
    fn turn(&mut self, wait: Duration) {
        let timeout = timeout_until([
            self.server.poll_timeout(),
            self.wake_at,
            Some(Instant::now() + wait),
        ]);
        match self.poll.poll(&mut self.events, timeout) {
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            other => other.unwrap(),
        }
        for event in &self.events {
            self.server.handle_event(event);
        }
        self.server.handle_timeout();
        while let Some(event) = self.server.poll_event() {
            match event {
                ServerEvent::Closed { .. } => self.closed += 1,
                ServerEvent::Drained { report } => self.drained = Some(report),
                _ => {}
            }
            self.echo.handle(&mut self.server, event, Instant::now());
        }
        self.wake_at = self.echo.wake(&mut self.server, Instant::now());
    }

    /// Turns until `done` holds; fails after [`DEADLINE`].
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Loop) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.turn(Duration::from_millis(100));
        }
    }

    /// Turns until the server closes `stream`; what it sent until then.
    fn read_to_end(&mut self, stream: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        self.until("the end of the connection", |_| {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                    Err(error) => panic!("reading: {error}"),
                }
            }
        });
        all
    }

    /// Turns until `stream` has given `n` bytes, appended to `into`.
    fn read_exactly(&mut self, stream: &mut TcpStream, n: usize, into: &mut Vec<u8>) {
        let want = into.len() + n;
        let mut buf = [0u8; 4096];
        self.until("the bytes", |_| {
            loop {
                match stream.read(&mut buf[..(want - into.len()).min(4096)]) {
                    Ok(0) => panic!("the server closed the connection"),
                    Ok(n) => into.extend_from_slice(&buf[..n]),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) => panic!("reading: {error}"),
                }
                if into.len() == want {
                    break;
                }
            }
            into.len() == want
        });
    }
}

/// Writes what `stream` takes of `bytes` without blocking: how much; `None` once the
/// connection is gone.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> Option<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(written)
}

fn kib(bytes: usize) -> f64 {
    bytes as f64 / 1024.0
}

#[test]
fn replies_wait_their_service_time_in_turn_and_an_overlong_line_is_answered_after_them() {
    let _serial = serial();
    let service = Duration::from_millis(20);
    let mut lp = Loop::new(service);
    let mut client = lp.client(1);
    let mut received = Vec::new();
    lp.read_exactly(&mut client, 3, &mut received);
    received.clear();
    let start = Instant::now();
    assert_eq!(write_some(&mut client, b"a\nb\nc\n"), Some(6));
    lp.read_exactly(&mut client, 2, &mut received);
    let first = start.elapsed();
    lp.read_exactly(&mut client, 4, &mut received);
    let all = start.elapsed();
    assert_eq!(received, b"a\nb\nc\n");
    assert!(first >= service, "{first:?}");
    assert!(all >= service * 3, "one request at a time: {all:?}");
    // A reply owed, then a line that is too long: the reply comes first, then the error.
    received.clear();
    let mut bytes = b"d\n".to_vec();
    bytes.resize(2 + MAX_LINE + 1, b'x');
    let mut sent = 0;
    lp.until("the whole request", |_| {
        sent += write_some(&mut client, &bytes[sent..]).unwrap();
        sent == bytes.len()
    });
    lp.read_exactly(&mut client, 2 + TOO_LONG.len(), &mut received);
    assert_eq!(&received[..2], b"d\n");
    assert_eq!(&received[2..], TOO_LONG);
    lp.until("the close", |lp| lp.closed == 1);
}

#[test]
fn a_drain_closes_each_connection_between_requests_and_the_rest_at_the_deadline() {
    let _serial = serial();
    let service = Duration::from_millis(50);
    let mut lp = Loop::new(service);
    let (mut idle, mut busy, mut half) = (lp.client(1), lp.client(2), lp.client(3));
    let mut lines = Vec::new();
    for stream in [&mut idle, &mut busy, &mut half] {
        lp.read_exactly(stream, 3, &mut lines);
    }
    assert_eq!(lines, b"0\r\n1\r\n2\r\n");
    // Half a request, read by the server in the turns that serve the idle one's request.
    assert_eq!(write_some(&mut half, b"half a"), Some(6));
    let mut reply = Vec::new();
    assert_eq!(write_some(&mut idle, b"a\n"), Some(2));
    lp.read_exactly(&mut idle, 2, &mut reply);
    // Two requests: the drain starts once the first is answered, with the second in hand.
    assert_eq!(write_some(&mut busy, b"b\nc\n"), Some(4));
    reply.clear();
    lp.read_exactly(&mut busy, 2, &mut reply);
    assert_eq!(reply, b"b\n");

    let deadline = Instant::now() + Duration::from_secs(3);
    lp.server.drain(deadline);
    assert_eq!(
        lp.read_to_end(&mut idle),
        b"",
        "the idle one closed at once"
    );
    assert!(Instant::now() < deadline);
    assert_eq!(lp.read_to_end(&mut busy), b"c\n", "its reply, then the end");
    assert!(Instant::now() < deadline);
    assert_eq!(lp.read_to_end(&mut half), b"");
    assert!(
        Instant::now() + Duration::from_millis(1) >= deadline,
        "the half request was closed before the deadline"
    );
    lp.until("the drain's report", |lp| lp.drained.is_some());
    let report = lp.drained.unwrap();
    assert_eq!((report.drained, report.closed_at_deadline), (2, 1));
    assert_eq!(lp.server.status().live, 0);
}

#[test]
fn a_line_without_end_is_answered_line_too_long_and_closed_with_memory_bounded() {
    isolated(|| {
        let mut lp = Loop::new(Duration::ZERO);
        let mut client = lp.client(1);
        let mut received = Vec::new();
        lp.read_exactly(&mut client, 3, &mut received);
        assert_eq!(received, b"0\r\n");
        received.clear();
        let line = vec![b'x'; 1 << 20];
        let mut sent = 0;
        let mut writing = true;
        let mut buf = [0u8; 4096];
        let ((), growth) = peak_rss_growth(|| {
            lp.until("the end of the connection", |_| {
                if writing {
                    match write_some(&mut client, &line[sent..]) {
                        Some(n) => sent += n,
                        None => writing = false,
                    }
                }
                loop {
                    match client.read(&mut buf) {
                        Ok(0) => return true,
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                        Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                        // The server closed with bytes of ours unread: a reset, after its reply.
                        Err(error) if error.kind() == ErrorKind::ConnectionReset => return true,
                        Err(error) => panic!("reading: {error}"),
                    }
                }
            })
        });
        eprintln!(
            "mio: a 1 MiB line without a newline ({} KiB of it sent): peak RSS growth {:.0} KiB",
            sent / 1024,
            kib(growth)
        );
        assert_eq!(received, TOO_LONG);
        assert!(sent > MAX_LINE, "the line was cut after {MAX_LINE} bytes");
        assert_eq!(lp.closed, 1, "the server closed it");
        assert_eq!(lp.server.status().live, 0);
        assert!(
            growth < 512 * 1024,
            "{:.0} KiB for one connection",
            kib(growth)
        );
    });
}

#[test]
fn a_client_that_never_reads_its_replies_is_not_read_either_and_costs_a_bounded_amount() {
    isolated(|| {
        let mut lp = Loop::new(Duration::ZERO);
        let mut client = lp.client(1);
        let mut received = Vec::new();
        lp.read_exactly(&mut client, 3, &mut received);
        received.clear();
        // 19 MiB of 1 KiB lines, as many as the sockets take, with the replies never read.
        let mut lines = Vec::new();
        for i in 0..19 * 1024 {
            let line = format!("{i:>8} {}\n", "y".repeat(1014));
            lines.extend_from_slice(line.as_bytes());
        }
        let mut sent = 0;
        // Stalled: the client's writes block and three turns of 50 ms brought no event.
        let mut still = 0;
        let ((), growth) = peak_rss_growth(|| {
            lp.until("the client to stall", |lp| {
                let n = write_some(&mut client, &lines[sent..])
                    .expect("the server keeps the connection");
                sent += n;
                let quiet = n == 0 && lp.events.is_empty();
                still = if quiet { still + 1 } else { 0 };
                sent == lines.len() || still >= 3
            })
        });
        eprintln!(
            "mio: a client that sends and never reads: {:.1} MiB taken by the sockets before \
             it blocked, peak RSS growth {:.0} KiB",
            sent as f64 / (1024.0 * 1024.0),
            kib(growth)
        );
        assert!(sent < lines.len(), "the server kept reading: {sent} bytes");
        assert!(
            growth < 1024 * 1024,
            "{:.0} KiB for one connection (bound: {} KiB owed, a line, a read)",
            kib(growth),
            HIGH_WATER / 1024
        );
        // Reading now, the client gets every reply, in order, and the server reads on.
        while sent < lines.len() {
            let n = write_some(&mut client, &lines[sent..]).expect("the connection stays");
            sent += n;
            let ready = received.len();
            lp.read_exactly(&mut client, (sent - ready).min(64 * 1024), &mut received);
        }
        let rest = sent - received.len();
        lp.read_exactly(&mut client, rest, &mut received);
        assert!(received == lines, "every line echoed once, in order");
    });
}

/// The median time for `ping\n` to come back on `client`, over `n` round trips.
fn round_trip(lp: &mut Loop, client: &mut TcpStream, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    let mut reply = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        assert_eq!(write_some(client, b"ping\n"), Some(5));
        reply.clear();
        lp.read_exactly(client, 5, &mut reply);
        times.push(start.elapsed());
        assert_eq!(reply, b"ping\n");
    }
    times.sort_unstable();
    times[n / 2]
}

#[test]
fn ten_thousand_idle_connections_cost_under_1_kib_each_and_do_not_slow_an_echo() {
    const IDLE: usize = crate::IDLE;
    isolated(|| {
        // All of them, in this process (their server ends) and in the holder (their client ends).
        let room = room_for(IDLE);
        assert_eq!(
            room, IDLE,
            "only {room} connections fit under RLIMIT_NOFILE"
        );
        let mut lp = Loop::new(Duration::ZERO);
        let mut client = lp.client(1);
        let mut slot_line = Vec::new();
        lp.read_exactly(&mut client, 3, &mut slot_line);
        let alone = round_trip(&mut lp, &mut client, 1_000);
        let base = rss();
        let mut holder = IdleHolder::spawn(crate::HOLDER, lp.addr(), IDLE);
        // The holder is served by this thread's loop: it turns until the holder says it holds
        // them all (and fails if the holder ends first).
        lp.until("the idle connections", |lp| {
            holder.try_held() && lp.server.status().live == 1 + IDLE as u32
        });
        let per_connection = rss().saturating_sub(base) / IDLE;
        let crowded = round_trip(&mut lp, &mut client, 1_000);
        holder.finish();
        eprintln!(
            "mio: {IDLE} idle connections: {per_connection} bytes of RSS each; echo round trip \
             {:.1} us alone, {:.1} us among them",
            alone.as_secs_f64() * 1e6,
            crowded.as_secs_f64() * 1e6
        );
        assert!(
            per_connection < 1024,
            "{per_connection} bytes per idle connection"
        );
        // Work per event does not grow with idle connections (a scan of 10,000 sessions per
        // wake-up made it 50 times slower); the bound leaves room for a loaded machine.
        assert!(
            crowded < alone.max(Duration::from_micros(20)) * 10,
            "{crowded:?} among idle connections, {alone:?} alone"
        );
        lp.until("the idle connections to close", |lp| {
            lp.server.status().live == 1
        });
    });
}

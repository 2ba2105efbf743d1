//! The conformance harness: one API over every adapter, a server under test and a client
//! under test, each running on a thread of its own (the smol one on a local executor, the mio
//! one on its own `Poll`, the tokio one on a runtime of its own), plus raw std sockets to play
//! the other side by hand.
//!
//! The checks themselves are written once over this API, in the `adapters` test binary, and
//! run for each adapter ([`each_adapter!`](crate::each_adapter)) or each client x server pair
//! ([`each_pair!`](crate::each_pair)); the reliability tests use the same harness. Events and
//! statuses are the core's own types ([`ClientEvent`], [`ServerConnections`]), which every
//! adapter reports: no adapter-specific translation.
//!
//! Every wait is bounded by [`DEADLINE`] and driven by an event or a published value; the
//! only polling is [`accept_within`], for a plain listener that has no event to wait on.

mod mio_side;
mod smol_side;
mod tokio_side;

mod delayed_echo;
pub use delayed_echo::DelayedEcho;
mod names;
pub mod rolling;
pub use names::FakeResolver;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use callosum_proto::RoverConfig;
use callosum_proto::client::{
    ClientConfig, ClientEvent, ClientStatus, RemoveCause, ServerConnections, ServerSpec,
};

/// Runs each check once per adapter, as `<check>::smol`, `<check>::mio` and `<check>::tokio`:
/// a module per check, with one test per adapter calling `check(Adapter)`.
#[macro_export]
macro_rules! each_adapter {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            use $crate::conformance::Adapter;

            #[test]
            fn smol() {
                super::$check(Adapter::Smol);
            }

            #[test]
            fn mio() {
                super::$check(Adapter::Mio);
            }

            #[test]
            fn tokio() {
                super::$check(Adapter::Tokio);
            }
        }
    )*};
}

/// Runs a check once per client x server pair, as `<check>::<client>_to_<server>`: every pair
/// is an interoperability test.
#[macro_export]
macro_rules! each_pair {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            use $crate::conformance::Adapter::{Mio, Smol, Tokio};

            #[test]
            fn smol_to_smol() {
                super::$check(Smol, Smol);
            }

            #[test]
            fn smol_to_mio() {
                super::$check(Smol, Mio);
            }

            #[test]
            fn mio_to_smol() {
                super::$check(Mio, Smol);
            }

            #[test]
            fn mio_to_mio() {
                super::$check(Mio, Mio);
            }

            #[test]
            fn smol_to_tokio() {
                super::$check(Smol, Tokio);
            }

            #[test]
            fn mio_to_tokio() {
                super::$check(Mio, Tokio);
            }

            #[test]
            fn tokio_to_smol() {
                super::$check(Tokio, Smol);
            }

            #[test]
            fn tokio_to_mio() {
                super::$check(Tokio, Mio);
            }

            #[test]
            fn tokio_to_tokio() {
                super::$check(Tokio, Tokio);
            }
        }
    )*};
}

/// How long any one wait may take before the test fails; generous for a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An answer that reads this (the whole line) is a failure the server answered: every client
/// side's round trip returns its connection as its adapter's users return one after an
/// "unavailable" status (`finish_failed`, mio's `checkin_failed`), not as finished.
pub const FAILURE_ANSWER: &str = "fail";

/// Which adapter a component under test comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// `callosum-smol`.
    Smol,
    /// `callosum-mio`.
    Mio,
    /// `callosum-tokio`.
    Tokio,
}

/// A number published by a background thread that the test waits on.
#[derive(Default)]
pub struct Watch {
    value: Mutex<u32>,
    changed: Condvar,
}

impl Watch {
    /// Publishes a new value and wakes the waiters.
    pub fn set(&self, value: u32) {
        *self.value.lock().unwrap() = value;
        self.changed.notify_all();
    }

    /// Waits until `wanted` holds for the value; fails the test after [`DEADLINE`].
    fn wait_for(&self, what: &str, wanted: impl Fn(u32) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        let mut value = self.value.lock().unwrap();
        while !wanted(*value) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                panic!("{what}: not within {DEADLINE:?} (value {})", *value);
            };
            value = self.changed.wait_timeout(value, left).unwrap().0;
        }
    }
}

/// A background thread and how to ask it to stop; on drop, asks and joins.
pub struct Background {
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `body` on a new thread; `stop` asks it to return.
    pub fn spawn(
        stop: impl FnOnce() + Send + 'static,
        body: impl FnOnce() + Send + 'static,
    ) -> Self {
        Background {
            stop: Some(Box::new(stop)),
            thread: Some(thread::spawn(body)),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            // A failing test is already unwinding; do not turn it into an abort.
            assert!(
                joined.is_ok() || thread::panicking(),
                "a background thread panicked"
            );
        }
    }
}

/// An adapter's server on 127.0.0.1 whose application echoes every byte it reads until the
/// connection ends. Stopped and joined on drop.
pub struct ServerUnderTest {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections holding a slot, published by the server's thread after every change.
    pub live: Arc<Watch>,
    /// Its thread, stopped and joined on drop.
    pub _background: Background,
}

impl ServerUnderTest {
    /// Starts a server of `adapter` on 127.0.0.1, port 0.
    pub fn start(adapter: Adapter, max_slots: Option<u32>) -> ServerUnderTest {
        match adapter {
            Adapter::Smol => smol_side::server(max_slots),
            Adapter::Mio => mio_side::server(max_slots),
            Adapter::Tokio => tokio_side::server(max_slots),
        }
    }

    /// Waits until exactly `live` connections hold a slot.
    pub fn wait_live(&self, live: u32, what: &str) {
        self.live.wait_for(what, |now| now == live);
    }
}

/// What a client under test is built with.
pub struct ClientSpec {
    /// The servers added at start.
    pub servers: Vec<SocketAddr>,
    /// Its configuration, the same type for every adapter.
    pub config: ClientConfig,
    /// Host names added at start, each `host:port`.
    pub names: Vec<ServerSpec>,
    /// Looks the names up instead of the system's resolver, if set.
    pub resolver: Option<FakeResolver>,
}

impl ClientSpec {
    /// A client of `servers` with a pool of `max_slots`, this rover, and a fixed seed.
    pub fn new(servers: &[SocketAddr], max_slots: usize, rover: RoverConfig) -> ClientSpec {
        ClientSpec {
            servers: servers.to_vec(),
            config: client_config(max_slots, rover),
            names: Vec::new(),
            resolver: None,
        }
    }
}

/// A client configuration, the same for every adapter: the original's pool (always
/// `max_slots`, lowest idle slot first, which is what these checks are about), this rover,
/// and a fixed seed, so that runs repeat.
pub fn client_config(max_slots: usize, rover: RoverConfig) -> ClientConfig {
    let mut config = ClientConfig::original();
    config.pool.max_slots = max_slots;
    config.rover = rover;
    config.seed = Some(11);
    config
}

/// The answer to one request on a pooled connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The server of the connection used.
    pub server: SocketAddr,
    /// Its slot.
    pub slot: u32,
    /// The line read back, without its newline.
    pub line: String,
}

/// What the test asks of the client's thread.
pub enum Command {
    /// Answer the client's status (the core's, the same for every adapter).
    Status(mpsc::Sender<ClientStatus>),
    /// Check out the lowest idle connection (never waiting for one), write the line and a
    /// newline, read one line back, return the connection (as failed if the answer is
    /// [`FAILURE_ANSWER`]).
    RoundTrip(String, mpsc::Sender<Result<Reply, String>>),
    /// Drop a server from the client's set; answers whether it was in it.
    RemoveServer(SocketAddr, mpsc::Sender<bool>),
    /// Run the cancellation scenario (see [`Cancellation`]) and answer the tally.
    Cancellation(Cancellation, mpsc::Sender<CancellationTally>),
    /// Return from the thread.
    Stop,
}

/// Concurrent requests sharing one pool, some of them given up mid-exchange the way the
/// adapter's users give up (a timeout around the request, a dropped lease): each request is a
/// line, each answer must be that same line.
#[derive(Clone, Copy, Debug)]
pub struct Cancellation {
    /// Requests in all.
    pub requests: usize,
    /// Tasks (or exchanges in flight, for mio) sharing the pool.
    pub tasks: usize,
    /// Every this-many-th request is given up.
    pub abandon_every: usize,
    /// How long a request that is given up is waited for.
    pub abandon_after: Duration,
}

impl Cancellation {
    /// Whether request `number` is one to give up.
    pub fn abandons(&self, number: usize) -> bool {
        number.is_multiple_of(self.abandon_every)
    }
}

/// What the cancellation scenario saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CancellationTally {
    /// Answers that were the request's own.
    pub own: usize,
    /// Answers that were another request's: the bug this scenario exists to catch.
    pub wrong: usize,
    /// Requests given up mid-exchange.
    pub abandoned: usize,
    /// Requests that got no connection or whose exchange failed.
    pub failed: usize,
}

impl CancellationTally {
    /// Counts an answer to `request`.
    pub fn count(&mut self, request: &str, reply: &str) {
        if reply == request {
            self.own += 1;
        } else {
            self.wrong += 1;
        }
    }
}

/// An adapter's client (rover and pool) running against `ClientSpec::servers`. Stopped and
/// joined on drop.
pub struct ClientUnderTest {
    /// Every event the client reported, in order.
    pub events: mpsc::Receiver<ClientEvent>,
    /// Sends a command to the client's thread.
    pub send: Box<dyn Fn(Command) + Send>,
    /// Its thread, stopped and joined on drop.
    pub _background: Background,
}

impl ClientUnderTest {
    /// Starts a client of `adapter` as `spec` says.
    pub fn start(adapter: Adapter, spec: ClientSpec) -> ClientUnderTest {
        match adapter {
            Adapter::Smol => smol_side::client(spec),
            Adapter::Mio => mio_side::client(spec),
            Adapter::Tokio => tokio_side::client(spec),
        }
    }

    /// The next event that `wanted` accepts, skipping the others.
    pub fn event_where(&self, what: &str, wanted: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(error) => panic!("{what}: no such event within {DEADLINE:?} ({error})"),
            }
        }
    }

    /// The next connection removed from the pool: its server, slot and cause.
    pub fn removed(&self, what: &str) -> (SocketAddr, u32, RemoveCause) {
        match self.event_where(what, |e| matches!(e, ClientEvent::Removed { .. })) {
            ClientEvent::Removed {
                server,
                slot,
                cause,
            } => (server, slot, cause),
            other => unreachable!("{what}: matched Removed, got {other:?}"),
        }
    }

    /// The client's whole status: servers and slots, pool, counters.
    pub fn client_status(&self) -> ClientStatus {
        let (reply, answer) = mpsc::channel();
        (self.send)(Command::Status(reply));
        answer.recv_timeout(DEADLINE).expect("the client's status")
    }

    /// The slots held per server.
    pub fn status(&self) -> Vec<ServerConnections> {
        self.client_status().servers
    }

    /// The slots held per server, as (server, slots) pairs.
    pub fn slots(&self) -> Vec<(SocketAddr, Vec<u32>)> {
        let status = self.status();
        status
            .into_iter()
            .map(|held| (held.server, held.slots))
            .collect()
    }

    /// Connections held, over all servers.
    pub fn held(&self) -> usize {
        self.status().iter().map(|held| held.slots.len()).sum()
    }

    /// Removes a server from the client's set; whether it was in it.
    pub fn remove_server(&self, server: SocketAddr) -> bool {
        let (reply, answer) = mpsc::channel();
        (self.send)(Command::RemoveServer(server, reply));
        answer.recv_timeout(DEADLINE).expect("the server removed")
    }

    /// Runs the cancellation scenario; fails the test if it does not end within a minute.
    pub fn cancellation(&self, spec: Cancellation) -> CancellationTally {
        let (reply, answer) = mpsc::channel();
        (self.send)(Command::Cancellation(spec, reply));
        answer
            .recv_timeout(Duration::from_secs(60))
            .expect("the cancellation scenario's tally")
    }

    /// One request on the lowest idle connection (see [`Command::RoundTrip`]).
    pub fn round_trip(&self, line: &str) -> Result<Reply, String> {
        let (reply, answer) = mpsc::channel();
        (self.send)(Command::RoundTrip(line.to_owned(), reply));
        answer
            .recv_timeout(DEADLINE)
            .expect("a round trip's answer")
    }
}

/// A rover that tries every 20 ms (one attempt at a time, so slots arrive in order) and
/// backs off little after a failure.
pub fn quick_rover() -> RoverConfig {
    RoverConfig {
        interval: Duration::from_millis(20),
        jitter: Duration::ZERO,
        max_in_flight: 1,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..RoverConfig::default()
    }
}

/// A rover that makes only its first attempt (at start) within any test's time.
pub fn one_attempt() -> RoverConfig {
    RoverConfig {
        interval: Duration::from_secs(600),
        jitter: Duration::ZERO,
        max_in_flight: 1,
        fill: false,
        handshake_timeout: Duration::from_millis(300),
        ..RoverConfig::default()
    }
}

/// A blocking socket whose reads give up after [`DEADLINE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// What one read call returns, as the original client reads its slot line.
pub fn read_once(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Everything until the peer closes; a reset (a close with bytes unread) counts as closing.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => all,
        Err(error) if error.kind() == ErrorKind::ConnectionReset => all,
        Err(error) => panic!("reading until the peer closes: {error}"),
    }
}

/// An address where nothing listens: bound, then released.
pub fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A plain listener standing in for a server, and its address.
pub fn raw_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one connection on a nonblocking `listener`: a plain listener has no event to
/// wait on, so it looks every few milliseconds until [`DEADLINE`].
pub fn accept_within(listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                return stream;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no connection within {DEADLINE:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("accept failed: {error}"),
        }
    }
}

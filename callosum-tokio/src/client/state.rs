//! The client's shared state, the one place where the core's outputs are acted on, and the
//! watching of idle connections.
//!
//! # Watching idle connections
//!
//! The pooled sockets live in a slab ([`State::conns`]); the core holds their keys. Each one
//! has a waker of its own, made once, which names its key. When a connection becomes idle
//! ([`ClientCore::deliver`] or [`ClientCore::checkin`] give its id), the socket is peeked
//! once with that waker ([`State::watch`]): usually nothing is there and tokio's reactor keeps
//! the waker. When the socket becomes readable (the server closed it or sent bytes nobody
//! asked for), the reactor wakes it, which queues the key in [`Signals`] and wakes the
//! driver; the driver peeks only the sockets whose keys were queued. So watching costs one
//! peek per return of a connection (no system call when nothing is there: tokio knows the
//! socket is not readable) and nothing per idle connection per request. A connection leased
//! out keeps the stale waker until its holder's first read replaces it; a wake then finds
//! the connection leased and is passed over.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};

use callosum_proto::adapter::{Clock, Read, Resolve, connect_failure, read_outcome};
use callosum_proto::client::{ClientCore, EventQueue, Handshake, IdleSignal, NameId, Output};
use callosum_proto::pool::PooledId;
use callosum_proto::slab::{Key, Slab};
use callosum_proto::{AttemptId, Instant};
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::attempt::{self, LineRead};
use super::resolve;

/// A pooled socket and what watching it needs.
pub(crate) struct Conn {
    /// `None` while a guard holds it.
    pub(crate) stream: Option<TcpStream>,
    /// Its id in the core while it is idle (and so watched).
    idle: Option<PooledId>,
    /// Wakes the driver with this connection's key.
    waker: Waker,
}

/// Whether the driver was ever polled, and whether it still runs.
pub(crate) enum DriverState {
    /// Never polled: attempts wait in [`State::connects`] for it.
    NotStarted,
    /// Running on this runtime, where attempts are spawned.
    Running(Handle),
    /// Finished (the client closed) or dropped: nothing more will happen.
    Ended,
}

/// Everything behind the client's lock.
pub(crate) struct State {
    pub(crate) clock: Clock,
    pub(crate) core: ClientCore<Key>,
    /// The sockets of delivered connections, idle or leased, by the key the core holds.
    pub(crate) conns: Slab<Conn>,
    /// The task of every attempt in flight; aborting one closes its socket.
    attempts: HashMap<AttemptId, AbortHandle>,
    /// Attempts asked for before the driver ran: it spawns them when it starts.
    connects: Vec<(AttemptId, SocketAddr)>,
    /// Looks host names up.
    resolver: Arc<dyn Resolve>,
    /// Lookups asked for before the driver ran: it spawns them when it starts.
    lookups: Vec<(NameId, String, u16)>,
    /// Events until the user takes them.
    pub(crate) events: EventQueue,
    /// The core's last [`Output::Timeout`]: when the driver calls `handle_timeout`.
    pub(crate) timeout: Option<Instant>,
    pub(crate) driver: DriverState,
}

impl State {
    /// The attempt's own input ended it: its task finishes by itself (no `Abort` comes).
    fn end_attempt(&mut self, attempt: AttemptId) {
        self.attempts.remove(&attempt);
    }

    /// Spawns the attempts that waited for the driver.
    pub(crate) fn start_queued(&mut self, shared: &Arc<Shared>) {
        for (attempt, server) in mem::take(&mut self.connects) {
            self.start_attempt(shared, attempt, server);
        }
        for (name, host, port) in mem::take(&mut self.lookups) {
            self.start_lookup(shared, name, host, port);
        }
    }

    /// Looks `host` up in a task of its own; it reports to the core when done.
    fn start_lookup(&mut self, shared: &Arc<Shared>, name: NameId, host: String, port: u16) {
        match &self.driver {
            DriverState::Running(runtime) => {
                let lookup = self.resolver.lookup(&host, port);
                runtime.spawn(resolve::run(Arc::downgrade(shared), lookup, name));
            }
            DriverState::NotStarted => self.lookups.push((name, host, port)),
            // Nothing runs lookups any more: the servers known stay as they are.
            DriverState::Ended => {}
        }
    }

    fn start_attempt(&mut self, shared: &Arc<Shared>, attempt: AttemptId, server: SocketAddr) {
        match &self.driver {
            DriverState::Running(runtime) => {
                let task = runtime.spawn(attempt::run(Arc::downgrade(shared), attempt, server));
                self.attempts.insert(attempt, task.abort_handle());
            }
            DriverState::NotStarted => self.connects.push((attempt, server)),
            // Nothing runs attempts any more: the core times this one out.
            DriverState::Ended => {}
        }
    }

    /// The driver is gone: every attempt stops.
    pub(crate) fn end_driver(&mut self) {
        self.driver = DriverState::Ended;
        self.connects.clear();
        self.lookups.clear();
        for (_, task) in self.attempts.drain() {
            task.abort();
        }
    }

    /// Stores a delivered connection's socket; the key the core is to hold.
    fn insert(&mut self, stream: TcpStream, signals: &Arc<Signals>) -> Key {
        let conn = Conn {
            stream: Some(stream),
            idle: None,
            waker: Waker::noop().clone(),
        };
        let Ok(key) = self.conns.insert(conn) else {
            unreachable!("an unbounded slab takes u32::MAX connections; the pool holds far fewer")
        };
        if let Some(conn) = self.conns.get_mut(key) {
            conn.waker = Waker::from(Arc::new(IdleWaker {
                key,
                signals: Arc::clone(signals),
            }));
        }
        key
    }

    /// The connection `key` became idle under `id`: watch it, and tell the core at once if
    /// it already has something to say.
    pub(crate) fn watch(&mut self, key: Key, id: PooledId, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.idle = Some(id);
        self.check_idle(key, now);
    }

    /// Peeks an idle connection (re-arming its waker when nothing is there) and reports
    /// what it shows.
    fn check_idle(&mut self, key: Key, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return; // Closed since its waker fired.
        };
        let (Some(id), Some(stream)) = (conn.idle, conn.stream.as_ref()) else {
            return; // Leased since: its holder watches it.
        };
        let Some(signal) = idle_signal(stream, &conn.waker) else {
            return;
        };
        conn.idle = None;
        if let Err(error) = self.core.handle_idle_signal(id, signal, now) {
            // Unreachable: the id is renewed at every checkout and checkin, and kept here
            // only while the connection is idle.
            log::error!("callosum client: {error}");
        }
    }

    /// Takes a leased connection's socket out for its guard.
    pub(crate) fn lend(&mut self, key: Key) -> TcpStream {
        let conn = self.conns.get_mut(key);
        let Some(stream) = conn.and_then(|conn| {
            conn.idle = None;
            conn.stream.take()
        }) else {
            unreachable!("an idle connection's socket is in its place until it is lent")
        };
        stream
    }

    /// Puts a guard's socket back, before its lease is checked in.
    pub(crate) fn put_back(&mut self, key: Key, stream: TcpStream) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stream = Some(stream);
        }
    }
}

/// What an idle connection has to say, which on an idle connection is always trouble: the
/// end of the stream, bytes nobody asked for, or an error. `None`: nothing yet, and `waker`
/// is woken when there is.
fn idle_signal(stream: &TcpStream, waker: &Waker) -> Option<IdleSignal> {
    let mut cx = Context::from_waker(waker);
    let mut byte = [0u8; 1];
    // Twice at most: an interrupted peek is tried again.
    for _ in 0..2 {
        let Poll::Ready(peeked) = stream.poll_peek(&mut cx, &mut ReadBuf::new(&mut byte)) else {
            return None;
        };
        match read_outcome(&peeked) {
            Read::End => return Some(IdleSignal::Closed),
            Read::Bytes(_) => return Some(IdleSignal::Bytes),
            Read::Failed => return Some(IdleSignal::Failed),
            Read::Pending | Read::Retry => {}
        }
    }
    None
}

/// Keys of idle connections whose sockets became readable, for the driver. Apart from the
/// client's lock, because the reactor wakes them from wherever it runs.
#[derive(Default)]
pub(crate) struct Signals {
    fired: Mutex<Vec<Key>>,
    /// Wakes the driver: a key fired, the core's timeout changed, or the client closed.
    pub(crate) driver: Notify,
}

impl Signals {
    /// The keys fired since the last call.
    pub(crate) fn take_fired(&self) -> Vec<Key> {
        mem::take(&mut self.fired.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The waker of one idle connection.
struct IdleWaker {
    key: Key,
    signals: Arc<Signals>,
}

impl Wake for IdleWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signals
            .fired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.key);
        self.signals.driver.notify_one();
    }
}

/// State and notifications shared by the client handles, the guards, the driver and the
/// attempt tasks.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) signals: Arc<Signals>,
    /// Notified on [`Output::Idle`] and when the driver ends, for waiting `get` calls (each
    /// asks the core whether it is served).
    pub(crate) idle: Notify,
    /// Notified when an event is queued.
    pub(crate) event_queued: Notify,
}

impl Shared {
    pub(crate) fn new(
        core: ClientCore<Key>,
        events: EventQueue,
        capacity: usize,
        resolver: Arc<dyn Resolve>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                clock: Clock::new(),
                core,
                conns: Slab::with_capacity(capacity),
                attempts: HashMap::new(),
                connects: Vec::new(),
                resolver,
                lookups: Vec::new(),
                events,
                timeout: None,
                driver: DriverState::NotStarted,
            }),
            signals: Arc::default(),
            idle: Notify::new(),
            event_queued: Notify::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is a call into the core followed by a drain, which
        // leave it consistent, so a panic elsewhere does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds one input (`input` gets the state and the time) and acts on the outputs.
    pub(crate) fn input<T>(self: &Arc<Shared>, input: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut state = self.lock();
        let now = state.clock.now();
        let result = input(&mut state, now);
        self.drain(&mut state);
        result
    }

    /// Peeks the idle connections whose wakers fired.
    pub(crate) fn check_fired(&self, state: &mut State, now: Instant) {
        for key in self.signals.take_fired() {
            state.check_idle(key, now);
        }
    }

    /// Takes the core's outputs until its timeout, acting on each.
    pub(crate) fn drain(self: &Arc<Shared>, state: &mut State) {
        loop {
            match state.core.poll_output() {
                Output::Connect { attempt, server } => state.start_attempt(self, attempt, server),
                Output::Abort(attempt) => {
                    if let Some(task) = state.attempts.remove(&attempt) {
                        task.abort();
                    }
                    state.connects.retain(|&(queued, _)| queued != attempt);
                }
                // Dropping the socket closes it.
                Output::Close(key) => drop(state.conns.remove(key)),
                Output::Event(event) => {
                    log::info!("callosum client: {event}");
                    state.events.push(event);
                    self.event_queued.notify_waiters();
                }
                Output::Idle => self.idle.notify_waiters(),
                Output::Resolve { name, host, port } => {
                    state.start_lookup(self, name, host, port);
                }
                Output::Timeout(timeout) => {
                    if state.timeout != timeout {
                        state.timeout = timeout;
                        self.signals.driver.notify_one();
                    }
                    return;
                }
            }
        }
    }

    /// An attempt's connect finished; the stream back if the attempt goes on to read its
    /// line.
    pub(crate) fn connected(
        self: &Arc<Shared>,
        attempt: AttemptId,
        connected: io::Result<TcpStream>,
    ) -> Option<TcpStream> {
        self.input(|state, now| {
            let reported = match &connected {
                Ok(_) => state.core.handle_connected(attempt, now),
                Err(error) => {
                    state
                        .core
                        .handle_connect_failed(attempt, connect_failure(error), now)
                }
            };
            match (reported, connected) {
                (Ok(()), Ok(stream)) => Some(stream),
                _ => {
                    state.end_attempt(attempt);
                    None
                }
            }
        })
    }

    /// A read of an attempt's line finished; the stream back, with the most bytes to read
    /// next, if the line needs more. Otherwise the connection was delivered or dropped.
    pub(crate) fn read(
        self: &Arc<Shared>,
        attempt: AttemptId,
        read: LineRead<'_>,
        stream: TcpStream,
    ) -> Option<(TcpStream, usize)> {
        self.input(|state, now| {
            let reported = match read {
                LineRead::Bytes(bytes) => state.core.handle_received(attempt, bytes, now),
                LineRead::End => state
                    .core
                    .handle_closed(attempt, now)
                    .map(|()| Handshake::Failed),
                LineRead::Failed => state
                    .core
                    .handle_read_failed(attempt, now)
                    .map(|()| Handshake::Failed),
            };
            match reported {
                Ok(Handshake::NeedMore { at_most }) => return Some((stream, at_most)),
                Ok(Handshake::Complete(ready)) => {
                    let key = state.insert(stream, &self.signals);
                    // Kept (and watched), or handed back in an `Output::Close`.
                    if let Some(id) = state.core.deliver(ready, key, now) {
                        state.watch(key, id, now);
                    }
                }
                // A failed line (reported by the core), or an attempt the core already
                // ended: dropping the stream closes the socket.
                Ok(Handshake::Failed) | Err(_) => drop(stream),
            }
            state.end_attempt(attempt);
            None
        })
    }
}

/// For the attempt tasks, which hold the client weakly.
pub(crate) type WeakShared = Weak<Shared>;

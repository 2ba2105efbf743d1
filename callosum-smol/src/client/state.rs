//! The client's shared state, the one place where the core's outputs are acted on, and the
//! watching of idle connections.
//!
//! # Watching idle connections
//!
//! The pooled sockets live in a slab ([`State::conns`]); the core holds their keys. Each one
//! has a waker of its own, made once, which names its key. When a connection becomes idle
//! ([`ClientCore::deliver`] or [`ClientCore::checkin`] give its id), it is armed and its
//! readability polled once with that waker ([`State::watch`]). async-io registers interest
//! in the socket then (one `epoll_ctl`), and the holder of the next lease finds it still
//! registered when its first read must wait, so a request through the pool makes the same
//! system calls as one on a hand-held connection. When the socket becomes readable while
//! idle (the server closed it or sent bytes nobody asked for), the reactor wakes that waker,
//! which queues the key in [`Signals`] and wakes the driver; the driver peeks only the
//! sockets whose keys were queued, and tells the core. So watching costs nothing per idle
//! connection per request, and the driver is not woken by requests at all.
//!
//! A lent connection's waker is disarmed: async-io wakes the waker it replaces, so the
//! holder's first read that waits wakes the idle waker, and a disarmed one does nothing.
//!
//! An idle connection that its server closes is removed as soon as the reactor sees the
//! socket readable and the driver's executor runs the driver: one turn of each.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use async_executor::{Executor, Task};
use async_io::Async;
use callosum_proto::adapter::{Clock, Read, Resolve, connect_failure, read_outcome};
use callosum_proto::client::{ClientCore, EventQueue, Handshake, IdleSignal, Output};
use callosum_proto::pool::PooledId;
use callosum_proto::slab::{Key, Slab};
use callosum_proto::{AttemptId, Instant};
use event_listener::Event as Notify;

use super::attempt::{self, Host, LineRead};
use super::resolve;

/// A pooled connection's stream.
pub(crate) type PooledStream = Async<TcpStream>;

/// A pooled socket and what watching it needs.
struct Conn {
    /// `None` while a guard holds it.
    stream: Option<PooledStream>,
    /// Its id in the core while it is idle (and so watched).
    idle: Option<PooledId>,
    /// Whether `waker` may wake the driver: only while the connection is idle.
    armed: Arc<AtomicBool>,
    /// Wakes the driver with this connection's key, while armed.
    waker: Waker,
}

/// Everything behind the client's lock.
pub(crate) struct State {
    pub(crate) clock: Clock,
    pub(crate) core: ClientCore<Key>,
    /// The sockets of delivered connections, idle or leased, by the key the core holds.
    conns: Slab<Conn>,
    /// The task of every attempt in flight; dropping one cancels it and closes its socket.
    attempts: HashMap<AttemptId, Task<()>>,
    /// Events until the user takes them.
    pub(crate) events: EventQueue,
    /// The core's last [`Output::Timeout`]: when the driver's timer calls `handle_timeout`.
    pub(crate) timeout: Option<Instant>,
    /// Whether the [`Driver`](super::Driver) runs: what a `get` that found nothing is told.
    pub(crate) driver: DriverState,
}

/// Where the [`Driver`](super::Driver) future is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DriverState {
    /// Not polled yet: perhaps about to be spawned.
    NotPolled,
    /// Polled, and neither finished nor dropped.
    Running,
    /// Finished or dropped: no connection will ever arrive.
    Ended,
}

impl State {
    /// The attempt's own input ended it: its task finishes by itself (no `Abort` comes).
    fn end_attempt(&mut self, attempt: AttemptId) {
        if let Some(task) = self.attempts.remove(&attempt) {
            task.detach();
        }
    }

    /// Stores a delivered connection's socket; the key the core is to hold.
    fn insert(&mut self, stream: PooledStream, signals: &Arc<Signals>) -> Key {
        let conn = Conn {
            stream: Some(stream),
            idle: None,
            armed: Arc::default(),
            waker: Waker::noop().clone(),
        };
        let Ok(key) = self.conns.insert(conn) else {
            unreachable!("an unbounded slab takes u32::MAX connections; the pool holds far fewer")
        };
        // The waker names the key, known only now.
        if let Some(conn) = self.conns.get_mut(key) {
            conn.waker = Waker::from(Arc::new(IdleWaker {
                key,
                armed: Arc::clone(&conn.armed),
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

    /// Polls an idle connection (arming its waker when nothing is there) and reports what
    /// it shows.
    fn check_idle(&mut self, key: Key, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return; // Closed since its waker fired.
        };
        let (Some(id), Some(stream)) = (conn.idle, conn.stream.as_ref()) else {
            return; // Leased since: its holder watches it.
        };
        conn.armed.store(true, Ordering::Release);
        let Some(signal) = idle_signal(stream, &conn.waker) else {
            return;
        };
        conn.idle = None;
        conn.armed.store(false, Ordering::Release);
        if let Err(error) = self.core.handle_idle_signal(id, signal, now) {
            // Unreachable: the id is renewed at every checkout and checkin, and kept here
            // only while the connection is idle.
            log::error!("callosum client: {error}");
        }
    }

    /// Takes a leased connection's socket out for its guard; its idle waker is disarmed.
    pub(crate) fn lend(&mut self, key: Key) -> PooledStream {
        let conn = self.conns.get_mut(key);
        let Some(stream) = conn.and_then(|conn| {
            conn.idle = None;
            conn.armed.store(false, Ordering::Release);
            conn.stream.take()
        }) else {
            unreachable!("an idle connection's socket is in its place until it is lent")
        };
        stream
    }

    /// Puts a guard's socket back, before its lease is checked in.
    pub(crate) fn put_back(&mut self, key: Key, stream: PooledStream) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stream = Some(stream);
        }
    }

    /// Takes a detached connection's place out of the table.
    pub(crate) fn forget(&mut self, key: Key) {
        drop(self.conns.remove(key));
    }
}

/// What an idle connection has to say, which on an idle connection is always trouble: the
/// end of the stream, bytes nobody asked for, or an error. `None`: nothing yet, and `waker`
/// is woken when there is.
fn idle_signal(stream: &PooledStream, waker: &Waker) -> Option<IdleSignal> {
    let mut cx = Context::from_waker(waker);
    // Twice at most: a readiness the peek does not confirm is re-armed by the second poll.
    for _ in 0..2 {
        match stream.poll_readable(&mut cx) {
            Poll::Pending => return None,
            Poll::Ready(Err(_)) => return Some(IdleSignal::Failed),
            Poll::Ready(Ok(())) => match read_outcome(&stream.get_ref().peek(&mut [0u8; 1])) {
                Read::End => return Some(IdleSignal::Closed),
                Read::Bytes(_) => return Some(IdleSignal::Bytes),
                Read::Pending | Read::Retry => continue,
                Read::Failed => return Some(IdleSignal::Failed),
            },
        }
    }
    None
}

/// Keys of idle connections whose sockets became readable, for the driver. Apart from the
/// client's lock, because the reactor wakes them from wherever it runs.
#[derive(Default)]
pub(crate) struct Signals {
    fired: Mutex<Vec<Key>>,
    /// Wakes the driver: a key fired, the core's timeout moved earlier, or the client
    /// closed.
    pub(crate) driver: Notify,
}

impl Signals {
    /// The keys fired since the last call.
    fn take_fired(&self) -> Vec<Key> {
        mem::take(&mut self.fired.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The waker of one idle connection. async-io also wakes it when a lease's first read
/// replaces it, which finds it disarmed.
struct IdleWaker {
    key: Key,
    /// Shared with the connection's [`Conn::armed`].
    armed: Arc<AtomicBool>,
    signals: Arc<Signals>,
}

impl Wake for IdleWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Once: the driver arms it again if the socket has nothing to say after all.
        if !self.armed.swap(false, Ordering::AcqRel) {
            return;
        }
        self.signals
            .fired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.key);
        self.signals.driver.notify(usize::MAX);
    }
}

/// State and notifications shared by the client handles, the guards, the driver and the
/// attempt tasks.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Runs the attempt and lookup tasks; driven by the [`Driver`](super::Driver) future.
    pub(crate) executor: Executor<'static>,
    /// Looks host names up.
    resolver: Arc<dyn Resolve>,
    pub(crate) signals: Arc<Signals>,
    /// Notified on [`Output::Idle`], for waiting `get` calls (each asks the core whether it
    /// is served).
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
                events,
                timeout: None,
                driver: DriverState::NotPolled,
            }),
            executor: Executor::new(),
            resolver,
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

    /// Closes the client (for every handle): see [`Client::close`](super::Client::close).
    pub(crate) fn close(self: &Arc<Shared>) {
        self.input(|state, now| state.core.close(now));
        // The driver ends, whether or not the core's timeout changed.
        self.signals.driver.notify(usize::MAX);
    }

    /// The driver moved on to `driver`; waiting `get` calls are woken to see an end.
    pub(crate) fn set_driver(&self, driver: DriverState) {
        self.lock().driver = driver;
        if driver == DriverState::Ended {
            self.idle.notify(usize::MAX);
        }
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
                Output::Connect { attempt, server } => {
                    let task = attempt::run(Arc::downgrade(self), attempt, server);
                    state.attempts.insert(attempt, self.executor.spawn(task));
                }
                // Dropping the task cancels it and closes its socket.
                Output::Abort(attempt) => drop(state.attempts.remove(&attempt)),
                // Dropping the socket closes it.
                Output::Close(key) => drop(state.conns.remove(key)),
                Output::Event(event) => {
                    log::info!("callosum client: {event}");
                    state.events.push(event);
                    self.event_queued.notify(usize::MAX);
                }
                Output::Idle => {
                    self.idle.notify(usize::MAX);
                }
                Output::Resolve { name, host, port } => {
                    let lookup = self.resolver.lookup(&host, port);
                    let task = resolve::run(Arc::downgrade(self), lookup, name);
                    // It ends by itself, reporting to the core if the client still exists.
                    self.executor.spawn(task).detach();
                }
                Output::Timeout(timeout) => {
                    // The driver sleeps until the timeout it last saw, or for good: woken
                    // only when this one comes sooner. One that moved later finds the
                    // driver awake too early, which then sleeps again until it is due.
                    let sooner = match (timeout, state.timeout) {
                        (Some(new), Some(old)) => new < old,
                        (new, old) => new.is_some() && old.is_none(),
                    };
                    state.timeout = timeout;
                    if sooner {
                        self.signals.driver.notify(usize::MAX);
                    }
                    return;
                }
            }
        }
    }
}

impl Host for Shared {
    fn connected(
        self: &Arc<Shared>,
        attempt: AttemptId,
        connected: io::Result<PooledStream>,
    ) -> Option<PooledStream> {
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

    fn read(
        self: &Arc<Shared>,
        attempt: AttemptId,
        read: LineRead<'_>,
        stream: PooledStream,
    ) -> Option<(PooledStream, usize)> {
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

//! The client's shared state, and the one place where the core's outputs are acted on.

use std::collections::HashMap;
use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use async_executor::{Executor, Task};
use async_io::Async;
use callosum_proto::adapter::{Clock, connect_failure};
use callosum_proto::client::{ClientCore, EventQueue, Handshake, Output};
use callosum_proto::{AttemptId, Instant};
use event_listener::Event as Notify;

use super::attempt::{self, Host, LineRead};

/// A connection as the core holds it: the stream alone, since a lease names its server and
/// slot.
pub(crate) type PooledStream = Async<TcpStream>;

/// Everything behind the client's lock.
pub(crate) struct State {
    pub(crate) clock: Clock,
    pub(crate) core: ClientCore<PooledStream>,
    /// The task of every attempt in flight; dropping one cancels it and closes its socket.
    attempts: HashMap<AttemptId, Task<()>>,
    /// Events until the user takes them.
    pub(crate) events: EventQueue,
    /// The idle watcher's waker: woken when a connection becomes idle.
    pub(crate) watcher: Option<Waker>,
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
}

/// State and notifications shared by the client handles, the guards, the driver and the
/// attempt tasks.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Runs the attempt tasks; driven by the [`Driver`](super::Driver) future.
    pub(crate) executor: Executor<'static>,
    /// Notified on [`Output::Idle`], for waiting `get` calls (each asks the core whether it
    /// is served).
    pub(crate) idle: Notify,
    /// Notified when the core's timeout changed, or the client closed, for the driver.
    pub(crate) timer: Notify,
    /// Notified when an event is queued.
    pub(crate) event_queued: Notify,
}

impl Shared {
    pub(crate) fn new(core: ClientCore<PooledStream>, events: EventQueue) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                clock: Clock::new(),
                core,
                attempts: HashMap::new(),
                events,
                watcher: None,
                timeout: None,
                driver: DriverState::NotPolled,
            }),
            executor: Executor::new(),
            idle: Notify::new(),
            timer: Notify::new(),
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
        self.timer.notify(usize::MAX);
    }

    /// The driver moved on to `driver`; waiting `get` calls are woken to see an end.
    pub(crate) fn set_driver(&self, driver: DriverState) {
        self.lock().driver = driver;
        if driver == DriverState::Ended {
            self.idle.notify(usize::MAX);
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
                Output::Close(stream) => drop(stream),
                Output::Event(event) => {
                    log::info!("callosum client: {event}");
                    state.events.push(event);
                    self.event_queued.notify(usize::MAX);
                }
                Output::Idle => {
                    self.idle.notify(usize::MAX);
                    if let Some(waker) = state.watcher.take() {
                        waker.wake();
                    }
                }
                Output::Timeout(timeout) => {
                    if state.timeout != timeout {
                        state.timeout = timeout;
                        self.timer.notify(usize::MAX);
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
                    // Kept, or handed back in an `Output::Close`.
                    let _kept = state.core.deliver(ready, stream, now);
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

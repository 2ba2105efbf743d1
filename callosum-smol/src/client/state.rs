//! The client's shared state and the one place where the rover's and the pool's outputs are
//! acted on.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;

use async_executor::{Executor, Task};
use async_io::Async;
use callosum_proto::pool::{Evicted, Lease, Offer, Pool};
use callosum_proto::rover::{Action, AttemptId, Event};
use callosum_proto::{Rover, ServerId};
use event_listener::Event as Notify;

use super::ClientEvent;
use super::attempt::attempt;
use crate::clock::Clock;

/// A connection in the pool, with the bytes that came after its slot line.
pub(crate) struct PooledStream {
    pub(crate) stream: Async<TcpStream>,
    pub(crate) server: SocketAddr,
    /// Application bytes that arrived in the same read as the slot line.
    pub(crate) leftover: Vec<u8>,
}

/// Everything behind the client's lock.
pub(crate) struct State {
    pub(crate) clock: Clock,
    pub(crate) rover: Rover,
    pub(crate) pool: Pool<PooledStream>,
    pub(crate) servers: HashMap<ServerId, SocketAddr>,
    pub(crate) next_server: u32,
    /// The task of every attempt in flight; dropping one cancels it and closes its socket.
    pub(crate) attempts: HashMap<AttemptId, Task<()>>,
    pub(crate) events: VecDeque<ClientEvent>,
    pub(crate) events_dropped: u64,
    /// Tickets of the `get` calls waiting for an idle connection, oldest first: they are
    /// served in that order, and nobody takes an idle connection ahead of them.
    pub(crate) waiting: VecDeque<u64>,
    pub(crate) next_ticket: u64,
    /// The idle watcher's waker: woken when the set of idle connections changes.
    pub(crate) watcher: Option<Waker>,
    /// Set when the last `Client` handle is dropped: the driver ends.
    pub(crate) closed: bool,
}

impl State {
    pub(crate) fn server_id(&self, addr: SocketAddr) -> Option<ServerId> {
        self.servers
            .iter()
            .find_map(|(&id, &known)| (known == addr).then_some(id))
    }

    pub(crate) fn push_event(&mut self, event: ClientEvent, capacity: usize) {
        if capacity == 0 {
            self.events_dropped += 1;
            return;
        }
        if self.events.len() >= capacity && self.events.pop_front().is_some() {
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Lends the lowest idle connection to the holder of `ticket` (`None`: a caller who is
    /// not waiting), unless an earlier waiter comes first.
    pub(crate) fn lend(&mut self, ticket: Option<u64>) -> Option<Lease<PooledStream>> {
        match self.waiting.front() {
            Some(&first) if ticket != Some(first) => None,
            _ => self.pool.checkout(),
        }
    }

    pub(crate) fn wake_watcher(&mut self) {
        if let Some(waker) = self.watcher.take() {
            waker.wake();
        }
    }
}

/// State and notifications shared by the client handles, the driver and the attempt tasks.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Runs the attempt tasks; driven by the [`Driver`](super::Driver) future.
    pub(crate) executor: Executor<'static>,
    /// Notified when a connection becomes idle or the first waiter changes, for waiting
    /// `get` calls (each checks whether it is first in line).
    pub(crate) idle_available: Notify,
    /// Notified when the rover's next timeout may have changed.
    pub(crate) driver_wake: Notify,
    /// Notified when an event is queued.
    pub(crate) event_queued: Notify,
    pub(crate) events_capacity: usize,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is a handful of calls into the core that leave it
        // consistent, so a panic elsewhere does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Acts on everything the rover says after an input, keeps its demand equal to the
    /// pool's, and repeats until it has nothing more to say.
    ///
    /// `finished` carries the socket of the attempt whose input this was: when the rover
    /// reports that attempt's slot line complete, the socket goes to the pool from here.
    pub(crate) fn settle(
        self: &Arc<Shared>,
        state: &mut State,
        mut finished: Option<(AttemptId, &mut Option<PooledStream>)>,
    ) {
        loop {
            let wanted = state.pool.wanted();
            let now = state.clock.now();
            state.rover.set_demand(wanted, now);
            let mut said_something = false;
            while let Some(action) = state.rover.poll_action() {
                said_something = true;
                self.act(state, action, finished.as_ref().map(|(id, _)| *id));
            }
            while let Some(event) = state.rover.poll_event() {
                said_something = true;
                self.take_event(state, event, &mut finished);
            }
            if !said_something {
                break;
            }
        }
        self.driver_wake.notify(usize::MAX);
    }

    fn act(self: &Arc<Shared>, state: &mut State, action: Action, current: Option<AttemptId>) {
        match action {
            Action::Connect {
                attempt: id,
                server,
            } => {
                let Some(&addr) = state.servers.get(&server) else {
                    return;
                };
                let task = self.executor.spawn(attempt(Arc::downgrade(self), id, addr));
                state.attempts.insert(id, task);
            }
            Action::Close { attempt: id } => {
                if let Some(task) = state.attempts.remove(&id) {
                    if current == Some(id) {
                        // The attempt's own task is asking: it ends by itself on return.
                        task.detach();
                    } else {
                        drop(task);
                    }
                }
            }
        }
    }

    fn take_event(
        self: &Arc<Shared>,
        state: &mut State,
        event: Event,
        finished: &mut Option<(AttemptId, &mut Option<PooledStream>)>,
    ) {
        let addr = |state: &State, server| state.servers.get(&server).copied();
        let capacity = self.events_capacity;
        let client_event = match event {
            Event::Connection {
                attempt: id,
                server,
                slot,
            } => {
                if let Some(task) = state.attempts.remove(&id) {
                    task.detach();
                }
                let conn = match finished {
                    Some((finished_id, conn)) if *finished_id == id => conn.take(),
                    _ => None,
                };
                let Some(conn) = conn else {
                    log::error!("callosum client: a connection event without its socket");
                    return;
                };
                self.offer(state, server, slot, conn);
                return;
            }
            Event::Unreachable { server, reason, .. } => match addr(state, server) {
                Some(server) => ClientEvent::Unreachable { server, reason },
                None => return,
            },
            Event::HandshakeFailed { server, reason, .. } => match addr(state, server) {
                Some(server) => ClientEvent::HandshakeFailed { server, reason },
                None => return,
            },
            Event::NoServers => ClientEvent::NoServers,
        };
        log::info!("callosum client: {client_event}");
        state.push_event(client_event, capacity);
        self.event_queued.notify(usize::MAX);
    }

    fn offer(&self, state: &mut State, server: ServerId, slot: u32, conn: PooledStream) {
        let addr = conn.server;
        let mut events = Vec::with_capacity(2);
        match state.pool.offer(server, slot, conn) {
            Offer::Kept(_) => events.push(ClientEvent::Kept { server: addr, slot }),
            Offer::Replaced { evicted, .. } => {
                events.push(ClientEvent::Kept { server: addr, slot });
                let (server, slot) = match evicted {
                    // Dropping the stream closes it, which frees its slot on its server.
                    Evicted::Idle { conn, slot, .. } => (conn.server, slot),
                    Evicted::Leased { server, slot, .. } => {
                        (state.servers.get(&server).copied().unwrap_or(addr), slot)
                    }
                };
                events.push(ClientEvent::Evicted { server, slot });
            }
            Offer::Rejected(_closed) => events.push(ClientEvent::Rejected { server: addr, slot }),
        }
        if !matches!(events[0], ClientEvent::Rejected { .. }) {
            self.idle_available.notify(usize::MAX);
            state.wake_watcher();
        }
        for event in events {
            log::info!("callosum client: {event}");
            state.push_event(event, self.events_capacity);
        }
        self.event_queued.notify(usize::MAX);
    }
}

/// A weak handle for tasks, so that a task never keeps the client alive by itself.
pub(crate) type SharedRef = Weak<Shared>;

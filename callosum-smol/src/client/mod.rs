//! A Callosum client: a rover that finds connections and a pool that keeps the lowest ones.

mod attempt;
mod conn;
mod driver;
mod state;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use async_executor::Executor;
use async_io::Timer;
use callosum_proto::pool::{ConnState, Evicted, PoolConfigError, PoolStats, PoolStatus, Removed};
use callosum_proto::rover::{ConnectFailure, HandshakeFailure};
use callosum_proto::{Pool, PoolConfig, Rng, Rover, RoverConfig, RoverConfigError, ServerId};
use event_listener::Event as Notify;
use futures_lite::future;

pub use conn::PooledConn;
pub use driver::Driver;

use crate::clock::Clock;
use state::{Shared, State};

/// How a [`Client`] behaves.
///
/// ```
/// use callosum_smol::{ClientConfig, PoolConfig, RoverConfig};
/// use std::time::Duration;
///
/// let config = ClientConfig {
///     pool: PoolConfig { max_slots: 20 },
///     rover: RoverConfig { interval: Duration::from_millis(250), ..RoverConfig::default() },
///     seed: 7, // fixed for a reproducible run
///     ..ClientConfig::default()
/// };
/// assert_eq!(config.checkout_timeout, Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The pool: `max_slots` (default 100).
    pub pool: PoolConfig,
    /// The rover: interval, jitter, timeouts, attempts in flight, fill mode, backoff.
    pub rover: RoverConfig,
    /// How long [`Client::get`] waits for an idle connection. Default 10 s.
    pub checkout_timeout: Duration,
    /// How many undelivered [`ClientEvent`]s are kept; past that the oldest are dropped and
    /// counted in [`ClientStatus::events_dropped`]. Default 1024; 0 keeps none.
    pub events_capacity: usize,
    /// The seed of the rover's and the pool's random choices. The default draws a fresh one
    /// from the operating system; fix it for a reproducible run.
    pub seed: u64,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            pool: PoolConfig::default(),
            rover: RoverConfig::default(),
            checkout_timeout: Duration::from_secs(10),
            events_capacity: 1024,
            seed: RandomState::new().hash_one(StdInstant::now()),
        }
    }
}

/// A configuration the client cannot run with.
///
/// ```
/// use callosum_smol::{Client, ClientConfig, ClientError, PoolConfig};
///
/// let config = ClientConfig { pool: PoolConfig { max_slots: 0 }, ..ClientConfig::default() };
/// assert!(matches!(Client::new(config), Err(ClientError::Pool(_))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The pool's settings are wrong.
    Pool(PoolConfigError),
    /// The rover's settings are wrong.
    Rover(RoverConfigError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Pool(error) => write!(f, "invalid pool configuration: {error}"),
            ClientError::Rover(error) => write!(f, "invalid rover configuration: {error}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Pool(error) => Some(error),
            ClientError::Rover(error) => Some(error),
        }
    }
}

/// No connection became idle in time.
///
/// ```
/// use callosum_smol::{Client, ClientConfig, GetError};
/// use std::time::Duration;
///
/// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
/// let waited = Duration::from_millis(1);
/// assert_eq!(smol::block_on(client.get_timeout(waited)).unwrap_err(), GetError::TimedOut { waited });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetError {
    /// Waited this long and no connection was idle.
    TimedOut {
        /// How long.
        waited: Duration,
    },
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::TimedOut { waited } => {
                write!(f, "no pooled connection became idle within {waited:?}")
            }
        }
    }
}

impl std::error::Error for GetError {}

/// Why a connection left the pool outside of eviction.
///
/// ```
/// use callosum_smol::RemoveCause;
///
/// assert_eq!(RemoveCause::ClosedByServer.to_string(), "closed by the server while idle");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveCause {
    /// The server closed it while it sat idle.
    ClosedByServer,
    /// The server sent bytes while nobody had asked anything.
    UnsolicitedData,
    /// The socket reported an error while idle.
    Error,
    /// The application found it broken (a failed read or write, or `mark_broken`).
    Broken,
    /// Its server was removed from the client.
    ServerDropped,
    /// It was returned after the last `Client` handle was dropped.
    ClientClosed,
}

impl fmt::Display for RemoveCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoveCause::ClosedByServer => "closed by the server while idle",
            RemoveCause::UnsolicitedData => "unsolicited bytes while idle",
            RemoveCause::Error => "socket error while idle",
            RemoveCause::Broken => "broken in use",
            RemoveCause::ServerDropped => "its server was removed",
            RemoveCause::ClientClosed => "returned after the client was dropped",
        })
    }
}

/// Something the client did or saw, for logs and metrics. Its `Display` is one line.
///
/// ```
/// use callosum_smol::ClientEvent;
///
/// let event = ClientEvent::Kept { server: "127.0.0.1:7000".parse().unwrap(), slot: 3 };
/// assert_eq!(event.to_string(), "kept slot 3 from 127.0.0.1:7000");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The rover found a connection and the pool kept it.
    Kept {
        /// Its server.
        server: SocketAddr,
        /// Its slot.
        slot: u32,
    },
    /// The rover found a connection the pool did not want (a slot too high); it was closed.
    Rejected {
        /// Its server.
        server: SocketAddr,
        /// Its slot.
        slot: u32,
    },
    /// A better connection pushed this one out; it is closed now, or when returned if leased.
    Evicted {
        /// Its server.
        server: SocketAddr,
        /// Its slot.
        slot: u32,
    },
    /// A connection attempt failed.
    Unreachable {
        /// The server tried.
        server: SocketAddr,
        /// Why.
        reason: ConnectFailure,
    },
    /// A server accepted but sent no valid slot line in time.
    HandshakeFailed {
        /// The server tried.
        server: SocketAddr,
        /// Why: the decoder's error, the end of the stream, or the timeout.
        reason: HandshakeFailure,
    },
    /// An attempt was due and no server could be tried.
    NoServers,
    /// A pooled connection broke and was closed.
    Removed {
        /// Its server.
        server: SocketAddr,
        /// Its slot.
        slot: u32,
        /// Why.
        cause: RemoveCause,
    },
}

impl fmt::Display for ClientEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::Kept { server, slot } => write!(f, "kept slot {slot} from {server}"),
            ClientEvent::Rejected { server, slot } => {
                write!(f, "rejected slot {slot} from {server}")
            }
            ClientEvent::Evicted { server, slot } => {
                write!(f, "evicted slot {slot} from {server}")
            }
            ClientEvent::Unreachable { server, reason } => {
                write!(f, "unreachable {server}: {reason}")
            }
            ClientEvent::HandshakeFailed { server, reason } => {
                write!(f, "handshake failed {server}: {reason}")
            }
            ClientEvent::NoServers => f.write_str("no servers to try"),
            ClientEvent::Removed {
                server,
                slot,
                cause,
            } => write!(f, "removed slot {slot} from {server}: {cause}"),
        }
    }
}

/// The connections a client holds on one server.
///
/// ```
/// use callosum_smol::ServerConnections;
///
/// let held = ServerConnections { server: "127.0.0.1:7000".parse().unwrap(), slots: vec![0, 2] };
/// assert_eq!(held.slots.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConnections {
    /// The server.
    pub server: SocketAddr,
    /// Slots held there (idle or leased), lowest first.
    pub slots: Vec<u32>,
}

/// A snapshot of a client.
///
/// ```
/// use callosum_smol::{Client, ClientConfig};
///
/// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
/// client.add_server("127.0.0.1:7000".parse().unwrap());
/// let status = client.status();
/// assert_eq!(status.servers.len(), 1);
/// assert_eq!(status.pool.held, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStatus {
    /// Every known server, in the order they were added, with the slots held there.
    pub servers: Vec<ServerConnections>,
    /// Connections by state.
    pub pool: PoolStatus,
    /// The pool's counters.
    pub stats: PoolStats,
    /// Rover attempts under way.
    pub attempts_in_flight: usize,
    /// Events dropped because nobody took them in time.
    pub events_dropped: u64,
    /// `get` calls waiting for an idle connection.
    pub waiting_gets: usize,
}

/// A place in the line of waiting `get` calls, given up when dropped (served, timed out or
/// cancelled).
struct Ticket<'a> {
    shared: &'a Arc<Shared>,
    number: u64,
}

impl Ticket<'_> {
    fn take(shared: &Arc<Shared>) -> Ticket<'_> {
        let mut state = shared.lock();
        let number = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(number);
        Ticket { shared, number }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.shared
            .lock()
            .waiting
            .retain(|&waiting| waiting != self.number);
        // The next in line may be able to take an idle connection now.
        self.shared.idle_available.notify(usize::MAX);
    }
}

/// The client's handle; the last one dropped closes the client.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.rover.stop();
        self.shared.settle(&mut state, None);
        let idle: Vec<_> = state.pool.idle_mut().map(|(id, _)| id).collect();
        for id in idle {
            // Dropping each idle stream closes it now rather than when the driver ends.
            if let Ok(Removed::Idle { conn, .. }) = state.pool.remove(id) {
                drop(conn);
            }
        }
        state.wake_watcher();
        drop(state);
        self.shared.driver_wake.notify(usize::MAX);
    }
}

/// A Callosum client: a rover looking for low slots on its servers and a pool holding the
/// lowest it found. Cheap to clone; clones share one pool.
///
/// [`Client::new`] also returns the [`Driver`] future, which does the background work and
/// must be spawned (on any executor). No runtime is started behind your back.
///
/// ```no_run
/// use callosum_smol::{Client, ClientConfig};
/// use futures_lite::AsyncWriteExt;
///
/// smol::block_on(async {
///     let (client, driver) = Client::new(ClientConfig::default()).unwrap();
///     smol::spawn(driver).detach();
///     client.add_server("127.0.0.1:7000".parse().unwrap());
///     client.add_server("127.0.0.1:7001".parse().unwrap());
///     let mut conn = client.get().await.unwrap(); // the lowest idle slot
///     conn.write_all(b"ping\n").await.unwrap();
/// });
/// ```
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
    checkout_timeout: Duration,
}

impl Client {
    /// A client with no servers yet, and the future that drives it.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # drop((client, driver));
    /// ```
    pub fn new(config: ClientConfig) -> Result<(Client, Driver), ClientError> {
        let mut seeds = Rng::new(config.seed);
        let rover = Rover::new(config.rover, seeds.next_u64()).map_err(ClientError::Rover)?;
        let pool = Pool::new(config.pool, seeds.next_u64()).map_err(ClientError::Pool)?;
        let clock = Clock::new();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                clock,
                rover,
                pool,
                servers: HashMap::new(),
                next_server: 0,
                attempts: HashMap::new(),
                events: VecDeque::new(),
                events_dropped: 0,
                waiting: VecDeque::new(),
                next_ticket: 0,
                watcher: None,
                closed: false,
            }),
            executor: Executor::new(),
            idle_available: Notify::new(),
            driver_wake: Notify::new(),
            event_queued: Notify::new(),
            events_capacity: config.events_capacity,
        });
        let driver = Driver::new(Arc::clone(&shared));
        let client = Client {
            handle: Arc::new(Handle { shared }),
            checkout_timeout: config.checkout_timeout,
        };
        Ok((client, driver))
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Adds a server for the rover to try; `false` if it was known already. The first server
    /// added starts the rover.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let addr = "127.0.0.1:7000".parse().unwrap();
    /// assert!(client.add_server(addr));
    /// assert!(!client.add_server(addr));
    /// ```
    pub fn add_server(&self, addr: SocketAddr) -> bool {
        let mut state = self.shared().lock();
        if state.server_id(addr).is_some() {
            return false;
        }
        let id = ServerId(state.next_server);
        state.next_server += 1;
        state.servers.insert(id, addr);
        state.rover.add_server(id);
        if !state.rover.is_running() {
            // The rover starts with the first server, so a new client tries it at once
            // instead of reporting that it has no servers.
            let now = state.clock.now();
            state.rover.start(now);
        }
        self.shared().settle(&mut state, None);
        true
    }

    /// Removes a server: its attempts in flight are aborted and never delivered, its idle
    /// connections are closed, and its leased ones give their places up at once and are
    /// closed when returned. `false` if it was not known.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let addr = "127.0.0.1:7000".parse().unwrap();
    /// client.add_server(addr);
    /// assert!(client.remove_server(addr));
    /// assert!(!client.remove_server(addr));
    /// ```
    pub fn remove_server(&self, addr: SocketAddr) -> bool {
        let mut state = self.shared().lock();
        let Some(id) = state.server_id(addr) else {
            return false;
        };
        state.rover.remove_server(id);
        state.servers.remove(&id);
        for evicted in state.pool.remove_server(id) {
            let slot = match evicted {
                // Dropping the stream closes it now.
                Evicted::Idle { slot, .. } => slot,
                // Its place is free now; it is closed when it comes back.
                Evicted::Leased { slot, .. } => slot,
            };
            let event = ClientEvent::Removed {
                server: addr,
                slot,
                cause: RemoveCause::ServerDropped,
            };
            state.push_event(event, self.shared().events_capacity);
        }
        self.shared().event_queued.notify(usize::MAX);
        self.shared().settle(&mut state, None);
        true
    }

    /// Takes the idle connection with the lowest slot, waiting up to the configured
    /// `checkout_timeout` for one to become idle. Waiting callers are served in the order
    /// they came.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// match client.get().await {
    ///     Ok(conn) => println!("slot {} on {}", conn.slot(), conn.server()),
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # });
    /// ```
    pub async fn get(&self) -> Result<PooledConn, GetError> {
        self.get_timeout(self.checkout_timeout).await
    }

    /// Like [`Client::get`], waiting at most `timeout`.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    /// use std::time::Duration;
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert!(smol::block_on(client.get_timeout(Duration::ZERO)).is_err());
    /// ```
    pub async fn get_timeout(&self, timeout: Duration) -> Result<PooledConn, GetError> {
        if let Some(conn) = self.try_get() {
            return Ok(conn);
        }
        let deadline = StdInstant::now() + timeout;
        let ticket = Ticket::take(self.shared());
        loop {
            let idle = self.shared().idle_available.listen();
            if let Some(conn) = self.lend(Some(ticket.number)) {
                return Ok(conn);
            }
            let timed_out = future::or(
                async {
                    idle.await;
                    false
                },
                async {
                    Timer::at(deadline).await;
                    true
                },
            )
            .await;
            if timed_out {
                return self
                    .lend(Some(ticket.number))
                    .ok_or(GetError::TimedOut { waited: timeout });
            }
        }
    }

    /// Takes the idle connection with the lowest slot if there is one and no [`Client::get`]
    /// call is already waiting (those are served first, in the order they came); never
    /// waits.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert!(client.try_get().is_none());
    /// ```
    pub fn try_get(&self) -> Option<PooledConn> {
        self.lend(None)
    }

    fn lend(&self, ticket: Option<u64>) -> Option<PooledConn> {
        let lease = self.shared().lock().lend(ticket)?;
        Some(PooledConn::new(Arc::clone(self.shared()), lease))
    }

    /// The next event, waiting for one.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// client.add_server("127.0.0.1:7000".parse().unwrap());
    /// println!("{}", client.next_event().await);
    /// # });
    /// ```
    pub async fn next_event(&self) -> ClientEvent {
        loop {
            let queued = self.shared().event_queued.listen();
            if let Some(event) = self.try_next_event() {
                return event;
            }
            queued.await;
        }
    }

    /// The next event if one is waiting.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert_eq!(client.try_next_event(), None);
    /// ```
    pub fn try_next_event(&self) -> Option<ClientEvent> {
        self.shared().lock().events.pop_front()
    }

    /// Connections per server, pool counts and counters.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert!(client.status().servers.is_empty());
    /// ```
    pub fn status(&self) -> ClientStatus {
        let state = self.shared().lock();
        let mut known: Vec<(ServerId, SocketAddr)> = state
            .servers
            .iter()
            .map(|(&id, &addr)| (id, addr))
            .collect();
        known.sort_unstable();
        let servers = known
            .into_iter()
            .map(|(id, server)| {
                let mut slots: Vec<u32> = state
                    .pool
                    .connections()
                    .filter(|info| info.server == id && info.state != ConnState::Evicted)
                    .map(|info| info.slot)
                    .collect();
                slots.sort_unstable();
                ServerConnections { server, slots }
            })
            .collect();
        ClientStatus {
            servers,
            pool: state.pool.status(),
            stats: state.pool.stats().clone(),
            attempts_in_flight: state.rover.in_flight(),
            events_dropped: state.events_dropped,
            waiting_gets: state.waiting.len(),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("status", &self.status())
            .finish()
    }
}

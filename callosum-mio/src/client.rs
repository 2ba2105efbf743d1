//! [`Client`]: a rover and a pool with their sockets, as a component of the user's `mio`
//! loop.
//!
//! The rover ([`callosum_proto::rover`]) decides when to connect where and parses slot
//! lines; the pool ([`callosum_proto::pool`]) decides which connections to keep, evict and
//! lend. The client only opens, reads and closes sockets as they say, and tells the
//! application what happened ([`ClientEvent`]).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use callosum_proto::pool::{self, Checkin, Evicted, Offer, PoolConfigError, PoolStats, PoolStatus};
use callosum_proto::rover::{self, Action, AttemptId, ConnectFailure, HandshakeFailure};
use callosum_proto::slot_line::MAX_LINE_LEN;
use callosum_proto::{Instant as CoreInstant, ServerId};
use callosum_proto::{Pool, PoolConfig, Rover, RoverConfig, RoverConfigError};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::TokenRange;
use crate::clock::Clock;
use crate::conn::{Conn, Ended, is_transient};

/// How a [`Client`] is set up: its pool and its rover.
///
/// ```
/// use callosum_mio::{ClientConfig, PoolConfig, RoverConfig};
/// use std::time::Duration;
///
/// let config = ClientConfig {
///     pool: PoolConfig { max_slots: 10 },
///     rover: RoverConfig { interval: Duration::from_millis(200), ..RoverConfig::default() },
/// };
/// assert_eq!(config.rover.max_in_flight, 4);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// The pool's settings (`max_slots`, default 100).
    pub pool: PoolConfig,
    /// The rover's settings (interval, jitter, timeouts, fill mode, backoff).
    pub rover: RoverConfig,
}

/// Why [`Client::new`] refused a configuration.
///
/// ```
/// use callosum_mio::{Client, ClientConfig, ClientConfigError, PoolConfig};
///
/// let config = ClientConfig { pool: PoolConfig { max_slots: 0 }, ..ClientConfig::default() };
/// assert!(matches!(Client::new(config, 1), Err(ClientConfigError::Pool(_))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// The pool's settings are wrong.
    Pool(PoolConfigError),
    /// The rover's settings are wrong.
    Rover(RoverConfigError),
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientConfigError::Pool(error) => write!(f, "pool: {error}"),
            ClientConfigError::Rover(error) => write!(f, "rover: {error}"),
        }
    }
}

impl std::error::Error for ClientConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientConfigError::Pool(error) => Some(error),
            ClientConfigError::Rover(error) => Some(error),
        }
    }
}

/// Why a connection left the pool on its own.
///
/// ```
/// use callosum_mio::RemoveCause;
///
/// assert_eq!(RemoveCause::UnsolicitedBytes.to_string(), "bytes received while idle");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoveCause {
    /// The server closed it (a read returned 0).
    PeerClosed,
    /// A read or write failed.
    Failed(io::ErrorKind),
    /// The server sent bytes while it was idle: nothing may arrive unasked.
    UnsolicitedBytes,
    /// Every token of the client's [`TokenRange`] was in use: it was never offered.
    OutOfTokens,
    /// The application gave it back broken, with [`Client::checkin_broken`].
    Broken,
    /// Its server was removed with [`Client::remove_server`].
    ServerDropped,
}

impl fmt::Display for RemoveCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveCause::PeerClosed => f.write_str("closed by the server"),
            RemoveCause::Failed(kind) => write!(f, "failed: {kind}"),
            RemoveCause::UnsolicitedBytes => f.write_str("bytes received while idle"),
            RemoveCause::OutOfTokens => f.write_str("no token left"),
            RemoveCause::Broken => f.write_str("returned broken"),
            RemoveCause::ServerDropped => f.write_str("its server was removed"),
        }
    }
}

impl From<Ended> for RemoveCause {
    fn from(ended: Ended) -> RemoveCause {
        match ended {
            Ended::PeerClosed => RemoveCause::PeerClosed,
            Ended::Failed(kind) => RemoveCause::Failed(kind),
        }
    }
}

/// Names one lease while it is out; readiness events of a leased connection carry it.
///
/// ```no_run
/// # fn demo(client: &mut callosum_mio::Client) {
/// if let Some(lease) = client.checkout() {
///     let id: callosum_mio::LeaseId = lease.id();
///     println!("{id}");
///     client.checkin(lease);
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pool::PooledId);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease of {}", self.0)
    }
}

/// A connection lent by [`Client::checkout`]: use it through [`Client::conn_mut`], then
/// give it back with [`Client::checkin`] or [`Client::checkin_broken`]. It cannot be
/// copied, so it cannot be returned twice.
///
/// ```no_run
/// # fn demo(client: &mut callosum_mio::Client) {
/// let lease = client.checkout().expect("an idle connection");
/// println!("slot {} on {}", lease.slot(), lease.addr());
/// client.checkin(lease);
/// # }
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lease must be checked in: a dropped one leaks its socket and its place in the pool"]
pub struct Lease {
    id: pool::PooledId,
    index: u32,
    generation: u32,
    server: ServerId,
    addr: SocketAddr,
    slot: u32,
}

impl Lease {
    /// This lease's id, as readiness events carry it.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client, event: callosum_mio::ClientEvent) {
    /// # let lease = client.checkout().unwrap();
    /// if event == (callosum_mio::ClientEvent::Readable { lease: lease.id() }) { /* read */ }
    /// # client.checkin(lease); }
    /// ```
    pub fn id(&self) -> LeaseId {
        LeaseId(self.id)
    }

    /// The server the connection is to.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// # let lease = client.checkout().unwrap();
    /// let server: callosum_mio::ServerId = lease.server();
    /// # let _ = server; client.checkin(lease); }
    /// ```
    pub fn server(&self) -> ServerId {
        self.server
    }

    /// The server's address.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// # let lease = client.checkout().unwrap();
    /// println!("{}", lease.addr());
    /// # client.checkin(lease); }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection's slot on its server.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// # let lease = client.checkout().unwrap();
    /// println!("{}", lease.slot());
    /// # client.checkin(lease); }
    /// ```
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// What happened on a [`Client`]; drain them with [`Client::poll_event`].
///
/// `Kept`, `Rejected`, `Evicted`, `Unreachable` and `HandshakeFailed` are the outcomes of
/// the rover's attempts, one per attempt that ended by itself.
///
/// ```
/// use callosum_mio::ClientEvent;
///
/// fn describe(event: &ClientEvent) -> Option<String> {
///     Some(match event {
///         ClientEvent::Kept { slot, addr, .. } => format!("kept slot {slot} from {addr}"),
///         ClientEvent::Rejected { slot, addr, .. } => format!("rejected slot {slot} from {addr}"),
///         ClientEvent::Evicted { slot, addr, .. } => format!("evicted slot {slot} from {addr}"),
///         ClientEvent::Unreachable { addr, reason, .. } => format!("unreachable {addr}: {reason}"),
///         ClientEvent::HandshakeFailed { addr, reason, .. } => {
///             format!("handshake failed {addr}: {reason}")
///         }
///         _ => return None,
///     })
/// }
/// assert_eq!(describe(&ClientEvent::NoServers), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A new connection joined the pool (it had room).
    Kept {
        /// Its server.
        server: ServerId,
        /// The server's address.
        addr: SocketAddr,
        /// Its slot.
        slot: u32,
    },
    /// A new connection was not kept (its slot is not below the highest held) and is closed.
    Rejected {
        /// Its server.
        server: ServerId,
        /// The server's address.
        addr: SocketAddr,
        /// Its slot.
        slot: u32,
    },
    /// The connection with the highest slot left the full pool to make room for a better
    /// one (reported just before as `Kept`); it is closed now if idle, or when checked in.
    Evicted {
        /// The evicted connection's server.
        server: ServerId,
        /// The evicted connection's server address.
        addr: SocketAddr,
        /// The evicted connection's slot.
        slot: u32,
    },
    /// An attempt could not connect.
    Unreachable {
        /// The server tried.
        server: ServerId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: ConnectFailure,
    },
    /// An attempt connected but got no valid slot line in time; its socket is closed.
    HandshakeFailed {
        /// The server tried.
        server: ServerId,
        /// Its address.
        addr: SocketAddr,
        /// Why (the decoder's error, the end of stream, a timeout).
        reason: HandshakeFailure,
    },
    /// An attempt was due but no server could be tried (none added, or all backing off).
    NoServers,
    /// An idle connection broke (closed by its server, failed, or sent bytes unasked) and
    /// was taken out of the pool and closed; or a checked-in one was found or declared
    /// broken; or its server was removed.
    Removed {
        /// Its server.
        server: ServerId,
        /// The server's address.
        addr: SocketAddr,
        /// Its slot.
        slot: u32,
        /// Why.
        cause: RemoveCause,
    },
    /// A leased connection may have bytes (or its end) to read.
    Readable {
        /// The lease.
        lease: LeaseId,
    },
    /// A leased connection can take writes.
    Writable {
        /// The lease.
        lease: LeaseId,
    },
}

/// The connections a [`Client`] holds on one server, in [`ClientStatus::servers`].
///
/// ```
/// let client = callosum_mio::Client::new(Default::default(), 1).unwrap();
/// assert!(client.status().servers.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHeld {
    /// The server's id.
    pub server: ServerId,
    /// Its address.
    pub addr: SocketAddr,
    /// The slots of the connections held on it (idle or leased, not evicted), lowest first.
    pub slots: Vec<u32>,
}

/// A snapshot of a [`Client`].
///
/// ```
/// let client = callosum_mio::Client::new(Default::default(), 1).unwrap();
/// let status = client.status();
/// assert_eq!((status.pool.held, status.in_flight), (0, 0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientStatus {
    /// The pool's counts by state.
    pub pool: PoolStatus,
    /// The rover's attempts in flight.
    pub in_flight: usize,
    /// Every server in the set, in the order added.
    pub servers: Vec<ServerHeld>,
}

/// The socket of one attempt in flight.
#[derive(Debug)]
struct AttemptSocket {
    attempt: AttemptId,
    stream: TcpStream,
    connected: bool,
    /// Bytes read so far, at most [`MAX_LINE_LEN`].
    received: usize,
    /// Bytes read after the slot line, for the application.
    rest: Vec<u8>,
}

/// Where a pooled connection stands, as the client tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    Idle,
    Leased,
    /// Evicted while leased: closed when it comes back.
    Evicted,
    /// Its server was removed while it was leased: closed when it comes back, and
    /// reported then.
    ServerDropped,
}

#[derive(Debug)]
struct Pooled {
    conn: Conn,
    /// The pool's current id: the idle id, or the lease's.
    id: pool::PooledId,
    server: ServerId,
    addr: SocketAddr,
    slot: u32,
    held: Held,
}

#[derive(Debug, Default)]
struct Entry {
    generation: u32,
    live: Option<Pooled>,
}

/// A rover and a pool with their sockets on a `mio` loop; see the [crate docs](crate) for
/// the call order.
///
/// Tokens: the first [`RoverConfig::max_in_flight`] of its [`TokenRange`] are the
/// attempts', the rest the pooled connections'. Give it at least `max_in_flight +
/// max_slots` tokens, plus one for each connection you may keep leased after it is evicted.
///
/// ```
/// use callosum_mio::{Client, ClientConfig, ClientEvent, Server, TokenRange};
/// use mio::{Events, Poll};
/// use std::time::{Duration, Instant};
///
/// let mut poll = Poll::new()?;
/// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default())?;
/// server.register(poll.registry(), TokenRange::new(0..1000))?;
/// let mut client = Client::new(ClientConfig::default(), 7).unwrap();
/// client.add_server(server.local_addr()?);
/// client.register(poll.registry(), TokenRange::new(1000..1200))?;
/// client.start();
///
/// let mut events = Events::with_capacity(64);
/// let deadline = Instant::now() + Duration::from_secs(10);
/// while client.status().pool.held < 100 && Instant::now() < deadline {
///     let timeout = callosum_mio::timeout_until([client.poll_timeout(), Some(deadline)]);
///     poll.poll(&mut events, timeout)?;
///     for event in &events {
///         server.handle_event(event);
///         client.handle_event(event);
///     }
///     client.handle_timeout();
///     while server.poll_event().is_some() {}
///     while client.poll_event().is_some() {}
/// }
/// assert_eq!(client.status().pool.held, 100);
/// let lease = client.checkout().unwrap();
/// assert_eq!(lease.slot(), 0);
/// client.checkin(lease);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    pool: Pool<u32>,
    rover: Rover,
    clock: Clock,
    registry: Option<Registry>,
    tokens: TokenRange,
    /// The servers in the set, in the order added.
    servers: Vec<(ServerId, SocketAddr)>,
    next_server: u32,
    /// Attempt sockets by [`AttemptId::index`].
    attempts: Vec<Option<AttemptSocket>>,
    /// Pooled connections; the token of index `i` is `max_in_flight + i`.
    conns: Vec<Entry>,
    free: Vec<u32>,
    events: VecDeque<ClientEvent>,
}

impl Client {
    /// A client with an empty pool and a stopped rover; `seed` fixes their random choices.
    ///
    /// ```
    /// use callosum_mio::{Client, ClientConfig};
    ///
    /// let client = Client::new(ClientConfig::default(), 42).unwrap();
    /// assert_eq!(client.status().pool.held, 0);
    /// ```
    pub fn new(config: ClientConfig, seed: u64) -> Result<Client, ClientConfigError> {
        let max_in_flight = config.rover.max_in_flight;
        let pool = Pool::new(config.pool, seed).map_err(ClientConfigError::Pool)?;
        // A different stream for the rover, so its choices do not mirror the pool's.
        let rover = Rover::new(config.rover, seed ^ 0x9e37_79b9_7f4a_7c15)
            .map_err(ClientConfigError::Rover)?;
        Ok(Client {
            pool,
            rover,
            clock: Clock::new(),
            registry: None,
            tokens: TokenRange::new(0..0),
            servers: Vec::new(),
            next_server: 0,
            attempts: (0..max_in_flight).map(|_| None).collect(),
            conns: Vec::new(),
            free: Vec::new(),
            events: VecDeque::new(),
        })
    }

    /// Adds a server to the rover's set and returns its id; an address already in the set
    /// keeps its id.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// let a = client.add_server("127.0.0.1:4000".parse().unwrap());
    /// let b = client.add_server("127.0.0.1:4001".parse().unwrap());
    /// assert_ne!(a, b);
    /// assert_eq!(client.add_server("127.0.0.1:4000".parse().unwrap()), a);
    /// ```
    pub fn add_server(&mut self, addr: SocketAddr) -> ServerId {
        if let Some(&(id, _)) = self.servers.iter().find(|(_, known)| *known == addr) {
            return id;
        }
        let id = ServerId(self.next_server);
        self.next_server = self.next_server.wrapping_add(1);
        self.servers.push((id, addr));
        self.rover.add_server(id);
        self.drive(self.clock.now());
        id
    }

    /// Drops a server from the set: its attempts in flight are closed and nothing of them
    /// is delivered; its idle connections are closed now and its leased ones when they are
    /// checked in, each reported with [`ClientEvent::Removed`] (cause
    /// [`RemoveCause::ServerDropped`]). Their places in the pool are free at once. `false`
    /// if it was not in the set.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// let id = client.add_server("127.0.0.1:4000".parse().unwrap());
    /// assert!(client.remove_server(id));
    /// assert!(!client.remove_server(id));
    /// ```
    pub fn remove_server(&mut self, server: ServerId) -> bool {
        if !self.rover.remove_server(server) {
            return false;
        }
        self.servers.retain(|(id, _)| *id != server);
        for evicted in self.pool.remove_server(server) {
            match evicted {
                Evicted::Idle { slot, conn, .. } => {
                    let addr = self.conns[conn as usize].live.as_ref().map(|p| p.addr);
                    self.close_conn(conn);
                    if let Some(addr) = addr {
                        self.events.push_back(ClientEvent::Removed {
                            server,
                            addr,
                            slot,
                            cause: RemoveCause::ServerDropped,
                        });
                    }
                }
                Evicted::Leased { id, .. } => {
                    if let Some(pooled) = self.pooled_with_id(id) {
                        pooled.held = Held::ServerDropped;
                    }
                }
            }
        }
        self.drive(self.clock.now());
        true
    }

    /// Registers with `registry`: the client keeps a clone of it to register its sockets
    /// with tokens from `tokens` (see the type's docs for how many). Attempts due before this
    /// start now. A client registers once.
    ///
    /// ```
    /// # use callosum_mio::{Client, TokenRange};
    /// let poll = mio::Poll::new().unwrap();
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// assert!(client.register(poll.registry(), TokenRange::new(0..4)).is_err()); // max_in_flight is 4
    /// client.register(poll.registry(), TokenRange::new(0..200)).unwrap();
    /// assert!(client.handles(mio::Token(199)));
    /// ```
    pub fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        if self.registry.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the client is registered already",
            ));
        }
        if tokens.len() <= self.attempts.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a client needs more tokens than max_in_flight",
            ));
        }
        self.registry = Some(registry.try_clone()?);
        self.tokens = tokens;
        self.drive(self.clock.now());
        Ok(())
    }

    /// Whether `token` is one of this client's (after [`Client::register`]).
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let client = Client::new(Default::default(), 1).unwrap();
    /// assert!(!client.handles(mio::Token(0)));
    /// ```
    pub fn handles(&self, token: Token) -> bool {
        self.registry.is_some() && self.tokens.contains(token)
    }

    /// Starts the rover: one attempt at once, then one per interval, and fill mode while
    /// the pool wants more.
    ///
    /// ```
    /// # use callosum_mio::{Client, ClientEvent, TokenRange};
    /// let poll = mio::Poll::new().unwrap();
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// client.register(poll.registry(), TokenRange::new(0..200)).unwrap();
    /// client.start();
    /// assert_eq!(client.poll_event(), Some(ClientEvent::NoServers));
    /// ```
    pub fn start(&mut self) {
        let now = self.clock.now();
        self.rover.set_demand(self.pool.wanted(), now);
        self.rover.start(now);
        self.drive(now);
    }

    /// Stops the rover: no more attempts, and those in flight are closed. The pool stays.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// client.start();
    /// client.stop();
    /// assert_eq!(client.poll_timeout(), None);
    /// ```
    pub fn stop(&mut self) {
        self.rover.stop();
        self.drive(self.clock.now());
    }

    /// Handles one `mio` event for one of this client's tokens (others are ignored):
    /// connects, reads slot lines, hands connections to the pool, watches idle connections
    /// and reports leased ones' readiness. Drain [`Client::poll_event`] afterwards.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client, events: &mio::Events) {
    /// for event in events {
    ///     if client.handles(event.token()) {
    ///         client.handle_event(event);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn handle_event(&mut self, event: &Event) {
        if !self.handles(event.token()) {
            return;
        }
        let Some(offset) = self.tokens.offset(event.token()) else {
            return;
        };
        if offset < self.attempts.len() {
            self.attempt_event(offset, event);
        } else {
            self.conn_event(offset - self.attempts.len(), event);
        }
    }

    /// Lets time pass: ends attempts past their deadline and launches those due. Call it
    /// after every poll (it does nothing when nothing is due).
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// client.handle_timeout();
    /// assert_eq!(client.poll_event(), None);
    /// ```
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        self.rover.handle_timeout(now);
        self.drive(now);
    }

    /// When [`Client::handle_timeout`] next has something to do; `None`: nothing to wait
    /// for. It may be in the past (then poll without waiting).
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// client.add_server("127.0.0.1:9".parse().unwrap());
    /// assert_eq!(client.poll_timeout(), None);
    /// client.start();
    /// assert!(client.poll_timeout().is_some());
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rover
            .poll_timeout()
            .and_then(|deadline| self.clock.std(deadline))
    }

    /// The next thing that happened, if any.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// assert_eq!(client.poll_event(), None);
    /// ```
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front();
        #[cfg(feature = "log")]
        match &event {
            Some(ready @ (ClientEvent::Readable { .. } | ClientEvent::Writable { .. })) => {
                log::trace!("client: {ready:?}");
            }
            Some(other) => log::debug!("client: {other:?}"),
            None => {}
        }
        event
    }

    /// Lends out the idle connection with the lowest slot (ties broken at random); `None`
    /// if none is idle.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// assert!(client.checkout().is_none());
    /// assert_eq!(client.stats().empty_checkouts, 1);
    /// ```
    ///
    /// A lease must be checked in: one dropped leaks its socket and its place in the pool,
    /// so ignoring the result is flagged (`let _ = client.checkout()` silences any
    /// `#[must_use]`, by Rust's rules: do not write it).
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// fn demo(client: &mut callosum_mio::Client) {
    ///     client.checkout();
    /// }
    /// ```
    #[must_use = "a lease must be checked in: a dropped one leaks its socket and its place in the pool"]
    pub fn checkout(&mut self) -> Option<Lease> {
        let lease = self.pool.checkout()?;
        let entry = &mut self.conns[lease.conn as usize];
        let Some(pooled) = entry.live.as_mut() else {
            unreachable!("the pool only holds live connections")
        };
        pooled.id = lease.id;
        pooled.held = Held::Leased;
        Some(Lease {
            id: lease.id,
            index: lease.conn,
            generation: entry.generation,
            server: lease.server,
            addr: pooled.addr,
            slot: lease.slot,
        })
    }

    /// The leased connection, to read and write; `None` for a lease of another client.
    ///
    /// ```no_run
    /// use std::io::Write;
    /// # fn demo(client: &mut callosum_mio::Client) -> std::io::Result<()> {
    /// let lease = client.checkout().unwrap();
    /// client.conn_mut(&lease).unwrap().write_all(b"GET\n")?;
    /// # client.checkin(lease); Ok(()) }
    /// ```
    pub fn conn_mut(&mut self, lease: &Lease) -> Option<&mut Conn> {
        self.pooled_mut(lease).map(|pooled| &mut pooled.conn)
    }

    /// Gives a leased connection back. It is idle again, unless it was evicted meanwhile
    /// (then it is closed; if its server was removed, with [`ClientEvent::Removed`]) or is
    /// found broken (a read or write through it hit the end, the server closed it or sent
    /// bytes, or bytes that came with the slot line are still unread, [`Conn::buffered`]:
    /// then it is removed, with [`ClientEvent::Removed`]).
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// let lease = client.checkout().unwrap();
    /// client.checkin(lease);
    /// assert_eq!(client.status().pool.leased, 0);
    /// # }
    /// ```
    pub fn checkin(&mut self, lease: Lease) {
        let Some(pooled) = self.pooled_mut(&lease) else {
            return;
        };
        if let Some(ended) = pooled.conn.ended() {
            self.remove_broken(lease.index, ended.into());
        } else if !pooled.conn.buffered().is_empty() {
            // The next lessee would read them as the start of its own reply.
            self.remove_broken(lease.index, RemoveCause::UnsolicitedBytes);
        } else {
            match self.pool.checkin(lease.id, lease.index) {
                Ok(Checkin::Idle(idle_id)) => {
                    if let Some(pooled) = self.pooled_mut(&lease) {
                        pooled.held = Held::Idle;
                        // The lease's id is stale now: a later removal needs this one.
                        pooled.id = idle_id;
                    }
                    // Anything that arrived and was not read would otherwise go unnoticed:
                    // no new event comes for bytes already there.
                    self.probe_idle(lease.index);
                }
                Ok(Checkin::Close(index)) => {
                    let dropped = self.conns[index as usize]
                        .live
                        .as_ref()
                        .filter(|pooled| pooled.held == Held::ServerDropped)
                        .map(|pooled| (pooled.server, pooled.addr, pooled.slot));
                    self.close_conn(index);
                    if let Some((server, addr, slot)) = dropped {
                        self.events.push_back(ClientEvent::Removed {
                            server,
                            addr,
                            slot,
                            cause: RemoveCause::ServerDropped,
                        });
                    }
                }
                // Not a current lease of this client's pool (a lease of another client that
                // happens to match): nothing of ours to return.
                Err(_) => {}
            }
        }
        self.drive(self.clock.now());
    }

    /// Gives back a leased connection that the application found broken: it is removed
    /// from the pool and closed, with [`ClientEvent::Removed`] (cause
    /// [`RemoveCause::Broken`]).
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// let lease = client.checkout().unwrap();
    /// client.checkin_broken(lease);
    /// assert_eq!(client.stats().removed_broken, 1);
    /// # }
    /// ```
    pub fn checkin_broken(&mut self, lease: Lease) {
        if self.pooled_mut(&lease).is_none() {
            return;
        }
        self.remove_broken(lease.index, RemoveCause::Broken);
        self.drive(self.clock.now());
    }

    /// The pool's counts, the attempts in flight, and the slots held on each server.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default(), 1).unwrap();
    /// let addr = "127.0.0.1:4000".parse().unwrap();
    /// client.add_server(addr);
    /// assert_eq!(client.status().servers[0].addr, addr);
    /// assert!(client.status().servers[0].slots.is_empty());
    /// ```
    pub fn status(&self) -> ClientStatus {
        let servers = self
            .servers
            .iter()
            .map(|&(server, addr)| {
                let mut slots: Vec<u32> = self
                    .pool
                    .connections()
                    .filter(|info| info.server == server && info.state != pool::ConnState::Evicted)
                    .map(|info| info.slot)
                    .collect();
                slots.sort_unstable();
                ServerHeld {
                    server,
                    addr,
                    slots,
                }
            })
            .collect();
        ClientStatus {
            pool: self.pool.status(),
            in_flight: self.rover.in_flight(),
            servers,
        }
    }

    /// The pool's counters: offered, kept, rejected, replaced, checkouts, removed as broken.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let client = Client::new(Default::default(), 1).unwrap();
    /// assert_eq!(client.stats().offered, 0);
    /// ```
    pub fn stats(&self) -> &PoolStats {
        self.pool.stats()
    }

    fn pooled_mut(&mut self, lease: &Lease) -> Option<&mut Pooled> {
        self.conns
            .get_mut(lease.index as usize)
            .filter(|entry| entry.generation == lease.generation)
            .and_then(|entry| entry.live.as_mut())
            .filter(|pooled| pooled.id == lease.id)
    }

    /// The pooled connection the pool knows as `id`.
    fn pooled_with_id(&mut self, id: pool::PooledId) -> Option<&mut Pooled> {
        self.conns
            .iter_mut()
            .filter_map(|entry| entry.live.as_mut())
            .find(|pooled| pooled.id == id)
    }

    fn addr_of(&self, server: ServerId) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|(id, _)| *id == server)
            .map(|&(_, addr)| addr)
    }

    /// Carries out what the rover and the pool decided until neither has more to say.
    fn drive(&mut self, now: CoreInstant) {
        let Some(registry) = self.registry.take() else {
            return;
        };
        loop {
            // After every input and every drain, not only when the pool's count changed: a
            // delivered connection may never reach the pool (no token, a failed
            // re-register), and the rover counted it against the demand. The rover takes
            // the connections it still queues off `wanted`, so this launches nothing extra.
            self.rover.set_demand(self.pool.wanted(), now);
            let mut progressed = false;
            // Events first: an attempt that just read its line left its index free, and the
            // rover may already have queued a new attempt there; the finished attempt's
            // socket must be taken before the new one's takes its place.
            while let Some(event) = self.rover.poll_event() {
                progressed = true;
                self.rover_event(&registry, event);
            }
            while let Some(action) = self.rover.poll_action() {
                progressed = true;
                match action {
                    Action::Connect { attempt, server } => {
                        self.connect(&registry, attempt, server, now);
                    }
                    Action::Close { attempt } => {
                        if let Some(mut socket) = self.take_attempt(attempt) {
                            let _ = registry.deregister(&mut socket.stream);
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        self.registry = Some(registry);
    }

    fn connect(
        &mut self,
        registry: &Registry,
        attempt: AttemptId,
        server: ServerId,
        now: CoreInstant,
    ) {
        let index = attempt.index() as usize;
        let (Some(addr), Some(token)) = (self.addr_of(server), self.tokens.token(index)) else {
            unreachable!("the rover connects to servers in the set, within max_in_flight")
        };
        let opened = TcpStream::connect(addr).and_then(|mut stream| {
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.attempts[index] = Some(AttemptSocket {
                    attempt,
                    stream,
                    connected: false,
                    received: 0,
                    rest: Vec::new(),
                });
            }
            Err(error) => {
                let _ = self
                    .rover
                    .handle_connect_failed(attempt, connect_failure(&error), now);
            }
        }
    }

    fn take_attempt(&mut self, attempt: AttemptId) -> Option<AttemptSocket> {
        let slot = self.attempts.get_mut(attempt.index() as usize)?;
        if slot
            .as_ref()
            .is_some_and(|socket| socket.attempt == attempt)
        {
            slot.take()
        } else {
            None
        }
    }

    fn rover_event(&mut self, registry: &Registry, event: rover::Event) {
        // The rover reports only servers in the set: it withdraws a dropped server's
        // connections, and its queue is drained after every input, before the user can
        // drop another server.
        match event {
            rover::Event::Connection {
                attempt,
                server,
                slot,
            } => {
                if let (Some(socket), Some(addr)) =
                    (self.take_attempt(attempt), self.addr_of(server))
                {
                    self.deliver(registry, socket, server, addr, slot);
                }
            }
            rover::Event::Unreachable { server, reason, .. } => {
                if let Some(addr) = self.addr_of(server) {
                    self.events.push_back(ClientEvent::Unreachable {
                        server,
                        addr,
                        reason,
                    });
                }
            }
            rover::Event::HandshakeFailed { server, reason, .. } => {
                if let Some(addr) = self.addr_of(server) {
                    self.events.push_back(ClientEvent::HandshakeFailed {
                        server,
                        addr,
                        reason,
                    });
                }
            }
            rover::Event::NoServers => self.events.push_back(ClientEvent::NoServers),
        }
    }

    /// Hands a connection that read its slot line to the pool, and closes what the pool
    /// lets go of.
    fn deliver(
        &mut self,
        registry: &Registry,
        socket: AttemptSocket,
        server: ServerId,
        addr: SocketAddr,
        slot: u32,
    ) {
        let AttemptSocket {
            mut stream, rest, ..
        } = socket;
        let Some((index, token)) = self.free_index() else {
            let _ = registry.deregister(&mut stream);
            self.events.push_back(ClientEvent::Removed {
                server,
                addr,
                slot,
                cause: RemoveCause::OutOfTokens,
            });
            return;
        };
        // Move the socket to its pooled token; re-arming reports bytes already waiting.
        let moved =
            registry.reregister(&mut stream, token, Interest::READABLE | Interest::WRITABLE);
        let entry = &mut self.conns[index as usize];
        let offer = self.pool.offer(server, slot, index);
        let (kept, evicted) = match offer {
            Offer::Kept(id) => (id, None),
            Offer::Replaced { kept, evicted } => (kept, Some(evicted)),
            Offer::Rejected(index) => {
                self.free.push(index);
                let _ = registry.deregister(&mut stream);
                self.events
                    .push_back(ClientEvent::Rejected { server, addr, slot });
                return;
            }
        };
        entry.live = Some(Pooled {
            conn: Conn::new(stream, rest, Vec::new()),
            id: kept,
            server,
            addr,
            slot,
            held: Held::Idle,
        });
        self.events
            .push_back(ClientEvent::Kept { server, addr, slot });
        if let Some(evicted) = evicted {
            self.evict(evicted);
        }
        if let Err(error) = moved {
            self.remove_broken(index, RemoveCause::Failed(error.kind()));
        }
    }

    /// Reports an eviction, closing the evicted connection now if it was idle.
    fn evict(&mut self, evicted: Evicted<u32>) {
        let (server, slot, addr) = match evicted {
            Evicted::Idle {
                server, slot, conn, ..
            } => {
                let addr = self.conns[conn as usize].live.as_ref().map(|p| p.addr);
                self.close_conn(conn);
                (server, slot, addr)
            }
            Evicted::Leased { id, server, slot } => {
                let addr = self.pooled_with_id(id).map(|pooled| {
                    pooled.held = Held::Evicted;
                    pooled.addr
                });
                (server, slot, addr)
            }
        };
        if let Some(addr) = addr {
            self.events
                .push_back(ClientEvent::Evicted { server, addr, slot });
        }
    }

    /// An event on an attempt's socket: the connect's completion, then the slot line.
    fn attempt_event(&mut self, index: usize, event: &Event) {
        let now = self.clock.now();
        let Some(socket) = self.attempts[index].as_mut() else {
            return;
        };
        let attempt = socket.attempt;
        if !socket.connected {
            let failure = match socket.stream.take_error() {
                Ok(Some(error)) | Err(error) => Some(error),
                Ok(None) => None,
            };
            if let Some(error) = failure {
                let _ = self
                    .rover
                    .handle_connect_failed(attempt, connect_failure(&error), now);
                self.drive(now);
                return;
            }
            // Writable (or readable) with no error and a peer: the connect completed.
            match socket.stream.peer_addr() {
                Ok(_) => {
                    socket.connected = true;
                    let _ = self.rover.handle_connected(attempt, now);
                }
                Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                    if !(event.is_error() || event.is_read_closed() || event.is_write_closed()) {
                        return; // still connecting
                    }
                    let _ = self
                        .rover
                        .handle_connect_failed(attempt, ConnectFailure::Other, now);
                    self.drive(now);
                    return;
                }
                Err(error) => {
                    let _ = self
                        .rover
                        .handle_connect_failed(attempt, connect_failure(&error), now);
                    self.drive(now);
                    return;
                }
            }
        }
        self.read_slot_line(index, attempt, now);
        self.drive(now);
    }

    /// Reads until the slot line is complete, the attempt ends, or the socket would block;
    /// never past the read that completes the line, and never more than [`MAX_LINE_LEN`]
    /// bytes in all (the longest line: by then the decoder has decided), so a hostile
    /// server's stream is cut short. What follows the line in its read goes to the
    /// application; anything later is the connection's, found unsolicited once it is idle.
    fn read_slot_line(&mut self, index: usize, attempt: AttemptId, now: CoreInstant) {
        let mut buf = [0u8; MAX_LINE_LEN];
        loop {
            let Some(socket) = self.attempts[index]
                .as_mut()
                .filter(|socket| socket.attempt == attempt)
            else {
                return;
            };
            let room = MAX_LINE_LEN - socket.received;
            if room == 0 {
                return;
            }
            match socket.stream.read(&mut buf[..room]) {
                Ok(0) => {
                    let _ = self.rover.handle_closed(attempt, now);
                    return;
                }
                Ok(n) => match self.rover.handle_received(attempt, &buf[..n], now) {
                    Ok(consumed) => {
                        socket.received += n;
                        socket.rest.extend_from_slice(&buf[consumed..n]);
                        if !self.rover.attempts().any(|info| info.attempt == attempt) {
                            return; // the line is complete, or failed
                        }
                    }
                    Err(_) => return,
                },
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    let _ = self.rover.handle_read_failed(attempt, now);
                    return;
                }
            }
        }
    }

    /// An event on a pooled connection: an idle one is checked at once, a leased one's
    /// readiness goes to the application.
    fn conn_event(&mut self, index: usize, event: &Event) {
        let Some(pooled) = self.conns.get(index).and_then(|entry| entry.live.as_ref()) else {
            return;
        };
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        match pooled.held {
            Held::Idle => {
                if readable {
                    self.probe_idle(index as u32);
                    self.drive(self.clock.now());
                }
            }
            Held::Leased | Held::Evicted | Held::ServerDropped => {
                let lease = LeaseId(pooled.id);
                if readable {
                    self.events.push_back(ClientEvent::Readable { lease });
                }
                if event.is_writable() {
                    self.events.push_back(ClientEvent::Writable { lease });
                }
            }
        }
    }

    /// Reads an idle connection once: anything but "would block" means it is broken
    /// (closed, failed, or bytes nobody asked for), and it is removed.
    fn probe_idle(&mut self, index: u32) {
        let Some(pooled) = self.conns[index as usize].live.as_mut() else {
            return;
        };
        let mut byte = [0u8; 1];
        let cause = loop {
            match pooled.conn.read_socket(&mut byte) {
                Ok(0) => break RemoveCause::PeerClosed,
                Ok(_) => break RemoveCause::UnsolicitedBytes,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_transient(&error) => return,
                Err(error) => break RemoveCause::Failed(error.kind()),
            }
        };
        self.remove_broken(index, cause);
    }

    /// Takes a broken connection out of the pool, closes it and reports it.
    ///
    /// If the pool does not know the id on record (a bookkeeping slip, never the peer's
    /// doing), the connection is left as it is: closing it would leave the pool lending a
    /// record that is gone. A lessee that finds it broken returns it with
    /// [`Client::checkin_broken`], which removes it under its lease's fresh id.
    fn remove_broken(&mut self, index: u32, cause: RemoveCause) {
        let Some(pooled) = self.conns[index as usize].live.as_ref() else {
            return;
        };
        let (id, server, addr, slot) = (pooled.id, pooled.server, pooled.addr, pooled.slot);
        match self.pool.remove(id) {
            Ok(_) => {
                self.close_conn(index);
                self.events.push_back(ClientEvent::Removed {
                    server,
                    addr,
                    slot,
                    cause,
                });
            }
            Err(_error) => {
                #[cfg(feature = "log")]
                log::error!("client: slot {slot} from {addr} not removed ({cause}): {_error}");
            }
        }
    }

    /// Closes the pooled connection at `index` and frees its record (the pool has let go).
    fn close_conn(&mut self, index: u32) {
        let entry = &mut self.conns[index as usize];
        if let Some(mut pooled) = entry.live.take() {
            entry.generation = entry.generation.wrapping_add(1);
            self.free.push(index);
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(pooled.conn.stream_mut());
            }
        }
    }

    /// A free record for a pooled connection and its token, growing the table if needed.
    fn free_index(&mut self) -> Option<(u32, Token)> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.conns.len()).ok()?;
                self.tokens.token(self.attempts.len() + index as usize)?;
                self.conns.push(Entry::default());
                index
            }
        };
        let token = self.tokens.token(self.attempts.len() + index as usize)?;
        Some((index, token))
    }
}

/// The rover's name for a connect error.
fn connect_failure(error: &io::Error) -> ConnectFailure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::ConnectionReset => ConnectFailure::Reset,
        io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
        _ => ConnectFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_connection_under_a_stale_id_does_not_panic() {
        let poll = mio::Poll::new().unwrap();
        let mut client = Client::new(ClientConfig::default(), 1).unwrap();
        client
            .register(poll.registry(), TokenRange::new(0..200))
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        let server = client.add_server(addr);
        let Offer::Kept(id) = client.pool.offer(server, 0, 0) else {
            panic!("an empty pool keeps")
        };
        client.conns.push(Entry {
            generation: 0,
            live: Some(Pooled {
                conn: Conn::new(stream, Vec::new(), Vec::new()),
                id,
                server,
                addr,
                slot: 0,
                held: Held::Idle,
            }),
        });
        // The id on record goes stale, as it did when checkin did not record the new one.
        let lease = client.pool.checkout().unwrap();
        assert!(matches!(
            client.pool.checkin(lease.id, lease.conn),
            Ok(Checkin::Idle(_))
        ));
        client.conns[0].live.as_mut().unwrap().id = lease.id;
        client.remove_broken(0, RemoveCause::PeerClosed);
        assert_eq!(client.status().pool.idle, 1);
        assert!(client.conns[0].live.is_some());
        assert_eq!(client.poll_event(), None);
    }

    #[test]
    fn connect_errors_map_to_the_rover_failures() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_failure(&refused), ConnectFailure::Refused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(connect_failure(&reset), ConnectFailure::Reset);
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(connect_failure(&timed_out), ConnectFailure::TimedOut);
        let other = io::Error::from(io::ErrorKind::AddrNotAvailable);
        assert_eq!(connect_failure(&other), ConnectFailure::Other);
    }
}

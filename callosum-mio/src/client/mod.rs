//! [`Client`]: the core's client state machine with its sockets, as a component of the
//! user's `mio` loop.
//!
//! Every decision (when to connect where, what a slot line says, which connection to keep,
//! evict or lend, what a connection's end means) is made by
//! [`ClientCore`](callosum_proto::client::ClientCore). This module only opens, reads and
//! closes sockets as it says, in three parts:
//!
//! - this file: the public calls, each of which feeds the core one input and then carries out
//!   its outputs ([`Client::drive`]);
//! - `sockets`: the two tables of sockets (attempts by their index, pooled connections by
//!   their key) and what their readiness means;
//! - `lease`: lending connections to the application, taking back the leases it dropped
//!   (each public `&mut self` call starts with that), and telling it when leased connections
//!   are ready.

mod lease;
mod resolve;
mod sockets;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callosum_proto::adapter::{self, Clock};
use callosum_proto::client::{ClientCore, EventQueue, Output, ServerSpec};
use callosum_proto::slab::{Key, Slab};
use callosum_proto::{ClientConfig, Instant as CoreInstant};
use mio::event::Event;
use mio::{Registry, Token};

use resolve::Lookups;
pub use resolve::{Resolve, SystemResolver};

pub use lease::{Lease, LeaseReady};

use crate::{ClientConfigError, ClientEvent, ClientStatus, Failure, TokenRange};
use lease::{Dropped, ReadyQueue};
use sockets::{Attempt, Pooled};

/// The core's client with its sockets on a `mio` loop; see the [crate docs](crate) for the
/// call order.
///
/// Tokens: the first [`RoverConfig::max_in_flight`](crate::RoverConfig::max_in_flight) of
/// its [`TokenRange`] are the attempts', the rest the pooled connections'.
/// [`Client::register`] refuses a range shorter than [`Client::tokens_needed`]:
/// `max_in_flight + 2 * max_slots + 1`, room for every attempt, every connection held, as
/// many again evicted while leased (each is closed when it is checked in), and the one
/// being offered to a full pool.
///
/// ```
/// use callosum_mio::{Client, ClientConfig, Server, TokenRange};
/// use mio::{Events, Poll};
/// use std::time::{Duration, Instant};
///
/// let mut poll = Poll::new()?;
/// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default())?;
/// server.register(poll.registry(), TokenRange::new(0..1000))?;
/// let mut config = ClientConfig::default();
/// config.seed = Some(7);
/// let mut client = Client::new(config).unwrap();
/// client.add_server(server.local_addr());
/// client.register(poll.registry(), TokenRange::new(1000..1000 + client.tokens_needed()))?;
///
/// let mut events = Events::with_capacity(64);
/// let deadline = Instant::now() + Duration::from_secs(10);
/// // Sized to demand, an idle client keeps two connections (`target`), 100 at most.
/// while client.status().pool.held < client.status().target && Instant::now() < deadline {
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
/// assert_eq!(client.status().pool.held, 2);
/// let lease = client.checkout().unwrap();
/// assert!(lease.slot() < 2, "one of the two lowest slots");
/// client.checkin(lease);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    core: ClientCore<Key>,
    clock: Clock,
    /// Set by [`Client::register`]; until then the core's outputs wait in its queue.
    registry: Option<Registry>,
    tokens: TokenRange,
    tokens_needed: usize,
    /// Attempt sockets by [`AttemptId::index`](callosum_proto::AttemptId::index).
    attempts: Vec<Option<Attempt>>,
    /// Pooled sockets; their key is the core's connection. Index `i` has the token
    /// `max_in_flight + i` of the range.
    pooled: Slab<Pooled>,
    events: EventQueue,
    ready: ReadyQueue,
    /// Leases dropped without a checkin, shared with every [`Lease`] lent.
    dropped: Arc<Dropped>,
    /// The core's last [`Output::Timeout`].
    timeout: Option<CoreInstant>,
    /// Host names being looked up, on threads of their own.
    lookups: Lookups,
}

/// How often a loop looks for the answer of a lookup under way (see [`Client::poll_timeout`]).
pub const LOOKUP_POLL: Duration = Duration::from_millis(10);

impl Client {
    /// A client with no servers yet, or why `config` cannot work. Its random choices come
    /// from `config.seed`, or a seed of [`adapter::random_seed`] when that is `None`.
    ///
    /// ```
    /// use callosum_mio::{Client, ClientConfig};
    ///
    /// let client = Client::new(ClientConfig::default()).unwrap();
    /// assert_eq!(client.status().pool.held, 0);
    /// let mut config = ClientConfig::default();
    /// config.pool.max_slots = 0;
    /// assert!(Client::new(config).is_err());
    /// ```
    pub fn new(config: ClientConfig) -> Result<Client, ClientConfigError> {
        Client::with_resolver(config, SystemResolver)
    }

    /// [`Client::new`] with host names looked up by `resolver` (on threads of their own)
    /// instead of the system's.
    ///
    /// ```
    /// use callosum_mio::{Client, ClientConfig, Resolve};
    /// use std::net::SocketAddr;
    ///
    /// struct NoNames;
    /// impl Resolve for NoNames {
    ///     fn lookup(&self, host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
    ///         Err(std::io::Error::other(format!("{host}: no such name")))
    ///     }
    /// }
    /// let client = Client::with_resolver(ClientConfig::default(), NoNames).unwrap();
    /// # drop(client);
    /// ```
    pub fn with_resolver(
        config: ClientConfig,
        resolver: impl Resolve,
    ) -> Result<Client, ClientConfigError> {
        let seed = config.seed.unwrap_or_else(adapter::random_seed);
        let max_in_flight = config.rover.max_in_flight;
        let tokens_needed = config
            .pool
            .max_slots
            .saturating_mul(2)
            .saturating_add(max_in_flight)
            .saturating_add(1);
        let events = EventQueue::new(config.events_capacity);
        let core = ClientCore::new(config, seed)?;
        Ok(Client {
            core,
            clock: Clock::new(),
            registry: None,
            tokens: TokenRange::new(0..0),
            tokens_needed,
            attempts: (0..max_in_flight).map(|_| None).collect(),
            pooled: Slab::with_capacity(0),
            events,
            ready: ReadyQueue::default(),
            dropped: Arc::default(),
            timeout: None,
            lookups: Lookups::new(Arc::new(resolver)),
        })
    }

    /// How many tokens [`Client::register`] needs: `max_in_flight + 2 * max_slots + 1`.
    ///
    /// ```
    /// # use callosum_mio::{Client, ClientConfig};
    /// let client = Client::new(ClientConfig::default()).unwrap();
    /// assert_eq!(client.tokens_needed(), 4 + 2 * 100 + 1);
    /// ```
    pub fn tokens_needed(&self) -> usize {
        self.tokens_needed
    }

    /// Adds a server, or a host name whose every address is one (looked up on a thread of
    /// its own, at once and again every
    /// [`ClientConfig::resolve_interval`](crate::ClientConfig::resolve_interval)); `false` if
    /// it was known already or the client is closed. The first server starts the rover (its
    /// first attempt waits for [`Client::register`]).
    ///
    /// ```
    /// # use callosum_mio::{Client, ServerSpec};
    /// # use std::net::SocketAddr;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// let name: ServerSpec = "localhost:4000".parse().unwrap();
    /// assert!(client.add_server(name));
    /// let server: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    /// assert!(client.add_server(server));
    /// assert!(!client.add_server(server), "an address is one server");
    /// assert_eq!(client.status().servers[0].server, server);
    /// ```
    pub fn add_server(&mut self, server: impl Into<ServerSpec>) -> bool {
        self.return_dropped();
        let added = self.core.add(&server.into(), self.clock.now());
        self.drive();
        added
    }

    /// Removes a server: its attempts in flight are closed and nothing of them is
    /// delivered; its idle connections are closed now and its leased ones when they are
    /// checked in, each reported at once as [`ClientEvent::Removed`] (cause
    /// [`RemoveCause::ServerRemoved`](crate::RemoveCause::ServerRemoved)). An address given
    /// directly is removed unless a host name still resolves to it (it stays while the name
    /// lists it). `false` if it was not added (the address directly, or the name).
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// # use std::net::SocketAddr;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// let server: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    /// client.add_server(server);
    /// assert!(client.remove_server(server));
    /// assert!(!client.remove_server(server));
    /// ```
    pub fn remove_server(&mut self, server: impl Into<ServerSpec>) -> bool {
        self.return_dropped();
        let removed = self.core.remove(&server.into(), self.clock.now());
        self.drive();
        removed
    }

    /// Registers with `registry`: the client keeps a clone of it to register its sockets
    /// with tokens from `tokens`, at least [`Client::tokens_needed`] of them. What the core
    /// asked for before (the first attempts) is done now. A client registers once.
    ///
    /// ```
    /// # use callosum_mio::{Client, TokenRange};
    /// let poll = mio::Poll::new().unwrap();
    /// let mut client = Client::new(Default::default()).unwrap();
    /// let needed = client.tokens_needed();
    /// assert!(client.register(poll.registry(), TokenRange::new(0..needed - 1)).is_err());
    /// client.register(poll.registry(), TokenRange::new(0..needed)).unwrap();
    /// assert!(client.handles(mio::Token(needed - 1)));
    /// ```
    pub fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        self.return_dropped();
        if self.registry.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the client is registered already",
            ));
        }
        if tokens.len() < self.tokens_needed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a client needs max_in_flight + 2 * max_slots + 1 = {} tokens, not {}",
                    self.tokens_needed,
                    tokens.len()
                ),
            ));
        }
        self.registry = Some(registry.try_clone()?);
        self.tokens = tokens;
        self.drive();
        Ok(())
    }

    /// Whether `token` is one of this client's (after [`Client::register`]).
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let client = Client::new(Default::default()).unwrap();
    /// assert!(!client.handles(mio::Token(0)));
    /// ```
    pub fn handles(&self, token: Token) -> bool {
        self.registry.is_some() && self.tokens.contains(token)
    }

    /// Handles one `mio` event for one of this client's tokens (others are ignored):
    /// connects, reads slot lines, hands connections to the core, watches idle connections
    /// and notes leased ones' readiness. Drain [`Client::poll_event`] and
    /// [`Client::poll_lease_ready`] afterwards.
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
        self.return_dropped();
        let Some(offset) = self
            .registry
            .as_ref()
            .and_then(|_| self.tokens.offset(event.token()))
        else {
            return;
        };
        let now = self.clock.now();
        match offset.checked_sub(self.attempts.len()) {
            None => self.attempt_ready(offset, event, now),
            Some(index) => {
                if let Ok(index) = u32::try_from(index) {
                    self.pooled_ready(index, event, now);
                }
            }
        }
        self.drive();
    }

    /// Lets time pass: attempts past their deadline end, the rover's next ones start. Call
    /// it after every poll (it does nothing when nothing is due).
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// client.handle_timeout();
    /// assert_eq!(client.poll_event(), None);
    /// ```
    pub fn handle_timeout(&mut self) {
        self.return_dropped();
        let now = self.clock.now();
        self.take_answers(now);
        self.core.handle_timeout(now);
        self.drive();
    }

    /// Hands the lookups that finished to the core.
    fn take_answers(&mut self, now: CoreInstant) {
        for (name, answer) in self.lookups.take_answers() {
            // A name removed meanwhile is unknown: nothing to do.
            let _ = adapter::report_lookup(&mut self.core, name, &answer, now);
        }
    }

    /// When [`Client::handle_timeout`] next has something to do; `None`: nothing to wait
    /// for. It may be in the past (then poll without waiting); it is now while a dropped
    /// [`Lease`] waits to be taken back, and at most [`LOOKUP_POLL`] away while a host name
    /// is being looked up (its answer comes from another thread, which cannot wake the loop).
    ///
    /// ```
    /// # use callosum_mio::{Client, TokenRange};
    /// let poll = mio::Poll::new().unwrap();
    /// let mut client = Client::new(Default::default()).unwrap();
    /// client.add_server("127.0.0.1:9".parse::<callosum_mio::ServerSpec>().unwrap());
    /// assert_eq!(client.poll_timeout(), None, "nothing runs before register");
    /// client.register(poll.registry(), TokenRange::new(0..client.tokens_needed())).unwrap();
    /// assert!(client.poll_timeout().is_some());
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dropped.any() || self.lookups.answered() {
            return Some(Instant::now());
        }
        let core = self.timeout.and_then(|at| self.clock.to_std(at));
        if self.lookups.pending() {
            let soon = Instant::now() + LOOKUP_POLL;
            return Some(core.map_or(soon, |at| at.min(soon)));
        }
        core
    }

    /// The next thing that happened, if any, in the words every adapter uses. At most
    /// [`ClientConfig::events_capacity`] wait; beyond, the oldest are dropped.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// assert_eq!(client.poll_event(), None);
    /// ```
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.return_dropped();
        let event = self.events.pop();
        #[cfg(feature = "log")]
        if let Some(event) = &event {
            log::debug!("client: {event}");
        }
        event
    }

    /// A snapshot: servers and their slots, the pool, attempts, counters. A [`Lease`]
    /// dropped since the client's last `&mut self` call still counts as leased.
    pub fn status(&self) -> ClientStatus {
        self.core.status()
    }

    /// The last attempt that failed, and how: what to tell a caller that found no
    /// connection.
    pub fn last_failure(&self) -> Option<Failure> {
        self.core.last_failure()
    }

    /// Closes the client: the rover stops (attempts in flight are closed), idle connections
    /// are closed now and leased ones when they are checked in, each reported as
    /// [`ClientEvent::Removed`] (cause
    /// [`RemoveCause::ClientClosed`](crate::RemoveCause::ClientClosed)). Dropping the
    /// client closes it too.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// client.close();
    /// assert!(client.status().closed);
    /// assert!(!client.add_server("127.0.0.1:4000".parse::<callosum_mio::ServerSpec>().unwrap()));
    /// ```
    pub fn close(&mut self) {
        self.return_dropped();
        self.core.close(self.clock.now());
        self.drive();
    }

    /// Carries out the core's outputs until it asks to be woken: connects, closes, events.
    /// Nothing before [`Client::register`]: the outputs wait in the core's queue.
    fn drive(&mut self) {
        if self.registry.is_none() {
            return;
        }
        loop {
            match self.core.poll_output() {
                Output::Connect { attempt, server } => self.connect(attempt, server),
                Output::Abort(attempt) => self.close_attempt(attempt),
                Output::Close(key) => self.close_pooled(key),
                Output::Event(event) => self.events.push(event),
                // A mio user asks for a connection when it wants one: nobody waits in line.
                Output::Idle => {}
                Output::Resolve { name, host, port } => self.lookups.start(name, host, port),
                Output::Timeout(at) => {
                    self.timeout = at;
                    return;
                }
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

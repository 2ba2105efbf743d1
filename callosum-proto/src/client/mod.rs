//! The client half of the protocol as one state machine: the rover, the pool, the table of
//! servers and the leases (PROTOCOL.md sections 3, 4 and 6).
//!
//! Every client decision lives in [`ClientCore`]: which idle connection a request gets, who
//! is next in line for one, when and where to rove, what a connection's end means, and the
//! words ([`ClientEvent`], [`RemoveCause`], [`ClientStatus`]) in which all of it is reported.
//! An adapter owns the sockets, the clock and the timers, and decides nothing.
//!
//! `K` is the adapter's connection: the stream itself, or a key into the adapter's own table
//! of sockets. The core holds it while the connection is idle, hands it out in a [`Lease`],
//! and hands back, in [`Output::Close`], every connection it lets go of. Nothing is dropped
//! silently.
//!
//! # Call order
//!
//! 1. **Inputs**, as they happen, each with `now` from the adapter's clock (never going
//!    back): servers ([`ClientCore::add_server`], [`ClientCore::remove_server`], or by name
//!    [`ClientCore::add_name`] and the answers to [`Output::Resolve`]:
//!    [`ClientCore::handle_resolved`], [`ClientCore::handle_resolve_failed`]), attempts
//!    ([`ClientCore::handle_connected`], [`ClientCore::handle_connect_failed`],
//!    [`ClientCore::handle_received`], [`ClientCore::handle_closed`],
//!    [`ClientCore::handle_read_failed`], [`ClientCore::deliver`]), idle connections
//!    ([`ClientCore::handle_idle_signal`]), requests ([`ClientCore::checkout`],
//!    [`ClientCore::checkin`]) and [`ClientCore::handle_timeout`].
//! 2. **Outputs**: after every input, call [`ClientCore::poll_output`] until it returns
//!    [`Output::Timeout`], acting on each output as it comes. Acting may feed new inputs (a
//!    connect that fails at once): just keep draining.
//! 3. **Timer**: sleep until that timeout (or the next input), call
//!    [`ClientCore::handle_timeout`], and go back to step 2.
//!
//! Where a call has one answer it returns it: [`ClientCore::handle_received`] says whether the
//! line needs more bytes, is complete (hand the socket over with [`ClientCore::deliver`]) or
//! failed (close the socket). An attempt whose input returned its end gets no
//! [`Output::Abort`]: outputs are for what the adapter could not know.
//!
//! ```
//! use callosum_proto::client::{ClientConfig, ClientCore, Handshake, LeaseEnd, Output};
//! use callosum_proto::Instant;
//!
//! let mut client = ClientCore::new(ClientConfig::default(), 7).unwrap();
//! let now = Instant::ZERO;
//! client.add_server("127.0.0.1:7000".parse().unwrap(), now);
//! // Step 3 at once: roving starts at the first timeout, so that servers added together all
//! // take part in the first draw.
//! assert_eq!(client.poll_output(), Output::Timeout(Some(now)));
//! client.handle_timeout(now);
//! // Step 2: the first output is an attempt to connect (the "socket" is a string here).
//! let Output::Connect { attempt, server } = client.poll_output() else { panic!() };
//! assert_eq!(server.port(), 7000);
//! client.handle_connected(attempt, now).unwrap();
//! let Ok(Handshake::Complete(ready)) = client.handle_received(attempt, b"0\r\n", now) else {
//!     panic!()
//! };
//! client.deliver(ready, "socket", now);
//! // A request: lease the connection, use it, return it as finished.
//! let lease = client.checkout(now).unwrap();
//! assert_eq!((lease.slot, lease.conn), (0, "socket"));
//! client.checkin(lease.id, lease.conn, LeaseEnd::Finished, now).unwrap();
//! assert_eq!(client.status().pool.idle, 1);
//! // Drain until the timeout: the rover keeps looking for more connections.
//! loop {
//!     match client.poll_output() {
//!         Output::Timeout(next) => break assert!(next.is_some()),
//!         _other => {} // connect, close, report, wake
//!     }
//! }
//! ```

mod config;
mod demand;
mod event;
mod names;
mod servers;
mod status;
#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;

pub use config::{ClientConfig, ClientConfigError, LeasePolicy, PoolSizing};
pub use event::{ClientEvent, EventQueue, RemoveCause};
pub use names::{BadServerSpec, NameId, NameStatus, ResolveFailure, ServerSpec, UnknownName};
pub use status::{ClientStats, ClientStatus, RemovedCounts, ServerConnections};

use crate::pool::{Checkin, Evicted, Offer, Pool, PooledId, Removed, UnknownConn};
use crate::rover::{
    Action, AttemptId, ConnectFailure, Event, HandshakeFailure, Rover, StaleAttempt,
};
use crate::{Instant, Rng, ServerId};
use alloc::collections::BTreeSet;
use alloc::string::String;
use demand::Demand;
use names::NameTable;
use servers::ServerTable;

/// What the adapter must do next, drained with [`ClientCore::poll_output`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Output<K> {
    /// Open a TCP connection to `server` for `attempt`, then feed its progress back.
    Connect {
        /// The attempt; its inputs name it.
        attempt: AttemptId,
        /// Where to connect.
        server: SocketAddr,
    },
    /// Stop the attempt and close its socket (it timed out, its server was removed, or the
    /// client closed); feed nothing more for it.
    Abort(AttemptId),
    /// Close this connection: the pool let go of it (rejected, evicted, broken, removed).
    Close(K),
    /// Tell the user.
    Event(ClientEvent),
    /// A connection became idle: a waiting caller may take it now, and an adapter that
    /// watches idle connections has a new one to watch.
    Idle,
    /// Look `host` up and report the addresses (each with `port`) with
    /// [`ClientCore::handle_resolved`], or the failure with
    /// [`ClientCore::handle_resolve_failed`]. Lookups may take their time and end in any
    /// order; the next one of this name comes after the report.
    Resolve {
        /// The name to report on.
        name: NameId,
        /// The host name to look up.
        host: String,
        /// The port of every address.
        port: u16,
    },
    /// Nothing more to do now: wake at this instant (or at the next input) and call
    /// [`ClientCore::handle_timeout`]. `None`: no timer is needed.
    Timeout(Option<Instant>),
}

/// What a chunk of slot-line bytes amounted to, from [`ClientCore::handle_received`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a complete line must be delivered, a failed attempt's socket closed"]
pub enum Handshake {
    /// The line is not complete: read again, at most `at_most` bytes (never past the
    /// longest line, so a hostile server gets at most 12 bytes in).
    NeedMore {
        /// The most bytes to read next.
        at_most: usize,
    },
    /// The line is complete: hand the connection over with [`ClientCore::deliver`].
    Complete(Ready),
    /// The attempt failed (a bad line, or bytes after the line before any request): close the
    /// socket. The failure was reported as an event.
    Failed,
}

/// A connection whose slot line is complete, to be handed over with [`ClientCore::deliver`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "deliver the connection, or it is never offered to the pool"]
pub struct Ready {
    server: ServerId,
    slot: u32,
}

impl Ready {
    /// The slot the server gave.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// Names one lease: the id a lent connection is returned under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId {
    id: PooledId,
    /// What the connection carries while it is out, for its return.
    server: ServerId,
    age: Age,
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease of {}", self.id)
    }
}

/// When a connection's line came, and whether an exchange on it ever finished: what decides
/// whether its end is its server's failure (it died young).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Age {
    born: Instant,
    proven: bool,
}

/// A connection as the pool holds it: the adapter's, and its age.
#[derive(Debug)]
struct Pooled<K> {
    conn: K,
    age: Age,
    /// When it is let go if still idle ([`ClientConfig::max_lifetime`],
    /// [`ClientConfig::idle_timeout`]); set each time it becomes idle.
    expires: Option<Instant>,
}

/// What a guard saw of its lease, kept by the adapter's guard so that every adapter ends a
/// lease by one rule ([`LeaseUse::end`]): untouched or finished goes back to idle, touched and
/// not finished was interrupted, broken is broken, and a failure its holder saw in the
/// server's answer is [`LeaseEnd::ServerFailed`]. It also says what the end of the
/// connection means to the request ([`LeaseUse::record_end`]), by whether a byte of the reply
/// came first.
///
/// ```
/// use callosum_proto::client::{LeaseEnd, LeaseUse, StreamEnd};
///
/// let mut used = LeaseUse::default();
/// assert_eq!(used.end(false), LeaseEnd::Finished); // dropped untouched
/// used.record_io();
/// assert_eq!(used.end(false), LeaseEnd::Interrupted); // dropped mid-exchange
/// assert_eq!(used.end(true), LeaseEnd::Finished); // its holder said it finished
/// used.mark_broken();
/// assert_eq!(used.end(true), LeaseEnd::Broken);
///
/// // The holder read a whole answer that says the server is failing.
/// let mut used = LeaseUse::default();
/// used.record_read(12);
/// used.mark_server_failed();
/// assert_eq!(used.end(true), LeaseEnd::ServerFailed);
///
/// // A request written into a connection its server had just closed: no reply byte came.
/// let mut used = LeaseUse::default();
/// used.record_io();
/// assert_eq!(used.record_end(), StreamEnd::BeforeReply);
/// assert_eq!(used.end(false), LeaseEnd::ClosedBeforeReply);
/// // The end in the middle of a reply is a broken reply, not a retryable one.
/// let mut used = LeaseUse::default();
/// used.record_read(5);
/// assert_eq!(used.record_end(), StreamEnd::InReply);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeaseUse {
    touched: bool,
    broken: bool,
    /// Whether its holder said the server's answer was a failure.
    server_failed: bool,
    /// Whether a read through the guard gave at least one byte.
    replied: bool,
    /// Whether the connection ended under the lease ([`LeaseUse::record_end`]).
    ended: bool,
}

impl LeaseUse {
    /// A read or a write was attempted on the connection.
    pub fn record_io(&mut self) {
        self.touched = true;
    }

    /// A read through the guard gave `bytes` bytes (0 is the end of the stream: tell it with
    /// [`LeaseUse::record_end`] instead).
    pub fn record_read(&mut self, bytes: usize) {
        self.touched = true;
        if bytes > 0 {
            self.replied = true;
        }
    }

    /// The connection ended under the lease (a read saw the end of the stream, or a read or
    /// a write found it reset): it is broken, and the answer says what that means for the
    /// request. Before any byte of a reply the server may never have seen the request (a
    /// draining server closes an idle connection just as a request is written into it), so
    /// the guard reports [`ClosedBeforeReply`] and an idempotent request can be sent again
    /// on another connection. After some bytes the reply is cut short, and the guard reports
    /// the end as it came.
    pub fn record_end(&mut self) -> StreamEnd {
        self.touched = true;
        self.broken = true;
        self.ended = true;
        if self.replied {
            StreamEnd::InReply
        } else {
            StreamEnd::BeforeReply
        }
    }

    /// The connection failed or its holder said it is broken.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether [`LeaseUse::mark_broken`] was called.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Its holder saw a failure in the server's answer ([`LeaseEnd::ServerFailed`]).
    pub fn mark_server_failed(&mut self) {
        self.server_failed = true;
    }

    /// How the lease ends: `finished` when its holder said the exchange finished. A broken
    /// connection is broken whatever else was said ([`LeaseEnd::ClosedBeforeReply`] if it
    /// ended before any byte of a reply); a server failure closes the connection whether or
    /// not the rest of the answer was read.
    pub fn end(self, finished: bool) -> LeaseEnd {
        if self.broken {
            if self.ended && !self.replied {
                LeaseEnd::ClosedBeforeReply
            } else {
                LeaseEnd::Broken
            }
        } else if self.server_failed {
            LeaseEnd::ServerFailed
        } else if finished || !self.touched {
            LeaseEnd::Finished
        } else {
            LeaseEnd::Interrupted
        }
    }
}

/// What the end of a leased connection means to its request, from [`LeaseUse::record_end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamEnd {
    /// No byte of a reply had come: the request may not have reached its server, and the
    /// guard reports [`ClosedBeforeReply`].
    BeforeReply,
    /// Some bytes of the reply had come: the reply is broken, and the guard reports the end
    /// of the stream (or the error) as it came.
    InReply,
}

/// The error of a request whose connection ended before any byte of its reply: the server
/// closed it (a drain between two requests, a restart) or reset it. The server may not have
/// seen the request, so an idempotent request can be sent again, on another connection, once
/// the lease is given back: it ends [`LeaseEnd::ClosedBeforeReply`], and the connection it met
/// goes with every other one of its server that the client holds or is opening.
///
/// smol's and tokio's guards (their reads and writes) and mio's `Client::read` and
/// `Client::write` return it as an `io::Error` of kind `ConnectionAborted` whose inner error is
/// this type, in place of the end of the stream (`Ok(0)`) or the reset; test for it with
/// `callosum_proto::adapter::is_closed_before_reply` (the `std` feature), which every adapter
/// re-exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClosedBeforeReply;

impl fmt::Display for ClosedBeforeReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection closed before any byte of the reply")
    }
}

impl core::error::Error for ClosedBeforeReply {}

/// A connection lent out by [`ClientCore::checkout`]: return it with
/// [`ClientCore::checkin`], whatever happened to it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lease must be checked in, or its place in the pool is lost"]
pub struct Lease<K> {
    /// The id to return it under.
    pub id: LeaseId,
    /// The server it is connected to.
    pub server: SocketAddr,
    /// Its slot there.
    pub slot: u32,
    /// The connection.
    pub conn: K,
}

/// How a lease ended, told to [`ClientCore::checkin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseEnd {
    /// The exchange finished (the whole reply was read): the connection may serve the next
    /// caller.
    Finished,
    /// The lease ended in the middle of an exchange (dropped by a timeout or a cancellation):
    /// a reply may still be on its way, so the connection is closed, never reused.
    Interrupted,
    /// The caller found the connection broken: it is closed.
    Broken,
    /// The connection ended under the lease before any byte of a reply came
    /// ([`StreamEnd::BeforeReply`]): its server closed it between two requests (a drain, a
    /// restart) or reset it. It is closed as a broken one is, and so is every other
    /// connection of that server the client holds or is opening, reported as
    /// [`RemoveCause::ServerClosing`]: the server is closing its connections, so a request
    /// sent again after this error must not meet one of them. The server stays, and is
    /// connected to again as any other.
    ClosedBeforeReply,
    /// The exchange finished, but the server's answer was a failure: an "unavailable" or an
    /// internal error, by the application's reckoning (a "not found" is an answer, not a
    /// failure). The connection is closed and the failure counts towards the server's backoff
    /// as a dead connection's would, until the first exchange on a newer connection to it
    /// finishes. A
    /// server that fails fast keeps its connections idle more than the others, so any
    /// balancer that prefers idle or lightly loaded servers would send it more than its share;
    /// telling its failures this way sends it less.
    ServerFailed,
}

/// What became of a returned lease, from [`ClientCore::checkin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Returned {
    /// It is idle again, under this id.
    Idle(PooledId),
    /// It was closed (given in [`Output::Close`]): broken, interrupted, evicted while leased,
    /// its server removed, or the client closed.
    Closed,
}

/// [`ClientCore::checkin`] was given an id that is not a current lease of this client (it was
/// returned already, or belongs to another client). The connection given with it was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotLeased {
    /// The id given.
    pub lease: LeaseId,
}

impl fmt::Display for NotLeased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a current lease", self.lease)
    }
}

impl core::error::Error for NotLeased {}

/// What an idle connection showed, told to [`ClientCore::handle_idle_signal`]. An idle
/// connection must be silent: any of these removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdleSignal {
    /// The server closed it (end of stream).
    Closed,
    /// Bytes arrived that nobody asked for.
    Bytes,
    /// The socket failed.
    Failed,
}

impl IdleSignal {
    fn cause(self) -> RemoveCause {
        match self {
            IdleSignal::Closed => RemoveCause::ClosedByServer,
            IdleSignal::Bytes => RemoveCause::UnsolicitedData,
            IdleSignal::Failed => RemoveCause::Error,
        }
    }
}

/// A place in the line for an idle connection, from [`ClientCore::join_line`]: callers that
/// wait are served first and in order, so a caller that returns a connection and asks again
/// cannot take it back ahead of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// The last attempt that failed, and how: what a caller that found no connection is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The server could not be reached.
    Unreachable {
        /// The server tried.
        server: SocketAddr,
        /// What went wrong.
        reason: ConnectFailure,
    },
    /// The server gave no slot line.
    HandshakeFailed {
        /// The server tried.
        server: SocketAddr,
        /// What went wrong.
        reason: HandshakeFailure,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable { server, reason } => write!(f, "{server} unreachable: {reason}"),
            Failure::HandshakeFailed { server, reason } => {
                write!(f, "handshake with {server} failed: {reason}")
            }
        }
    }
}

/// Why a caller got no connection, in the words of every adapter's `get`.
///
/// ```
/// use callosum_proto::client::{Failure, GetError};
/// use callosum_proto::rover::ConnectFailure;
/// use core::time::Duration;
///
/// let server = "127.0.0.1:7000".parse().unwrap();
/// let last_failure = Some(Failure::Unreachable { server, reason: ConnectFailure::Refused });
/// let error = GetError::TimedOut { waited: Duration::from_secs(1), last_failure };
/// assert_eq!(
///     error.to_string(),
///     "no pooled connection became idle within 1s (last failure: 127.0.0.1:7000 unreachable: connection refused)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetError {
    /// The client knows no server: add one first.
    NoServers,
    /// The client's background work (its driver) is not running, so no connection can
    /// arrive: spawn it.
    NotRunning,
    /// The client was closed.
    Closed,
    /// No connection became idle in time.
    TimedOut {
        /// How long the caller waited.
        waited: core::time::Duration,
        /// The last attempt that failed, if any: often why the pool is empty.
        last_failure: Option<Failure>,
    },
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::NoServers => f.write_str("no servers: add one with add_server"),
            GetError::NotRunning => f.write_str(
                "the client's driver is not running, so no connection can arrive: spawn it",
            ),
            GetError::Closed => f.write_str("the client was closed"),
            GetError::TimedOut {
                waited,
                last_failure: Some(failure),
            } => write!(
                f,
                "no pooled connection became idle within {waited:?} (last failure: {failure})"
            ),
            GetError::TimedOut {
                waited,
                last_failure: None,
            } => write!(
                f,
                "no pooled connection became idle within {waited:?} (every one was busy)"
            ),
        }
    }
}

impl core::error::Error for GetError {}

/// The client state machine: rover, pool, servers and leases. See the
/// [module docs](self#call-order) for the call order.
#[derive(Debug)]
pub struct ClientCore<K> {
    pool: Pool<Pooled<K>>,
    /// A connection that ends within this time after its line counts as its server's failure.
    young: core::time::Duration,
    sizing: PoolSizing,
    /// The client's concurrency, for [`PoolSizing::Demand`].
    demand: Demand,
    /// Callers whose last checkout found nothing and who did not join the line: demand that a
    /// line does not show (at most `max_slots`).
    unmet: usize,
    rover: Rover,
    servers: ServerTable,
    /// Addresses added with [`ClientCore::add_server`]: a name's resolution never removes them.
    direct: BTreeSet<SocketAddr>,
    names: NameTable,
    resolve_interval: core::time::Duration,
    outputs: VecDeque<Output<K>>,
    /// The attempt whose input is being handled: its end is that input's direct answer.
    current: Option<AttemptId>,
    /// The current attempt's line, when it completed during this input.
    ready: Option<Ready>,
    /// A pooled connection is let go once it has lived this long (none: never).
    max_lifetime: Option<core::time::Duration>,
    /// An idle connection is let go once it has been idle this long (none: never).
    idle_timeout: Option<core::time::Duration>,
    /// No idle connection expires before this (it may be early: the connection that set it
    /// may have been lent meanwhile).
    next_expiry: Option<Instant>,
    /// Lines completed but not yet delivered: the rover must not rove again for them.
    undelivered: usize,
    /// When to start roving: the first server was added, and the adapter has not yet come
    /// back at this timeout.
    start_at: Option<Instant>,
    /// Callers waiting, oldest first: their ticket and when they joined.
    line: VecDeque<(u64, Instant)>,
    next_ticket: u64,
    closed: bool,
    stats: ClientStats,
    last_failure: Option<Failure>,
}

impl<K> ClientCore<K> {
    /// A client with no servers yet; it starts roving with the first one added. `seed` is the
    /// adapter's pick when [`ClientConfig::seed`] is `None` (which it overrides otherwise):
    /// the pool and the rover each draw their own stream from it.
    ///
    /// ```
    /// use callosum_proto::client::{ClientConfig, ClientCore};
    ///
    /// let mut config = ClientConfig::default();
    /// config.pool.max_slots = 0;
    /// let error = ClientCore::<u32>::new(config, 1).unwrap_err();
    /// assert!(error.to_string().contains("max_slots is 0"));
    /// ```
    pub fn new(config: ClientConfig, seed: u64) -> Result<ClientCore<K>, ClientConfigError> {
        config.validate()?;
        let mut seeds = Rng::new(config.seed.unwrap_or(seed));
        let pool = Pool::with_policy(config.pool, config.lease, seeds.next_u64())
            .map_err(ClientConfigError::Pool)?;
        let rover = Rover::new(config.rover, seeds.next_u64()).map_err(ClientConfigError::Rover)?;
        Ok(ClientCore {
            pool,
            young: config.young_death,
            sizing: config.sizing,
            demand: Demand::new(),
            unmet: 0,
            max_lifetime: config.max_lifetime,
            idle_timeout: config.idle_timeout,
            next_expiry: None,
            rover,
            servers: ServerTable::default(),
            direct: BTreeSet::new(),
            names: NameTable::default(),
            resolve_interval: config.resolve_interval,
            outputs: VecDeque::new(),
            current: None,
            ready: None,
            undelivered: 0,
            start_at: None,
            line: VecDeque::new(),
            next_ticket: 0,
            closed: false,
            stats: ClientStats::default(),
            last_failure: None,
        })
    }

    /// Adds a server; `false` if it was known already or the client is closed. The first
    /// server makes the client start roving at its next timeout, due at once (`now`): servers
    /// added together, before the adapter acts on that timeout, are all candidates for the
    /// first attempts, instead of the first one added taking them all. A server added later
    /// is tried as soon as fill mode has room.
    pub fn add_server(&mut self, server: SocketAddr, now: Instant) -> bool {
        if self.closed {
            return false;
        }
        self.direct.insert(server);
        self.insert_server(server, now)
    }

    /// Adds a server to the table and the rover, from whichever source.
    fn insert_server(&mut self, server: SocketAddr, now: Instant) -> bool {
        let Some(id) = self.servers.insert(server) else {
            return false;
        };
        self.rover.add_server(id);
        if !self.rover.is_running() && self.start_at.is_none() {
            self.start_at = Some(now);
        }
        self.settle(now);
        true
    }

    /// Removes a server added with [`ClientCore::add_server`]: its attempts are aborted, its
    /// idle connections closed, its leased ones closed when they come back, each reported as
    /// [`RemoveCause::ServerRemoved`]. The servers are those added directly and those the
    /// names stand for, so an address that a name still resolves to stays, for as long as
    /// the name lists it. `false` if it was not added directly.
    ///
    /// ```
    /// use callosum_proto::client::{ClientConfig, ClientCore};
    /// use callosum_proto::Instant;
    ///
    /// let mut client = ClientCore::<u32>::new(ClientConfig::default(), 1).unwrap();
    /// let addr = "10.0.0.1:7000".parse().unwrap();
    /// let name = client.add_name("service.local", 7000, Instant::ZERO).unwrap();
    /// client.handle_resolved(name, &[addr], Instant::ZERO).unwrap();
    /// assert!(!client.remove_server(addr, Instant::ZERO), "only the name's");
    /// assert!(!client.add_server(addr, Instant::ZERO), "known already, now directly too");
    /// assert!(client.remove_server(addr, Instant::ZERO));
    /// assert_eq!(client.servers().count(), 1, "the name still lists it");
    /// ```
    pub fn remove_server(&mut self, server: SocketAddr, now: Instant) -> bool {
        if !self.direct.remove(&server) {
            return false;
        }
        if !self.names.provides(server, None) {
            self.drop_server(server, now);
        }
        true
    }

    /// Takes a server out of the table, the rover and the pool, from whichever source.
    fn drop_server(&mut self, server: SocketAddr, now: Instant) -> bool {
        let Some(id) = self.servers.remove(server) else {
            return false;
        };
        self.rover.remove_server(id);
        self.let_go_of_connections(id, server, RemoveCause::ServerRemoved);
        self.settle(now);
        true
    }

    /// A connection of `server` closed under a request before any byte of its reply
    /// ([`LeaseEnd::ClosedBeforeReply`]): the server is closing its connections. Every other
    /// one the client holds on it or is opening was opened before, so it goes too, and a
    /// request sent again meets a connection of another server or a newer one.
    fn retire_connections(&mut self, server: ServerId, addr: SocketAddr) {
        self.rover.abort_attempts(server);
        self.let_go_of_connections(server, addr, RemoveCause::ServerClosing);
    }

    /// Lets go of every connection the pool holds on a server: the idle ones are closed now,
    /// the leased ones when they come back; each reported with `cause`.
    fn let_go_of_connections(&mut self, server: ServerId, addr: SocketAddr, cause: RemoveCause) {
        for evicted in self.pool.remove_server(server) {
            let slot = match evicted {
                Evicted::Idle { slot, conn, .. } => {
                    self.outputs.push_back(Output::Close(conn.conn));
                    slot
                }
                Evicted::Leased { slot, .. } => slot,
            };
            self.removed(addr, slot, cause);
        }
    }

    /// Adds a server by address ([`ClientCore::add_server`]) or by name
    /// ([`ClientCore::add_name`]): what an adapter's `add_server` does with what its user gave.
    pub fn add(&mut self, server: &ServerSpec, now: Instant) -> bool {
        match server {
            ServerSpec::Addr(addr) => self.add_server(*addr, now),
            ServerSpec::Name { host, port } => self.add_name(host, *port, now).is_some(),
        }
    }

    /// Removes a server by address ([`ClientCore::remove_server`]) or by name
    /// ([`ClientCore::remove_name`]).
    pub fn remove(&mut self, server: &ServerSpec, now: Instant) -> bool {
        match server {
            ServerSpec::Addr(addr) => self.remove_server(*addr, now),
            ServerSpec::Name { host, port } => match self.names.id(host, *port) {
                Some(name) => self.remove_name(name, now),
                None => false,
            },
        }
    }

    /// Adds a host name: the adapter is asked to look it up at once ([`Output::Resolve`]) and
    /// again every [`ClientConfig::resolve_interval`], and each address it resolves to is a
    /// server, added and removed as the records change. `None` if the client is closed or
    /// knows the name already.
    ///
    /// ```
    /// use callosum_proto::client::{ClientConfig, ClientCore, Output};
    /// use callosum_proto::Instant;
    ///
    /// let mut client = ClientCore::<u32>::new(ClientConfig::default(), 1).unwrap();
    /// let name = client.add_name("service.local", 7000, Instant::ZERO).unwrap();
    /// let Output::Resolve { host, port, .. } = client.poll_output() else { panic!() };
    /// assert_eq!((host.as_str(), port), ("service.local", 7000));
    /// let addrs = ["10.0.0.1:7000".parse().unwrap(), "10.0.0.2:7000".parse().unwrap()];
    /// client.handle_resolved(name, &addrs, Instant::ZERO).unwrap();
    /// assert_eq!(client.servers().count(), 2);
    /// ```
    pub fn add_name(&mut self, host: &str, port: u16, now: Instant) -> Option<NameId> {
        if self.closed {
            return None;
        }
        let name = self.names.insert(host, port, now)?;
        self.resolve_due(now);
        Some(name)
    }

    /// Removes a host name and the servers only it stood for (as [`ClientCore::remove_server`]
    /// does); a lookup still out is ignored when it comes back. `false` if it was not known.
    pub fn remove_name(&mut self, name: NameId, now: Instant) -> bool {
        let Some(addrs) = self.names.remove(name) else {
            return false;
        };
        for addr in addrs {
            if !self.direct.contains(&addr) && !self.names.provides(addr, Some(name)) {
                self.drop_server(addr, now);
            }
        }
        self.settle(now);
        true
    }

    /// The lookup of `name` found `addrs`: new addresses become servers, addresses no longer
    /// there are removed (unless added directly or by another name). No address at all is a
    /// failure ([`ResolveFailure::NoAddresses`]) that keeps the last known servers.
    pub fn handle_resolved(
        &mut self,
        name: NameId,
        addrs: &[SocketAddr],
        now: Instant,
    ) -> Result<(), UnknownName> {
        if self.closed {
            return Ok(());
        }
        if addrs.is_empty() {
            return self.handle_resolve_failed(name, ResolveFailure::NoAddresses, now);
        }
        let next = now + self.resolve_interval;
        let found = addrs.iter().copied().collect();
        let (added, gone) = self.names.resolved(name, Some(found), next)?;
        for addr in added {
            self.insert_server(addr, now);
        }
        for addr in gone {
            if !self.direct.contains(&addr) && !self.names.provides(addr, Some(name)) {
                self.drop_server(addr, now);
            }
        }
        self.settle(now);
        Ok(())
    }

    /// The lookup of `name` failed: reported as [`ClientEvent::ResolveFailed`]; the servers
    /// it stood for stay, and the next lookup comes after the interval.
    pub fn handle_resolve_failed(
        &mut self,
        name: NameId,
        failure: ResolveFailure,
        now: Instant,
    ) -> Result<(), UnknownName> {
        if self.closed {
            return Ok(());
        }
        let next = now + self.resolve_interval;
        self.names.resolved(name, None, next)?;
        self.stats.resolve_failed += 1;
        self.event(ClientEvent::ResolveFailed { name, failure });
        Ok(())
    }

    /// The id of a name added with [`ClientCore::add_name`], by its host and port.
    pub fn name_id(&self, host: &str, port: u16) -> Option<NameId> {
        self.names.id(host, port)
    }

    /// The host and port of a name added with [`ClientCore::add_name`].
    pub fn name(&self, name: NameId) -> Option<(&str, u16)> {
        self.names.host(name)
    }

    /// Asks for the lookups that are due.
    fn resolve_due(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        for (name, host, port) in self.names.take_due(now) {
            self.outputs.push_back(Output::Resolve { name, host, port });
        }
    }

    /// The servers known, in the order they were added.
    pub fn servers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.servers.addrs()
    }

    /// The attempt's TCP connection is established: the slot line is now due within the
    /// handshake timeout.
    pub fn handle_connected(
        &mut self,
        attempt: AttemptId,
        now: Instant,
    ) -> Result<(), StaleAttempt> {
        let result = self.rover.handle_connected(attempt, now);
        self.settle(now);
        result
    }

    /// The attempt's TCP connection was never established: close its socket.
    pub fn handle_connect_failed(
        &mut self,
        attempt: AttemptId,
        reason: ConnectFailure,
        now: Instant,
    ) -> Result<(), StaleAttempt> {
        self.current = Some(attempt);
        // A reset is a handshake failure (the rover decides), as at the first read.
        let result = self.rover.handle_connect_failed(attempt, reason, now);
        self.settle(now);
        self.current = None;
        result
    }

    /// Bytes read from the attempt's socket (a read of at most what the last
    /// [`Handshake::NeedMore`] allowed; at most 12 for the first). Says what they amounted to.
    pub fn handle_received(
        &mut self,
        attempt: AttemptId,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Handshake, StaleAttempt> {
        self.current = Some(attempt);
        let result = self.rover.handle_received(attempt, bytes, now);
        self.settle(now);
        self.current = None;
        let consumed = result?;
        let Some(ready) = self.ready.take() else {
            return Ok(match self.rover.line_room(attempt) {
                Some(at_most) => Handshake::NeedMore { at_most },
                None => Handshake::Failed,
            });
        };
        if consumed < bytes.len() {
            // The server spoke before it was asked: whatever the segmentation, such a
            // connection would hand those bytes to the first caller as its answer.
            self.undelivered -= 1;
            self.held_changed(ready.server);
            if let Some(server) = self.servers.addr(ready.server) {
                self.removed(server, ready.slot, RemoveCause::UnsolicitedData);
            }
            self.died_young(ready.server, now);
            self.settle(now);
            return Ok(Handshake::Failed);
        }
        Ok(Handshake::Complete(ready))
    }

    /// The attempt's socket reached its end before the line was complete: close it.
    pub fn handle_closed(&mut self, attempt: AttemptId, now: Instant) -> Result<(), StaleAttempt> {
        self.current = Some(attempt);
        let result = self.rover.handle_closed(attempt, now);
        self.settle(now);
        self.current = None;
        result
    }

    /// Reading the attempt's socket failed (a reset included): close it.
    pub fn handle_read_failed(
        &mut self,
        attempt: AttemptId,
        now: Instant,
    ) -> Result<(), StaleAttempt> {
        self.current = Some(attempt);
        let result = self.rover.handle_read_failed(attempt, now);
        self.settle(now);
        self.current = None;
        result
    }

    /// Hands over the connection of a completed line. The pool keeps it (returning its id:
    /// an adapter that watches idle connections by id keeps it) or lets it go in an
    /// [`Output::Close`].
    pub fn deliver(&mut self, ready: Ready, conn: K, now: Instant) -> Option<PooledId> {
        self.undelivered -= 1;
        // Kept or not, the pool's count is the truth again.
        self.held_changed(ready.server);
        let kept = match self.servers.addr(ready.server) {
            Some(server) if !self.closed => self.offer(ready, server, conn, now),
            _ => {
                self.outputs.push_back(Output::Close(conn));
                None
            }
        };
        self.settle(now);
        kept
    }

    /// Lends the lowest idle connection, unless none is idle or callers are waiting in line
    /// (they come first).
    #[must_use = "a lease must be checked in, or its place in the pool is lost"]
    pub fn checkout(&mut self, now: Instant) -> Option<Lease<K>> {
        self.stats.gets += 1;
        if !self.line.is_empty() {
            return None;
        }
        let lease = self.lend(now);
        // A caller that finds nothing and asks again (a mio loop has no line) is demand all
        // the same; one that joins the line instead is counted there.
        self.unmet = match lease {
            Some(_) => self.unmet.saturating_sub(1),
            None => (self.unmet + 1).min(self.pool.max_slots()),
        };
        lease
    }

    /// Takes a place in the line of callers waiting for an idle connection (a caller whose
    /// [`ClientCore::checkout`] found none). The wait counts in [`ClientStats::waits`] and,
    /// once served or given up, in [`ClientStats::wait_time`].
    pub fn join_line(&mut self, now: Instant) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.line.push_back((ticket, now));
        self.stats.waits += 1;
        self.unmet = self.unmet.saturating_sub(1);
        Ticket(ticket)
    }

    /// Lends the lowest idle connection to the first caller in line; `None` for a caller
    /// further back or when none is idle. A caller served leaves the line.
    #[must_use = "a lease must be checked in, or its place in the pool is lost"]
    pub fn checkout_in_line(&mut self, ticket: Ticket, now: Instant) -> Option<Lease<K>> {
        if self.line.front().map(|&(first, _)| first) != Some(ticket.0) {
            return None;
        }
        let lease = self.lend(now)?;
        if let Some((_, joined)) = self.line.pop_front() {
            self.stats.wait_time += now.saturating_duration_since(joined);
        }
        if self.pool.status().idle > 0 {
            // The next in line may take another one.
            self.outputs.push_back(Output::Idle);
        }
        Some(lease)
    }

    /// Gives up a place in the line (the caller timed out or was cancelled). Harmless for a
    /// ticket already served.
    pub fn leave_line(&mut self, ticket: Ticket, now: Instant) {
        let was_first = self.line.front().map(|&(first, _)| first) == Some(ticket.0);
        if let Some(place) = self
            .line
            .iter()
            .position(|&(waiting, _)| waiting == ticket.0)
            && let Some((_, joined)) = self.line.remove(place)
        {
            self.stats.wait_time += now.saturating_duration_since(joined);
        }
        if was_first && self.pool.status().idle > 0 {
            self.outputs.push_back(Output::Idle);
        }
    }

    /// Returns a lease. Only [`LeaseEnd::Finished`] makes it idle again; anything else, and
    /// a connection evicted or whose server was removed while it was out, is closed. A
    /// connection returned broken before any exchange on it finished, or soon after its line
    /// ([`ClientConfig::young_death`]), and every [`LeaseEnd::ServerFailed`], count as a
    /// failure of its server for the rover's backoff; the first exchange that finishes on a
    /// newer connection forgives the server's failures.
    pub fn checkin(
        &mut self,
        lease: LeaseId,
        conn: K,
        end: LeaseEnd,
        now: Instant,
    ) -> Result<Returned, NotLeased> {
        let cause = match end {
            _ if self.closed => Some(RemoveCause::ClientClosed),
            LeaseEnd::Finished => None,
            LeaseEnd::Interrupted => Some(RemoveCause::Interrupted),
            LeaseEnd::Broken | LeaseEnd::ClosedBeforeReply => Some(RemoveCause::Broken),
            LeaseEnd::ServerFailed => Some(RemoveCause::ServerFailed),
        };
        let returned = match cause {
            None => self.return_finished(lease, conn, now),
            Some(cause) => {
                self.outputs.push_back(Output::Close(conn));
                match self.pool.remove(lease.id) {
                    Ok(Removed::Leased { server, slot }) => {
                        if let Some(addr) = self.servers.addr(server) {
                            self.removed(addr, slot, cause);
                            if end == LeaseEnd::ClosedBeforeReply {
                                // Before the failure is counted: a probe it schedules is not
                                // one of the attempts let go.
                                self.retire_connections(server, addr);
                            }
                        }
                        self.held_changed(server);
                        match cause {
                            RemoveCause::Broken => self.ended_by_peer(server, lease.age, now),
                            RemoveCause::ServerFailed => {
                                self.rover.handle_server_failed(server, now);
                            }
                            _ => {}
                        }
                        Ok(Returned::Closed)
                    }
                    // Its removal was reported when it was evicted or its server dropped.
                    Ok(Removed::Evicted { .. }) => Ok(Returned::Closed),
                    // The pool renews ids at checkout and checkin, so a lease id never names
                    // an idle connection; were it to, that connection is closed as well.
                    Ok(Removed::Idle { conn, .. }) => {
                        self.outputs.push_back(Output::Close(conn.conn));
                        Err(NotLeased { lease })
                    }
                    Err(UnknownConn { .. }) => Err(NotLeased { lease }),
                }
            }
        };
        self.settle(now);
        returned
    }

    fn return_finished(
        &mut self,
        lease: LeaseId,
        conn: K,
        now: Instant,
    ) -> Result<Returned, NotLeased> {
        let age = Age {
            proven: true,
            ..lease.age
        };
        let expires = self.idle_deadline(age, now);
        match self.pool.checkin(lease.id, Pooled { conn, age, expires }) {
            Ok(Checkin::Idle(id)) => {
                if !lease.age.proven {
                    self.rover.handle_server_ok(lease.server);
                }
                self.outputs.push_back(Output::Idle);
                Ok(Returned::Idle(id))
            }
            Ok(Checkin::Close(pooled)) => {
                self.outputs.push_back(Output::Close(pooled.conn));
                Ok(Returned::Closed)
            }
            Err(error) => {
                self.outputs
                    .push_back(Output::Close(error.into_conn().conn));
                Err(NotLeased { lease })
            }
        }
    }

    /// Takes a leased connection out of the pool for good (the caller keeps the socket and
    /// closes it itself); its place in the pool is free at once.
    pub fn detach(&mut self, lease: LeaseId, now: Instant) -> Result<(), NotLeased> {
        let result = match self.pool.remove(lease.id) {
            Ok(Removed::Leased { server, .. }) => {
                self.held_changed(server);
                Ok(())
            }
            Ok(Removed::Evicted { .. }) => Ok(()),
            Ok(Removed::Idle { conn, .. }) => {
                self.outputs.push_back(Output::Close(conn.conn));
                Err(NotLeased { lease })
            }
            Err(UnknownConn { .. }) => Err(NotLeased { lease }),
        };
        self.settle(now);
        result
    }

    /// What an idle connection showed (end of stream, bytes, an error): it is removed and
    /// closed. Fails for an id that names no idle connection.
    pub fn handle_idle_signal(
        &mut self,
        id: PooledId,
        signal: IdleSignal,
        now: Instant,
    ) -> Result<(), UnknownConn> {
        let removed = self.pool.remove(id);
        let result = match removed {
            Ok(Removed::Idle { server, slot, conn }) => {
                self.outputs.push_back(Output::Close(conn.conn));
                self.held_changed(server);
                let cause = signal.cause();
                if let Some(addr) = self.servers.addr(server) {
                    self.removed(addr, slot, cause);
                }
                if cause == RemoveCause::UnsolicitedData {
                    // A misbehaving server, not a restarting one: no probe.
                    if self.is_young(conn.age, now) {
                        self.died_young(server, now);
                    }
                } else {
                    self.ended_by_peer(server, conn.age, now);
                }
                Ok(())
            }
            // Not idle: leases are watched by their holders, not here. Taking it out of the
            // pool was wrong, and cannot be undone, so the id must come from `idle_mut`.
            Ok(Removed::Leased { .. } | Removed::Evicted { .. }) => Ok(()),
            Err(error) => Err(error),
        };
        self.settle(now);
        result
    }

    /// The idle connections, for an adapter that watches them for [`IdleSignal`]s.
    pub fn idle_mut(&mut self) -> impl Iterator<Item = (PooledId, &mut K)> + '_ {
        self.pool
            .idle_mut()
            .map(|(id, pooled)| (id, &mut pooled.conn))
    }

    /// The timer fired (or the adapter woke for another reason): the start of roving,
    /// time-outs and the rover's next attempts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.start_at.is_some_and(|start| start <= now) {
            self.start_at = None;
            self.rover.start(now);
        }
        self.rover.handle_timeout(now);
        self.expire(now);
        self.resolve_due(now);
        self.settle(now);
    }

    /// Closes the client: the rover stops (attempts aborted), idle connections are closed,
    /// and leases are closed when they come back, each reported as
    /// [`RemoveCause::ClientClosed`]. Waiting callers are woken to see it.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.start_at = None;
        self.rover.stop();
        let idle: Vec<PooledId> = self.pool.idle_mut().map(|(id, _)| id).collect();
        for id in idle {
            if let Ok(Removed::Idle { server, slot, conn }) = self.pool.remove(id) {
                self.outputs.push_back(Output::Close(conn.conn));
                if let Some(server) = self.servers.addr(server) {
                    self.removed(server, slot, RemoveCause::ClientClosed);
                }
            }
        }
        self.outputs.push_back(Output::Idle);
        self.settle(now);
    }

    /// Whether [`ClientCore::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next thing to do; [`Output::Timeout`] when there is nothing more for now.
    pub fn poll_output(&mut self) -> Output<K> {
        match self.outputs.pop_front() {
            Some(output) => output,
            None => Output::Timeout(
                [
                    self.start_at,
                    self.rover.poll_timeout(),
                    self.next_expiry,
                    self.names.next_due().filter(|_| !self.closed),
                ]
                .into_iter()
                .flatten()
                .min(),
            ),
        }
    }

    /// The last attempt that failed, if any: what a caller that waited in vain is told.
    pub fn last_failure(&self) -> Option<Failure> {
        self.last_failure
    }

    /// A snapshot: servers and their slots, the pool, attempts, the line, counters.
    pub fn status(&self) -> ClientStatus {
        let servers = self
            .servers
            .iter()
            .map(|(id, server)| {
                let held = || {
                    self.pool.connections().filter(move |info| {
                        info.server == id && info.state != crate::pool::ConnState::Evicted
                    })
                };
                let mut slots: Vec<u32> = held().map(|info| info.slot).collect();
                slots.sort_unstable();
                let leased = held()
                    .filter(|info| info.state == crate::pool::ConnState::Leased)
                    .count();
                ServerConnections {
                    server,
                    slots,
                    leased,
                    leases: self.servers.leases(id),
                }
            })
            .collect();
        let mut stats = self.stats.clone();
        stats.pool = self.pool.stats().clone();
        ClientStatus {
            servers,
            pool: self.pool.status(),
            names: self.names.iter().collect(),
            target: self.target(),
            attempts_in_flight: self.rover.in_flight(),
            waiting_gets: self.line.len(),
            closed: self.closed,
            stats,
        }
    }

    fn lend(&mut self, now: Instant) -> Option<Lease<K>> {
        if self.closed {
            return None;
        }
        // A connection past its time is never lent, even before the timer says so.
        self.expire(now);
        let Some(lease) = self.pool.checkout() else {
            // A caller found nothing idle: demand the pool may have to grow for.
            self.settle(now);
            return None;
        };
        let Some(server) = self.servers.addr(lease.server) else {
            unreachable!("the pool holds connections only of known servers")
        };
        self.servers.count_lease(lease.server);
        self.settle(now);
        Some(Lease {
            id: LeaseId {
                id: lease.id,
                server: lease.server,
                age: lease.conn.age,
            },
            server,
            slot: lease.slot,
            conn: lease.conn.conn,
        })
    }

    fn offer(
        &mut self,
        ready: Ready,
        server: SocketAddr,
        conn: K,
        now: Instant,
    ) -> Option<PooledId> {
        let slot = ready.slot;
        let age = Age {
            born: now,
            proven: false,
        };
        let expires = self.idle_deadline(age, now);
        match self
            .pool
            .offer(ready.server, slot, Pooled { conn, age, expires })
        {
            Offer::Kept(id) => {
                self.kept(ready.server, server, slot);
                self.outputs.push_back(Output::Idle);
                Some(id)
            }
            Offer::Replaced { kept, evicted } => {
                self.kept(ready.server, server, slot);
                let (victim, victim_slot) = match evicted {
                    Evicted::Idle {
                        server, slot, conn, ..
                    } => {
                        self.outputs.push_back(Output::Close(conn.conn));
                        (server, slot)
                    }
                    Evicted::Leased { server, slot, .. } => (server, slot),
                };
                self.held_changed(victim);
                if let Some(victim) = self.servers.addr(victim) {
                    self.event(ClientEvent::Evicted {
                        server: victim,
                        slot: victim_slot,
                    });
                }
                self.outputs.push_back(Output::Idle);
                Some(kept)
            }
            Offer::Rejected(pooled) => {
                // One lower would have been kept: this server holds fewer connections than
                // the fullest one this client is on.
                if self.pool.highest_slot() == Some(slot) {
                    self.rover.handle_near_miss(now);
                }
                self.outputs.push_back(Output::Close(pooled.conn));
                self.event(ClientEvent::Rejected { server, slot });
                None
            }
        }
    }

    /// Whether a connection of this age that ends now died young: before any exchange on it
    /// finished, or within [`ClientConfig::young_death`] of its line.
    fn is_young(&self, age: Age, now: Instant) -> bool {
        !age.proven || now.saturating_duration_since(age.born) < self.young
    }

    /// A connection of `server` died young: a failure of the server, so that one that closes
    /// every connection after its line draws backoff, not a reconnect per round trip.
    fn died_young(&mut self, server: ServerId, now: Instant) {
        self.stats.died_young += 1;
        self.rover.handle_server_failed(server, now);
    }

    /// When a connection of this age that becomes idle at `now` is to be let go, if ever; the
    /// earliest such time is remembered for the timer.
    fn idle_deadline(&mut self, age: Age, now: Instant) -> Option<Instant> {
        let lifetime_end = self.max_lifetime.map(|limit| age.born + limit);
        let idle_end = self.idle_timeout.map(|limit| now + limit);
        let expires = [lifetime_end, idle_end].into_iter().flatten().min()?;
        self.next_expiry = Some(self.next_expiry.map_or(expires, |next| next.min(expires)));
        Some(expires)
    }

    /// Lets go of the idle connections whose time has come, once `next_expiry` has
    /// passed: a scan of the idle connections then, never on an ordinary checkout. Leased
    /// connections are left to their users; one that comes back past its lifetime goes at
    /// the next call.
    fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|next| next > now) {
            return;
        }
        let mut next = None;
        let mut due = Vec::new();
        for (id, pooled) in self.pool.idle_mut() {
            match pooled.expires {
                Some(at) if at <= now => {
                    let lived_out = self
                        .max_lifetime
                        .is_some_and(|limit| pooled.age.born + limit <= now);
                    due.push((id, lived_out));
                }
                Some(at) => next = Some(next.map_or(at, |n: Instant| n.min(at))),
                None => {}
            }
        }
        self.next_expiry = next;
        for (id, lived_out) in due {
            if let Ok(Removed::Idle { server, slot, conn }) = self.pool.remove(id) {
                self.outputs.push_back(Output::Close(conn.conn));
                self.held_changed(server);
                let cause = if lived_out {
                    RemoveCause::MaxLifetime
                } else {
                    RemoveCause::IdleTimeout
                };
                if let Some(addr) = self.servers.addr(server) {
                    self.removed(addr, slot, cause);
                }
            }
        }
    }

    /// A pooled connection of `server` was ended by its peer (closed, reset, failed): young,
    /// a failure of the server; proven, the server may be restarting, and the rover probes it.
    fn ended_by_peer(&mut self, server: ServerId, age: Age, now: Instant) {
        if self.is_young(age, now) {
            self.died_young(server, now);
        } else {
            self.rover.handle_conn_lost(server, now);
        }
    }

    /// The pool kept a connection the rover found, on `id` (at `server`) with `slot`.
    fn kept(&mut self, id: ServerId, server: SocketAddr, slot: u32) {
        self.rover.handle_kept();
        self.held_changed(id);
        self.event(ClientEvent::Kept { server, slot });
    }

    /// The pool's count of connections on `server` may have changed: the rover spreads by it.
    fn held_changed(&mut self, server: ServerId) {
        self.rover.set_held(server, self.pool.held_on(server));
    }

    /// How many connections the pool should keep now.
    fn target(&self) -> usize {
        match self.sizing {
            PoolSizing::Fixed => self.pool.max_slots(),
            PoolSizing::Demand => self.demand.target(self.pool.max_slots()),
        }
    }

    /// Follows the client's concurrency (leased connections and callers in line) and, sized
    /// to demand, lets go of the highest idle connections held beyond it.
    fn resize(&mut self, now: Instant) {
        if self.sizing != PoolSizing::Demand || self.closed {
            return;
        }
        let concurrency = self.pool.status().leased + self.line.len() + self.unmet;
        self.demand.set(concurrency, now);
        self.pool.set_limit(self.target());
        while let Some(evicted) = self.pool.trim() {
            let Evicted::Idle {
                server, slot, conn, ..
            } = evicted
            else {
                unreachable!("trim lets go of idle connections only")
            };
            self.outputs.push_back(Output::Close(conn.conn));
            self.held_changed(server);
            if let Some(addr) = self.servers.addr(server) {
                self.removed(addr, slot, RemoveCause::Surplus);
            }
        }
    }

    /// A caller gave up after waiting `waited` for a connection: counted in
    /// [`ClientStats::timed_out_gets`], and what to tell it ([`ClientCore::get_error`]).
    pub fn get_timed_out(&mut self, waited: core::time::Duration) -> GetError {
        self.stats.timed_out_gets += 1;
        self.get_error(waited)
    }

    /// Why a caller found no connection within `waited`, for an adapter whose driver runs.
    pub fn get_error(&self, waited: core::time::Duration) -> GetError {
        if self.closed {
            GetError::Closed
        } else if self.servers.addrs().next().is_none() {
            GetError::NoServers
        } else {
            GetError::TimedOut {
                waited,
                last_failure: self.last_failure,
            }
        }
    }

    fn removed(&mut self, server: SocketAddr, slot: u32, cause: RemoveCause) {
        self.stats.removed.count(cause);
        self.event(ClientEvent::Removed {
            server,
            slot,
            cause,
        });
    }

    fn event(&mut self, event: ClientEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    /// Turns the rover's actions and events into outputs until it has nothing more to say,
    /// telling it the pool's demand first each time.
    fn settle(&mut self, now: Instant) {
        self.resize(now);
        loop {
            let wanted = self.pool.wanted().saturating_sub(self.undelivered);
            self.rover.set_demand(wanted, now);
            let mut progressed = false;
            while let Some(action) = self.rover.poll_action() {
                progressed = true;
                match action {
                    Action::Connect { attempt, server } => match self.servers.addr(server) {
                        Some(server) => self.outputs.push_back(Output::Connect { attempt, server }),
                        None => unreachable!("the rover connects only to servers in the set"),
                    },
                    // The current attempt's end is its input's answer.
                    Action::Close { attempt } if self.current == Some(attempt) => {}
                    Action::Close { attempt } => self.outputs.push_back(Output::Abort(attempt)),
                }
            }
            while let Some(event) = self.rover.poll_event() {
                progressed = true;
                self.rover_event(event);
            }
            if !progressed {
                break;
            }
        }
    }

    fn rover_event(&mut self, event: Event) {
        match event {
            Event::Connection {
                attempt,
                server,
                slot,
            } => {
                // Only `handle_received` completes a line, for the current attempt.
                debug_assert_eq!(self.current, Some(attempt));
                self.undelivered += 1;
                self.ready = Some(Ready { server, slot });
                // On its way to the pool: spreading counts it already.
                let held = self.pool.held_on(server) + 1;
                self.rover.set_held(server, held);
            }
            Event::Unreachable { server, reason, .. } => {
                self.stats.unreachable += 1;
                if let Some(server) = self.servers.addr(server) {
                    self.last_failure = Some(Failure::Unreachable { server, reason });
                    self.event(ClientEvent::Unreachable { server, reason });
                }
            }
            Event::HandshakeFailed { server, reason, .. } => {
                self.stats.handshake_failed += 1;
                if let Some(server) = self.servers.addr(server) {
                    self.last_failure = Some(Failure::HandshakeFailed { server, reason });
                    self.event(ClientEvent::HandshakeFailed { server, reason });
                }
            }
            Event::NoServers => self.event(ClientEvent::NoServers),
        }
    }
}

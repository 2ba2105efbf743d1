//! [`Server`]: a listening Callosum server as a component of the user's `mio` loop.
//!
//! It accepts connections, asks the core ([`callosum_proto::server`]) for each one's slot,
//! writes the slot line (keeping what a full socket did not take and writing it on the next
//! writable event), lets the application read and write each connection, and reports each
//! connection's end to the core exactly once: the peer closed (a read returned 0), an I/O
//! error, [`Server::close`], or a drain's deadline ([`Server::drain`]).
//!
//! Connections are kept in a table indexed by their slot, and a connection's token is
//! derived from its slot: the core's lowest-free allocator keeps slots, so the table, dense.
//!
//! A connection is registered for `READABLE` only. `WRITABLE` is added (a `reregister`) only
//! when a write would block, or when a full socket did not take the whole slot line, and taken
//! away again at the writable event that follows, once the line is written: a new socket is
//! writable at once, and an interest in it would wake the loop once more per connection,
//! and again whenever the peer's acknowledgements free send space.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use callosum_proto::adapter::{self, AcceptError, Clock, ServerError};
use callosum_proto::server::{Accept, AcceptId, DrainPhase, DrainReport, GrowableServerCore};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::conn::{Conn, Ended};
use crate::{ServerConfig, ServerStatus, TokenRange};

/// Names one accepted connection of a [`Server`]. A connection's id goes stale when it
/// ends; a stale id is refused, never confused with a later connection on the same slot.
///
/// ```
/// # fn demo(event: callosum_mio::ServerEvent) {
/// if let callosum_mio::ServerEvent::Accepted { conn, slot, .. } = event {
///     println!("{conn} holds slot {slot}");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerConnId(AcceptId);

impl ServerConnId {
    /// The slot this connection holds.
    pub fn slot(self) -> u32 {
        self.0.slot()
    }
}

impl fmt::Display for ServerConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a server connection ended.
///
/// ```
/// use callosum_mio::CloseCause;
///
/// assert_eq!(CloseCause::PeerClosed.to_string(), "closed by the peer");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCause {
    /// A read returned 0: the peer closed (FIN).
    PeerClosed,
    /// A read or write failed (a reset is [`io::ErrorKind::ConnectionReset`]).
    Failed(io::ErrorKind),
    /// The application called [`Server::close`].
    Closed,
    /// The drain's deadline came with the connection still open ([`Server::drain`]).
    DrainDeadline,
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::PeerClosed => f.write_str("closed by the peer"),
            CloseCause::Failed(kind) => write!(f, "failed: {kind}"),
            CloseCause::Closed => f.write_str("closed by the application"),
            CloseCause::DrainDeadline => f.write_str("closed at the drain's deadline"),
        }
    }
}

impl From<Ended> for CloseCause {
    fn from(ended: Ended) -> CloseCause {
        match ended {
            Ended::PeerClosed => CloseCause::PeerClosed,
            Ended::Failed(kind) => CloseCause::Failed(kind),
        }
    }
}

/// What happened on a [`Server`]; drain them with [`Server::poll_event`].
///
/// ```
/// use callosum_mio::ServerEvent;
///
/// fn log(event: &ServerEvent) {
///     match event {
///         ServerEvent::Accepted { slot, peer, .. } => eprintln!("slot {slot} assigned to {peer}"),
///         ServerEvent::Closed { slot, .. } => eprintln!("slot {slot} freed"),
///         _ => {}
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A connection got `slot`; its slot line is written (or being written).
    Accepted {
        /// The connection.
        conn: ServerConnId,
        /// Its slot.
        slot: u32,
        /// Who connected.
        peer: SocketAddr,
    },
    /// `conn` may have bytes (or its end) to read: call [`Server::read`] until `WouldBlock`.
    Readable {
        /// The connection.
        conn: ServerConnId,
    },
    /// `conn` can take writes again, after a write that would block.
    ///
    /// It comes only after [`Server::write`] answered [`io::ErrorKind::WouldBlock`] (the
    /// socket was full, or part of the slot line was still unwritten), once the socket has
    /// room and the slot line is written: one `Writable` per wait, however many writes
    /// would block before it. A connection whose writes never block gets none, not even
    /// when it is new (a socket is writable at once, and the server does not wake for that).
    /// Having had it, write until `WouldBlock` again or until nothing is left: the next one
    /// comes only after the next write that would block. Rarely, a connection whose slot
    /// line a full socket did not take at once gets one when the line is written, with no
    /// write of its own before it.
    ///
    /// (Earlier versions registered every connection for writability at its accept, so
    /// each one got a `Writable` at once, needed or not.)
    Writable {
        /// The connection.
        conn: ServerConnId,
    },
    /// `conn` ended and `slot` is free again. Reported exactly once per connection.
    Closed {
        /// The connection, stale from now on.
        conn: ServerConnId,
        /// The slot freed.
        slot: u32,
        /// Why it ended.
        cause: CloseCause,
    },
    /// The server started draining ([`Server::drain`]) with `conn` open, one event per
    /// connection: close it ([`Server::close`]) as soon as it is between two requests, at
    /// once if it is idle now. (Check [`Server::is_draining`] after each exchange too.)
    Draining {
        /// The connection.
        conn: ServerConnId,
    },
    /// The drain is done: no connection is left. Reported once, after the last `Closed`.
    Drained {
        /// How the connections ended: between requests, or at the deadline.
        report: DrainReport,
    },
    /// A connection was closed at once, without a slot line: every slot is in use (at
    /// `max_slots`, or at the size of the token range).
    Refused {
        /// Who connected.
        peer: SocketAddr,
    },
    /// Accepting failed for want of a resource (too many open files, ...): the server stops
    /// accepting until `resume_at` (see [`Server::poll_timeout`]) and keeps serving its
    /// connections. Errors of one connection (aborted, reset) only make it accept again.
    AcceptFailed {
        /// The error.
        kind: io::ErrorKind,
        /// When accepting resumes.
        resume_at: Instant,
    },
}

/// One live connection, in the table at its slot.
#[derive(Debug)]
struct Live {
    conn: Conn,
    id: AcceptId,
}

/// A Callosum server on a `mio` loop: see the [crate docs](crate) for the call order.
///
/// Tokens: the first of its [`TokenRange`] is the listener's; the connection on slot `s`
/// has the token `1 + s` of the range. So a range of `n` tokens serves `n - 1` connections
/// at once: [`Server::register`] refuses a range too short for `max_slots`, and an
/// unlimited server (`max_slots` `None`) numbers at most `n - 1` slots, refusing more
/// connections as [`ServerEvent::Refused`].
///
/// ```
/// use callosum_mio::{Server, ServerConfig, ServerEvent, TokenRange};
/// use mio::{Events, Poll};
/// use std::io::Read;
/// use std::time::Duration;
///
/// let mut poll = Poll::new()?;
/// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default())?;
/// server.register(poll.registry(), TokenRange::new(1000..2000))?;
///
/// let mut peer = std::net::TcpStream::connect(server.local_addr())?;
/// let mut events = Events::with_capacity(64);
/// let slot = loop {
///     poll.poll(&mut events, Some(Duration::from_secs(10)))?;
///     for event in &events {
///         if server.handles(event.token()) {
///             server.handle_event(event);
///         }
///     }
///     if let Some(ServerEvent::Accepted { slot, .. }) = server.poll_event() {
///         break slot;
///     }
/// };
/// assert_eq!(slot, 0);
/// let mut line = [0u8; 8];
/// let n = peer.read(&mut line)?;
/// assert_eq!(&line[..n], b"0\r\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    /// `None` once draining: dropped, so that new connections are refused.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    max_slots: Option<u32>,
    core: GrowableServerCore,
    clock: Clock,
    registry: Option<Registry>,
    tokens: TokenRange,
    /// Live connections by slot.
    conns: Vec<Option<Live>>,
    events: VecDeque<ServerEvent>,
    /// [`ServerEvent::Drained`] was queued.
    drain_reported: bool,
}

impl Server {
    /// Binds a listening socket to `addr` (port 0: any free port). It accepts nothing
    /// until [`Server::register`].
    ///
    /// ```
    /// use callosum_mio::{Server, ServerConfig};
    ///
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    /// assert_ne!(server.local_addr().port(), 0);
    /// let mut zero = ServerConfig::default();
    /// zero.max_slots = Some(0);
    /// assert!(Server::bind("127.0.0.1:0".parse().unwrap(), zero).is_err());
    /// ```
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> Result<Server, ServerError> {
        let core = GrowableServerCore::from_config(&config).map_err(ServerError::Config)?;
        let bind_error = |source| ServerError::Bind { addr, source };
        let listener = TcpListener::bind(addr).map_err(bind_error)?;
        Ok(Server {
            local_addr: listener.local_addr().map_err(bind_error)?,
            listener: Some(listener),
            max_slots: config.max_slots,
            core,
            clock: Clock::new(),
            registry: None,
            tokens: TokenRange::new(0..0),
            conns: Vec::new(),
            events: VecDeque::new(),
            drain_reported: false,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Registers the listener with `registry` under the first token of `tokens`; accepted
    /// connections get the others, by slot. The server keeps a clone of `registry` for them.
    /// The range needs at least two tokens, and `max_slots + 1` if `max_slots` is set; a
    /// server registers once.
    ///
    /// ```
    /// # use callosum_mio::{Server, ServerConfig, TokenRange};
    /// let poll = mio::Poll::new().unwrap();
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert!(server.register(poll.registry(), TokenRange::new(7..8)).is_err());
    /// server.register(poll.registry(), TokenRange::new(7..100)).unwrap();
    /// assert!(server.handles(mio::Token(7)));
    ///
    /// let mut config = ServerConfig::default();
    /// config.max_slots = Some(10);
    /// let mut bounded = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    /// assert!(bounded.register(poll.registry(), TokenRange::new(100..110)).is_err());
    /// bounded.register(poll.registry(), TokenRange::new(100..111)).unwrap();
    /// ```
    pub fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        if self.registry.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the server is registered already",
            ));
        }
        let room = tokens.len().saturating_sub(1);
        let room = u32::try_from(room).unwrap_or(u32::MAX);
        match self.max_slots {
            _ if room == 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a server needs a token range of at least 2 tokens",
                ));
            }
            Some(max_slots) if max_slots > room => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a server with max_slots {max_slots} needs {} tokens, not {}",
                        u64::from(max_slots) + 1,
                        tokens.len()
                    ),
                ));
            }
            Some(_) => {}
            // Unlimited: the range is the limit. Nothing was accepted yet, so the core
            // starts afresh.
            None => {
                self.core = GrowableServerCore::new(Some(room))
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?
            }
        }
        if let Some(listener) = &mut self.listener {
            registry.register(listener, Token(tokens.start()), Interest::READABLE)?;
        }
        self.registry = Some(registry.try_clone()?);
        self.tokens = tokens;
        Ok(())
    }

    /// Whether `token` is one of this server's (after [`Server::register`]).
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert!(!server.handles(mio::Token(0)));
    /// ```
    pub fn handles(&self, token: Token) -> bool {
        self.registry.is_some() && self.tokens.contains(token)
    }

    /// Handles one `mio` event for one of this server's tokens (others are ignored):
    /// accepts every pending connection, writes pending slot lines, and queues events for
    /// the application. Drain [`Server::poll_event`] afterwards.
    ///
    /// ```no_run
    /// # fn demo(server: &mut callosum_mio::Server, events: &mio::Events) {
    /// for event in events {
    ///     if server.handles(event.token()) {
    ///         server.handle_event(event);
    ///     }
    /// }
    /// while let Some(event) = server.poll_event() {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub fn handle_event(&mut self, event: &Event) {
        if !self.handles(event.token()) {
            return;
        }
        match self.tokens.offset(event.token()) {
            Some(0) => self.accept_all(),
            Some(offset) => self.connection_event(offset - 1, event),
            None => {}
        }
    }

    /// Lets time pass: ends an accept backoff that is due, and accepts what waited; at a
    /// drain's deadline, closes every connection still open ([`CloseCause::DrainDeadline`]).
    /// Call it after every poll.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// server.handle_timeout();
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    pub fn handle_timeout(&mut self) {
        if self.core.poll_timeout().is_none() {
            return;
        }
        self.core.handle_timeout(self.clock.now());
        if self.core.is_draining() {
            self.close_remaining_if_due();
            return;
        }
        // Connections that arrived meanwhile raised no new event: accept them now.
        if self.core.is_accepting() && self.registry.is_some() {
            self.accept_all();
        }
    }

    /// When [`Server::handle_timeout`] has something to do: the end of an accept backoff,
    /// or a drain's deadline.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core
            .poll_timeout()
            .and_then(|resume| self.clock.to_std(resume))
    }

    /// The next thing that happened, if any.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert_eq!(server.poll_event(), None);
    /// ```
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let event = self.events.pop_front();
        #[cfg(feature = "log")]
        match &event {
            Some(failed @ ServerEvent::AcceptFailed { .. }) => log::warn!("server: {failed:?}"),
            Some(ready @ (ServerEvent::Readable { .. } | ServerEvent::Writable { .. })) => {
                log::trace!("server: {ready:?}");
            }
            Some(other) => log::debug!("server: {other:?}"),
            None => {}
        }
        event
    }

    /// Reads from `conn`. A read of 0 bytes (into a non-empty `buf`) or an I/O error ends
    /// the connection: it is closed, its slot freed and [`ServerEvent::Closed`] queued.
    /// A stale id gives [`io::ErrorKind::NotConnected`].
    ///
    /// ```no_run
    /// # fn demo(server: &mut callosum_mio::Server, conn: callosum_mio::ServerConnId) {
    /// let mut buf = [0u8; 4096];
    /// loop {
    ///     match server.read(conn, &mut buf) {
    ///         Ok(0) => break, // ended: a Closed event is queued
    ///         Ok(n) => println!("got {:?}", &buf[..n]),
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
    ///         Err(_) => break, // ended, or a stale id
    ///     }
    /// }
    /// # }
    /// ```
    pub fn read(&mut self, conn: ServerConnId, buf: &mut [u8]) -> io::Result<usize> {
        let live = self.live_mut(conn)?;
        let result = io::Read::read(&mut live.conn, buf);
        self.close_if_ended(conn);
        result
    }

    /// Writes to `conn` (after the rest of its slot line, if the socket did not take it
    /// all: `WouldBlock` until then). After `WouldBlock`, for a full socket or a pending line,
    /// [`ServerEvent::Writable`] follows once the connection can take writes again: only
    /// then does the server ask `mio` for the socket's writability. An I/O error ends the
    /// connection as for [`Server::read`].
    ///
    /// ```no_run
    /// # fn demo(server: &mut callosum_mio::Server, conn: callosum_mio::ServerConnId) -> std::io::Result<()> {
    /// let written = server.write(conn, b"PONG\n")?;
    /// # let _ = written; Ok(()) }
    /// ```
    pub fn write(&mut self, conn: ServerConnId, buf: &[u8]) -> io::Result<usize> {
        let token = self.token(conn.0.slot());
        let registry = self.registry.as_ref();
        let live = self
            .conns
            .get_mut(conn.0.slot() as usize)
            .and_then(Option::as_mut)
            .filter(|live| live.id == conn.0)
            .ok_or_else(stale)?;
        let mut result = live.conn.write(buf);
        if let Err(error) = &result
            && error.kind() == io::ErrorKind::WouldBlock
            && let Err(error) = want_writable(registry, &mut live.conn, token, true)
        {
            // No writable event would come: the connection could never write again.
            result = Err(live.conn.fail_with(error));
        }
        self.close_if_ended(conn);
        result
    }

    /// Closes `conn` and frees its slot ([`ServerEvent::Closed`] with
    /// [`CloseCause::Closed`]); `false` for a stale id, which changes nothing.
    ///
    /// ```no_run
    /// # fn demo(server: &mut callosum_mio::Server, conn: callosum_mio::ServerConnId) {
    /// assert!(server.close(conn));
    /// assert!(!server.close(conn));
    /// # }
    /// ```
    pub fn close(&mut self, conn: ServerConnId) -> bool {
        if self.live_mut(conn).is_err() {
            return false;
        }
        self.end(conn.0.slot(), CloseCause::Closed);
        true
    }

    /// The connection `conn`, for its addresses and socket options; `None` if stale.
    ///
    /// ```no_run
    /// # fn demo(server: &callosum_mio::Server, conn: callosum_mio::ServerConnId) {
    /// if let Some(c) = server.conn(conn) {
    ///     let _ = c.stream().set_nodelay(true);
    /// }
    /// # }
    /// ```
    pub fn conn(&self, conn: ServerConnId) -> Option<&Conn> {
        self.conns
            .get(conn.0.slot() as usize)
            .and_then(Option::as_ref)
            .filter(|live| live.id == conn.0)
            .map(|live| &live.conn)
    }

    /// Live connections, whether the server is accepting (`false` while pausing after an
    /// accept error, and once draining), the drain if one started, and the core's counters:
    /// accepted, shed at `max_slots` (`refused_full`), drained, closed at the deadline, ...
    pub fn status(&self) -> ServerStatus {
        self.core.status()
    }

    /// Drains the server for a rolling restart (PROTOCOL.md section 2):
    ///
    /// 1. The listener is closed at once, so new connections are refused.
    /// 2. A [`ServerEvent::Draining`] is queued for every open connection, and
    ///    [`Server::is_draining`] is true from now on: the application closes each one
    ///    ([`Server::close`]) when it is between two requests, having answered the one in
    ///    hand, and at once if it is idle.
    /// 3. At `deadline` ([`Server::poll_timeout`], then [`Server::handle_timeout`]) every
    ///    connection still open is closed, [`CloseCause::DrainDeadline`].
    /// 4. Once none is left, [`ServerEvent::Drained`] reports how they ended, once.
    ///
    /// Draining again keeps the earlier deadline. [`Server::status`] has the drain's phase
    /// and counts all along.
    ///
    /// ```
    /// use callosum_mio::{Server, ServerConfig, ServerEvent, TokenRange};
    /// use mio::{Events, Poll};
    /// use std::time::{Duration, Instant};
    ///
    /// let mut poll = Poll::new()?;
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default())?;
    /// server.register(poll.registry(), TokenRange::new(0..100))?;
    /// let idle = std::net::TcpStream::connect(server.local_addr())?;
    /// let mut events = Events::with_capacity(64);
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// let report = 'run: loop {
    ///     let timeout = callosum_mio::timeout_until([server.poll_timeout(), Some(deadline)]);
    ///     poll.poll(&mut events, timeout)?;
    ///     for event in &events {
    ///         server.handle_event(event);
    ///     }
    ///     server.handle_timeout();
    ///     while let Some(event) = server.poll_event() {
    ///         match event {
    ///             // A rolling restart begins once the connection is in.
    ///             ServerEvent::Accepted { .. } => server.drain(deadline),
    ///             // This application is idle on every connection: close it at once.
    ///             ServerEvent::Draining { conn } => {
    ///                 server.close(conn);
    ///             }
    ///             ServerEvent::Drained { report } => break 'run report,
    ///             _ => {}
    ///         }
    ///     }
    /// };
    /// assert_eq!((report.drained, report.closed_at_deadline), (1, 0));
    /// assert!(std::net::TcpStream::connect(server.local_addr()).is_err(), "refused");
    /// # drop(idle);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn drain(&mut self, deadline: Instant) {
        let first = !self.core.is_draining();
        let _ = self
            .core
            .handle_drain(self.clock.now(), self.clock.from_std(deadline));
        // Taken, and dropped at the end of this statement: the port refuses new connections.
        if let Some(mut listener) = self.listener.take()
            && let Some(registry) = &self.registry
        {
            let _ = registry.deregister(&mut listener);
        }
        if first {
            let draining = self
                .conns
                .iter()
                .flatten()
                .map(|live| ServerEvent::Draining {
                    conn: ServerConnId(live.id),
                });
            self.events.extend(draining);
        }
        self.close_remaining_if_due();
    }

    /// Whether [`Server::drain`] was called: close each connection between requests.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert!(!server.is_draining());
    /// server.drain(std::time::Instant::now());
    /// assert!(server.is_draining());
    /// assert_eq!(server.poll_event(), Some(callosum_mio::ServerEvent::Drained { report: Default::default() }));
    /// ```
    pub fn is_draining(&self) -> bool {
        self.core.is_draining()
    }

    /// Acts on the drain's phase: at the deadline, closes every connection still open; once
    /// none is, reports the drain done (once).
    fn close_remaining_if_due(&mut self) {
        let Some(drain) = self.core.drain_status() else {
            return;
        };
        if drain.phase == DrainPhase::CloseRemaining {
            for slot in 0..self.conns.len() {
                // Slots fit in u32: they come from the core.
                self.end(slot as u32, CloseCause::DrainDeadline);
            }
        }
        self.report_if_drained();
    }

    /// Queues [`ServerEvent::Drained`] the first time a drain is found done.
    fn report_if_drained(&mut self) {
        if self.drain_reported {
            return;
        }
        if let Some(drain) = self.core.drain_status()
            && drain.phase == DrainPhase::Done
        {
            self.drain_reported = true;
            self.events.push_back(ServerEvent::Drained {
                report: drain.report,
            });
        }
    }

    fn live_mut(&mut self, conn: ServerConnId) -> io::Result<&mut Live> {
        self.conns
            .get_mut(conn.0.slot() as usize)
            .and_then(Option::as_mut)
            .filter(|live| live.id == conn.0)
            .ok_or_else(stale)
    }

    /// The token of the connection on `slot`: `register` bounded the slots by the range, so
    /// every slot has its token.
    fn token(&self, slot: u32) -> Token {
        Token(self.tokens.start() + 1 + slot as usize)
    }

    fn close_if_ended(&mut self, conn: ServerConnId) {
        let ended = self.live_mut(conn).ok().and_then(|live| live.conn.ended());
        if let Some(ended) = ended {
            self.end(conn.0.slot(), ended.into());
        }
    }

    /// Accepts until the listener would block, or backs off after an accept error for want
    /// of a resource.
    fn accept_all(&mut self) {
        while self.core.is_accepting() {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(error) => match adapter::accept_error(&error) {
                    AcceptError::Pending => break,
                    // That one connection is gone; the listener is fine.
                    AcceptError::PerConnection => {}
                    AcceptError::Resource => self.back_off(error.kind()),
                },
            }
        }
    }

    fn back_off(&mut self, kind: io::ErrorKind) {
        let resume = self.core.handle_accept_error(self.clock.now());
        // An instant past the end of `std`'s clock cannot come from a pause of at most 1 s.
        let resume_at = self.clock.to_std(resume).unwrap_or_else(Instant::now);
        self.events
            .push_back(ServerEvent::AcceptFailed { kind, resume_at });
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let Accept::Assigned { conn: id, line } = self.core.handle_accept() else {
            self.events.push_back(ServerEvent::Refused { peer });
            return;
        };
        let slot = id.slot();
        let token = self.token(slot);
        // The line first, in one write call, and the registration after it, as a bare loop
        // does: the client has its line one system call sooner, and a peer already gone
        // costs no registration. Registering reports what arrived meanwhile.
        let mut conn = Conn::new(stream, Vec::new());
        let all_sent = match conn.send_line(line.as_bytes()) {
            Ok(all) => all,
            Err(_) => {
                // The peer left before its line: never registered nor announced, counted
                // apart.
                let _ = self.core.handle_lost_before_line(id);
                return;
            }
        };
        // Readable only: a new socket is writable at once, and an interest in that would
        // wake the loop once more per connection. `WRITABLE` is there only while the rest of
        // a line that a full socket did not take waits, or a write would block (see
        // `want_writable`).
        let registered = self
            .registry
            .as_ref()
            .map(|registry| registry.register(conn.stream_mut(), token, interest(!all_sent)));
        if let Some(Err(error)) = registered {
            // Never announced to the application: free the slot and pause, as for any
            // shortage. Its line went out, so this is a close (the client sees the connection
            // end after its line, a young death), not a loss before the line.
            let _ = self.core.handle_closed(id);
            self.back_off(error.kind());
            return;
        }
        conn.set_write_interest(!all_sent);
        let index = slot as usize;
        if self.conns.len() <= index {
            // The lowest free slot is at most the number of live connections.
            self.conns.resize_with(index + 1, || None);
        }
        self.conns[index] = Some(Live { conn, id });
        self.events.push_back(ServerEvent::Accepted {
            conn: ServerConnId(id),
            slot,
            peer,
        });
    }

    fn connection_event(&mut self, slot: usize, event: &Event) {
        let Some(live) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let id = ServerConnId(live.id);
        // Only a connection waiting for room (a write would block, or its line is pending)
        // is registered for writability; an error event may come without it.
        let waiting = live.conn.write_interest();
        if (event.is_writable() && waiting) || event.is_error() {
            match live.conn.flush_line() {
                Ok(true) if event.is_writable() && waiting => {
                    // The wait is over: readable only again, until a write would block. A
                    // failure leaves the interest (and a `Writable` now and then) in place.
                    let token = Token(self.tokens.start() + 1 + slot);
                    let _ = want_writable(self.registry.as_ref(), &mut live.conn, token, false);
                    self.events.push_back(ServerEvent::Writable { conn: id });
                }
                Ok(_) => {}
                Err(error) => {
                    self.end(id.0.slot(), CloseCause::Failed(error.kind()));
                    return;
                }
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.events.push_back(ServerEvent::Readable { conn: id });
        }
    }

    /// Takes `conn` out of the poll before it is closed, where closing does not. On Unix a
    /// closed socket leaves epoll and kqueue by itself, so this spends no system call there:
    /// a deregister would be one more per connection than a bare loop makes (about a tenth of
    /// a handshake's). Elsewhere `mio` asks for it, or the registration leaks.
    fn unregister(&self, conn: &mut Conn) {
        if cfg!(unix) {
            return;
        }
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(conn.stream_mut());
        }
    }

    /// Ends the live connection on `slot`: closes it, frees its slot, reports it.
    fn end(&mut self, slot: u32, cause: CloseCause) {
        let Some(mut live) = self.conns.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.unregister(&mut live.conn);
        let lost = live.conn.line_pending();
        drop(live.conn);
        // The entry was live, so its slot is in use and this is its only release; a failure
        // would be counted in `status().stats.bad_releases`, never hidden.
        let released = if lost {
            self.core.handle_lost_before_line(live.id)
        } else {
            self.core.handle_closed(live.id)
        };
        if let Ok(slot) = released {
            self.events.push_back(ServerEvent::Closed {
                conn: ServerConnId(live.id),
                slot,
                cause,
            });
        }
        self.report_if_drained();
    }
}

/// The error for an id whose connection ended.
fn stale() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stale connection id")
}

/// Registers `conn` for `READABLE | WRITABLE` (`writable`) or for `READABLE` alone, if it is
/// not so registered already: one `reregister` when the interest changes, none otherwise.
fn want_writable(
    registry: Option<&Registry>,
    conn: &mut Conn,
    token: Token,
    writable: bool,
) -> io::Result<()> {
    if conn.write_interest() == writable {
        return Ok(());
    }
    let Some(registry) = registry else {
        return Ok(());
    };
    registry.reregister(conn.stream_mut(), token, interest(writable))?;
    conn.set_write_interest(writable);
    Ok(())
}

/// A connection's interest: always readable (its end, or bytes it sends), writable only when
/// it waits for room.
fn interest(writable: bool) -> Interest {
    if writable {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

/// A core numbering at most `max_slots` slots (`None`: unlimited), or why not.
impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tokens", &self.tokens)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

//! [`Server`]: a listening Callosum server as a component of the user's `mio` loop.
//!
//! It accepts connections, asks the core for each one's slot, writes the slot line (keeping
//! what a full socket did not take and writing it on the next writable event), lets the
//! application read and write each connection, and frees each slot exactly once when its
//! connection ends: the peer closed (a read returned 0), an I/O error, or
//! [`Server::close`]. Every decision about slots is the core's
//! ([`callosum_proto::server`]).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use callosum_proto::server::{self as core, Accept, GrowableServerCore, ServerStats};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::TokenRange;
use crate::clock::Clock;
use crate::conn::{Conn, Ended, is_transient};

/// How a [`Server`] is set up.
///
/// After an accept error such as "too many open files" the server stops accepting for as
/// long as the core's backoff says (10 ms, doubling while errors go on, up to 1 s) and
/// serves the connections it has meanwhile.
///
/// ```
/// use callosum_mio::ServerConfig;
///
/// let config = ServerConfig { max_slots: Some(8) };
/// assert_eq!(ServerConfig::default().max_slots, None);
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// The most slots in use at once; a connection beyond is closed without a line.
    /// `None` (the default, as in the original): unlimited. `Some(0)` is an error.
    pub max_slots: Option<u32>,
}

/// Names one accepted connection of a [`Server`]. A connection's id goes stale when it
/// ends; a stale id is refused, never confused with a later connection.
///
/// ```
/// # fn demo(event: callosum_mio::ServerEvent) {
/// if let callosum_mio::ServerEvent::Accepted { conn, slot, .. } = event {
///     println!("{conn} holds slot {slot}");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerConnId {
    index: u32,
    generation: u32,
}

impl fmt::Display for ServerConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}#{}", self.index, self.generation)
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
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::PeerClosed => f.write_str("closed by the peer"),
            CloseCause::Failed(kind) => write!(f, "failed: {kind}"),
            CloseCause::Closed => f.write_str("closed by the application"),
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

/// Why a connection was closed at once, without a slot line.
///
/// ```
/// use callosum_mio::RefuseReason;
///
/// assert_ne!(RefuseReason::Full, RefuseReason::OutOfTokens);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// Every slot is in use (`max_slots`).
    Full,
    /// Every token of the server's [`TokenRange`] is in use.
    OutOfTokens,
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
    /// `conn` can take writes again (its slot line is written).
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
    /// A connection was closed at once, without a slot line.
    Refused {
        /// Who connected.
        peer: SocketAddr,
        /// Why.
        reason: RefuseReason,
    },
    /// Accepting failed (too many open files, ...): the server stops accepting until
    /// `resume_at` (see [`Server::poll_timeout`]) and keeps serving its connections.
    AcceptFailed {
        /// The error.
        kind: io::ErrorKind,
        /// When accepting resumes.
        resume_at: Instant,
    },
}

/// A snapshot of a [`Server`]'s state.
///
/// ```
/// let server = callosum_mio::Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
/// let status = server.status();
/// assert_eq!((status.connections, status.accepting), (0, true));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerStatus {
    /// Live connections, each holding a slot.
    pub connections: u32,
    /// `false` while backing off after an accept error.
    pub accepting: bool,
    /// Accept errors so far (each one paused accepting).
    pub accept_errors: u64,
}

/// One record of the connection table.
#[derive(Debug, Default)]
struct Entry {
    generation: u32,
    live: Option<Live>,
}

#[derive(Debug)]
struct Live {
    conn: Conn,
    core: core::AcceptId,
}

/// A Callosum server on a `mio` loop: see the [crate docs](crate) for the call order.
///
/// Tokens: the first of its [`TokenRange`] is the listener's, each further one a
/// connection's, so a range of `n` tokens serves `n - 1` connections at once (more are
/// refused with [`RefuseReason::OutOfTokens`]).
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
/// let mut peer = std::net::TcpStream::connect(server.local_addr()?)?;
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
    listener: TcpListener,
    core: GrowableServerCore,
    clock: Clock,
    registry: Option<Registry>,
    tokens: TokenRange,
    conns: Vec<Entry>,
    free: Vec<u32>,
    events: VecDeque<ServerEvent>,
    paused_until: Option<Instant>,
}

impl Server {
    /// Binds a listening socket to `addr` (port 0: any free port). It accepts nothing
    /// until [`Server::register`].
    ///
    /// ```
    /// use callosum_mio::{Server, ServerConfig};
    ///
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    /// assert_ne!(server.local_addr().unwrap().port(), 0);
    /// let zero = ServerConfig { max_slots: Some(0), ..ServerConfig::default() };
    /// assert!(Server::bind("127.0.0.1:0".parse().unwrap(), zero).is_err());
    /// ```
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Server> {
        let core = GrowableServerCore::new(config.max_slots)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            core,
            clock: Clock::new(),
            registry: None,
            tokens: TokenRange::new(0..0),
            conns: Vec::new(),
            free: Vec::new(),
            events: VecDeque::new(),
            paused_until: None,
        })
    }

    /// The address the server listens on.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert!(server.local_addr().unwrap().ip().is_loopback());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Registers the listener with `registry` under the first token of `tokens`; accepted
    /// connections get the others. The server keeps a clone of `registry` for them. The range
    /// needs at least two tokens; a server registers once.
    ///
    /// ```
    /// # use callosum_mio::{Server, TokenRange};
    /// let poll = mio::Poll::new().unwrap();
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert!(server.register(poll.registry(), TokenRange::new(7..8)).is_err());
    /// server.register(poll.registry(), TokenRange::new(7..100)).unwrap();
    /// assert!(server.handles(mio::Token(7)));
    /// ```
    pub fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        if self.registry.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the server is registered already",
            ));
        }
        let Some(listener_token) = tokens.token(0).filter(|_| tokens.len() >= 2) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server needs a token range of at least 2 tokens",
            ));
        };
        registry.register(&mut self.listener, listener_token, Interest::READABLE)?;
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

    /// Lets time pass: ends an accept backoff that is due. Call it after every poll.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// server.handle_timeout();
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    pub fn handle_timeout(&mut self) {
        if self
            .paused_until
            .is_some_and(|until| until <= Instant::now())
        {
            self.paused_until = None;
            self.core.handle_timeout(self.clock.now());
            // Connections that arrived meanwhile raised no new event: accept them now.
            if self.registry.is_some() {
                self.accept_all();
            }
        }
    }

    /// When [`Server::handle_timeout`] has something to do: the end of an accept backoff.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.paused_until
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
    /// all: `WouldBlock` until then, and [`ServerEvent::Writable`] follows). An I/O error
    /// ends the connection as for [`Server::read`].
    ///
    /// ```no_run
    /// # fn demo(server: &mut callosum_mio::Server, conn: callosum_mio::ServerConnId) -> std::io::Result<()> {
    /// let written = server.write(conn, b"PONG\n")?;
    /// # let _ = written; Ok(()) }
    /// ```
    pub fn write(&mut self, conn: ServerConnId, buf: &[u8]) -> io::Result<usize> {
        let live = self.live_mut(conn)?;
        let result = live.conn.write(buf);
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
        self.end(conn.index, CloseCause::Closed);
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
            .get(conn.index as usize)
            .filter(|entry| entry.generation == conn.generation)
            .and_then(|entry| entry.live.as_ref())
            .map(|live| &live.conn)
    }

    /// The slot `conn` holds; `None` if stale.
    ///
    /// ```no_run
    /// # fn demo(server: &callosum_mio::Server, conn: callosum_mio::ServerConnId) {
    /// println!("{:?}", server.slot(conn));
    /// # }
    /// ```
    pub fn slot(&self, conn: ServerConnId) -> Option<u32> {
        self.conns
            .get(conn.index as usize)
            .filter(|entry| entry.generation == conn.generation)
            .and_then(|entry| entry.live.as_ref())
            .map(|live| live.core.slot())
    }

    /// How many connections are live, and whether the server is accepting.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert_eq!(server.status().accept_errors, 0);
    /// ```
    pub fn status(&self) -> ServerStatus {
        ServerStatus {
            connections: self.core.live(),
            accepting: self.paused_until.is_none(),
            accept_errors: self.core.stats().accept_errors,
        }
    }

    /// The core's counters: accepted, refused as full, closed, bad releases.
    ///
    /// ```
    /// # use callosum_mio::Server;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    /// assert_eq!(server.stats().accepted, 0);
    /// ```
    pub fn stats(&self) -> &ServerStats {
        self.core.stats()
    }

    fn live_mut(&mut self, conn: ServerConnId) -> io::Result<&mut Live> {
        self.conns
            .get_mut(conn.index as usize)
            .filter(|entry| entry.generation == conn.generation)
            .and_then(|entry| entry.live.as_mut())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "stale connection id"))
    }

    fn close_if_ended(&mut self, conn: ServerConnId) {
        let ended = self.live_mut(conn).ok().and_then(|live| live.conn.ended());
        if let Some(ended) = ended {
            self.end(conn.index, ended.into());
        }
    }

    /// Accepts until the listener would block, or backs off after an accept error.
    fn accept_all(&mut self) {
        while self.paused_until.is_none() {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // The one connection is gone; the listener is fine.
                Err(error) if is_per_connection(&error) => {}
                Err(error) => self.back_off(error.kind()),
            }
        }
    }

    fn back_off(&mut self, kind: io::ErrorKind) {
        let resume = self.core.handle_accept_error(self.clock.now());
        // An instant past the end of `std`'s clock cannot come from a 1 s backoff.
        let resume_at = self.clock.std(resume).unwrap_or_else(Instant::now);
        self.paused_until = Some(resume_at);
        self.events
            .push_back(ServerEvent::AcceptFailed { kind, resume_at });
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let Some(index) = self.free_index() else {
            self.events.push_back(ServerEvent::Refused {
                peer,
                reason: RefuseReason::OutOfTokens,
            });
            return;
        };
        let Accept::Assigned { conn: core, line } = self.core.handle_accept() else {
            self.free.push(index);
            self.events.push_back(ServerEvent::Refused {
                peer,
                reason: RefuseReason::Full,
            });
            return;
        };
        let (Some(registry), Some(token)) = (&self.registry, self.tokens.token(index as usize + 1))
        else {
            unreachable!("free_index only gives indices with a token of a registered server")
        };
        if let Err(error) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            // Never announced: free the slot quietly and treat it as resource exhaustion.
            let _ = self.core.handle_closed(core);
            self.free.push(index);
            self.back_off(error.kind());
            return;
        }
        let entry = &mut self.conns[index as usize];
        let id = ServerConnId {
            index,
            generation: entry.generation,
        };
        entry.live = Some(Live {
            conn: Conn::new(stream, Vec::new(), line.as_bytes().to_vec()),
            core,
        });
        self.events.push_back(ServerEvent::Accepted {
            conn: id,
            slot: core.slot(),
            peer,
        });
        // One write call for the whole line; the rest, if any, on the next writable event.
        let flushed = self.conns[index as usize]
            .live
            .as_mut()
            .map(|live| live.conn.flush_outbound());
        if let Some(Err(error)) = flushed {
            self.end(index, CloseCause::Failed(error.kind()));
        }
    }

    fn connection_event(&mut self, index: usize, event: &Event) {
        let Some(entry) = self.conns.get_mut(index) else {
            return;
        };
        let id = ServerConnId {
            index: index as u32,
            generation: entry.generation,
        };
        let Some(live) = entry.live.as_mut() else {
            return;
        };
        if event.is_writable() || event.is_error() {
            match live.conn.flush_outbound() {
                Ok(true) if event.is_writable() => {
                    self.events.push_back(ServerEvent::Writable { conn: id });
                }
                Ok(_) => {}
                Err(error) => {
                    self.end(id.index, CloseCause::Failed(error.kind()));
                    return;
                }
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.events.push_back(ServerEvent::Readable { conn: id });
        }
    }

    /// A free index of the connection table that has a token, growing the table if needed.
    fn free_index(&mut self) -> Option<u32> {
        if let Some(index) = self.free.pop() {
            return Some(index);
        }
        let index = self.conns.len();
        let fits = index + 1 < self.tokens.len() && u32::try_from(index).is_ok();
        fits.then(|| {
            self.conns.push(Entry::default());
            index as u32
        })
    }

    /// Ends the live connection at `index`: closes it, frees its slot, reports it.
    fn end(&mut self, index: u32, cause: CloseCause) {
        let entry = &mut self.conns[index as usize];
        let Some(mut live) = entry.live.take() else {
            return;
        };
        let id = ServerConnId {
            index,
            generation: entry.generation,
        };
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(live.conn.stream_mut());
        }
        drop(live.conn);
        // The entry was live, so its slot is in use and this is its only release; a failure
        // would be counted in `stats().bad_releases`, never hidden.
        if let Ok(slot) = self.core.handle_closed(live.core) {
            self.events.push_back(ServerEvent::Closed {
                conn: id,
                slot,
                cause,
            });
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tokens", &self.tokens)
            .field("status", &self.status())
            .field("stats", self.stats())
            .finish_non_exhaustive()
    }
}

/// Accept errors that concern one connection only: accept again at once.
fn is_per_connection(error: &io::Error) -> bool {
    is_transient(error)
        || matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_that_concern_the_listener_are_told_apart() {
        assert!(is_per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(is_per_connection(&io::ErrorKind::Interrupted.into()));
        // EMFILE and friends come as `Other`/`OutOfMemory` kinds: they pause accepting.
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)));
        assert!(!is_per_connection(&io::ErrorKind::OutOfMemory.into()));
    }

    #[test]
    fn conn_ids_display_index_and_generation() {
        let id = ServerConnId {
            index: 3,
            generation: 9,
        };
        assert_eq!(id.to_string(), "conn 3#9");
    }
}

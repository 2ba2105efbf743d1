//! The rover: finds new connections for the pool (PROTOCOL.md section 4).
//!
//! A [`Rover`] knows a set of servers and, once started, launches one connection attempt at
//! once and then one every [`RoverConfig::interval`] (± [`RoverConfig::jitter`]). Each
//! attempt goes to a server drawn uniformly at random, with the rover's seeded generator,
//! among the servers not backing off. An attempt connects, reads the slot line and ends in
//! exactly one of two ways: an [`Event::Connection`] (the adapter hands its socket, and any
//! bytes after the line, to the pool) or an [`Action::Close`] (the adapter closes its socket
//! and delivers nothing), the latter with an [`Event::Unreachable`] or
//! [`Event::HandshakeFailed`] when the attempt failed rather than being aborted.
//!
//! # Call order
//!
//! The rover is sans-IO: it owns no socket and reads no clock.
//!
//! 1. Feed every input as it happens: [`Rover::handle_connected`],
//!    [`Rover::handle_connect_failed`], [`Rover::handle_received`], [`Rover::handle_closed`],
//!    [`Rover::handle_read_failed`], and [`Rover::set_demand`] whenever the pool's count of
//!    wanted connections changes; also [`Rover::start`], [`Rover::stop`],
//!    [`Rover::add_server`], [`Rover::remove_server`] and [`Rover::abort_attempts`]. What
//!    the pool learns goes back too: [`Rover::set_held`] (connections held per server),
//!    [`Rover::handle_server_ok`], [`Rover::handle_server_failed`] and
//!    [`Rover::handle_conn_lost`] (backoff and probes), [`Rover::handle_near_miss`] and
//!    [`Rover::handle_kept`] (an offered connection's fate).
//! 2. After every input, drain [`Rover::poll_action`] (open or close sockets) and
//!    [`Rover::poll_event`] (hand connections to the pool, log failures) until both are
//!    `None`.
//! 3. Sleep until [`Rover::poll_timeout`] (or the next input), then call
//!    [`Rover::handle_timeout`] with the current time and go back to step 2.
//!
//! Inputs for an attempt that already ended return [`StaleAttempt`]: the adapter closes that
//! socket and ignores it. Time may stand still or jump: a late wake-up runs one tick, never a
//! backlog, and after `handle_timeout(now)` the next timeout is `None` or strictly after
//! `now`.
//!
//! ```
//! use callosum_proto::rover::{Action, Event, Rover, RoverConfig};
//! use callosum_proto::{Instant, ServerId};
//!
//! let mut rover = Rover::new(RoverConfig::default(), 7).unwrap();
//! rover.add_server(ServerId(1));
//! rover.set_demand(1, Instant::ZERO);
//! rover.start(Instant::ZERO);
//!
//! let Some(Action::Connect { attempt, server }) = rover.poll_action() else { panic!() };
//! assert_eq!(server, ServerId(1));
//! rover.handle_connected(attempt, Instant::from_millis(3)).unwrap();
//! let consumed = rover.handle_received(attempt, b"0\r\nhello", Instant::from_millis(4)).unwrap();
//! assert_eq!(consumed, 3); // "hello" belongs to the application
//! assert_eq!(
//!     rover.poll_event(),
//!     Some(Event::Connection { attempt, server: ServerId(1), slot: 0 })
//! );
//! // The next scheduled attempt is about one interval after the start.
//! let next = rover.poll_timeout().unwrap();
//! assert!(next >= Instant::from_millis(900) && next <= Instant::from_millis(1100));
//! ```

mod attempts;
mod config;
mod probes;
mod servers;
#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::slab::Key;
use crate::{DecodeError, Decoded, Decoder, Instant, Rng, ServerId};
use attempts::{Attempt, Attempts};
pub use config::{
    MAX_IN_FLIGHT_LIMIT, NEAR_MISS_ROUNDS, PROBE_BACKOFF_MAX, RoverConfig, RoverConfigError,
};
use probes::Probes;
use servers::ServerSet;

/// Names one connection attempt; a stale id (its attempt ended) is detected, never confused
/// with a later attempt that reuses the storage.
///
/// Ids are only meaningful to the rover that issued them. An id carries no mark of its rover:
/// given to another rover it is refused only if it names no attempt in flight there;
/// otherwise it acts on that rover's attempt. Keep each id with the rover it came from.
///
/// ```
/// use callosum_proto::rover::{Action, Rover, RoverConfig};
/// use callosum_proto::{Instant, ServerId};
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.add_server(ServerId(0));
/// rover.start(Instant::ZERO);
/// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
/// assert!(attempt.index() < 4);
/// assert_eq!(attempt.to_string(), "attempt 0#0");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttemptId(Key);

impl AttemptId {
    /// The storage index, below [`RoverConfig::max_in_flight`]: an adapter can keep its
    /// sockets in a table of that size. Two live attempts never share an index.
    pub fn index(self) -> u32 {
        self.0.index()
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {}", self.0)
    }
}

/// Why a connect failed. The adapter maps its I/O errors; the rover itself reports
/// [`ConnectFailure::TimedOut`] when the connect timeout passes.
///
/// ```
/// use callosum_proto::rover::ConnectFailure;
///
/// assert_eq!(ConnectFailure::Refused.to_string(), "connection refused");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The server refused the connection (nothing listening).
    Refused,
    /// The connection was reset before the connect was reported. Only an established
    /// connection can be reset (a reset during the TCP handshake is refused), so the rover
    /// reports it as [`HandshakeFailure::ReadFailed`], as a reset at the first read.
    Reset,
    /// The connect took longer than [`RoverConfig::connect_timeout`].
    TimedOut,
    /// Any other I/O error.
    Other,
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectFailure::Refused => "connection refused",
            ConnectFailure::Reset => "connection reset",
            ConnectFailure::TimedOut => "connect timed out",
            ConnectFailure::Other => "connect failed",
        })
    }
}

impl core::error::Error for ConnectFailure {}

/// Why a connection that was made did not deliver a slot line.
///
/// ```
/// use callosum_proto::rover::HandshakeFailure;
/// use callosum_proto::DecodeError;
///
/// let eof = HandshakeFailure::Decode(DecodeError::UnexpectedEof { received: 0 });
/// assert_eq!(
///     eof.to_string(),
///     "bad slot line: stream ended after 0 bytes, before the slot line was complete"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The line was malformed, or the peer closed before it was complete
    /// ([`DecodeError::UnexpectedEof`]).
    Decode(DecodeError),
    /// The line was not complete within [`RoverConfig::handshake_timeout`].
    TimedOut,
    /// Reading the socket failed.
    ReadFailed,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::Decode(error) => write!(f, "bad slot line: {error}"),
            HandshakeFailure::TimedOut => f.write_str("slot line timed out"),
            HandshakeFailure::ReadFailed => f.write_str("reading the slot line failed"),
        }
    }
}

impl core::error::Error for HandshakeFailure {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            HandshakeFailure::Decode(error) => Some(error),
            HandshakeFailure::TimedOut | HandshakeFailure::ReadFailed => None,
        }
    }
}

/// What the adapter must do with its sockets.
///
/// ```
/// use callosum_proto::rover::{Action, Rover, RoverConfig};
/// use callosum_proto::{Instant, ServerId};
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.add_server(ServerId(9));
/// rover.start(Instant::ZERO);
/// let Some(Action::Connect { attempt, server }) = rover.poll_action() else { panic!() };
/// rover.stop();
/// assert_eq!(rover.poll_action(), Some(Action::Close { attempt }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Open a connection to `server` for `attempt`, then report with the `handle_*` methods.
    Connect {
        /// The attempt this socket belongs to.
        attempt: AttemptId,
        /// Where to connect.
        server: ServerId,
    },
    /// Close the socket of `attempt` and deliver nothing from it: the attempt was aborted,
    /// timed out or failed. Its id is stale from now on.
    Close {
        /// The attempt whose socket to close.
        attempt: AttemptId,
    },
}

/// What happened, for the pool and for logs.
///
/// ```
/// use callosum_proto::rover::{Event, Rover, RoverConfig};
/// use callosum_proto::Instant;
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.start(Instant::ZERO);
/// assert_eq!(rover.poll_event(), Some(Event::NoServers));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Event {
    /// The attempt read a slot line: hand its socket to the pool with this slot.
    Connection {
        /// The attempt whose socket it is; the id is stale from now on.
        attempt: AttemptId,
        /// The server it is connected to.
        server: ServerId,
        /// The slot the server assigned.
        slot: u32,
    },
    /// The connect failed or timed out (an [`Action::Close`] for the attempt comes with it).
    Unreachable {
        /// The attempt that failed.
        attempt: AttemptId,
        /// The server it tried.
        server: ServerId,
        /// Why.
        reason: ConnectFailure,
    },
    /// The connection was made but gave no valid slot line in time (an [`Action::Close`] for
    /// the attempt comes with it).
    HandshakeFailed {
        /// The attempt that failed.
        attempt: AttemptId,
        /// The server it tried.
        server: ServerId,
        /// Why.
        reason: HandshakeFailure,
    },
    /// An attempt was due but no server could be tried: the set is empty or every server is
    /// backing off. Reported once per due tick.
    NoServers,
}

/// An input named an attempt that is no longer in flight (it ended, was aborted, or never
/// existed). The adapter closes that socket and ignores it; the rover did nothing.
///
/// ```
/// use callosum_proto::rover::{Action, ConnectFailure, Rover, RoverConfig, StaleAttempt};
/// use callosum_proto::{Instant, ServerId};
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.add_server(ServerId(0));
/// rover.start(Instant::ZERO);
/// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
/// rover.stop();
/// assert_eq!(rover.handle_connected(attempt, Instant::ZERO), Err(StaleAttempt { attempt }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StaleAttempt {
    /// The id given.
    pub attempt: AttemptId,
}

impl fmt::Display for StaleAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is no longer in flight", self.attempt)
    }
}

impl core::error::Error for StaleAttempt {}

/// Where an attempt in flight stands.
///
/// ```
/// use callosum_proto::rover::{AttemptPhase, Rover, RoverConfig};
/// use callosum_proto::{Instant, ServerId};
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.add_server(ServerId(0));
/// rover.start(Instant::ZERO);
/// assert!(rover.attempts().all(|info| info.phase == AttemptPhase::Connecting));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptPhase {
    /// Waiting for the connect to complete.
    Connecting,
    /// Connected, reading the slot line.
    Handshaking,
}

/// A snapshot of one attempt in flight, for checks and status pages.
///
/// ```
/// use callosum_proto::rover::{Rover, RoverConfig};
/// use callosum_proto::{Instant, ServerId};
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.add_server(ServerId(0));
/// rover.start(Instant::ZERO);
/// let info = rover.attempts().next().unwrap();
/// assert_eq!(info.server, ServerId(0));
/// assert_eq!(info.deadline, Instant::from_millis(1000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptInfo {
    /// The attempt's id.
    pub attempt: AttemptId,
    /// The server it tries.
    pub server: ServerId,
    /// Connecting or reading the slot line.
    pub phase: AttemptPhase,
    /// When [`Rover::handle_timeout`] gives up on it.
    pub deadline: Instant,
}

/// Why a launch did not happen.
enum NoLaunch {
    /// `max_in_flight` attempts are already running.
    Full,
    /// No server may be tried now.
    NoServer,
    /// The clock is at its end: no deadline after `now` exists.
    EndOfTime,
}

/// The sans-IO rover state machine; see the [module docs](self) for the call order.
///
/// ```
/// use callosum_proto::rover::{Action, Rover, RoverConfig};
/// use callosum_proto::{Instant, ServerId};
///
/// let mut rover = Rover::new(RoverConfig { fill: false, ..RoverConfig::default() }, 3).unwrap();
/// rover.add_server(ServerId(5));
/// rover.start(Instant::ZERO);
/// assert!(matches!(rover.poll_action(), Some(Action::Connect { server: ServerId(5), .. })));
/// assert_eq!(rover.in_flight(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct Rover {
    config: RoverConfig,
    rng: Rng,
    servers: ServerSet,
    attempts: Attempts,
    /// Servers owed a targeted attempt ([`RoverConfig::probes`]).
    probes: Probes,
    running: bool,
    /// When the next scheduled attempt is due (while running).
    next_tick: Option<Instant>,
    /// Connections the pool still wants, net of those delivered since the adapter said.
    demand: usize,
    /// [`Event::Connection`]s in `events`: delivered, but not offered to the pool yet.
    queued_connections: usize,
    /// An input without a timestamp (a server added, attempts aborted) may let fill mode
    /// launch: ask to be woken at once.
    fill_pending: bool,
    /// The latest `now` seen, for that wake-up.
    last_now: Instant,
    /// Attempts hastened by near misses since the pool last kept a connection, at most
    /// [`NEAR_MISS_ROUNDS`] times the servers in the set.
    hastened: usize,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Rover {
    /// A stopped rover with no servers, whose random choices are fixed by `seed`.
    ///
    /// Allocates storage for `max_in_flight` attempts once.
    ///
    /// ```
    /// use callosum_proto::rover::{Rover, RoverConfig};
    ///
    /// let rover = Rover::new(RoverConfig::default(), 42).unwrap();
    /// assert!(!rover.is_running());
    /// assert_eq!(rover.in_flight(), 0);
    /// ```
    pub fn new(config: RoverConfig, seed: u64) -> Result<Rover, RoverConfigError> {
        config.validate()?;
        let capacity = config.max_in_flight;
        Ok(Rover {
            config,
            rng: Rng::new(seed),
            servers: ServerSet::default(),
            attempts: Attempts::with_capacity(capacity),
            probes: Probes::default(),
            running: false,
            next_tick: None,
            demand: 0,
            queued_connections: 0,
            fill_pending: false,
            last_now: Instant::ZERO,
            hastened: 0,
            actions: VecDeque::with_capacity(2 * capacity),
            events: VecDeque::with_capacity(2 * capacity),
        })
    }

    /// Adds a server to the set; `false` if it was already there (nothing changes).
    ///
    /// A new server may be tried at once: if fill mode wants more connections,
    /// [`Rover::poll_timeout`] asks to be woken immediately.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::ServerId;
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// assert!(rover.add_server(ServerId(1)));
    /// assert!(!rover.add_server(ServerId(1)));
    /// ```
    pub fn add_server(&mut self, id: ServerId) -> bool {
        let added = self.servers.insert(id);
        if added && self.running {
            self.fill_pending = true;
            if self.config.probes {
                // Within one interval, at a random time: clients that learn of the server
                // together do not all connect at once.
                let within = self
                    .rng
                    .below(micros(self.config.interval).saturating_add(1));
                let due = self.last_now + Duration::from_micros(within);
                self.probes.schedule(id, due);
            }
        }
        added
    }

    /// Drops a server; `false` if it was not in the set.
    ///
    /// Its attempts in flight are aborted (an [`Action::Close`] each, no event), and a
    /// [`Event::Connection`] of it still waiting in the event queue is withdrawn and turned
    /// into an [`Action::Close`]: nothing of a dropped server is delivered.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
    /// assert!(rover.remove_server(ServerId(1)));
    /// assert_eq!(rover.poll_action(), Some(Action::Close { attempt }));
    /// assert_eq!(rover.poll_event(), None);
    /// ```
    pub fn remove_server(&mut self, id: ServerId) -> bool {
        if !self.servers.remove(id) {
            return false;
        }
        self.probes.remove(id);
        self.abort_attempts(id);
        true
    }

    /// Aborts every attempt to a server, which stays in the set: an [`Action::Close`] for
    /// each attempt in flight, and for each of its connections still waiting in the event
    /// queue (withdrawn, so never delivered). A probe whose attempt is aborted is due again
    /// on the server's backoff. For a server seen closing its connections (a drain, a
    /// restart): a connection it accepted before then would be closed as well.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
    /// rover.abort_attempts(ServerId(1));
    /// assert_eq!(rover.poll_action(), Some(Action::Close { attempt }));
    /// assert_eq!(rover.servers().count(), 1);
    /// ```
    pub fn abort_attempts(&mut self, id: ServerId) {
        // An attempt whose `Connect` is still queued never reached the adapter: withdraw the
        // `Connect` rather than follow it with a `Close`.
        let mut never_opened = Vec::new();
        self.actions.retain(|action| match *action {
            Action::Connect { attempt, server } if server == id => {
                never_opened.push(attempt);
                false
            }
            _ => true,
        });
        let mut aborted = false;
        for index in self.attempts.indices() {
            if let Some((attempt, _)) = self.attempts.remove_at_if(index, |a| a.server == id) {
                if !never_opened.contains(&attempt) {
                    self.actions.push_back(Action::Close { attempt });
                }
                aborted = true;
            }
        }
        let before = self.events.len();
        let actions = &mut self.actions;
        self.events.retain(|event| match *event {
            Event::Connection {
                attempt, server, ..
            } if server == id => {
                actions.push_back(Action::Close { attempt });
                false
            }
            _ => true,
        });
        let withdrawn = before - self.events.len();
        self.queued_connections -= withdrawn;
        // Those connections were counted against the demand when they were queued.
        self.demand = self.demand.saturating_add(withdrawn);
        if aborted
            && self.probes.in_flight(id)
            && let Some(failures) = self.servers.failures(id)
        {
            // On its backoff, not at once: a server seen closing its connections would most
            // likely refuse an attempt made now.
            let due = self.last_now + self.probe_delay(failures);
            self.probes.aborted(id, due);
        }
        if (aborted || withdrawn > 0) && self.running {
            self.fill_pending = true;
        }
    }

    /// The servers in the set, in no particular order.
    pub fn servers(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.servers.ids()
    }

    /// Starts roving: one attempt at once (or [`Event::NoServers`]), then one every interval
    /// (± jitter), plus fill mode. Does nothing if already running.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// assert!(rover.is_running());
    /// assert_eq!(rover.in_flight(), 1);
    /// ```
    pub fn start(&mut self, now: Instant) {
        self.last_now = now;
        if self.running {
            return;
        }
        self.running = true;
        self.servers.release(now);
        self.tick(now);
        self.fill(now);
    }

    /// Stops roving: cancels the timer and aborts every attempt in flight (an
    /// [`Action::Close`] each, no event). [`Rover::start`] resumes.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// rover.stop();
    /// assert_eq!(rover.in_flight(), 0);
    /// assert_eq!(rover.poll_timeout(), None);
    /// ```
    pub fn stop(&mut self) {
        self.running = false;
        self.next_tick = None;
        self.fill_pending = false;
        self.probes.clear();
        for index in self.attempts.indices() {
            if let Some((attempt, _)) = self.attempts.remove_at_if(index, |_| true) {
                self.actions.push_back(Action::Close { attempt });
            }
        }
    }

    /// Whether the rover was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// How many more connections the pool wants (its `max_slots - held`): fill mode keeps
    /// up to that many attempts in flight.
    ///
    /// The rover counts each [`Event::Connection`] it delivers against the demand (the pool
    /// keeps a connection while it holds fewer than `max_slots`), so fill stops by itself;
    /// call this again whenever the pool's count changes otherwise (a connection closed or
    /// rejected).
    ///
    /// `wanted` is read as the pool's count at the time of the call, so the
    /// [`Event::Connection`]s still waiting in [`Rover::poll_event`] (not offered to the pool
    /// yet) are taken off it: the demand becomes `wanted` minus those. Calling
    /// `set_demand(pool.wanted(), now)` before draining the events is therefore safe and
    /// launches no extra attempt.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// rover.set_demand(10, Instant::ZERO);
    /// assert_eq!(rover.in_flight(), 4); // max_in_flight
    /// ```
    pub fn set_demand(&mut self, wanted: usize, now: Instant) {
        self.last_now = now;
        self.demand = wanted.saturating_sub(self.queued_connections);
        self.fill(now);
    }

    /// Time has come to `now`: ends every attempt whose deadline is at or before `now`
    /// ([`Action::Close`] and a `TimedOut` event each; a failure for backoff), runs the
    /// scheduled attempt if it is due (one, however late), and lets fill mode top up.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, ConnectFailure, Event, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig { fill: false, ..RoverConfig::default() }, 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
    /// rover.handle_timeout(Instant::from_millis(1000));
    /// assert_eq!(rover.poll_action(), Some(Action::Close { attempt }));
    /// assert!(matches!(
    ///     rover.poll_event(),
    ///     Some(Event::Unreachable { reason: ConnectFailure::TimedOut, .. })
    /// ));
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        for index in self.attempts.indices() {
            if let Some((attempt, ended)) = self.attempts.remove_at_if(index, |a| a.deadline <= now)
            {
                let server = ended.server;
                self.events.push_back(match ended.phase {
                    AttemptPhase::Connecting => Event::Unreachable {
                        attempt,
                        server,
                        reason: ConnectFailure::TimedOut,
                    },
                    AttemptPhase::Handshaking => Event::HandshakeFailed {
                        attempt,
                        server,
                        reason: HandshakeFailure::TimedOut,
                    },
                });
                self.actions.push_back(Action::Close { attempt });
                self.record_failure(server, now);
            }
        }
        self.servers.release(now);
        if self.running && self.next_tick.is_some_and(|due| due <= now) {
            self.tick(now);
        }
        self.fill(now);
    }

    /// When to call [`Rover::handle_timeout`] next: the earliest attempt deadline, the next
    /// scheduled attempt, and (while fill mode wants more) the end of the earliest backoff or,
    /// after [`Rover::add_server`], at once. `None` when there is nothing to wait for.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::Instant;
    /// let rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// assert_eq!(rover.poll_timeout(), None);
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest = self.attempts.earliest_deadline();
        if self.running {
            earliest = min_some(earliest, self.next_tick);
            if !self.attempts.is_full() {
                // With every attempt in use a due probe waits for one to end, an input.
                earliest = min_some(earliest, self.probes.next_due());
            }
            if self.fill_wants_more() {
                earliest = min_some(earliest, self.servers.earliest_backoff_end());
                if self.fill_pending && self.servers.eligible() > 0 {
                    earliest = min_some(earliest, Some(self.last_now));
                }
            }
        }
        earliest
    }

    /// The next thing to do with a socket, if any.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// assert_eq!(rover.poll_action(), None);
    /// ```
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing that happened, if any.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// assert_eq!(rover.poll_event(), None);
    /// ```
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if let Some(Event::Connection { .. }) = event {
            self.queued_connections -= 1;
        }
        event
    }

    /// The connect of `attempt` completed: the slot line is now due within
    /// [`RoverConfig::handshake_timeout`]. A second call changes nothing (the deadline is not
    /// pushed back).
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, AttemptPhase, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
    /// rover.handle_connected(attempt, Instant::from_millis(10)).unwrap();
    /// let info = rover.attempts().next().unwrap();
    /// assert_eq!(info.phase, AttemptPhase::Handshaking);
    /// assert_eq!(info.deadline, Instant::from_millis(1010));
    /// ```
    pub fn handle_connected(
        &mut self,
        attempt: AttemptId,
        now: Instant,
    ) -> Result<(), StaleAttempt> {
        self.last_now = now;
        let handshake_timeout = self.config.handshake_timeout;
        let current = self
            .attempts
            .get_mut(attempt)
            .ok_or(StaleAttempt { attempt })?;
        if current.phase == AttemptPhase::Connecting {
            current.phase = AttemptPhase::Handshaking;
            current.deadline = now + handshake_timeout;
        }
        self.fill(now);
        Ok(())
    }

    /// The connect of `attempt` failed: [`Event::Unreachable`] and [`Action::Close`], and a
    /// failure for the server's backoff.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, ConnectFailure, Event, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, server }) = rover.poll_action() else { panic!() };
    /// rover.handle_connect_failed(attempt, ConnectFailure::Refused, Instant::ZERO).unwrap();
    /// assert_eq!(
    ///     rover.poll_event(),
    ///     Some(Event::Unreachable { attempt, server, reason: ConnectFailure::Refused })
    /// );
    /// assert_eq!(rover.poll_action(), Some(Action::Close { attempt }));
    /// ```
    pub fn handle_connect_failed(
        &mut self,
        attempt: AttemptId,
        reason: ConnectFailure,
        now: Instant,
    ) -> Result<(), StaleAttempt> {
        self.last_now = now;
        let ended = self
            .attempts
            .remove(attempt)
            .ok_or(StaleAttempt { attempt })?;
        let server = ended.server;
        // Unreachable means never established. A connection that was (the adapter saw it
        // connect, or it was reset, which only an established connection can be: a reset
        // during the TCP handshake is refused) failed its handshake, whenever the adapter
        // noticed, so the outcome does not depend on timing.
        if ended.phase == AttemptPhase::Handshaking || reason == ConnectFailure::Reset {
            self.events.push_back(Event::HandshakeFailed {
                attempt,
                server,
                reason: HandshakeFailure::ReadFailed,
            });
        } else {
            self.events.push_back(Event::Unreachable {
                attempt,
                server,
                reason,
            });
        }
        self.actions.push_back(Action::Close { attempt });
        self.record_failure(ended.server, now);
        self.fill(now);
        Ok(())
    }

    /// Bytes read on `attempt`'s socket; returns how many belong to the slot line.
    ///
    /// When the line completes, [`Event::Connection`] follows and the bytes after the
    /// returned count belong to the application: the adapter hands them on with the socket.
    /// A bad line gives [`Event::HandshakeFailed`] with the decoder's error and
    /// [`Action::Close`]; then every byte counts as consumed, since nothing is delivered.
    /// Bytes before [`Rover::handle_connected`] are taken as proof of the connect: the
    /// attempt is handshaking from then on, with its deadline `now + handshake_timeout`,
    /// exactly as if `handle_connected(attempt, now)` had come first.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Event, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, .. }) = rover.poll_action() else { panic!() };
    /// rover.handle_connected(attempt, Instant::ZERO).unwrap();
    /// assert_eq!(rover.handle_received(attempt, b"1", Instant::ZERO), Ok(1));
    /// assert_eq!(rover.handle_received(attempt, b"2\r\nPING", Instant::ZERO), Ok(3));
    /// assert!(matches!(rover.poll_event(), Some(Event::Connection { slot: 12, .. })));
    /// ```
    #[must_use = "the bytes after the consumed count belong to the application"]
    pub fn handle_received(
        &mut self,
        attempt: AttemptId,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, StaleAttempt> {
        self.last_now = now;
        let current = self
            .attempts
            .get_mut(attempt)
            .ok_or(StaleAttempt { attempt })?;
        let server = current.server;
        let handshake_timeout = self.config.handshake_timeout;
        let consumed = match current.decoder.feed(bytes) {
            Ok(Decoded::NeedMore) => {
                if !bytes.is_empty() && current.phase == AttemptPhase::Connecting {
                    // As `handle_connected` would: the line is now due within the
                    // handshake timeout, not the connect timeout.
                    current.phase = AttemptPhase::Handshaking;
                    current.deadline = now + handshake_timeout;
                }
                bytes.len()
            }
            Ok(Decoded::Slot { slot, consumed }) => {
                self.attempts.remove(attempt);
                self.probes.remove(server);
                self.events.push_back(Event::Connection {
                    attempt,
                    server,
                    slot,
                });
                self.queued_connections += 1;
                self.demand = self.demand.saturating_sub(1);
                consumed
            }
            Err(error) => {
                self.fail_handshake(attempt, server, HandshakeFailure::Decode(error), now);
                bytes.len()
            }
        };
        self.fill(now);
        Ok(consumed)
    }

    /// The peer closed `attempt`'s connection before the slot line was complete:
    /// [`Event::HandshakeFailed`] with [`DecodeError::UnexpectedEof`], and [`Action::Close`].
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Event, HandshakeFailure, Rover, RoverConfig};
    /// # use callosum_proto::{DecodeError, Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, server }) = rover.poll_action() else { panic!() };
    /// rover.handle_connected(attempt, Instant::ZERO).unwrap();
    /// rover.handle_closed(attempt, Instant::ZERO).unwrap();
    /// let reason = HandshakeFailure::Decode(DecodeError::UnexpectedEof { received: 0 });
    /// assert_eq!(rover.poll_event(), Some(Event::HandshakeFailed { attempt, server, reason }));
    /// ```
    pub fn handle_closed(&mut self, attempt: AttemptId, now: Instant) -> Result<(), StaleAttempt> {
        self.last_now = now;
        let current = self
            .attempts
            .get_mut(attempt)
            .ok_or(StaleAttempt { attempt })?;
        let server = current.server;
        let error = eof_error(&current.decoder);
        self.fail_handshake(attempt, server, HandshakeFailure::Decode(error), now);
        self.fill(now);
        Ok(())
    }

    /// Reading `attempt`'s socket failed: [`Event::HandshakeFailed`] with
    /// [`HandshakeFailure::ReadFailed`], and [`Action::Close`].
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Event, HandshakeFailure, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let Some(Action::Connect { attempt, server }) = rover.poll_action() else { panic!() };
    /// rover.handle_read_failed(attempt, Instant::ZERO).unwrap();
    /// let reason = HandshakeFailure::ReadFailed;
    /// assert_eq!(rover.poll_event(), Some(Event::HandshakeFailed { attempt, server, reason }));
    /// ```
    pub fn handle_read_failed(
        &mut self,
        attempt: AttemptId,
        now: Instant,
    ) -> Result<(), StaleAttempt> {
        self.last_now = now;
        let server = self
            .attempts
            .get_mut(attempt)
            .ok_or(StaleAttempt { attempt })?
            .server;
        self.fail_handshake(attempt, server, HandshakeFailure::ReadFailed, now);
        self.fill(now);
        Ok(())
    }

    /// A connection to `server` proved itself (an exchange on it finished, or it lived past
    /// its young age): the server's failures are forgiven, so a later one backs off from
    /// [`RoverConfig::backoff_base`] again. A slot line alone does not forgive: a server that
    /// closes every connection right after its line must keep backing off.
    pub fn handle_server_ok(&mut self, server: ServerId) {
        self.servers.record_success(server);
    }

    /// A connection to `server` died young (closed before any exchange finished on it, or
    /// soon after its line): a failure of the server, as an attempt's would be.
    pub fn handle_server_failed(&mut self, server: ServerId, now: Instant) {
        self.last_now = now;
        self.record_failure(server, now);
        self.fill(now);
    }

    /// A proven connection of the client's pool to `server` broke (closed by the server, an
    /// error): the server may be restarting, so with [`RoverConfig::probes`] it gets a
    /// targeted attempt after about `backoff_base`, and more on its backoff schedule while it
    /// fails. A connection that died young goes to [`Rover::handle_server_failed`] instead.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// # use core::time::Duration;
    /// let config = RoverConfig { fill: false, ..RoverConfig::default() };
    /// let mut rover = Rover::new(config, 1).unwrap();
    /// for id in 0..100 {
    ///     rover.add_server(ServerId(id));
    /// }
    /// rover.start(Instant::ZERO);
    /// let _first = rover.poll_action();
    /// rover.handle_conn_lost(ServerId(42), Instant::ZERO);
    /// let due = rover.poll_timeout().unwrap();
    /// assert!(due >= Instant::from_millis(250) && due <= Instant::from_millis(500));
    /// rover.handle_timeout(due);
    /// assert!(matches!(rover.poll_action(), Some(Action::Connect { server: ServerId(42), .. })));
    /// ```
    pub fn handle_conn_lost(&mut self, server: ServerId, now: Instant) {
        self.last_now = now;
        if !self.running || !self.config.probes {
            return;
        }
        let Some(failures) = self.servers.failures(server) else {
            return;
        };
        let due = now + self.probe_delay(failures);
        self.probes.schedule(server, due);
    }

    /// The pool turned a connection away by a hair: its slot equals the highest slot held,
    /// so its server holds fewer connections than the client's fullest one. With
    /// [`RoverConfig::near_miss_interval`] the next scheduled attempt comes within that time
    /// (never later than it would have), so the search for the server a connection short
    /// takes a fraction of the interval per server instead of a whole one.
    ///
    /// Between two connections kept ([`Rover::handle_kept`]) near misses hasten at most
    /// [`NEAR_MISS_ROUNDS`] times as many attempts as there are servers: where the counts
    /// cannot come out even, a client on a fuller server may meet near misses at every draw,
    /// and it goes back to the interval's pace instead of connecting every few milliseconds.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let config = RoverConfig { fill: false, ..RoverConfig::default() };
    /// let mut rover = Rover::new(config, 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// let _first = rover.poll_action();
    /// assert!(rover.poll_timeout().unwrap() >= Instant::from_millis(900));
    /// rover.handle_near_miss(Instant::from_millis(10));
    /// assert_eq!(rover.poll_timeout(), Some(Instant::from_millis(50)));
    /// ```
    pub fn handle_near_miss(&mut self, now: Instant) {
        self.last_now = now;
        let Some(near_miss) = self.config.near_miss_interval else {
            return;
        };
        let budget = self.servers.len().saturating_mul(NEAR_MISS_ROUNDS);
        if !self.running || self.hastened >= budget {
            return;
        }
        self.hastened += 1;
        self.next_tick = min_some(self.next_tick, later(now, near_miss));
    }

    /// The pool kept a connection the rover found (it had room, or the slot was below its
    /// highest): near misses may hasten attempts again (see [`Rover::handle_near_miss`]).
    pub fn handle_kept(&mut self) {
        self.hastened = 0;
    }

    /// The client's pool now holds `held` connections on `server`: spreading
    /// ([`RoverConfig::spread`]) prefers servers with none. Call it whenever the count
    /// changes; a server not in the set is ignored.
    ///
    /// ```
    /// # use callosum_proto::rover::{Action, Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let config = RoverConfig { fill: false, ..RoverConfig::default() };
    /// let mut rover = Rover::new(config, 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.add_server(ServerId(2));
    /// rover.set_held(ServerId(1), 3);
    /// rover.start(Instant::ZERO);
    /// assert!(matches!(rover.poll_action(), Some(Action::Connect { server: ServerId(2), .. })));
    /// ```
    pub fn set_held(&mut self, server: ServerId, held: usize) {
        self.servers.set_held(server, held);
    }

    /// How many more bytes the attempt's slot line can take (`None` for an attempt not in
    /// flight): what a reader may ask for without reading past the longest line.
    pub(crate) fn line_room(&mut self, attempt: AttemptId) -> Option<usize> {
        let current = self.attempts.get_mut(attempt)?;
        Some(crate::slot_line::MAX_LINE_LEN - current.decoder.received())
    }

    /// How many attempts are in flight (at most [`RoverConfig::max_in_flight`]).
    pub fn in_flight(&self) -> usize {
        self.attempts.len()
    }

    /// The attempts in flight, for checks and status.
    ///
    /// ```
    /// # use callosum_proto::rover::{Rover, RoverConfig};
    /// # use callosum_proto::{Instant, ServerId};
    /// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
    /// rover.add_server(ServerId(1));
    /// rover.start(Instant::ZERO);
    /// assert_eq!(rover.attempts().count(), rover.in_flight());
    /// ```
    pub fn attempts(&self) -> impl Iterator<Item = AttemptInfo> + '_ {
        self.attempts.iter().map(|(attempt, current)| AttemptInfo {
            attempt,
            server: current.server,
            phase: current.phase,
            deadline: current.deadline,
        })
    }

    /// Ends an attempt whose handshake failed.
    fn fail_handshake(
        &mut self,
        attempt: AttemptId,
        server: ServerId,
        reason: HandshakeFailure,
        now: Instant,
    ) {
        self.attempts.remove(attempt);
        self.events.push_back(Event::HandshakeFailed {
            attempt,
            server,
            reason,
        });
        self.actions.push_back(Action::Close { attempt });
        self.record_failure(server, now);
    }

    fn record_failure(&mut self, server: ServerId, now: Instant) {
        self.servers.record_failure(
            server,
            now,
            self.config.backoff_base,
            self.config.backoff_max,
        );
        if let Some(failures) = self.servers.failures(server) {
            let retry_at = now + self.probe_delay(failures);
            self.probes.failed(server, retry_at);
        }
    }

    /// The wait before the next probe of a server with `failures` consecutive failures: its
    /// backoff capped at [`PROBE_BACKOFF_MAX`], drawn between half and all of it so that
    /// clients that lost their connections together do not come back in step.
    fn probe_delay(&mut self, failures: u32) -> Duration {
        let full = servers::backoff(failures.max(1), self.config.backoff_base, PROBE_BACKOFF_MAX);
        let full = micros(full);
        let half = full / 2;
        Duration::from_micros(half + self.rng.below(full - half + 1))
    }

    /// The scheduled attempt: launch one (or report that no server can be tried) and
    /// schedule the next one from `now`, so a late wake-up never runs a backlog.
    fn tick(&mut self, now: Instant) {
        let wait = self.draw_wait();
        let mut next = later(now, wait);
        if let Err(NoLaunch::NoServer) = self.launch(now) {
            self.events.push_back(Event::NoServers);
            next = min_some(next, self.servers.earliest_backoff_end());
        }
        self.next_tick = next;
    }

    /// Launches the probes that are due, then (fill mode) attempts while the pool wants more
    /// than is in flight.
    fn fill(&mut self, now: Instant) {
        self.fill_pending = false;
        if !self.running {
            return;
        }
        while !self.attempts.is_full() {
            let Some(server) = self.probes.due(now) else {
                break;
            };
            if self.open(server, now).is_err() {
                // The clock is at its end (there is room): no attempt can ever be made.
                self.probes.clear();
                break;
            }
        }
        if !self.config.fill {
            return;
        }
        self.servers.release(now);
        while self.demand > self.attempts.len() {
            if self.launch(now).is_err() {
                break;
            }
        }
    }

    fn fill_wants_more(&self) -> bool {
        self.config.fill && self.demand > self.attempts.len() && !self.attempts.is_full()
    }

    /// One attempt to a server drawn at random (spreading, if configured).
    fn launch(&mut self, now: Instant) -> Result<(), NoLaunch> {
        if self.attempts.is_full() {
            return Err(NoLaunch::Full);
        }
        let server = if self.config.spread {
            let attempts = &self.attempts;
            let events = &self.events;
            // A line just completed counts too: its connection is on its way to the pool.
            let in_flight = |id| {
                attempts.iter().any(|(_, attempt)| attempt.server == id)
                    || events.iter().any(
                        |event| matches!(event, Event::Connection { server, .. } if *server == id),
                    )
            };
            self.servers.pick_spread(&mut self.rng, in_flight)
        } else {
            self.servers.pick(&mut self.rng)
        };
        self.open(server.ok_or(NoLaunch::NoServer)?, now)
    }

    /// One attempt to `server`.
    fn open(&mut self, server: ServerId, now: Instant) -> Result<(), NoLaunch> {
        let deadline = later(now, self.config.connect_timeout).ok_or(NoLaunch::EndOfTime)?;
        let attempt = self
            .attempts
            .insert(Attempt {
                server,
                phase: AttemptPhase::Connecting,
                deadline,
                decoder: Decoder::new(),
            })
            .ok_or(NoLaunch::Full)?;
        self.probes.launched(server);
        self.actions.push_back(Action::Connect { attempt, server });
        Ok(())
    }

    /// One wait between scheduled attempts: uniform in `interval ± jitter`, at least 1 µs.
    fn draw_wait(&mut self) -> Duration {
        let interval = micros(self.config.interval);
        let jitter = micros(self.config.jitter);
        let wait = if jitter == 0 {
            interval
        } else {
            let spread = jitter.saturating_mul(2).saturating_add(1);
            (interval - jitter).saturating_add(self.rng.below(spread))
        };
        Duration::from_micros(wait.max(1))
    }
}

/// The error for a stream that ended while `decoder` still waited for the line.
fn eof_error(decoder: &Decoder) -> DecodeError {
    // A stored decoder is neither done nor failed (the attempt ends with its line), so
    // `finish` reports the end of stream; the fallback only keeps this total.
    decoder
        .finish()
        .err()
        .unwrap_or(DecodeError::UnexpectedEof { received: 0 })
}

/// `now + span` if that is strictly later than `now` (it is not at the end of the clock).
fn later(now: Instant, span: Duration) -> Option<Instant> {
    let then = now + span;
    (then > now).then_some(then)
}

fn min_some(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn micros(span: Duration) -> u64 {
    u64::try_from(span.as_micros()).unwrap_or(u64::MAX)
}

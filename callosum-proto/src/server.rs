//! Bookkeeping for one listening server (PROTOCOL.md section 2).
//!
//! The adapter tells the core that a connection was accepted and gets back either the slot
//! line to write in one call or "full: close it without a line". When the connection ends,
//! for whatever reason (FIN, RST, an I/O error, the application closed it, the peer left
//! before the line was written), the adapter reports it once and the slot is free again.
//! A second report, or a report with a handle kept from an earlier connection, is a typed
//! error and changes nothing.
//!
//! An accept that fails (too many open files, connection aborted) never stops the server and
//! never makes it spin: the adapter reports it with [`ServerCore::handle_accept_error`] and
//! stops accepting until the instant it returns (also [`ServerCore::poll_timeout`]), then
//! calls [`ServerCore::handle_timeout`] and accepts again. The pause starts at
//! [`ACCEPT_BACKOFF_MIN`], doubles with each consecutive error up to [`ACCEPT_BACKOFF_MAX`],
//! and a successful accept resets it. Connections already accepted are served throughout.
//!
//! A server about to stop (a rolling restart) *drains* ([`ServerCore::handle_drain`]): it
//! accepts no more, each connection is closed by its application when it is between two
//! requests, and those still open at the deadline are closed then
//! ([`DrainPhase::CloseRemaining`], from [`ServerCore::handle_timeout`] at the deadline,
//! which [`ServerCore::poll_timeout`] includes). Its status says which phase it is in and
//! counts how the connections ended ([`DrainReport`]).
//!
//! ```
//! use callosum_proto::Instant;
//! use callosum_proto::server::{Accept, FixedServerCore};
//!
//! let mut server = FixedServerCore::<8>::new(None).unwrap();
//! // accept() failed with EMFILE: pause, do not retry at once.
//! let resume = server.handle_accept_error(Instant::from_millis(5));
//! assert_eq!(resume, Instant::from_millis(15));
//! assert_eq!(server.poll_timeout(), Some(resume));
//! // At `resume` the adapter accepts again.
//! server.handle_timeout(resume);
//! assert_eq!(server.poll_timeout(), None);
//! let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
//! # let _ = server.handle_closed(conn);
//! ```

use core::fmt;
use core::time::Duration;

use crate::allocator::{FixedStorage, ReleaseError, SlotAllocator, SlotHandle, SlotStorage};
use crate::slot_line::SlotLine;
use crate::time::Instant;

#[cfg(feature = "alloc")]
use crate::allocator::GrowableStorage;

/// One accepted connection, as the server core knows it.
///
/// Ids are only meaningful to the server core that issued them. An id carries no mark of its
/// server: reported to another `ServerCore`, it is refused only if that slot is free there or
/// of another generation; otherwise it frees that server's slot, under the feet of a live
/// connection. Keep each id with the server core it came from (one per listener).
///
/// ```
/// use callosum_proto::server::{Accept, FixedServerCore};
///
/// let mut server = FixedServerCore::<8>::new(None).unwrap();
/// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
/// assert_eq!(conn.slot(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "dropping a connection id leaks its slot: report the end with handle_closed"]
pub struct AcceptId(SlotHandle);

impl AcceptId {
    /// The slot this connection holds.
    pub fn slot(self) -> u32 {
        self.0.slot()
    }
}

impl fmt::Display for AcceptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection on {}", self.0)
    }
}

/// What to do with a connection just accepted.
///
/// ```
/// use callosum_proto::server::{Accept, FixedServerCore};
///
/// let mut server = FixedServerCore::<8>::new(Some(1)).unwrap();
/// assert!(matches!(server.handle_accept(), Accept::Assigned { .. }));
/// assert_eq!(server.handle_accept(), Accept::Full);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Accept {
    /// Write `line` in a single write call, then hand the connection to the application.
    Assigned {
        /// The connection's handle: report its end with [`ServerCore::handle_closed`].
        conn: AcceptId,
        /// The bytes to write first.
        line: SlotLine,
    },
    /// Every slot is in use, or the server is draining ([`ServerCore::handle_drain`]): close
    /// the connection at once, without a line. (Counted apart: `refused_full` or
    /// `refused_draining`.)
    Full,
}

/// The pause after the first of a run of accept errors (PROTOCOL.md section 2): long enough
/// that a server out of file descriptors does not spin, short enough that it resumes at once
/// when one frees.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest pause between accepts, however many errors in a row: a server that recovers
/// accepts again within this time.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Counters of one server's life: cheap enough to be always on (plain counters, updated by
/// the calls that decide).
///
/// ```
/// use callosum_proto::server::FixedServerCore;
///
/// let server = FixedServerCore::<8>::new(None).unwrap();
/// assert_eq!(server.stats().accepted, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections that got a slot.
    pub accepted: u64,
    /// Connections closed without a line because every slot was in use (shed at
    /// `max_slots`).
    pub refused_full: u64,
    /// Connections closed without a line because the server was draining: accepted in the
    /// moment between the drain's start and the listener's close.
    pub refused_draining: u64,
    /// Connections whose end freed their slot.
    pub closed: u64,
    /// End reports refused as double, stale or unknown.
    pub bad_releases: u64,
    /// Accepts that failed, reported with [`ServerCore::handle_accept_error`].
    pub accept_errors: u64,
    /// Connections that ended before their slot line could be written, reported with
    /// [`ServerCore::handle_lost_before_line`] (also counted in `closed`).
    pub lost_before_line: u64,
    /// Connections that ended during a drain, before its deadline (also counted in
    /// `closed`): closed by their application between two requests, or by their peer.
    pub drained: u64,
    /// Connections still open at a drain's deadline, closed then (also counted in `closed`).
    pub closed_at_deadline: u64,
}

/// A server's settings, the same for every adapter. Start from the default and change what
/// you need.
///
/// ```
/// use callosum_proto::server::ServerConfig;
///
/// let mut config = ServerConfig::default();
/// assert_eq!(config.max_slots, None);
/// config.max_slots = Some(64);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The most connections holding a slot at once; beyond it a new connection is closed
    /// without a line. `None` (the default, as in the original): unlimited. `Some(0)` is an
    /// error.
    pub max_slots: Option<u32>,
}

/// A snapshot of a server, the same in every adapter.
///
/// ```
/// use callosum_proto::server::FixedServerCore;
///
/// let server = FixedServerCore::<8>::new(None).unwrap();
/// let status = server.status();
/// assert_eq!((status.live, status.accepting, status.drain), (0, true, None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStatus {
    /// Connections holding a slot now.
    pub live: u32,
    /// `false` while pausing after an accept error, and for good once draining.
    pub accepting: bool,
    /// The drain, once [`ServerCore::handle_drain`] started one.
    pub drain: Option<DrainStatus>,
    /// The counters so far.
    pub stats: ServerStats,
}

/// Where a drain is (PROTOCOL.md section 2, draining).
///
/// ```
/// use callosum_proto::Instant;
/// use callosum_proto::server::{Accept, DrainPhase, FixedServerCore};
///
/// let mut server = FixedServerCore::<8>::new(None).unwrap();
/// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
/// let drain = server.handle_drain(Instant::ZERO, Instant::from_millis(500));
/// assert_eq!(drain.phase, DrainPhase::BetweenRequests);
/// server.handle_timeout(Instant::from_millis(500));
/// assert_eq!(server.drain_status().unwrap().phase, DrainPhase::CloseRemaining);
/// # let _ = server.handle_closed(conn);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrainPhase {
    /// Before the deadline, connections open: the application closes each one when it is
    /// between two requests (having answered the one in hand); the adapter waits for that
    /// or for the deadline ([`ServerCore::poll_timeout`]).
    BetweenRequests,
    /// The deadline came with connections still open: the adapter closes every one of them
    /// now, reporting each with [`ServerCore::handle_closed`].
    CloseRemaining,
    /// No connection is left: the drain is done, and the server may stop.
    Done,
}

/// How the connections open when a drain started ended, so far: the adapters' report when
/// a drain is done.
///
/// ```
/// use callosum_proto::server::DrainReport;
///
/// let report = DrainReport::default();
/// assert_eq!((report.drained, report.closed_at_deadline), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DrainReport {
    /// Connections that ended before the deadline: closed by their application between two
    /// requests, or by their peer ([`ServerStats::drained`]).
    pub drained: u64,
    /// Connections closed at the deadline ([`ServerStats::closed_at_deadline`]).
    pub closed_at_deadline: u64,
}

/// A drain's times, phase and counts: [`ServerStatus::drain`].
///
/// ```
/// use callosum_proto::Instant;
/// use callosum_proto::server::{DrainPhase, FixedServerCore};
///
/// let mut server = FixedServerCore::<8>::new(None).unwrap();
/// let drain = server.handle_drain(Instant::from_millis(10), Instant::from_millis(60));
/// assert_eq!((drain.since, drain.deadline), (Instant::from_millis(10), Instant::from_millis(60)));
/// // Nothing was open: done at once.
/// assert_eq!(drain.phase, DrainPhase::Done);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DrainStatus {
    /// When the drain started.
    pub since: Instant,
    /// When the connections still open are closed.
    pub deadline: Instant,
    /// What the adapter does now.
    pub phase: DrainPhase,
    /// How the connections ended so far.
    pub report: DrainReport,
}

/// A drain in progress, as the core keeps it.
#[derive(Clone, Copy, Debug)]
struct Drain {
    since: Instant,
    deadline: Instant,
    /// `handle_timeout` saw the deadline: every close from now on is a close at the deadline.
    deadline_passed: bool,
}

/// The slot bookkeeping of one listening server.
///
/// ```
/// use callosum_proto::server::{Accept, FixedServerCore};
///
/// let mut server = FixedServerCore::<8>::new(None).unwrap();
/// let Accept::Assigned { conn, line } = server.handle_accept() else { unreachable!() };
/// // ... the adapter writes `line.as_bytes()` in one call; later the peer goes away:
/// assert_eq!(server.handle_closed(conn), Ok(0));
/// assert!(server.handle_closed(conn).is_err());
/// # let _ = line;
/// ```
#[derive(Debug)]
pub struct ServerCore<S: SlotStorage> {
    slots: SlotAllocator<S>,
    stats: ServerStats,
    /// Accept errors since the last successful accept.
    consecutive_accept_errors: u32,
    /// While backing off after an accept error: when to accept again.
    accept_resume: Option<Instant>,
    /// Once the server drains.
    drain: Option<Drain>,
}

/// A server core for at most `N` connections, with no allocator.
pub type FixedServerCore<const N: usize> = ServerCore<FixedStorage<N>>;

/// A server core whose slot storage grows as needed.
#[cfg(feature = "alloc")]
pub type GrowableServerCore = ServerCore<GrowableStorage>;

impl<const N: usize> FixedServerCore<N> {
    /// A server core issuing at most `max_slots` slots (`None`: `N`).
    ///
    /// ```
    /// use callosum_proto::server::FixedServerCore;
    ///
    /// let server = FixedServerCore::<32>::new(None).unwrap();
    /// assert_eq!(server.live(), 0);
    /// ```
    pub fn new(
        max_slots: Option<u32>,
    ) -> Result<FixedServerCore<N>, crate::allocator::SlotLimitError> {
        crate::allocator::FixedSlotAllocator::new(max_slots).map(ServerCore::with_allocator)
    }
}

#[cfg(feature = "alloc")]
impl GrowableServerCore {
    /// A server core issuing at most `max_slots` slots (`None`: unlimited, the default of
    /// the protocol).
    ///
    /// ```
    /// use callosum_proto::server::GrowableServerCore;
    ///
    /// assert!(GrowableServerCore::new(Some(0)).is_err());
    /// assert!(GrowableServerCore::new(Some(100)).is_ok());
    /// ```
    pub fn new(
        max_slots: Option<u32>,
    ) -> Result<GrowableServerCore, crate::allocator::SlotLimitError> {
        crate::allocator::GrowableSlotAllocator::new(max_slots).map(ServerCore::with_allocator)
    }

    /// A server core with every setting of `config`, so that an adapter passes its
    /// configuration through whole.
    ///
    /// ```
    /// use callosum_proto::server::{GrowableServerCore, ServerConfig};
    ///
    /// let mut config = ServerConfig::default();
    /// config.max_slots = Some(0);
    /// assert!(GrowableServerCore::from_config(&config).is_err());
    /// ```
    pub fn from_config(
        config: &ServerConfig,
    ) -> Result<GrowableServerCore, crate::allocator::SlotLimitError> {
        GrowableServerCore::new(config.max_slots)
    }
}

impl<S: SlotStorage> ServerCore<S> {
    fn with_allocator(slots: SlotAllocator<S>) -> ServerCore<S> {
        ServerCore {
            slots,
            stats: ServerStats::default(),
            consecutive_accept_errors: 0,
            accept_resume: None,
            drain: None,
        }
    }

    /// A connection was accepted: give it the lowest free slot, or refuse it (every slot in
    /// use, or draining).
    ///
    /// ```
    /// # use callosum_proto::server::{Accept, FixedServerCore};
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// for expected in 0..3 {
    ///     let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
    ///     assert_eq!(conn.slot(), expected);
    /// }
    /// ```
    pub fn handle_accept(&mut self) -> Accept {
        // The accept itself worked (even if the server is full): the error run is over.
        self.consecutive_accept_errors = 0;
        self.accept_resume = None;
        if self.drain.is_some() {
            self.stats.refused_draining += 1;
            return Accept::Full;
        }
        match self.slots.acquire() {
            Ok(handle) => {
                self.stats.accepted += 1;
                Accept::Assigned {
                    conn: AcceptId(handle),
                    line: SlotLine::new(handle.slot()),
                }
            }
            Err(_) => {
                self.stats.refused_full += 1;
                Accept::Full
            }
        }
    }

    /// A connection ended, whatever the cause: its slot is free again. Returns the slot.
    ///
    /// During a drain it also counts as drained (before the deadline) or closed at the
    /// deadline (once [`ServerCore::handle_timeout`] saw it pass).
    ///
    /// ```
    /// # use callosum_proto::server::{Accept, FixedServerCore};
    /// # use callosum_proto::allocator::ReleaseError;
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
    /// assert_eq!(server.handle_closed(conn), Ok(0));
    /// assert_eq!(server.handle_closed(conn), Err(ReleaseError::NotInUse { slot: 0 }));
    /// ```
    pub fn handle_closed(&mut self, conn: AcceptId) -> Result<u32, ReleaseError> {
        match self.slots.release(conn.0) {
            Ok(()) => {
                self.stats.closed += 1;
                match self.drain {
                    Some(drain) if drain.deadline_passed => self.stats.closed_at_deadline += 1,
                    Some(_) => self.stats.drained += 1,
                    None => {}
                }
                Ok(conn.slot())
            }
            Err(error) => {
                self.stats.bad_releases += 1;
                Err(error)
            }
        }
    }

    /// A connection ended before its slot line could be written (the peer was gone at once):
    /// its slot is free again, and it is counted apart. Returns the slot.
    ///
    /// ```
    /// # use callosum_proto::server::{Accept, FixedServerCore};
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
    /// assert_eq!(server.handle_lost_before_line(conn), Ok(0));
    /// assert_eq!(server.stats().lost_before_line, 1);
    /// ```
    pub fn handle_lost_before_line(&mut self, conn: AcceptId) -> Result<u32, ReleaseError> {
        let slot = self.handle_closed(conn)?;
        self.stats.lost_before_line += 1;
        Ok(slot)
    }

    /// Accepting failed for want of a resource (too many open files, no memory): returns
    /// when to try accepting again. Until then the adapter does not call `accept`, and keeps serving the
    /// connections it has.
    ///
    /// The pause is [`ACCEPT_BACKOFF_MIN`] after the first error of a run and doubles with
    /// each consecutive one, up to [`ACCEPT_BACKOFF_MAX`]; a successful
    /// [`ServerCore::handle_accept`] ends the run.
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// # use callosum_proto::server::FixedServerCore;
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// let now = Instant::from_millis(100);
    /// assert_eq!(server.handle_accept_error(now), Instant::from_millis(110));
    /// assert_eq!(server.handle_accept_error(now), Instant::from_millis(120));
    /// assert_eq!(server.handle_accept_error(now), Instant::from_millis(140));
    /// assert_eq!(server.stats().accept_errors, 3);
    /// ```
    pub fn handle_accept_error(&mut self, now: Instant) -> Instant {
        self.stats.accept_errors += 1;
        let doublings = self.consecutive_accept_errors;
        self.consecutive_accept_errors = self.consecutive_accept_errors.saturating_add(1);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        let pause = ACCEPT_BACKOFF_MIN
            .saturating_mul(factor)
            .min(ACCEPT_BACKOFF_MAX);
        let resume = now + pause;
        self.accept_resume = Some(resume);
        resume
    }

    /// Time has come to `now`: a pause after an accept error that ends at or before `now` is
    /// over, and the adapter accepts again. (The run of errors goes on until an accept
    /// succeeds, so the next error pauses longer.) A drain whose deadline is at or before
    /// `now` moves to [`DrainPhase::CloseRemaining`] if connections are open.
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// # use callosum_proto::server::FixedServerCore;
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// let resume = server.handle_accept_error(Instant::ZERO);
    /// server.handle_timeout(Instant::from_millis(9));
    /// assert_eq!(server.poll_timeout(), Some(resume));
    /// server.handle_timeout(resume);
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.accept_resume.is_some_and(|resume| resume <= now) {
            self.accept_resume = None;
        }
        if let Some(drain) = &mut self.drain
            && drain.deadline <= now
        {
            drain.deadline_passed = true;
        }
    }

    /// When to call [`ServerCore::handle_timeout`] next: the end of a pause after an accept
    /// error, or the deadline of a drain with connections open. `None` when nothing is
    /// due.
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// # use callosum_proto::server::{Accept, FixedServerCore};
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
    /// let deadline = Instant::from_millis(300);
    /// let _ = server.handle_drain(Instant::ZERO, deadline);
    /// assert_eq!(server.poll_timeout(), Some(deadline));
    /// // Its last connection closed between requests: no deadline to wait for.
    /// let _ = server.handle_closed(conn);
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self
            .drain
            .filter(|drain| self.drain_phase(drain) == DrainPhase::BetweenRequests)
            .map(|drain| drain.deadline);
        match (self.accept_resume, deadline) {
            (Some(resume), Some(deadline)) => Some(resume.min(deadline)),
            (resume, deadline) => resume.or(deadline),
        }
    }

    /// Starts draining at `now` (PROTOCOL.md section 2): the adapter closes its listener, so
    /// that new connections are refused, and tells the application; the application closes
    /// each connection when it is between two requests; at `deadline`
    /// ([`ServerCore::poll_timeout`], then [`ServerCore::handle_timeout`]) the phase is
    /// [`DrainPhase::CloseRemaining`] and the adapter closes the rest. From now on
    /// [`ServerCore::handle_accept`] refuses every connection, and an accept-error pause is
    /// over (nothing is accepted any more).
    ///
    /// Draining again keeps the first start and the earlier deadline, so a second call can
    /// only hurry a drain. A deadline at or before `now` closes every connection at once.
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// # use callosum_proto::server::{Accept, DrainPhase, FixedServerCore};
    /// let mut server = FixedServerCore::<8>::new(None).unwrap();
    /// let Accept::Assigned { conn: idle, .. } = server.handle_accept() else { unreachable!() };
    /// let Accept::Assigned { conn: busy, .. } = server.handle_accept() else { unreachable!() };
    /// let drain = server.handle_drain(Instant::ZERO, Instant::from_millis(5_000));
    /// assert_eq!(drain.phase, DrainPhase::BetweenRequests);
    /// assert_eq!(server.handle_accept(), Accept::Full);
    /// // The idle connection is closed between requests.
    /// let _ = server.handle_closed(idle);
    /// // The busy one outlasts the deadline and is closed then.
    /// server.handle_timeout(Instant::from_millis(5_000));
    /// assert_eq!(server.drain_status().unwrap().phase, DrainPhase::CloseRemaining);
    /// let _ = server.handle_closed(busy);
    /// let done = server.drain_status().unwrap();
    /// assert_eq!(done.phase, DrainPhase::Done);
    /// assert_eq!((done.report.drained, done.report.closed_at_deadline), (1, 1));
    /// assert_eq!(server.stats().refused_draining, 1);
    /// ```
    #[must_use]
    pub fn handle_drain(&mut self, now: Instant, deadline: Instant) -> DrainStatus {
        let (since, deadline) = match self.drain {
            Some(drain) => (drain.since, drain.deadline.min(deadline)),
            None => (now, deadline),
        };
        let drain = Drain {
            since,
            deadline,
            deadline_passed: deadline <= now || self.drain.is_some_and(|d| d.deadline_passed),
        };
        self.drain = Some(drain);
        self.accept_resume = None;
        self.status_of(drain)
    }

    /// Whether the server is draining (or has drained): a connection between requests is
    /// closed, and nothing is accepted.
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// The drain, once one started: its times, its phase (what the adapter does now) and
    /// how the connections ended so far.
    pub fn drain_status(&self) -> Option<DrainStatus> {
        self.drain.map(|drain| self.status_of(drain))
    }

    fn status_of(&self, drain: Drain) -> DrainStatus {
        DrainStatus {
            since: drain.since,
            deadline: drain.deadline,
            phase: self.drain_phase(&drain),
            report: DrainReport {
                drained: self.stats.drained,
                closed_at_deadline: self.stats.closed_at_deadline,
            },
        }
    }

    fn drain_phase(&self, drain: &Drain) -> DrainPhase {
        match (self.live(), drain.deadline_passed) {
            (0, _) => DrainPhase::Done,
            (_, true) => DrainPhase::CloseRemaining,
            (_, false) => DrainPhase::BetweenRequests,
        }
    }

    /// Whether the adapter calls `accept` now: not while pausing after an accept error, and
    /// never again once draining.
    pub fn is_accepting(&self) -> bool {
        self.accept_resume.is_none() && self.drain.is_none()
    }

    /// Connections holding a slot now.
    pub fn live(&self) -> u32 {
        self.slots.in_use()
    }

    /// Whether `slot` is held by a live connection.
    pub fn is_slot_in_use(&self, slot: u32) -> bool {
        self.slots.is_in_use(slot)
    }

    /// The counters so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Live connections, whether it accepts, the drain if any, and the counters.
    pub fn status(&self) -> ServerStatus {
        ServerStatus {
            live: self.live(),
            accepting: self.is_accepting(),
            drain: self.drain_status(),
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(accept: Accept) -> (AcceptId, SlotLine) {
        match accept {
            Accept::Assigned { conn, line } => (conn, line),
            Accept::Full => panic!("expected a slot, got Full"),
        }
    }

    #[test]
    fn each_connection_gets_the_lowest_free_slot_and_its_line() {
        let mut server = FixedServerCore::<8>::new(None).unwrap();
        let (a, line_a) = assigned(server.handle_accept());
        let (b, _) = assigned(server.handle_accept());
        let (c, line_c) = assigned(server.handle_accept());
        assert_eq!([a.slot(), b.slot(), c.slot()], [0, 1, 2]);
        assert_eq!(line_a.as_bytes(), b"0\r\n");
        assert_eq!(line_c.as_bytes(), b"2\r\n");
        assert_eq!(server.handle_closed(b), Ok(1));
        let (d, _) = assigned(server.handle_accept());
        assert_eq!(d.slot(), 1);
    }

    #[test]
    fn a_full_server_refuses_until_a_slot_frees() {
        let mut server = FixedServerCore::<8>::new(Some(2)).unwrap();
        let (a, _) = assigned(server.handle_accept());
        let _b = assigned(server.handle_accept());
        assert_eq!(server.handle_accept(), Accept::Full);
        server.handle_closed(a).unwrap();
        assert_eq!(assigned(server.handle_accept()).0.slot(), 0);
        assert_eq!(server.stats().refused_full, 1);
    }

    #[test]
    fn a_fixed_server_without_a_limit_is_full_at_its_capacity() {
        let mut server = FixedServerCore::<3>::new(None).unwrap();
        let conns: [AcceptId; 3] = core::array::from_fn(|_| assigned(server.handle_accept()).0);
        assert_eq!(conns.map(AcceptId::slot), [0, 1, 2]);
        assert_eq!(server.handle_accept(), Accept::Full);
        assert_eq!(server.handle_closed(conns[1]), Ok(1));
        assert_eq!(assigned(server.handle_accept()).0.slot(), 1);
        assert_eq!(server.stats().refused_full, 1);
        assert_eq!(server.live(), 3);
    }

    #[test]
    fn debug_summarises_the_storage() {
        extern crate std;
        let mut server = FixedServerCore::<4>::new(None).unwrap();
        let (conn, _) = assigned(server.handle_accept());
        let _ = assigned(server.handle_accept());
        server.handle_closed(conn).unwrap();
        let text = std::format!("{server:?}");
        assert!(text.starts_with("ServerCore {"), "{text}");
        assert!(
            text.contains("FixedStorage { capacity: 4, issued: 2, free: 1 }"),
            "{text}"
        );
    }

    #[test]
    fn an_old_handle_cannot_free_a_new_connection() {
        let mut server = FixedServerCore::<8>::new(None).unwrap();
        let (old, _) = assigned(server.handle_accept());
        server.handle_closed(old).unwrap();
        let (new, _) = assigned(server.handle_accept());
        assert_eq!(new.slot(), 0);
        assert_eq!(
            server.handle_closed(old),
            Err(ReleaseError::Stale { slot: 0 })
        );
        assert!(server.is_slot_in_use(0));
        assert_eq!(server.stats().bad_releases, 1);
        assert_eq!(server.live(), 1);
    }

    #[test]
    fn accept_errors_back_off_doubling_up_to_the_cap() {
        let mut server = FixedServerCore::<4>::new(None).unwrap();
        let now = Instant::from_millis(1_000);
        let pauses: [u64; 10] = core::array::from_fn(|_| {
            server
                .handle_accept_error(now)
                .saturating_duration_since(now)
                .as_millis() as u64
        });
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(server.stats().accept_errors, 10);
        assert_eq!(server.poll_timeout(), Some(Instant::from_millis(2_000)));
        // However long the run, the pause stays capped and the arithmetic never overflows.
        for _ in 0..100 {
            let _ = server.handle_accept_error(now);
        }
        assert_eq!(server.handle_accept_error(now), Instant::from_millis(2_000));
        assert_eq!(
            server.handle_accept_error(Instant::MAX),
            Instant::MAX,
            "the end of the clock saturates"
        );
    }

    #[test]
    fn a_successful_accept_resets_the_backoff() {
        let mut server = FixedServerCore::<8>::new(Some(1)).unwrap();
        let _ = server.handle_accept_error(Instant::ZERO);
        let _ = server.handle_accept_error(Instant::ZERO);
        let (conn, _) = assigned(server.handle_accept());
        assert_eq!(server.poll_timeout(), None);
        let at = Instant::from_millis(50);
        assert_eq!(server.handle_accept_error(at), Instant::from_millis(60));
        // A full server's accept worked too: the run is over.
        assert_eq!(server.handle_accept(), Accept::Full);
        assert_eq!(server.handle_accept_error(at), Instant::from_millis(60));
        assert_eq!(server.stats().accept_errors, 4);
        // The connections already accepted are untouched.
        assert_eq!(server.live(), 1);
        assert_eq!(server.handle_closed(conn), Ok(0));
    }

    #[test]
    fn the_pause_ends_at_its_time_but_the_run_goes_on() {
        let mut server = FixedServerCore::<2>::new(None).unwrap();
        assert_eq!(server.poll_timeout(), None);
        let resume = server.handle_accept_error(Instant::ZERO);
        assert_eq!(resume, Instant::from_millis(10));
        server.handle_timeout(Instant::from_micros(9_999));
        assert_eq!(server.poll_timeout(), Some(resume));
        server.handle_timeout(resume);
        assert_eq!(server.poll_timeout(), None);
        // Accepting fails again at once: the next pause is longer.
        assert_eq!(server.handle_accept_error(resume), Instant::from_millis(30));
    }

    #[test]
    fn a_drain_counts_closes_between_requests_and_at_the_deadline() {
        let mut server = FixedServerCore::<8>::new(None).unwrap();
        let (before, _) = assigned(server.handle_accept());
        server.handle_closed(before).unwrap();
        let conns: [AcceptId; 3] = core::array::from_fn(|_| assigned(server.handle_accept()).0);
        let deadline = Instant::from_millis(1_000);
        let drain = server.handle_drain(Instant::from_millis(100), deadline);
        assert_eq!(drain.phase, DrainPhase::BetweenRequests);
        assert_eq!(drain.since, Instant::from_millis(100));
        assert!(!server.status().accepting);
        assert_eq!(server.poll_timeout(), Some(deadline));
        // Nothing new is let in.
        assert_eq!(server.handle_accept(), Accept::Full);
        // Two close between requests; the deadline closes the third.
        server.handle_closed(conns[0]).unwrap();
        server.handle_lost_before_line(conns[1]).unwrap();
        server.handle_timeout(Instant::from_millis(999));
        assert_eq!(
            server.drain_status().unwrap().phase,
            DrainPhase::BetweenRequests
        );
        server.handle_timeout(deadline);
        assert_eq!(
            server.drain_status().unwrap().phase,
            DrainPhase::CloseRemaining
        );
        assert_eq!(server.poll_timeout(), None, "the deadline is behind");
        server.handle_closed(conns[2]).unwrap();
        let status = server.status();
        assert_eq!(status.live, 0);
        let drain = status.drain.unwrap();
        assert_eq!(drain.phase, DrainPhase::Done);
        assert_eq!(
            drain.report,
            DrainReport {
                drained: 2,
                closed_at_deadline: 1
            }
        );
        let stats = status.stats;
        assert_eq!(
            (stats.accepted, stats.closed, stats.refused_draining),
            (4, 4, 1)
        );
        assert_eq!((stats.refused_full, stats.lost_before_line), (0, 1));
        // A double release during the drain counts as bad, not as drained.
        assert!(server.handle_closed(conns[0]).is_err());
        assert_eq!(server.stats().drained, 2);
        assert_eq!(server.stats().bad_releases, 1);
    }

    #[test]
    fn draining_again_only_hurries_the_drain() {
        let mut server = FixedServerCore::<4>::new(None).unwrap();
        let (conn, _) = assigned(server.handle_accept());
        let first = server.handle_drain(Instant::from_millis(10), Instant::from_millis(500));
        let later = server.handle_drain(Instant::from_millis(20), Instant::from_millis(900));
        assert_eq!(
            (later.since, later.deadline),
            (first.since, first.deadline),
            "a later deadline changes nothing"
        );
        let sooner = server.handle_drain(Instant::from_millis(30), Instant::from_millis(200));
        assert_eq!(sooner.since, Instant::from_millis(10));
        assert_eq!(sooner.deadline, Instant::from_millis(200));
        assert_eq!(server.poll_timeout(), Some(Instant::from_millis(200)));
        // A deadline already past: the rest is closed at once.
        let now = server.handle_drain(Instant::from_millis(40), Instant::from_millis(40));
        assert_eq!(now.phase, DrainPhase::CloseRemaining);
        server.handle_closed(conn).unwrap();
        assert_eq!(server.stats().closed_at_deadline, 1);
    }

    #[test]
    fn a_drain_ends_an_accept_pause_and_only_its_deadline_is_due() {
        let mut server = FixedServerCore::<4>::new(None).unwrap();
        let (conn, _) = assigned(server.handle_accept());
        let _ = server.handle_accept_error(Instant::ZERO);
        assert_eq!(server.poll_timeout(), Some(Instant::from_millis(10)));
        let _ = server.handle_drain(Instant::from_millis(1), Instant::from_millis(50));
        assert_eq!(server.poll_timeout(), Some(Instant::from_millis(50)));
        assert!(!server.is_accepting());
        // A server that was draining stays so: closing its last connection does not make
        // it accept again.
        server.handle_closed(conn).unwrap();
        assert!(server.is_draining());
        assert!(!server.status().accepting);
        assert_eq!(server.poll_timeout(), None);
        assert_eq!(server.drain_status().unwrap().phase, DrainPhase::Done);
    }

    #[test]
    fn closes_before_a_drain_are_not_drained() {
        let mut server = FixedServerCore::<4>::new(None).unwrap();
        let (conn, _) = assigned(server.handle_accept());
        server.handle_closed(conn).unwrap();
        assert_eq!(server.drain_status(), None);
        assert_eq!((server.stats().drained, server.stats().closed), (0, 1));
        let drain = server.handle_drain(Instant::ZERO, Instant::MAX);
        assert_eq!(drain.phase, DrainPhase::Done);
        assert_eq!(drain.report, DrainReport::default());
    }
}

#[cfg(all(test, feature = "alloc"))]
mod growable_tests {
    use super::*;

    #[test]
    fn a_growable_server_gives_the_lowest_free_slot_beyond_any_fixed_size() {
        let mut server = GrowableServerCore::new(None).unwrap();
        let conns: alloc::vec::Vec<AcceptId> = (0..1_000)
            .map(|_| match server.handle_accept() {
                Accept::Assigned { conn, .. } => conn,
                Accept::Full => panic!("unlimited by default"),
            })
            .collect();
        assert_eq!(conns[999].slot(), 999);
        assert_eq!(server.handle_closed(conns[500]), Ok(500));
        let Accept::Assigned { conn, line } = server.handle_accept() else {
            panic!("a slot is free");
        };
        assert_eq!((conn.slot(), line.as_bytes()), (500, &b"500\r\n"[..]));
        let text = alloc::format!("{server:?}");
        assert!(
            text.contains("GrowableStorage { issued: 1000, free: 0 }"),
            "{text}"
        );
    }
}

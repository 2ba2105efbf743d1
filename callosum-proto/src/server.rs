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
    /// Every slot is in use: close the connection at once, without a line.
    Full,
}

/// The pause after the first of a run of accept errors (PROTOCOL.md section 2): long enough
/// that a server out of file descriptors does not spin, short enough that it resumes at once
/// when one frees.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest pause between accepts, however many errors in a row: a server that recovers
/// accepts again within this time.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Counters of one server's life.
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
    /// Connections closed without a line because every slot was in use.
    pub refused_full: u64,
    /// Connections whose end freed their slot.
    pub closed: u64,
    /// End reports refused as double, stale or unknown.
    pub bad_releases: u64,
    /// Accepts that failed, reported with [`ServerCore::handle_accept_error`].
    pub accept_errors: u64,
    /// Connections that ended before their slot line could be written, reported with
    /// [`ServerCore::handle_lost_before_line`] (also counted in `closed`).
    pub lost_before_line: u64,
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
/// assert_eq!((status.live, status.accepting), (0, true));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStatus {
    /// Connections holding a slot now.
    pub live: u32,
    /// `false` while pausing after an accept error.
    pub accepting: bool,
    /// The counters so far.
    pub stats: ServerStats,
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
        }
    }

    /// A connection was accepted: give it the lowest free slot, or refuse it.
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
    /// succeeds, so the next error pauses longer.)
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
    }

    /// While pausing after an accept error: when to accept again (then call
    /// [`ServerCore::handle_timeout`]). `None` when the server accepts as usual.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.accept_resume
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

    /// Live connections, whether it accepts, and the counters.
    pub fn status(&self) -> ServerStatus {
        ServerStatus {
            live: self.live(),
            accepting: self.accept_resume.is_none(),
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

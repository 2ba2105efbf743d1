//! Bookkeeping for one listening server (PROTOCOL.md section 2).
//!
//! The adapter tells the core that a connection was accepted and gets back either the slot
//! line to write in one call or "full: close it without a line". When the connection ends,
//! for whatever reason (FIN, RST, an I/O error, the application closed it, the peer left
//! before the line was written), the adapter reports it once and the slot is free again.
//! A second report, or a report with a handle kept from an earlier connection, is a typed
//! error and changes nothing.

use core::fmt;

use crate::allocator::{FixedStorage, ReleaseError, SlotAllocator, SlotHandle, SlotStorage};
use crate::slot_line::SlotLine;

#[cfg(feature = "alloc")]
use crate::allocator::GrowableStorage;

/// One accepted connection, as the server core knows it.
///
/// ```
/// use callosum_proto::server::{Accept, GrowableServerCore};
///
/// let mut server = GrowableServerCore::new(None).unwrap();
/// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
/// assert_eq!(conn.slot(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "dropping a connection id leaks its slot: report the end with handle_closed"]
pub struct ConnId(SlotHandle);

impl ConnId {
    /// The slot this connection holds.
    ///
    /// ```
    /// # use callosum_proto::server::{Accept, GrowableServerCore};
    /// let mut server = GrowableServerCore::new(None).unwrap();
    /// let Accept::Assigned { conn, line } = server.handle_accept() else { unreachable!() };
    /// assert_eq!(line.as_bytes(), b"0\r\n");
    /// assert_eq!(conn.slot(), 0);
    /// ```
    pub fn slot(self) -> u32 {
        self.0.slot()
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection on {}", self.0)
    }
}

/// What to do with a connection just accepted.
///
/// ```
/// use callosum_proto::server::{Accept, GrowableServerCore};
///
/// let mut server = GrowableServerCore::new(Some(1)).unwrap();
/// assert!(matches!(server.handle_accept(), Accept::Assigned { .. }));
/// assert_eq!(server.handle_accept(), Accept::Full);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Accept {
    /// Write `line` in a single write call, then hand the connection to the application.
    Assigned {
        /// The connection's handle: report its end with [`ServerCore::handle_closed`].
        conn: ConnId,
        /// The bytes to write first.
        line: SlotLine,
    },
    /// Every slot is in use: close the connection at once, without a line.
    Full,
}

/// Counters of one server's life.
///
/// ```
/// use callosum_proto::server::GrowableServerCore;
///
/// let server = GrowableServerCore::new(None).unwrap();
/// assert_eq!(server.stats().accepted, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections that got a slot.
    pub accepted: u64,
    /// Connections closed without a line because every slot was in use.
    pub refused_full: u64,
    /// Connections whose end freed their slot.
    pub closed: u64,
    /// End reports refused as double, stale or unknown.
    pub bad_releases: u64,
}

/// The slot bookkeeping of one listening server.
///
/// ```
/// use callosum_proto::server::{Accept, GrowableServerCore};
///
/// let mut server = GrowableServerCore::new(None).unwrap();
/// let Accept::Assigned { conn, line } = server.handle_accept() else { unreachable!() };
/// // ... the adapter writes `line.as_bytes()` in one call; later the peer goes away:
/// assert_eq!(server.handle_closed(conn), Ok(0));
/// assert!(server.handle_closed(conn).is_err());
/// # let _ = line;
/// ```
pub struct ServerCore<S: SlotStorage> {
    slots: SlotAllocator<S>,
    stats: ServerStats,
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
}

impl<S: SlotStorage> ServerCore<S> {
    fn with_allocator(slots: SlotAllocator<S>) -> ServerCore<S> {
        ServerCore {
            slots,
            stats: ServerStats::default(),
        }
    }

    /// A connection was accepted: give it the lowest free slot, or refuse it.
    ///
    /// ```
    /// # use callosum_proto::server::{Accept, GrowableServerCore};
    /// let mut server = GrowableServerCore::new(None).unwrap();
    /// for expected in 0..3 {
    ///     let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
    ///     assert_eq!(conn.slot(), expected);
    /// }
    /// ```
    pub fn handle_accept(&mut self) -> Accept {
        match self.slots.acquire() {
            Ok(handle) => {
                self.stats.accepted += 1;
                Accept::Assigned {
                    conn: ConnId(handle),
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
    /// # use callosum_proto::server::{Accept, GrowableServerCore};
    /// # use callosum_proto::allocator::ReleaseError;
    /// let mut server = GrowableServerCore::new(None).unwrap();
    /// let Accept::Assigned { conn, .. } = server.handle_accept() else { unreachable!() };
    /// assert_eq!(server.handle_closed(conn), Ok(0));
    /// assert_eq!(server.handle_closed(conn), Err(ReleaseError::NotInUse { slot: 0 }));
    /// ```
    pub fn handle_closed(&mut self, conn: ConnId) -> Result<u32, ReleaseError> {
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

    /// Connections holding a slot now.
    ///
    /// ```
    /// # use callosum_proto::server::GrowableServerCore;
    /// let mut server = GrowableServerCore::new(None).unwrap();
    /// let _ = server.handle_accept();
    /// assert_eq!(server.live(), 1);
    /// ```
    pub fn live(&self) -> u32 {
        self.slots.in_use()
    }

    /// Whether `slot` is held by a live connection.
    ///
    /// ```
    /// # use callosum_proto::server::GrowableServerCore;
    /// let mut server = GrowableServerCore::new(None).unwrap();
    /// let _ = server.handle_accept();
    /// assert!(server.is_slot_in_use(0));
    /// ```
    pub fn is_slot_in_use(&self, slot: u32) -> bool {
        self.slots.is_in_use(slot)
    }

    /// The counters so far.
    ///
    /// ```
    /// # use callosum_proto::server::GrowableServerCore;
    /// let mut server = GrowableServerCore::new(Some(1)).unwrap();
    /// let _ = server.handle_accept();
    /// let _ = server.handle_accept();
    /// assert_eq!(server.stats().refused_full, 1);
    /// ```
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(accept: Accept) -> (ConnId, SlotLine) {
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
        let mut server = GrowableServerCore::new(Some(2)).unwrap();
        let (a, _) = assigned(server.handle_accept());
        let _b = assigned(server.handle_accept());
        assert_eq!(server.handle_accept(), Accept::Full);
        server.handle_closed(a).unwrap();
        assert_eq!(assigned(server.handle_accept()).0.slot(), 0);
        assert_eq!(server.stats().refused_full, 1);
    }

    #[test]
    fn an_old_handle_cannot_free_a_new_connection() {
        let mut server = GrowableServerCore::new(None).unwrap();
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
}

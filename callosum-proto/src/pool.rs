//! The client connection pool, the "twin heap" (PROTOCOL.md section 3).
//!
//! The pool keeps at most `max_slots` connections, preferring the lowest slots it is offered,
//! and lends out an idle one by its lease policy: the lowest slot, or any at random. It never
//! touches a socket: the adapter's
//! connection (a token, or the stream itself) is moved in with [`Pool::offer`] and
//! [`Pool::checkin`], moved out with [`Pool::checkout`], and every connection the pool lets go
//! of is handed back for the adapter to close. Nothing is ever dropped silently.
//!
//! Storage is a [`Slab`] of records reused through a free list, an indexed binary heap of the
//! held records by slot (highest first, for eviction), and the idle records kept the way the
//! lease policy lends them: in buckets of equal slots for the lowest slot, in no order for a
//! random one. Checkout and checkin, what a request does, take the same few steps however many
//! connections are idle and however many tie for the lowest slot, plus one heap step
//! (O(log b) in the b distinct idle slots) when the lowest bucket empties or an empty bucket
//! fills again; offers and removals are O(log n).
//!
//! ```
//! use callosum_proto::ServerId;
//! use callosum_proto::pool::{Checkin, Offer, Pool, PoolConfig};
//!
//! let mut pool = Pool::new(PoolConfig { max_slots: 2 }, 7).unwrap();
//! assert!(matches!(pool.offer(ServerId(1), 4, "a"), Offer::Kept(_)));
//! assert!(matches!(pool.offer(ServerId(2), 9, "b"), Offer::Kept(_)));
//! // Full: slot 3 is better than the highest held (9), which is evicted and handed back.
//! let Offer::Replaced { evicted, .. } = pool.offer(ServerId(3), 3, "c") else { panic!() };
//! assert_eq!(evicted.into_conn(), Some("b"));
//!
//! let lease = pool.checkout().unwrap();
//! assert_eq!((lease.slot, lease.conn), (3, "c"));
//! assert!(matches!(pool.checkin(lease.id, lease.conn), Ok(Checkin::Idle(_))));
//! ```

mod buckets;
mod heap;
mod idle;

use alloc::collections::{BTreeMap, TryReserveError};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;
use core::mem;

use crate::slab::{self, Key, Slab};
use crate::{Rng, ServerId};
use heap::IndexedHeap;
use idle::IdleSet;

/// The most records the pool can number: as many as a slab holds (`u32` indices).
const RECORD_LIMIT: usize = slab::MAX_LEN;

/// How a [`Pool`] is set up.
///
/// ```
/// use callosum_proto::pool::PoolConfig;
///
/// assert_eq!(PoolConfig::default().max_slots, 100);
/// let small = PoolConfig { max_slots: 8 };
/// assert_eq!(small.max_slots, 8);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolConfig {
    /// The most connections the pool holds (idle or leased); default 100. Zero is an error.
    pub max_slots: usize,
}

impl PoolConfig {
    /// The largest `max_slots` accepted: connection ids number records with a `u32`.
    ///
    /// ```
    /// use callosum_proto::pool::{Pool, PoolConfig, PoolConfigError};
    ///
    /// let too_many = PoolConfig { max_slots: PoolConfig::MAX_SLOTS_LIMIT + 1 };
    /// # if usize::BITS > 32 {
    /// assert!(matches!(Pool::<()>::new(too_many, 0), Err(PoolConfigError::TooManySlots { .. })));
    /// # }
    /// ```
    pub const MAX_SLOTS_LIMIT: usize = RECORD_LIMIT;
}

impl Default for PoolConfig {
    /// `max_slots` 100, as in the original.
    fn default() -> PoolConfig {
        PoolConfig { max_slots: 100 }
    }
}

/// Why [`Pool::new`] refused a configuration.
///
/// ```
/// use callosum_proto::pool::{Pool, PoolConfig, PoolConfigError};
///
/// let err = Pool::<u64>::new(PoolConfig { max_slots: 0 }, 1).unwrap_err();
/// assert_eq!(err, PoolConfigError::ZeroMaxSlots);
/// assert_eq!(err.to_string(), "max_slots is 0: a pool must hold at least one connection");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolConfigError {
    /// `max_slots` is 0. It never means "use the default" (the original's fault).
    ZeroMaxSlots,
    /// `max_slots` is above [`PoolConfig::MAX_SLOTS_LIMIT`].
    TooManySlots {
        /// The value asked for.
        max_slots: usize,
    },
    /// Storage for `max_slots` connections could not be allocated.
    OutOfMemory {
        /// The value asked for.
        max_slots: usize,
    },
}

impl fmt::Display for PoolConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolConfigError::ZeroMaxSlots => {
                f.write_str("max_slots is 0: a pool must hold at least one connection")
            }
            PoolConfigError::TooManySlots { max_slots } => write!(
                f,
                "max_slots is {max_slots}, above the limit of {}",
                PoolConfig::MAX_SLOTS_LIMIT
            ),
            PoolConfigError::OutOfMemory { max_slots } => {
                write!(f, "cannot allocate a pool of {max_slots} connections")
            }
        }
    }
}

impl core::error::Error for PoolConfigError {}

/// Which idle connection a checkout lends. Slots decide which connections the pool keeps
/// either way, and a leased connection is never lent again, so a slow server, whose
/// connections stay busy, gets less work under both.
///
/// The client's default is the one the simulator shows best (see `callosum-sim/README.md`).
///
/// ```
/// use callosum_proto::client::{ClientConfig, LeasePolicy};
///
/// let mut config = ClientConfig::default();
/// assert_eq!(config.lease, LeasePolicy::Random);
/// config.lease = LeasePolicy::Lowest; // the original's
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeasePolicy {
    /// The idle connection with the lowest slot, ties at random: the original's. A light
    /// client then sends nearly every request down its one lowest connection, so which
    /// servers get the load comes down to which are many clients' lowest slot.
    Lowest,
    /// An idle connection drawn uniformly at random: a light client's requests spread over
    /// all the connections it keeps.
    Random,
}

/// Names one connection in the pool for as long as its state stays the same.
///
/// Every checkout issues a new id, every checkin that makes a lease idle again issues another
/// one (the idle connection's current id is in [`Pool::connections`] and [`Pool::idle_mut`]),
/// and a record reused for another connection gets a new generation. So an id kept after its
/// lease was returned (or after the connection left the pool) is detected as stale instead of
/// acting on whoever holds the connection now. Only an id kept across 2^32 reuses of one
/// record could be mistaken for a current one.
///
/// Ids are only meaningful to the pool that issued them. An id carries no mark of its pool:
/// given to another pool it is refused only if it names nothing there; it may as well name
/// one of that pool's connections and act on it. Keep each id with the pool it came from.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Offer, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig::default(), 1).unwrap();
/// let Offer::Kept(idle_id) = pool.offer(ServerId(0), 0, ()) else { panic!() };
/// let lease = pool.checkout().unwrap();
/// assert_ne!(lease.id, idle_id);
/// assert!(pool.remove(idle_id).is_err()); // stale
/// println!("{}", lease.id); // "conn 0 gen 1"
/// # pool.checkin(lease.id, lease.conn).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PooledId(Key);

impl PooledId {
    /// The record index the heaps know it by.
    fn index(self) -> u32 {
        self.0.index()
    }
}

impl fmt::Display for PooledId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {} gen {}", self.0.index(), self.0.generation())
    }
}

/// What [`Pool::offer`] did with a new connection.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Offer, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig { max_slots: 1 }, 0).unwrap();
/// assert!(matches!(pool.offer(ServerId(1), 5, 'a'), Offer::Kept(_)));
/// // Not below the highest slot held (5): handed back, close it.
/// assert!(matches!(pool.offer(ServerId(2), 5, 'b'), Offer::Rejected('b')));
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a rejected or evicted connection must be closed"]
pub enum Offer<K> {
    /// Kept: the pool had room.
    Kept(PooledId),
    /// Kept in place of the connection with the highest slot held, which is evicted.
    Replaced {
        /// The new connection's id.
        kept: PooledId,
        /// The connection it displaced.
        evicted: Evicted<K>,
    },
    /// Not kept, handed back: close it (which frees the slot on its server).
    Rejected(K),
}

/// A connection evicted by a better offer.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Evicted, Offer, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig { max_slots: 1 }, 0).unwrap();
/// let _ = pool.offer(ServerId(1), 5, 'a');
/// let lease = pool.checkout().unwrap();
/// let Offer::Replaced { evicted, .. } = pool.offer(ServerId(2), 1, 'b') else { panic!() };
/// // 'a' was leased: the caller closes it when done, after returning it.
/// assert!(matches!(evicted, Evicted::Leased { slot: 5, .. }));
/// assert_eq!(evicted.into_conn(), None);
/// # let _ = pool.checkin(lease.id, lease.conn);
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an idle evicted connection must be closed"]
pub enum Evicted<K> {
    /// It was idle: it has left the pool, close it now.
    Idle {
        /// The id it had; now stale.
        id: PooledId,
        /// Its server.
        server: ServerId,
        /// Its slot.
        slot: u32,
        /// The connection, to close.
        conn: K,
    },
    /// It was leased: it will never be handed out again and no longer counts towards
    /// `max_slots`. [`Pool::checkin`] answers [`Checkin::Close`] when it comes back.
    Leased {
        /// The lease's id, still valid for `checkin` and `remove`.
        id: PooledId,
        /// Its server.
        server: ServerId,
        /// Its slot.
        slot: u32,
    },
}

impl<K> Evicted<K> {
    /// The connection to close now, if it was idle.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Offer, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 1 }, 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 5, 'a');
    /// let Offer::Replaced { evicted, .. } = pool.offer(ServerId(2), 1, 'b') else { panic!() };
    /// assert_eq!(evicted.into_conn(), Some('a'));
    /// ```
    pub fn into_conn(self) -> Option<K> {
        match self {
            Evicted::Idle { conn, .. } => Some(conn),
            Evicted::Leased { .. } => None,
        }
    }
}

/// A connection lent out by [`Pool::checkout`]: use it, then give it back with
/// [`Pool::checkin`] (or report it broken with [`Pool::remove`]).
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Offer, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
/// let _ = pool.offer(ServerId(4), 2, "stream");
/// let lease = pool.checkout().unwrap();
/// assert_eq!((lease.server, lease.slot, lease.conn), (ServerId(4), 2, "stream"));
/// # pool.checkin(lease.id, lease.conn).unwrap();
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a leased connection must be checked in or removed"]
pub struct Lease<K> {
    /// This lease's id, for `checkin` or `remove`.
    pub id: PooledId,
    /// The connection's server.
    pub server: ServerId,
    /// The connection's slot on that server.
    pub slot: u32,
    /// The connection itself.
    pub conn: K,
}

/// What [`Pool::checkin`] did with a returned connection.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Checkin, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
/// let _ = pool.offer(ServerId(0), 0, 'a');
/// let lease = pool.checkout().unwrap();
/// let Ok(Checkin::Idle(id)) = pool.checkin(lease.id, lease.conn) else { panic!() };
/// assert_ne!(id, lease.id); // the lease's id is stale now
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a connection evicted while leased must be closed"]
pub enum Checkin<K> {
    /// Back in the pool, idle, under this new id; the lease's id is stale.
    Idle(PooledId),
    /// It had been evicted while leased: it has left the pool, close it.
    Close(K),
}

/// Why [`Pool::checkin`] refused a connection.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{CheckinError, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
/// let _ = pool.offer(ServerId(0), 0, 'a');
/// let lease = pool.checkout().unwrap();
/// let _ = pool.checkin(lease.id, lease.conn);
/// // Returned twice: refused, and the connection passed in is handed back.
/// let err = pool.checkin(lease.id, 'x').unwrap_err();
/// assert_eq!(err.into_conn(), 'x');
/// ```
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckinError<K> {
    /// The id names no current lease: stale, already returned, or idle. The pool is unchanged.
    NotLeased {
        /// The id given.
        id: PooledId,
        /// The connection given, handed back, never lost.
        conn: K,
    },
}

impl<K> CheckinError<K> {
    /// The connection that was passed in.
    ///
    /// ```
    /// use callosum_proto::pool::{Offer, Pool, PoolConfig};
    /// # use callosum_proto::ServerId;
    ///
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// let Offer::Kept(idle) = pool.offer(ServerId(0), 0, 1u8) else { panic!() };
    /// assert_eq!(pool.checkin(idle, 2u8).unwrap_err().into_conn(), 2);
    /// ```
    pub fn into_conn(self) -> K {
        match self {
            CheckinError::NotLeased { conn, .. } => conn,
        }
    }
}

impl<K> fmt::Display for CheckinError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckinError::NotLeased { id, .. } => write!(f, "{id} is not a current lease"),
        }
    }
}

impl<K: fmt::Debug> core::error::Error for CheckinError<K> {}

/// What [`Pool::remove`] took out of the pool. Close the connection in every case.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Offer, Pool, PoolConfig, Removed};
///
/// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
/// let Offer::Kept(id) = pool.offer(ServerId(0), 0, 'a') else { panic!() };
/// let removed = pool.remove(id).unwrap();
/// assert_eq!((removed.server(), removed.slot()), (ServerId(0), 0));
/// assert_eq!(removed.into_conn(), Some('a'));
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "the removed connection must be closed"]
pub enum Removed<K> {
    /// It was idle: here it is, close it.
    Idle {
        /// The server it came from.
        server: ServerId,
        /// Its slot there.
        slot: u32,
        /// The connection, to close.
        conn: K,
    },
    /// It was leased: the caller holds it, close it.
    Leased {
        /// The server it came from.
        server: ServerId,
        /// Its slot there.
        slot: u32,
    },
    /// It had been evicted while leased (its place was already given back): the caller holds
    /// it, close it.
    Evicted {
        /// The server it came from.
        server: ServerId,
        /// Its slot there.
        slot: u32,
    },
}

impl<K> Removed<K> {
    /// The server the removed connection came from.
    pub fn server(&self) -> ServerId {
        match *self {
            Removed::Idle { server, .. }
            | Removed::Leased { server, .. }
            | Removed::Evicted { server, .. } => server,
        }
    }

    /// The removed connection's slot on its server.
    pub fn slot(&self) -> u32 {
        match *self {
            Removed::Idle { slot, .. }
            | Removed::Leased { slot, .. }
            | Removed::Evicted { slot, .. } => slot,
        }
    }

    /// The connection, if the pool held it (it was idle); a leased one is the caller's.
    pub fn into_conn(self) -> Option<K> {
        match self {
            Removed::Idle { conn, .. } => Some(conn),
            Removed::Leased { .. } | Removed::Evicted { .. } => None,
        }
    }
}

/// [`Pool::remove`] was given an id that names no connection in the pool.
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Offer, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
/// let Offer::Kept(id) = pool.offer(ServerId(0), 0, 'a') else { panic!() };
/// let _ = pool.remove(id);
/// let err = pool.remove(id).unwrap_err();
/// assert_eq!(err.id, id);
/// assert_eq!(err.to_string(), "conn 0 gen 0 is not in the pool");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownConn {
    /// The id given.
    pub id: PooledId,
}

impl fmt::Display for UnknownConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not in the pool", self.id)
    }
}

impl core::error::Error for UnknownConn {}

/// How many connections the pool has, by state: see [`Pool::status`].
///
/// ```
/// use callosum_proto::pool::PoolStatus;
///
/// let empty = PoolStatus::default();
/// assert_eq!(empty.held, empty.idle + empty.leased);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Idle plus leased: what counts towards `max_slots`.
    pub held: usize,
    /// Ready for checkout.
    pub idle: usize,
    /// Lent out, not evicted.
    pub leased: usize,
    /// Evicted while leased and not yet returned or removed.
    pub evicted_awaiting_return: usize,
}

/// Counters since the pool was made: see [`Pool::stats`].
///
/// `offered == kept + rejected`, and `replaced` counts the offers among `kept` that evicted
/// another connection.
///
/// ```
/// use callosum_proto::pool::PoolStats;
///
/// assert_eq!(PoolStats::default().offered, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PoolStats {
    /// Calls to [`Pool::offer`].
    pub offered: u64,
    /// Offers kept, whether or not they evicted another connection.
    pub kept: u64,
    /// Offers rejected.
    pub rejected: u64,
    /// Offers kept by evicting the connection with the highest slot.
    pub replaced: u64,
    /// Checkouts that returned a connection.
    pub checkouts: u64,
    /// Checkouts that found no idle connection.
    pub empty_checkouts: u64,
    /// Connections taken out with [`Pool::remove`].
    pub removed_broken: u64,
    /// Connections let go by [`Pool::remove_server`].
    pub removed_with_server: u64,
    /// Idle connections let go by [`Pool::trim`], held beyond the limit.
    pub trimmed: u64,
}

/// The state of a connection, in [`ConnInfo`].
///
/// ```
/// use callosum_proto::pool::ConnState;
///
/// assert_ne!(ConnState::Idle, ConnState::Leased);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// In the pool, ready for checkout.
    Idle,
    /// Lent out.
    Leased,
    /// Lent out and evicted since: closed when it comes back.
    Evicted,
}

/// One connection the pool knows: see [`Pool::connections`].
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{ConnState, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
/// let _ = pool.offer(ServerId(2), 7, ());
/// let info = pool.connections().next().unwrap();
/// assert_eq!((info.server, info.slot, info.state), (ServerId(2), 7, ConnState::Idle));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    /// Its current id.
    pub id: PooledId,
    /// Its server.
    pub server: ServerId,
    /// Its slot on that server.
    pub slot: u32,
    /// Idle, leased or evicted.
    pub state: ConnState,
}

/// A record of the slab. Its key is renewed at checkout and checkin, so old ids go stale.
#[derive(Debug)]
struct Entry<K> {
    server: ServerId,
    slot: u32,
    state: State<K>,
}

#[derive(Debug)]
enum State<K> {
    /// Held, in the held heap, idle in the idle set.
    Idle(K),
    /// Held, in the held heap, taken from the idle set.
    Leased,
    /// Evicted while leased: in neither, not held.
    Evicted,
}

/// The client connection pool. `K` is the adapter's connection (a token, or the stream).
///
/// ```
/// use callosum_proto::ServerId;
/// use callosum_proto::pool::{Offer, Pool, PoolConfig};
///
/// let mut pool = Pool::new(PoolConfig { max_slots: 3 }, 42).unwrap();
/// for (server, slot) in [(1, 0), (2, 0), (1, 1)] {
///     assert!(matches!(pool.offer(ServerId(server), slot, server), Offer::Kept(_)));
/// }
/// assert_eq!(pool.wanted(), 0);
/// let lease = pool.checkout().unwrap();
/// assert_eq!(lease.slot, 0); // server 1 or 2, at random
/// # pool.checkin(lease.id, lease.conn).unwrap();
/// ```
#[derive(Debug)]
pub struct Pool<K> {
    max_slots: usize,
    /// How many connections the pool keeps before it only replaces: `max_slots` unless
    /// [`Pool::set_limit`] lowered it.
    limit: usize,
    entries: Slab<Entry<K>>,
    /// Idle records, as the lease policy lends them.
    idle: IdleSet,
    /// Idle and leased records, highest slot on top.
    held: IndexedHeap<Reverse<u32>>,
    evicted: usize,
    /// Held connections (idle or leased) per server; servers with none are absent.
    held_per_server: BTreeMap<ServerId, usize>,
    rng: Rng,
    stats: PoolStats,
}

impl<K> Pool<K> {
    /// An empty pool, with storage for `config.max_slots` connections allocated now.
    ///
    /// `seed` drives the random choice between idle connections with equal slots.
    ///
    /// ```
    /// use callosum_proto::pool::{Pool, PoolConfig, PoolConfigError};
    ///
    /// let pool = Pool::<u64>::new(PoolConfig::default(), 1).unwrap();
    /// assert_eq!(pool.max_slots(), 100);
    /// assert_eq!(
    ///     Pool::<u64>::new(PoolConfig { max_slots: 0 }, 1).unwrap_err(),
    ///     PoolConfigError::ZeroMaxSlots
    /// );
    /// ```
    pub fn new(config: PoolConfig, seed: u64) -> Result<Pool<K>, PoolConfigError> {
        Pool::with_policy(config, LeasePolicy::Lowest, seed)
    }

    /// An empty pool that lends by `policy` ([`Pool::new`] lends the lowest slot).
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{LeasePolicy, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::with_policy(PoolConfig::default(), LeasePolicy::Random, 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 8, 'a');
    /// let _ = pool.offer(ServerId(2), 1, 'b');
    /// let first = pool.checkout().unwrap();
    /// let second = pool.checkout().unwrap();
    /// assert_ne!(first.conn, second.conn);
    /// assert!(pool.checkout().is_none());
    /// # pool.checkin(first.id, first.conn).unwrap();
    /// # pool.checkin(second.id, second.conn).unwrap();
    /// ```
    pub fn with_policy(
        config: PoolConfig,
        policy: LeasePolicy,
        seed: u64,
    ) -> Result<Pool<K>, PoolConfigError> {
        let max_slots = config.max_slots;
        if max_slots == 0 {
            return Err(PoolConfigError::ZeroMaxSlots);
        }
        if max_slots > PoolConfig::MAX_SLOTS_LIMIT {
            return Err(PoolConfigError::TooManySlots { max_slots });
        }
        let out_of_memory = |_: TryReserveError| PoolConfigError::OutOfMemory { max_slots };
        Ok(Pool {
            max_slots,
            limit: max_slots,
            // Held connections, plus at most as many evicted while leased and not yet returned:
            // memory stays bounded however long callers keep their leases.
            entries: Slab::try_bounded(max_slots, max_slots.saturating_mul(2))
                .map_err(out_of_memory)?,
            idle: IdleSet::try_new(policy, max_slots).map_err(out_of_memory)?,
            held: IndexedHeap::try_with_capacity(max_slots).map_err(out_of_memory)?,
            evicted: 0,
            held_per_server: BTreeMap::new(),
            rng: Rng::new(seed),
            stats: PoolStats::default(),
        })
    }

    /// Offers a new connection with slot `slot` on `server`.
    ///
    /// With fewer than `max_slots` held (or the lower [`Pool::set_limit`]) it is kept.
    /// Otherwise, if `slot` is strictly lower
    /// than the highest slot held, it is kept and that highest connection is evicted (closed
    /// now if idle, when returned if leased). Otherwise it is rejected and handed back. An
    /// offer is also rejected while `max_slots` connections evicted while leased are still
    /// out, so that callers who keep their leases cannot make the pool grow without bound.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Evicted, Offer, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 1 }, 0).unwrap();
    /// let Offer::Kept(first) = pool.offer(ServerId(1), 3, 'a') else { panic!() };
    /// let Offer::Replaced { evicted: Evicted::Idle { id, conn, .. }, .. } =
    ///     pool.offer(ServerId(2), 2, 'b') else { panic!() };
    /// assert_eq!((id, conn), (first, 'a'));
    /// assert_eq!(pool.offer(ServerId(3), 2, 'c'), Offer::Rejected('c'));
    /// ```
    pub fn offer(&mut self, server: ServerId, slot: u32, conn: K) -> Offer<K> {
        self.stats.offered += 1;
        if self.entries.is_full() {
            return self.reject(conn);
        }
        if self.held.len() < self.limit {
            self.stats.kept += 1;
            return Offer::Kept(self.occupy(server, slot, conn));
        }
        let victim = match self.held.peek() {
            Some((Reverse(highest), victim)) if slot < highest => victim,
            _ => return self.reject(conn),
        };
        let evicted = self.evict(victim);
        self.stats.kept += 1;
        self.stats.replaced += 1;
        Offer::Replaced {
            kept: self.occupy(server, slot, conn),
            evicted,
        }
    }

    /// Lends out an idle connection by the pool's [`LeasePolicy`] (the lowest slot for a
    /// pool made with [`Pool::new`]); `None` if none is idle.
    ///
    /// Between idle connections with equal slots (slot 0 on two servers) the lowest-slot
    /// policy chooses uniformly at random with the pool's seeded generator, so no server is
    /// favoured; the random policy draws among all idle connections. Neither grows with the
    /// number of connections idle or tied, with its checkin (the lowest-slot policy adds a
    /// heap step over the distinct idle slots when its lowest bucket empties).
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// assert!(pool.checkout().is_none());
    /// let _ = pool.offer(ServerId(1), 8, 'a');
    /// let _ = pool.offer(ServerId(2), 1, 'b');
    /// let lease = pool.checkout().unwrap();
    /// assert_eq!(lease.conn, 'b');
    /// # pool.checkin(lease.id, lease.conn).unwrap();
    /// ```
    ///
    /// Dropping the result unused is a warning (`unused_must_use`), since the lease would be
    /// lost:
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// # use callosum_proto::{ServerId, pool::{Pool, PoolConfig}};
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 8, 'a');
    /// pool.checkout();
    /// ```
    #[must_use = "a leased connection must be checked in or removed"]
    // Inlined into the caller, as a `BinaryHeap`'s pop and push are: out of line, the lease
    // goes back through memory and each call saves and restores registers, 4 to 6 ns of the
    // 12 to 16 that a checkout and its checkin took together (BENCHMARKS.md).
    #[inline(always)]
    pub fn checkout(&mut self) -> Option<Lease<K>> {
        let Some(index) = self.idle.take(&mut self.rng) else {
            self.stats.empty_checkouts += 1;
            return None;
        };
        let Some((key, entry)) = self.entries.get_by_index_mut(index) else {
            unreachable!("the idle set holds only records in use")
        };
        let State::Idle(conn) = mem::replace(&mut entry.state, State::Leased) else {
            unreachable!("the idle set holds only idle records")
        };
        let (server, slot) = (entry.server, entry.slot);
        // The idle id retires: the lease gets its own.
        let Some(key) = self.entries.renew(key) else {
            unreachable!("the key was just read from the slab")
        };
        self.stats.checkouts += 1;
        Some(Lease {
            id: PooledId(key),
            server,
            slot,
            conn,
        })
    }

    /// Gives back a leased connection: idle again, or [`Checkin::Close`] if it was evicted
    /// while leased (its record is freed). An id that is not a current lease (stale, returned
    /// already, idle) is refused and `conn` handed back; the pool is unchanged.
    ///
    /// Either way the lease's id is stale afterwards: an idle connection gets a new id, which
    /// [`Pool::connections`] and [`Pool::idle_mut`] report (to remove it when it breaks while
    /// idle, for instance).
    ///
    /// A connection that broke while leased goes to [`Pool::remove`] instead.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Checkin, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 1 }, 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 5, 'a');
    /// let lease = pool.checkout().unwrap();
    /// let _ = pool.offer(ServerId(2), 1, 'b'); // evicts 'a', leased
    /// assert_eq!(pool.checkin(lease.id, lease.conn), Ok(Checkin::Close('a')));
    /// ```
    #[must_use = "a connection evicted while leased, or refused, is handed back to be closed"]
    // Inlined, as `checkout` is.
    #[inline(always)]
    pub fn checkin(&mut self, id: PooledId, conn: K) -> Result<Checkin<K>, CheckinError<K>> {
        let Some(entry) = self.entries.get_mut(id.0) else {
            return Err(CheckinError::NotLeased { id, conn });
        };
        match entry.state {
            State::Leased => {
                entry.state = State::Idle(conn);
                // The lease's id retires: kept by its caller, it must not name the idle
                // connection (a `remove` with it would close a healthy one).
                let Some(idle_key) = self.entries.renew(id.0) else {
                    unreachable!("the lease's key was just found current")
                };
                self.idle.give_back(id.index());
                Ok(Checkin::Idle(PooledId(idle_key)))
            }
            State::Evicted => {
                self.evicted -= 1;
                self.entries.remove(id.0);
                Ok(Checkin::Close(conn))
            }
            State::Idle(_) => Err(CheckinError::NotLeased { id, conn }),
        }
    }

    /// Takes out a connection that broke (peer closed, error, unexpected bytes while idle),
    /// whether idle, leased or evicted. Its place in `max_slots` is freed exactly once: an
    /// evicted one had given its place back already.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Offer, Pool, PoolConfig, Removed};
    ///
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 5, 'a');
    /// let lease = pool.checkout().unwrap();
    /// assert!(matches!(pool.remove(lease.id), Ok(Removed::Leased { .. }))); // now close lease.conn
    /// assert_eq!(pool.status().held, 0);
    /// ```
    #[must_use = "the removed connection must be closed"]
    pub fn remove(&mut self, id: PooledId) -> Result<Removed<K>, UnknownConn> {
        let Some(Entry {
            server,
            slot,
            state,
        }) = self.entries.remove(id.0)
        else {
            return Err(UnknownConn { id });
        };
        let removed = match state {
            State::Idle(conn) => {
                self.idle.release(id.index());
                self.held.remove(id.index());
                self.count_held(server, false);
                Removed::Idle { server, slot, conn }
            }
            State::Leased => {
                self.idle.release(id.index());
                self.held.remove(id.index());
                self.count_held(server, false);
                Removed::Leased { server, slot }
            }
            State::Evicted => {
                self.evicted -= 1;
                Removed::Evicted { server, slot }
            }
        };
        self.stats.removed_broken += 1;
        Ok(removed)
    }

    /// The idle connections, for an adapter that watches them while they wait: one that the
    /// server closes, or that receives bytes nobody asked for, goes to [`Pool::remove`].
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Pool, PoolConfig, Removed};
    ///
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 0, "quiet");
    /// let _ = pool.offer(ServerId(1), 1, "closed by its server");
    /// let broken: Vec<_> = pool
    ///     .idle_mut()
    ///     .filter(|(_, conn)| conn.starts_with("closed"))
    ///     .map(|(id, _)| id)
    ///     .collect();
    /// for id in broken {
    ///     assert!(matches!(pool.remove(id), Ok(Removed::Idle { .. })));
    /// }
    /// assert_eq!(pool.status().idle, 1);
    /// ```
    pub fn idle_mut(&mut self) -> impl Iterator<Item = (PooledId, &mut K)> + '_ {
        self.entries
            .iter_mut()
            .filter_map(|(key, entry)| match &mut entry.state {
                State::Idle(conn) => Some((PooledId(key), conn)),
                State::Leased | State::Evicted => None,
            })
    }

    /// Lets go of every connection to `server` (it was taken out of service): the idle ones
    /// come back to be closed now, the leased ones are evicted, so their places are free at
    /// once and [`Pool::checkin`] says to close them when they come back.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Checkin, Evicted, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 3 }, 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 0, "idle on 1");
    /// let _ = pool.offer(ServerId(1), 1, "leased on 1");
    /// let _ = pool.offer(ServerId(2), 2, "on 2");
    /// let _idle = pool.checkout().unwrap();
    /// let leased = pool.checkout().unwrap();
    /// # let _ = pool.checkin(_idle.id, _idle.conn);
    /// let gone = pool.remove_server(ServerId(1));
    /// assert_eq!(gone.len(), 2);
    /// assert_eq!(pool.status().held, 1);
    /// assert_eq!(pool.checkin(leased.id, leased.conn), Ok(Checkin::Close("leased on 1")));
    /// ```
    pub fn remove_server(&mut self, server: ServerId) -> Vec<Evicted<K>> {
        let held: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                entry.server == server && matches!(entry.state, State::Idle(_) | State::Leased)
            })
            .map(|(key, _)| key.index())
            .collect();
        self.stats.removed_with_server += held.len() as u64;
        held.into_iter().map(|index| self.evict(index)).collect()
    }

    /// How many connections the pool has, by state.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            held: self.held.len(),
            idle: self.idle.len(),
            leased: self.held.len() - self.idle.len(),
            evicted_awaiting_return: self.evicted,
        }
    }

    /// Counters since the pool was made.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// How many more connections the pool would keep unconditionally: its limit (`max_slots`
    /// unless [`Pool::set_limit`] lowered it) minus those held, or 0. The rover's fill mode
    /// runs while this is above zero.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 3 }, 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 0, ());
    /// assert_eq!(pool.wanted(), 2);
    /// ```
    pub fn wanted(&self) -> usize {
        self.limit.saturating_sub(self.held.len())
    }

    /// How many connections (idle or leased) the pool holds on `server`.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 0, ());
    /// let _ = pool.offer(ServerId(1), 1, ());
    /// assert_eq!((pool.held_on(ServerId(1)), pool.held_on(ServerId(2))), (2, 0));
    /// ```
    pub fn held_on(&self, server: ServerId) -> usize {
        self.held_per_server.get(&server).copied().unwrap_or(0)
    }

    /// Sets how many connections the pool keeps, between 1 and `max_slots` (a value outside
    /// is brought within): a client that sizes its pool to its demand keeps fewer than its
    /// ceiling. Offers beyond the limit only replace a higher slot; connections held beyond
    /// it are let go by [`Pool::trim`].
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Offer, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 4 }, 0).unwrap();
    /// pool.set_limit(1);
    /// assert!(matches!(pool.offer(ServerId(1), 5, 'a'), Offer::Kept(_)));
    /// assert!(matches!(pool.offer(ServerId(2), 7, 'b'), Offer::Rejected('b')));
    /// assert_eq!((pool.limit(), pool.wanted()), (1, 0));
    /// pool.set_limit(0);
    /// assert_eq!(pool.limit(), 1);
    /// ```
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(1, self.max_slots);
    }

    /// How many connections the pool keeps before it only replaces: see [`Pool::set_limit`].
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Lets go of the connection with the highest slot while more than the limit are held
    /// and that connection is idle: one per call, `None` when there is nothing to let go
    /// now. A leased highest connection is never taken from its user: a later call, once it
    /// is back, lets it go.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Evicted, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 3 }, 0).unwrap();
    /// for (server, slot) in [(1, 0), (2, 9), (3, 4)] {
    ///     let _ = pool.offer(ServerId(server), slot, server);
    /// }
    /// pool.set_limit(1);
    /// assert!(matches!(pool.trim(), Some(Evicted::Idle { slot: 9, conn: 2, .. })));
    /// assert!(matches!(pool.trim(), Some(Evicted::Idle { slot: 4, conn: 3, .. })));
    /// assert!(pool.trim().is_none());
    /// assert_eq!(pool.stats().trimmed, 2);
    /// ```
    #[must_use = "a connection let go must be closed"]
    pub fn trim(&mut self) -> Option<Evicted<K>> {
        if self.held.len() <= self.limit {
            return None;
        }
        let (_, highest) = self.held.peek()?;
        let (_, entry) = self.entries.get_by_index(highest)?;
        if !matches!(entry.state, State::Idle(_)) {
            return None;
        }
        self.stats.trimmed += 1;
        Some(self.evict(highest))
    }

    /// The highest slot held (idle or leased), the one a better offer would evict; `None`
    /// for an empty pool.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 2 }, 0).unwrap();
    /// assert_eq!(pool.highest_slot(), None);
    /// let _ = pool.offer(ServerId(1), 4, ());
    /// let _ = pool.offer(ServerId(2), 7, ());
    /// assert_eq!(pool.highest_slot(), Some(7));
    /// ```
    pub fn highest_slot(&self) -> Option<u32> {
        self.held.peek().map(|(Reverse(slot), _)| slot)
    }

    /// The configured `max_slots`.
    pub fn max_slots(&self) -> usize {
        self.max_slots
    }

    /// Every connection the pool knows (idle, leased, evicted), in no particular order: for
    /// per-server status.
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{ConnState, Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig::default(), 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 0, ());
    /// let _ = pool.offer(ServerId(2), 0, ());
    /// let on_server_1 = pool.connections().filter(|c| c.server == ServerId(1)).count();
    /// assert_eq!(on_server_1, 1);
    /// assert!(pool.connections().all(|c| c.state == ConnState::Idle));
    /// ```
    pub fn connections(&self) -> impl Iterator<Item = ConnInfo> + '_ {
        self.entries.iter().map(|(key, entry)| ConnInfo {
            id: PooledId(key),
            server: entry.server,
            slot: entry.slot,
            state: match entry.state {
                State::Idle(_) => ConnState::Idle,
                State::Leased => ConnState::Leased,
                State::Evicted => ConnState::Evicted,
            },
        })
    }

    /// How many records the pool stores, in use or on its free list.
    ///
    /// Records are reused, so this never grows with lease/return cycles. It is at most
    /// `max_slots` plus the largest number of evicted-awaiting-return connections there ever
    /// were at once (each one a connection the caller still holds).
    ///
    /// ```
    /// use callosum_proto::ServerId;
    /// use callosum_proto::pool::{Pool, PoolConfig};
    ///
    /// let mut pool = Pool::new(PoolConfig { max_slots: 2 }, 0).unwrap();
    /// let _ = pool.offer(ServerId(1), 0, ());
    /// for _ in 0..1_000 {
    ///     let lease = pool.checkout().unwrap();
    ///     pool.checkin(lease.id, lease.conn).unwrap();
    /// }
    /// assert_eq!(pool.footprint(), 1);
    /// ```
    pub fn footprint(&self) -> usize {
        self.entries.footprint()
    }

    fn reject(&mut self, conn: K) -> Offer<K> {
        self.stats.rejected += 1;
        Offer::Rejected(conn)
    }

    /// Puts a new idle connection in the slab. The caller has checked that it is not full.
    fn occupy(&mut self, server: ServerId, slot: u32, conn: K) -> PooledId {
        let entry = Entry {
            server,
            slot,
            state: State::Idle(conn),
        };
        let Ok(key) = self.entries.insert(entry) else {
            unreachable!("offer checked that the slab has room")
        };
        self.idle.hold(key.index(), slot);
        self.held.push(key.index(), Reverse(slot));
        self.count_held(server, true);
        PooledId(key)
    }

    /// One more (`true`) or one fewer connection held on `server`.
    fn count_held(&mut self, server: ServerId, more: bool) {
        let count = self.held_per_server.entry(server).or_insert(0);
        if more {
            *count += 1;
        } else {
            *count -= 1;
            if *count == 0 {
                self.held_per_server.remove(&server);
            }
        }
    }

    /// Evicts held record `victim`: idle, it leaves the pool; leased, it is marked evicted.
    fn evict(&mut self, victim: u32) -> Evicted<K> {
        self.held.remove(victim);
        self.idle.release(victim);
        let Some((key, entry)) = self.entries.get_by_index_mut(victim) else {
            unreachable!("the held heap holds only records in use")
        };
        let id = PooledId(key);
        let (server, slot) = (entry.server, entry.slot);
        let state = mem::replace(&mut entry.state, State::Evicted);
        self.count_held(server, false);
        match state {
            State::Idle(conn) => {
                self.entries.remove(key);
                Evicted::Idle {
                    id,
                    server,
                    slot,
                    conn,
                }
            }
            State::Leased | State::Evicted => {
                self.evicted += 1;
                Evicted::Leased { id, server, slot }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_slots: usize) -> Pool<u32> {
        Pool::new(PoolConfig { max_slots }, 3).unwrap()
    }

    fn kept(offer: Offer<u32>) -> PooledId {
        match offer {
            Offer::Kept(id) => id,
            other => panic!("expected Kept, got {other:?}"),
        }
    }

    /// Heaps and counters agree with the records.
    fn assert_consistent(pool: &Pool<u32>) {
        let mut idle = 0;
        let mut held = 0;
        let mut evicted = 0;
        for index in 0..pool.footprint() as u32 {
            let Some((_, entry)) = pool.entries.get_by_index(index) else {
                assert!(!pool.idle.contains(index) && !pool.held.contains(index));
                continue;
            };
            match entry.state {
                State::Idle(_) => {
                    idle += 1;
                    held += 1;
                    assert!(pool.idle.contains(index) && pool.held.contains(index));
                }
                State::Leased => {
                    held += 1;
                    assert!(!pool.idle.contains(index) && pool.held.contains(index));
                }
                State::Evicted => {
                    evicted += 1;
                    assert!(!pool.idle.contains(index) && !pool.held.contains(index));
                }
            }
        }
        let mut per_server = BTreeMap::new();
        for (_, entry) in pool.entries.iter() {
            if !matches!(entry.state, State::Evicted) {
                *per_server.entry(entry.server).or_insert(0) += 1;
            }
        }
        assert_eq!(pool.held_per_server, per_server);
        let status = pool.status();
        assert_eq!((status.idle, status.held), (idle, held));
        assert_eq!(status.evicted_awaiting_return, evicted);
        assert_eq!(held + evicted, pool.entries.len());
    }

    #[test]
    fn offers_are_kept_until_full_then_replace_the_highest_slot() {
        let mut pool = pool(2);
        let a = kept(pool.offer(ServerId(1), 4, 10));
        kept(pool.offer(ServerId(2), 6, 20));
        assert_eq!(pool.wanted(), 0);
        let Offer::Replaced { kept, evicted } = pool.offer(ServerId(3), 5, 30) else {
            panic!("expected Replaced");
        };
        assert!(matches!(
            evicted,
            Evicted::Idle {
                slot: 6,
                conn: 20,
                ..
            }
        ));
        assert_ne!(kept, a);
        assert_consistent(&pool);
        // 5 and 4 held: 5 is not strictly lower than the highest.
        assert_eq!(pool.offer(ServerId(4), 5, 40), Offer::Rejected(40));
        let stats = pool.stats();
        assert_eq!((stats.offered, stats.kept, stats.replaced), (4, 3, 1));
        assert_eq!(stats.rejected, 1);
        assert_consistent(&pool);
    }

    #[test]
    fn the_evicted_idle_record_is_reused_with_a_new_generation() {
        let mut pool = pool(1);
        let first = kept(pool.offer(ServerId(1), 4, 10));
        let Offer::Replaced { kept, evicted } = pool.offer(ServerId(1), 2, 20) else {
            panic!("expected Replaced");
        };
        assert!(matches!(evicted, Evicted::Idle { id, .. } if id == first));
        assert_eq!(kept.index(), first.index());
        assert_ne!(kept, first);
        assert_eq!(pool.footprint(), 1);
        assert_eq!(pool.remove(first), Err(UnknownConn { id: first }));
        assert_consistent(&pool);
    }

    #[test]
    fn checkout_takes_the_lowest_idle_slot() {
        let mut pool = pool(4);
        for (slot, conn) in [(7, 70), (2, 20), (9, 90), (3, 30)] {
            kept(pool.offer(ServerId(1), slot, conn));
        }
        let mut order = alloc::vec::Vec::new();
        while let Some(lease) = pool.checkout() {
            assert_eq!(lease.conn, lease.slot * 10);
            order.push(lease.slot);
            assert_consistent(&pool);
        }
        assert_eq!(order, [2, 3, 7, 9]);
        assert_eq!(pool.status().leased, 4);
        assert_eq!(pool.stats().empty_checkouts, 1);
    }

    #[test]
    fn the_random_policy_draws_every_idle_connection_alike() {
        let config = PoolConfig { max_slots: 4 };
        let mut pool = Pool::with_policy(config, LeasePolicy::Random, 3).unwrap();
        for slot in 0..4 {
            kept(pool.offer(ServerId(slot), slot, slot));
        }
        let mut drawn = [0u32; 4];
        for _ in 0..4_000 {
            let lease = pool.checkout().unwrap();
            drawn[lease.conn as usize] += 1;
            let _ = pool.checkin(lease.id, lease.conn).unwrap();
            assert_consistent(&pool);
        }
        // Each of 4 has 1,000 expected; a fair draw stays well within 15%.
        assert!(drawn.iter().all(|&n| (850..1150).contains(&n)), "{drawn:?}");
        assert_eq!(pool.stats().checkouts, 4_000);
    }

    #[test]
    fn trim_lets_go_of_the_highest_only_when_idle_and_over_the_limit() {
        let mut pool = pool(3);
        for slot in [0, 5, 9] {
            kept(pool.offer(ServerId(slot), slot, slot));
        }
        // Lease everything: the highest (9) is leased, so nothing is taken from its user.
        let leases: Vec<_> = (0..3).map(|_| pool.checkout().unwrap()).collect();
        pool.set_limit(2);
        assert!(pool.trim().is_none());
        assert_eq!(pool.wanted(), 0);
        for lease in leases {
            let _ = pool.checkin(lease.id, lease.conn).unwrap();
        }
        let Some(Evicted::Idle {
            slot: 9, conn: 9, ..
        }) = pool.trim()
        else {
            panic!("the highest idle connection goes")
        };
        assert!(pool.trim().is_none(), "at the limit");
        assert_eq!(pool.held_on(ServerId(9)), 0);
        assert_consistent(&pool);
        // Beyond the limit an offer only replaces a higher slot.
        assert!(matches!(pool.offer(ServerId(7), 7, 7), Offer::Rejected(7)));
        assert!(matches!(
            pool.offer(ServerId(3), 3, 3),
            Offer::Replaced { .. }
        ));
        assert_consistent(&pool);
    }

    #[test]
    fn checkin_makes_a_lease_idle_again_once() {
        let mut pool = pool(2);
        kept(pool.offer(ServerId(1), 1, 10));
        let lease = pool.checkout().unwrap();
        assert!(matches!(
            pool.checkin(lease.id, lease.conn),
            Ok(Checkin::Idle(_))
        ));
        assert_consistent(&pool);
        assert_eq!(
            pool.checkin(lease.id, 99),
            Err(CheckinError::NotLeased {
                id: lease.id,
                conn: 99
            })
        );
        let again = pool.checkout().unwrap();
        assert_ne!(again.id, lease.id);
        assert!(pool.checkin(lease.id, 99).is_err());
        assert!(matches!(
            pool.checkin(again.id, again.conn),
            Ok(Checkin::Idle(_))
        ));
        assert_consistent(&pool);
    }

    #[test]
    fn a_returned_lease_id_is_stale_and_cannot_close_the_idle_connection() {
        let mut pool = pool(2);
        kept(pool.offer(ServerId(1), 1, 10));
        let lease = pool.checkout().unwrap();
        assert!(matches!(
            pool.checkin(lease.id, lease.conn),
            Ok(Checkin::Idle(_))
        ));
        assert_eq!(pool.remove(lease.id), Err(UnknownConn { id: lease.id }));
        assert_eq!(pool.status().idle, 1);
        assert_consistent(&pool);
        // The idle connection's new id is reported, and works.
        let (idle_id, _) = pool.idle_mut().next().unwrap();
        assert_ne!(idle_id, lease.id);
        assert_eq!(pool.connections().next().unwrap().id, idle_id);
        assert_eq!(pool.remove(idle_id).map(Removed::into_conn), Ok(Some(10)));
        assert_consistent(&pool);
    }

    #[test]
    fn an_evicted_lease_is_closed_on_checkin() {
        let mut pool = pool(1);
        kept(pool.offer(ServerId(1), 5, 10));
        let lease = pool.checkout().unwrap();
        let Offer::Replaced { evicted, .. } = pool.offer(ServerId(2), 1, 20) else {
            panic!("expected Replaced");
        };
        assert_eq!(
            evicted,
            Evicted::Leased {
                id: lease.id,
                server: ServerId(1),
                slot: 5
            }
        );
        let status = pool.status();
        assert_eq!((status.held, status.evicted_awaiting_return), (1, 1));
        assert_consistent(&pool);
        // The new connection is handed out, never the evicted one.
        let other = pool.checkout().unwrap();
        assert_eq!(other.conn, 20);
        assert!(pool.checkout().is_none());
        assert_eq!(pool.checkin(lease.id, lease.conn), Ok(Checkin::Close(10)));
        assert_eq!(pool.status().evicted_awaiting_return, 0);
        assert_consistent(&pool);
        assert!(pool.checkin(other.id, other.conn).is_ok());
    }

    #[test]
    fn remove_takes_out_idle_leased_and_evicted_connections() {
        let mut pool = pool(2);
        let idle = kept(pool.offer(ServerId(1), 1, 10));
        kept(pool.offer(ServerId(1), 5, 50));
        assert_eq!(pool.remove(idle).map(Removed::into_conn), Ok(Some(10)));
        let leased = pool.checkout().unwrap();
        kept(pool.offer(ServerId(2), 3, 30));
        let _ = pool.offer(ServerId(2), 2, 20); // evicts the leased 5
        assert_eq!(pool.status().evicted_awaiting_return, 1);
        assert!(matches!(
            pool.remove(leased.id),
            Ok(Removed::Evicted { .. })
        ));
        let other = pool.checkout().unwrap();
        assert!(matches!(pool.remove(other.id), Ok(Removed::Leased { .. })));
        assert_consistent(&pool);
        assert_eq!(pool.stats().removed_broken, 3);
        assert_eq!(pool.status().held, 1);
        assert_eq!(pool.remove(other.id), Err(UnknownConn { id: other.id }));
    }

    #[test]
    fn an_id_naming_no_record_is_refused() {
        let mut pool = pool(1);
        let far = PooledId(Key::from_parts(u32::MAX, 0));
        assert_eq!(pool.remove(far), Err(UnknownConn { id: far }));
        assert!(pool.checkin(far, 1).is_err());
        assert_consistent(&pool);
    }

    #[test]
    fn ties_are_broken_by_the_seed() {
        let pick = |seed| {
            let mut pool = Pool::new(PoolConfig { max_slots: 8 }, seed).unwrap();
            for server in 0..8 {
                let _ = pool.offer(ServerId(server), 0, server);
            }
            pool.checkout().unwrap().server
        };
        assert_eq!(pick(1), pick(1));
        let distinct = (0..32)
            .map(pick)
            .collect::<alloc::collections::BTreeSet<_>>();
        assert!(distinct.len() > 3, "{distinct:?}");
    }

    #[test]
    fn ten_servers_tying_for_the_lowest_slot_share_its_checkouts_alike() {
        let mut pool = pool(40);
        for index in 0..40 {
            kept(pool.offer(ServerId(index % 10), index / 10, index));
        }
        let mut drawn = [0u32; 10];
        for _ in 0..10_000 {
            let lease = pool.checkout().unwrap();
            assert_eq!(lease.slot, 0);
            drawn[lease.server.0 as usize] += 1;
            let _ = pool.checkin(lease.id, lease.conn).unwrap();
        }
        // 1,000 expected each; a fair draw stays well within 15%.
        assert!(drawn.iter().all(|&n| (850..1150).contains(&n)), "{drawn:?}");
        assert_consistent(&pool);
        // Held, the ten at slot 0 give way to the ten at slot 1, and so on up.
        let leases: Vec<_> = (0..40).map(|_| pool.checkout().unwrap()).collect();
        let slots: Vec<u32> = leases.iter().map(|lease| lease.slot).collect();
        assert!(slots.is_sorted(), "{slots:?}");
        let servers: alloc::collections::BTreeSet<_> =
            leases[..10].iter().map(|lease| lease.server).collect();
        assert_eq!(servers.len(), 10);
        assert!(pool.checkout().is_none());
        // Given back out of order, slot 0 comes first again, whatever went back before it.
        for lease in leases.into_iter().rev() {
            let _ = pool.checkin(lease.id, lease.conn).unwrap();
        }
        assert_eq!(pool.checkout().map(|lease| lease.slot), Some(0));
        assert_consistent(&pool);
    }

    #[test]
    fn errors_display_what_went_wrong() {
        extern crate std;
        use std::string::ToString;
        let id = PooledId(Key::from_parts(2, 5));
        assert_eq!(id.to_string(), "conn 2 gen 5");
        let err = CheckinError::NotLeased { id, conn: () };
        assert_eq!(err.to_string(), "conn 2 gen 5 is not a current lease");
        assert_eq!(
            PoolConfigError::TooManySlots { max_slots: 7 }.to_string(),
            alloc::format!("max_slots is 7, above the limit of {RECORD_LIMIT}")
        );
    }

    #[test]
    fn leases_kept_forever_cannot_grow_the_pool_past_twice_max_slots() {
        let mut pool = pool(1);
        let mut leases = alloc::vec::Vec::new();
        for slot in (0..10).rev() {
            match pool.offer(ServerId(1), slot, slot) {
                Offer::Kept(_) | Offer::Replaced { .. } => {
                    leases.push(pool.checkout().expect("the new one is idle"))
                }
                Offer::Rejected(conn) => assert_eq!(conn, slot),
            }
            assert!(pool.footprint() <= 2, "{} records", pool.footprint());
        }
        assert_eq!(pool.status().evicted_awaiting_return, 1);
        assert_eq!(pool.status().held, 1);
        assert_eq!(leases.len(), 2, "one held, one evicted, the rest rejected");
        assert_consistent(&pool);
    }
}

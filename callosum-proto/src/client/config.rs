//! The client's settings, shared by every adapter, and the ways they can be wrong.

use core::fmt;
use core::time::Duration;

pub use crate::pool::LeasePolicy;
use crate::pool::{PoolConfig, PoolConfigError};
use crate::rover::{RoverConfig, RoverConfigError};

/// Everything a client can be told, in one place for every adapter.
///
/// Fields are public and the struct is `#[non_exhaustive]`: start from
/// [`ClientConfig::default`] and change what you need.
///
/// ```
/// use callosum_proto::client::ClientConfig;
/// use core::time::Duration;
///
/// let mut config = ClientConfig::default();
/// config.pool.max_slots = 8;
/// config.rover.interval = Duration::from_millis(200);
/// config.seed = Some(7); // the same seed, the same choices
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The pool: how many connections to keep at most.
    pub pool: PoolConfig,
    /// The rover: how often and how patiently to look for better slots.
    pub rover: RoverConfig,
    /// How long a waiting `get` waits for an idle connection before it fails (default 10 s).
    /// Used by the adapters whose `get` can wait; the core itself never waits.
    pub get_timeout: Duration,
    /// How many [`ClientEvent`](super::ClientEvent)s an adapter keeps for its user before it
    /// drops the oldest (default 1024; 0 keeps none). Dropped events are counted.
    pub events_capacity: usize,
    /// The seed of every random choice the client makes. `None` (the default): the adapter
    /// draws one from the operating system, so that clients started together do not choose
    /// in step. A fixed seed makes a client's choices repeatable.
    pub seed: Option<u64>,
    /// A connection that ends (closed by its server, failed, returned broken, or spoke
    /// unasked) before any exchange on it finished, or within this time of its slot line,
    /// died young: it counts as a failure of its server for the rover's backoff, so that a
    /// server that closes every connection after its line draws a growing backoff instead
    /// of a reconnect per round trip (default 1 s).
    pub young_death: Duration,
    /// Which idle connection a request gets (default [`LeasePolicy::Random`]).
    pub lease: LeasePolicy,
    /// How many connections the pool keeps (default [`PoolSizing::Demand`]).
    pub sizing: PoolSizing,
    /// A pooled connection is closed once it has lived this long, when it is next idle:
    /// never under its user (default none: connections live as long as they work). For
    /// load balancers and NAT that drop old flows.
    pub max_lifetime: Option<Duration>,
    /// An idle connection is closed once it has been idle this long (default none).
    pub idle_timeout: Option<Duration>,
    /// How often a host name is looked up again (default 10 s; at least 1 µs). Each address
    /// it resolves to is a server; a failed lookup keeps the last ones.
    pub resolve_interval: Duration,
}

/// How many connections the pool keeps.
///
/// ```
/// use callosum_proto::client::{ClientConfig, PoolSizing};
///
/// let mut config = ClientConfig::default();
/// config.pool.max_slots = 32; // the ceiling
/// assert_eq!(config.sizing, PoolSizing::Demand);
/// config.sizing = PoolSizing::Fixed; // always max_slots, the original's
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolSizing {
    /// Always `max_slots`: the original's.
    Fixed,
    /// About what the client's own concurrency needs, `max_slots` at most: twice a moving
    /// average (over about 2 s) of its leased connections plus waiting callers, plus one, at
    /// least the callers of the moment and at least 2. It grows through the rover and
    /// shrinks by closing its highest-slot idle connection (never a leased one), reported
    /// as [`RemoveCause::Surplus`](super::RemoveCause::Surplus).
    Demand,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            pool: PoolConfig::default(),
            rover: RoverConfig::default(),
            get_timeout: Duration::from_secs(10),
            events_capacity: 1024,
            seed: None,
            young_death: Duration::from_secs(1),
            lease: LeasePolicy::Random,
            sizing: PoolSizing::Demand,
            max_lifetime: None,
            idle_timeout: None,
            resolve_interval: Duration::from_secs(10),
        }
    }
}

impl ClientConfig {
    /// The original client's choices: a pool that always keeps `max_slots` connections
    /// ([`PoolSizing::Fixed`]) and lends its lowest idle slot ([`LeasePolicy::Lowest`]);
    /// everything else as in [`ClientConfig::default`].
    ///
    /// ```
    /// use callosum_proto::client::{ClientConfig, LeasePolicy, PoolSizing};
    ///
    /// let config = ClientConfig::original();
    /// assert_eq!((config.sizing, config.lease), (PoolSizing::Fixed, LeasePolicy::Lowest));
    /// ```
    pub fn original() -> ClientConfig {
        ClientConfig {
            lease: LeasePolicy::Lowest,
            sizing: PoolSizing::Fixed,
            ..ClientConfig::default()
        }
    }

    /// Checks every setting, as [`ClientCore::new`](super::ClientCore::new) does.
    ///
    /// ```
    /// use callosum_proto::client::{ClientConfig, ClientConfigError};
    ///
    /// let mut config = ClientConfig::default();
    /// config.pool.max_slots = 0;
    /// assert!(matches!(config.validate(), Err(ClientConfigError::Pool(_))));
    /// ```
    pub fn validate(&self) -> Result<(), ClientConfigError> {
        if self.pool.max_slots == 0 {
            return Err(ClientConfigError::Pool(PoolConfigError::ZeroMaxSlots));
        }
        if self.pool.max_slots > PoolConfig::MAX_SLOTS_LIMIT {
            return Err(ClientConfigError::Pool(PoolConfigError::TooManySlots {
                max_slots: self.pool.max_slots,
            }));
        }
        if self.resolve_interval < Duration::from_micros(1) {
            return Err(ClientConfigError::ZeroResolveInterval);
        }
        self.rover.validate().map_err(ClientConfigError::Rover)
    }
}

/// A [`ClientConfig`] that cannot work, and which part of it is wrong.
///
/// ```
/// use callosum_proto::client::ClientConfig;
///
/// let mut config = ClientConfig::default();
/// config.pool.max_slots = 0;
/// assert_eq!(
///     config.validate().unwrap_err().to_string(),
///     "invalid pool configuration: max_slots is 0: a pool must hold at least one connection"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// The pool settings are wrong.
    Pool(PoolConfigError),
    /// The rover settings are wrong.
    Rover(RoverConfigError),
    /// `resolve_interval` is shorter than one microsecond: names would be looked up without
    /// pause.
    ZeroResolveInterval,
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientConfigError::Pool(error) => write!(f, "invalid pool configuration: {error}"),
            ClientConfigError::Rover(error) => write!(f, "invalid rover configuration: {error}"),
            ClientConfigError::ZeroResolveInterval => {
                f.write_str("resolve_interval must be at least 1 µs")
            }
        }
    }
}

impl core::error::Error for ClientConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ClientConfigError::Pool(error) => Some(error),
            ClientConfigError::Rover(error) => Some(error),
            ClientConfigError::ZeroResolveInterval => None,
        }
    }
}

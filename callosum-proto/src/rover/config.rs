//! The rover's settings and the ways they can be wrong.

use core::fmt;
use core::time::Duration;

/// The most attempts a rover may be configured to keep in flight at once.
///
/// Attempt storage is allocated up front for `max_in_flight` attempts, and each attempt is a
/// socket, so a larger value is a mistake rather than a wish.
///
/// ```
/// use callosum_proto::rover::MAX_IN_FLIGHT_LIMIT;
///
/// assert_eq!(MAX_IN_FLIGHT_LIMIT, 65_536);
/// ```
pub const MAX_IN_FLIGHT_LIMIT: usize = 1 << 16;

/// How a [`Rover`](super::Rover) schedules and bounds its connection attempts.
///
/// Durations are counted in whole microseconds, the resolution of [`Instant`](crate::Instant);
/// anything finer is dropped.
///
/// ```
/// use callosum_proto::RoverConfig;
/// use core::time::Duration;
///
/// let config = RoverConfig {
///     interval: Duration::from_millis(250),
///     fill: false,
///     ..RoverConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// assert_eq!(config.max_in_flight, 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoverConfig {
    /// Time between two scheduled attempts once started (the first one is at once).
    /// Default 1000 ms, as in the original.
    pub interval: Duration,
    /// Each wait is drawn uniformly from `interval - jitter ..= interval + jitter`, so clients
    /// restarted together do not rove in step. Default 100 ms; at most `interval`.
    pub jitter: Duration,
    /// How long a connect may take before the rover gives up on it. Default 1 s.
    pub connect_timeout: Duration,
    /// How long after the connect the slot line must be complete. Default 1 s.
    pub handshake_timeout: Duration,
    /// The most attempts in flight at once. Default 4; at most [`MAX_IN_FLIGHT_LIMIT`].
    pub max_in_flight: usize,
    /// Fill mode: while the pool wants more connections (see
    /// [`Rover::set_demand`](super::Rover::set_demand)), attempts follow each other without
    /// waiting for the interval, bounded by `max_in_flight` and by the demand. Default on.
    pub fill: bool,
    /// A server that failed `n` consecutive times is skipped for `backoff_base * 2^(n-1)`.
    /// Default 500 ms; zero disables the backoff.
    pub backoff_base: Duration,
    /// The longest backoff; a server stays in the set and is tried again after it.
    /// Default 30 s; at least `backoff_base`.
    pub backoff_max: Duration,
    /// Spreading: an attempt prefers a server where the client holds no connection (as told
    /// by [`Rover::set_held`](super::Rover::set_held)) and has no attempt in flight, so that
    /// one client's pool is not captured by one server: uniformly among such servers, any
    /// server when there is none. Default on.
    pub spread: bool,
    /// Targeted probes: a server added while running gets an attempt of its own at a random
    /// time within one `interval`; a server whose proven pooled connection broke
    /// ([`Rover::handle_conn_lost`](super::Rover::handle_conn_lost)) gets one after
    /// `backoff_base`, and while it keeps failing, again on its backoff schedule capped at
    /// [`PROBE_BACKOFF_MAX`] (each delay drawn between half and all of it), up to 8 probes in
    /// a row. So restarted and new capacity is used within about an interval instead of
    /// waiting for random draws. A probe is launched whatever the pool's demand (within
    /// `max_in_flight`). Default on.
    pub probes: bool,
    /// Near misses: after a connection that the pool turned away with a slot equal to the
    /// highest it holds ([`Rover::handle_near_miss`](super::Rover::handle_near_miss)), the next
    /// scheduled attempt comes within this time instead of a whole `interval`, and so on while
    /// near misses go on. A near miss means the server tried holds fewer connections than the
    /// client's fullest one, and moving the client's top connection there evens the two out;
    /// found by one draw per interval, that one server among `n` takes about `n` intervals.
    /// Once every server holds the same number, a draw's slot is above the highest held and
    /// nothing is hastened; where the count cannot come out even, a client on one of the fuller
    /// servers hastens at most [`NEAR_MISS_ROUNDS`] times as many attempts as there are servers
    /// before the pool keeps a connection again. Default 40 ms, at least 1 µs (at or above
    /// `interval` it changes nothing); `None` keeps the original's pace.
    pub near_miss_interval: Option<Duration>,
}

/// The longest wait between two probes of a server that keeps failing: 2 s (see
/// [`RoverConfig::probes`]).
pub const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How many times over its server set a rover lets near misses hasten attempts between two
/// connections its pool keeps (see [`RoverConfig::near_miss_interval`]): random draws find the
/// one server a connection short among `n` within `4 n` draws 98% of the time (1 - e^-4).
pub const NEAR_MISS_ROUNDS: usize = 4;

impl Default for RoverConfig {
    /// The defaults listed on each field.
    fn default() -> RoverConfig {
        RoverConfig {
            interval: Duration::from_millis(1000),
            jitter: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            max_in_flight: 4,
            fill: true,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            spread: true,
            probes: true,
            near_miss_interval: Some(Duration::from_millis(40)),
        }
    }
}

impl RoverConfig {
    /// Checks the settings; [`Rover::new`](super::Rover::new) calls this.
    ///
    /// A duration shorter than one microsecond counts as zero.
    ///
    /// ```
    /// use callosum_proto::{RoverConfig, RoverConfigError};
    ///
    /// let config = RoverConfig { max_in_flight: 0, ..RoverConfig::default() };
    /// assert_eq!(config.validate(), Err(RoverConfigError::ZeroMaxInFlight));
    /// ```
    pub fn validate(&self) -> Result<(), RoverConfigError> {
        let micro = Duration::from_micros(1);
        if self.interval < micro {
            return Err(RoverConfigError::ZeroInterval);
        }
        if self.jitter > self.interval {
            return Err(RoverConfigError::JitterExceedsInterval {
                jitter: self.jitter,
                interval: self.interval,
            });
        }
        if self.connect_timeout < micro {
            return Err(RoverConfigError::ZeroConnectTimeout);
        }
        if self.handshake_timeout < micro {
            return Err(RoverConfigError::ZeroHandshakeTimeout);
        }
        if self.max_in_flight == 0 {
            return Err(RoverConfigError::ZeroMaxInFlight);
        }
        if self.max_in_flight > MAX_IN_FLIGHT_LIMIT {
            return Err(RoverConfigError::MaxInFlightTooLarge {
                max_in_flight: self.max_in_flight,
            });
        }
        if self.backoff_max < self.backoff_base {
            return Err(RoverConfigError::BackoffMaxBelowBase {
                base: self.backoff_base,
                max: self.backoff_max,
            });
        }
        if self
            .near_miss_interval
            .is_some_and(|near_miss| near_miss < micro)
        {
            return Err(RoverConfigError::ZeroNearMissInterval);
        }
        Ok(())
    }
}

/// Why a [`RoverConfig`] was refused.
///
/// ```
/// use callosum_proto::{Rover, RoverConfig, RoverConfigError};
/// use core::time::Duration;
///
/// let config = RoverConfig { interval: Duration::ZERO, ..RoverConfig::default() };
/// assert_eq!(Rover::new(config, 1).unwrap_err(), RoverConfigError::ZeroInterval);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoverConfigError {
    /// `interval` is shorter than one microsecond.
    ZeroInterval,
    /// `jitter` is longer than `interval`, so a wait could be negative.
    JitterExceedsInterval {
        /// The jitter given.
        jitter: Duration,
        /// The interval given.
        interval: Duration,
    },
    /// `connect_timeout` is shorter than one microsecond.
    ZeroConnectTimeout,
    /// `handshake_timeout` is shorter than one microsecond.
    ZeroHandshakeTimeout,
    /// `max_in_flight` is zero: the rover could never try anything.
    ZeroMaxInFlight,
    /// `max_in_flight` is above [`MAX_IN_FLIGHT_LIMIT`].
    MaxInFlightTooLarge {
        /// The value given.
        max_in_flight: usize,
    },
    /// `backoff_max` is shorter than `backoff_base`.
    BackoffMaxBelowBase {
        /// The base given.
        base: Duration,
        /// The cap given.
        max: Duration,
    },
    /// `near_miss_interval` is shorter than one microsecond (use `None` to turn it off).
    ZeroNearMissInterval,
}

impl fmt::Display for RoverConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RoverConfigError::ZeroInterval => f.write_str("rover interval must be at least 1 µs"),
            RoverConfigError::JitterExceedsInterval { jitter, interval } => write!(
                f,
                "rover jitter ({jitter:?}) must not exceed the interval ({interval:?})"
            ),
            RoverConfigError::ZeroConnectTimeout => {
                f.write_str("rover connect timeout must be at least 1 µs")
            }
            RoverConfigError::ZeroHandshakeTimeout => {
                f.write_str("rover handshake timeout must be at least 1 µs")
            }
            RoverConfigError::ZeroMaxInFlight => {
                f.write_str("rover max_in_flight must be at least 1")
            }
            RoverConfigError::MaxInFlightTooLarge { max_in_flight } => write!(
                f,
                "rover max_in_flight is {max_in_flight}, above the limit of {MAX_IN_FLIGHT_LIMIT}"
            ),
            RoverConfigError::BackoffMaxBelowBase { base, max } => write!(
                f,
                "rover backoff_max ({max:?}) must not be shorter than backoff_base ({base:?})"
            ),
            RoverConfigError::ZeroNearMissInterval => f.write_str(
                "rover near_miss_interval must be at least 1 µs (None turns near misses off)",
            ),
        }
    }
}

impl core::error::Error for RoverConfigError {}

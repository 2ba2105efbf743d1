//! The core's notion of time.
//!
//! The core never reads a clock (PROTOCOL.md section 5). Every input that depends on time
//! carries an [`Instant`], a count of microseconds since an epoch the caller chooses (the
//! start of the process, of a test, of a simulation). Spans are `core::time::Duration`.
//! All arithmetic saturates, so a caller that jumps far ahead or goes backwards gets a
//! clamped answer, never a panic.

use core::fmt;
use core::ops::Add;
use core::time::Duration;

/// A point in time: microseconds since a caller-chosen epoch.
///
/// ```
/// use callosum_proto::Instant;
/// use core::time::Duration;
///
/// let start = Instant::from_millis(5);
/// let later = start + Duration::from_millis(20);
/// assert_eq!(later.as_micros(), 25_000);
/// assert_eq!(later.saturating_duration_since(start), Duration::from_millis(20));
/// assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// The latest representable instant; adding to it stays there.
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the epoch (saturating).
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// assert_eq!(Instant::from_millis(3).as_micros(), 3_000);
    /// assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
    /// ```
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis.saturating_mul(1_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// This instant moved `duration` later, clamped at [`Instant::MAX`].
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// # use core::time::Duration;
    /// assert_eq!(Instant::MAX.saturating_add(Duration::from_secs(1)), Instant::MAX);
    /// ```
    pub fn saturating_add(self, duration: Duration) -> Instant {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    ///
    /// ```
    /// # use callosum_proto::Instant;
    /// # use core::time::Duration;
    /// let a = Instant::from_millis(10);
    /// assert_eq!(a.saturating_duration_since(Instant::ZERO), Duration::from_millis(10));
    /// assert_eq!(Instant::ZERO.saturating_duration_since(a), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Same as [`Instant::saturating_add`].
    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_huge_duration_saturates() {
        let t = Instant::from_micros(10);
        assert_eq!(t + Duration::MAX, Instant::MAX);
    }

    #[test]
    fn display_shows_seconds_and_micros() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(Instant::from_micros(1_500_002).to_string(), "1.500002s");
    }
}

//! Conversion between `std::time::Instant` and the core's [`Instant`], against an epoch
//! taken when a component is made.

use std::time::{Duration, Instant as StdInstant};

use callosum_proto::Instant;

/// The clock of one component: the core's time is microseconds since `epoch`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: StdInstant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: StdInstant::now(),
        }
    }

    /// The core's time now.
    pub(crate) fn now(&self) -> Instant {
        self.core(StdInstant::now())
    }

    /// The core's time at `at` (rounded down to the microsecond; zero before the epoch).
    pub(crate) fn core(&self, at: StdInstant) -> Instant {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The `std` instant of the core's `at`; `None` if it cannot be represented (the end of
    /// the core's clock), which callers treat as "never".
    pub(crate) fn std(&self, at: Instant) -> Option<StdInstant> {
        self.epoch
            .checked_add(Duration::from_micros(at.as_micros()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_converted_to_std_is_not_early_in_core_time() {
        let clock = Clock::new();
        let deadline = Instant::from_micros(1_234_567);
        let std = clock.std(deadline).unwrap();
        assert_eq!(clock.core(std), deadline);
        assert_eq!(clock.core(std + Duration::from_nanos(999)), deadline);
    }

    #[test]
    fn before_the_epoch_is_zero() {
        let clock = Clock::new();
        let before = clock.epoch.checked_sub(Duration::from_secs(1));
        if let Some(before) = before {
            assert_eq!(clock.core(before), Instant::ZERO);
        }
    }
}

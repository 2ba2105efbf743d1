//! Conversion between the operating system's clock and the core's [`Instant`].

use std::time::{Duration, Instant as StdInstant};

use callosum_proto::Instant;

/// The core counts microseconds from an epoch the adapter chooses: here, the moment the
/// client was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: StdInstant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: StdInstant::now(),
        }
    }

    /// Now, as the core counts time.
    pub(crate) fn now(&self) -> Instant {
        let micros = self.epoch.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// A core instant on the operating system's clock (far-future instants saturate).
    pub(crate) fn to_std(self, instant: Instant) -> StdInstant {
        let offset = Duration::from_micros(instant.as_micros());
        self.epoch
            .checked_add(offset)
            .unwrap_or_else(|| StdInstant::now() + Duration::from_secs(86_400 * 365))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_instants_map_back_onto_the_system_clock() {
        let clock = Clock::new();
        let core = Instant::from_millis(1_500);
        assert_eq!(
            clock.to_std(core).duration_since(clock.epoch),
            Duration::from_millis(1_500)
        );
        assert!(clock.to_std(Instant::MAX) > StdInstant::now());
    }
}

//! How many connections a client needs: a moving average of its concurrency.
//!
//! Concurrency is what the client uses at a moment: leased connections plus callers waiting
//! for one. Every connection held beyond that makes the balance worse (a light client's
//! requests all go to the few connections it actually uses, which need not be spread), and
//! every connection short of it makes callers wait. So a pool sized to demand keeps twice the
//! average concurrency, and at least two connections. The average moves over seconds: a
//! burst that ends before its new connections arrive does not grow the pool (growing for
//! every burst and trimming after it tripled the simulator's connections per second and
//! bought nothing), and a lull shrinks it only as the average decays.

use core::time::Duration;

use crate::Instant;

/// The average's time constant: after a change of level, the average has moved about half
/// way after this long.
pub(super) const DEMAND_WINDOW: Duration = Duration::from_secs(2);

/// Fixed-point scale of the average: 1/1024 of a connection.
const SCALE: u128 = 1024;

/// The time-weighted moving average of a client's concurrency.
#[derive(Clone, Debug)]
pub(super) struct Demand {
    /// In 1/[`SCALE`] of a connection.
    average: u128,
    /// The concurrency since `since`.
    current: usize,
    since: Instant,
}

impl Demand {
    pub(super) fn new() -> Demand {
        Demand {
            average: 0,
            current: 0,
            since: Instant::ZERO,
        }
    }

    /// The concurrency is `current` from `now` on. The level held since the last change
    /// pulls the average towards it by `elapsed / (elapsed + window)`: a discrete form of an
    /// exponential average that needs no floating point.
    pub(super) fn set(&mut self, current: usize, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since).as_micros();
        if elapsed > 0 {
            let window = DEMAND_WINDOW.as_micros();
            let level = self.current as u128 * SCALE;
            let step = |gap: u128| gap * elapsed / (elapsed + window);
            if level >= self.average {
                self.average += step(level - self.average);
            } else {
                self.average -= step(self.average - level);
            }
            self.since = now;
        }
        self.current = current;
    }

    /// How many connections to keep, between 1 and `max_slots`: twice the average (rounded
    /// up), and at least 2 so that spreading can put a client on two servers.
    pub(super) fn target(&self, max_slots: usize) -> usize {
        let doubled = (2 * self.average).div_ceil(SCALE);
        let wanted = usize::try_from(doubled).unwrap_or(usize::MAX);
        wanted.max(2).min(max_slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    #[test]
    fn an_idle_client_keeps_two_and_a_short_burst_moves_little() {
        let mut demand = Demand::new();
        assert_eq!(demand.target(100), 2);
        demand.set(10, ms(0));
        assert_eq!(demand.target(100), 2, "nothing held for any time yet");
        demand.set(0, ms(20));
        assert_eq!(demand.target(100), 2, "10 callers for 20 ms: about 0.1");
        demand.set(50, ms(20));
        demand.set(50, ms(2_020));
        assert_eq!(demand.target(8), 8, "never above the ceiling");
        assert_eq!(demand.target(1), 1);
    }

    #[test]
    fn the_average_follows_a_steady_level_and_decays_after_it() {
        let mut demand = Demand::new();
        demand.set(8, ms(0));
        // Steady at 8 for 20 s, in steps of 10 ms: the average reaches about 8.
        for step in 1..=2_000 {
            demand.set(8, ms(step * 10));
        }
        demand.set(0, ms(20_000));
        assert_eq!(demand.target(100), 16, "2 x 8");
        // Half way down after about one window, at the floor after ten.
        demand.set(0, ms(22_000));
        assert!(
            (7..=9).contains(&demand.target(100)),
            "{}",
            demand.target(100)
        );
        demand.set(0, ms(42_000));
        assert_eq!(demand.target(100), 2, "the floor");
    }
}

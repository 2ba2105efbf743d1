//! How many connections a client needs: a moving average of its concurrency.
//!
//! Concurrency is what the client uses at a moment: leased connections plus callers waiting
//! for one. Every connection held beyond that makes the balance worse (a light client's
//! requests all go to the few connections it actually uses, which need not be spread), and
//! every connection short of it makes callers wait. So a pool sized to demand keeps about
//! twice the average concurrency, and at least two connections. The average moves over
//! seconds: a burst that ends before its new connections arrive does not grow the pool
//! (growing for every burst and trimming after it tripled the simulator's connections per
//! second and bought nothing), and a lull shrinks it only as the average decays.
//!
//! The target moves with hysteresis: up as soon as twice the average exceeds it, down only
//! once twice the average is a whole connection below it. A target that followed the
//! rounding of the average flapped between two sizes wherever a client's demand sat near a
//! boundary, and every flap was a connection closed and another opened: in the simulator,
//! 70% more connections per second and a connection count per server 20% off the mean
//! instead of 4%.

use core::time::Duration;

use crate::Instant;

/// The average's time constant: after a change of level, the average has moved about half
/// way after this long.
pub(super) const DEMAND_WINDOW: Duration = Duration::from_secs(2);

/// The fewest connections a pool sized to demand keeps: two, so that spreading can put a
/// client on two servers and one slow server never holds all of an idle client's pool.
const MIN_TARGET: usize = 2;

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
    /// Connections to keep (before the ceiling).
    target: usize,
}

impl Demand {
    pub(super) fn new() -> Demand {
        Demand {
            average: 0,
            current: 0,
            since: Instant::ZERO,
            target: MIN_TARGET,
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
            self.retarget();
        }
        self.current = current;
    }

    /// How many connections to keep, at most `max_slots`.
    pub(super) fn target(&self, max_slots: usize) -> usize {
        self.target.min(max_slots)
    }

    /// Twice the average, with hysteresis (see the module docs), at least [`MIN_TARGET`].
    fn retarget(&mut self) {
        let doubled = 2 * self.average;
        let connections =
            |scaled: u128| usize::try_from(scaled.div_ceil(SCALE)).unwrap_or(usize::MAX);
        let up = connections(doubled);
        let down = connections(doubled + SCALE);
        if up > self.target {
            self.target = up;
        } else if down < self.target {
            self.target = down.max(MIN_TARGET);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    /// `level` held from `from` for `millis`, in steps of 10 ms.
    fn hold(demand: &mut Demand, level: usize, from: u64, millis: u64) {
        for step in 0..=millis / 10 {
            demand.set(level, ms(from + step * 10));
        }
    }

    #[test]
    fn an_idle_client_keeps_two_and_a_short_burst_moves_little() {
        let mut demand = Demand::new();
        assert_eq!(demand.target(100), 2);
        demand.set(10, ms(0));
        demand.set(0, ms(20));
        assert_eq!(demand.target(100), 2, "10 callers for 20 ms: about 0.1");
        hold(&mut demand, 50, 20, 5_000);
        assert_eq!(demand.target(8), 8, "never above the ceiling");
        assert_eq!(demand.target(1), 1);
    }

    #[test]
    fn the_target_follows_a_steady_level_and_decays_after_it() {
        let mut demand = Demand::new();
        hold(&mut demand, 8, 0, 20_000);
        assert_eq!(demand.target(100), 16, "2 x 8");
        // Half way down after about one window, at the floor after ten.
        hold(&mut demand, 0, 20_000, 2_000);
        assert!(
            (7..=10).contains(&demand.target(100)),
            "{}",
            demand.target(100)
        );
        hold(&mut demand, 0, 22_000, 20_000);
        assert_eq!(demand.target(100), 2, "the floor");
    }

    #[test]
    fn the_target_does_not_flap_around_a_boundary() {
        let mut demand = Demand::new();
        // 0 and 2 callers in turn, 10 ms each: twice the average hovers around 2, now a
        // little above, now a little below.
        let mut changes = 0;
        let mut last = demand.target(100);
        for step in 0..6_000 {
            demand.set(2 * (step % 2), ms(step as u64 * 10));
            changes += usize::from(demand.target(100) != last);
            last = demand.target(100);
        }
        assert!(changes <= 1, "{changes} changes, ending at {last}");
        assert!((2..=3).contains(&last));
    }
}

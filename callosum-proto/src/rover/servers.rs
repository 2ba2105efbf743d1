//! The rover's server set, split into servers it may try now and servers backing off.
//!
//! The entries are kept partitioned: `entries[..eligible]` may be tried, `entries[eligible..]`
//! are backing off. Picking a server is one random draw into the first part, whatever the
//! size of the set; moving a server between the parts is a swap across the boundary.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use crate::{Instant, Rng, ServerId};

#[derive(Clone, Debug)]
struct Entry {
    id: ServerId,
    /// Consecutive failures since the last success.
    failures: u32,
    /// When the current backoff ends; meaningful only for entries backing off.
    backoff_until: Instant,
    /// Connections the client's pool holds on this server, as last told.
    held: usize,
}

#[derive(Clone, Debug, Default)]
pub(super) struct ServerSet {
    entries: Vec<Entry>,
    eligible: usize,
    positions: BTreeMap<ServerId, usize>,
    /// The earliest `backoff_until` among the entries backing off.
    earliest_backoff_end: Option<Instant>,
}

impl ServerSet {
    pub(super) fn insert(&mut self, id: ServerId) -> bool {
        if self.positions.contains_key(&id) {
            return false;
        }
        let last = self.entries.len();
        self.entries.push(Entry {
            id,
            failures: 0,
            backoff_until: Instant::ZERO,
            held: 0,
        });
        self.positions.insert(id, last);
        self.swap(last, self.eligible);
        self.eligible += 1;
        true
    }

    pub(super) fn remove(&mut self, id: ServerId) -> bool {
        let Some(&position) = self.positions.get(&id) else {
            return false;
        };
        let mut position = position;
        if position < self.eligible {
            self.eligible -= 1;
            self.swap(position, self.eligible);
            position = self.eligible;
        }
        let last = self.entries.len() - 1;
        self.swap(position, last);
        self.entries.pop();
        self.positions.remove(&id);
        self.recompute_earliest();
        true
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.entries.iter().map(|entry| entry.id)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn eligible(&self) -> usize {
        self.eligible
    }

    pub(super) fn earliest_backoff_end(&self) -> Option<Instant> {
        self.earliest_backoff_end
    }

    /// A server chosen uniformly among those not backing off (as of the last `release`).
    pub(super) fn pick(&self, rng: &mut Rng) -> Option<ServerId> {
        self.pick_index(rng).map(|index| self.entries[index].id)
    }

    /// Like [`ServerSet::pick`], but preferring a server that holds none of the client's
    /// connections and for which `in_flight` is false, uniformly among those; any server
    /// when none is free. A few random draws find a free server while most are (expected
    /// O(1)); only when they all miss does it count the free ones, O(servers).
    pub(super) fn pick_spread(
        &self,
        rng: &mut Rng,
        in_flight: impl Fn(ServerId) -> bool,
    ) -> Option<ServerId> {
        let eligible = &self.entries[..self.eligible];
        let free = |entry: &&Entry| entry.held == 0 && !in_flight(entry.id);
        for _ in 0..SPREAD_TRIES {
            let entry = &eligible[self.pick_index(rng)?];
            if free(&entry) {
                return Some(entry.id);
            }
        }
        let count = eligible.iter().filter(free).count();
        if count == 0 {
            return self.pick(rng);
        }
        let nth = rng.below(count as u64) as usize;
        eligible.iter().filter(free).nth(nth).map(|entry| entry.id)
    }

    /// A uniform index into the eligible servers.
    fn pick_index(&self, rng: &mut Rng) -> Option<usize> {
        (self.eligible > 0).then(|| rng.below(self.eligible as u64) as usize)
    }

    /// The client's pool now holds `held` connections on `id` (ignored for a server not in
    /// the set).
    pub(super) fn set_held(&mut self, id: ServerId, held: usize) {
        if let Some(&position) = self.positions.get(&id) {
            self.entries[position].held = held;
        }
    }

    /// Ends every backoff that is over at `now`.
    pub(super) fn release(&mut self, now: Instant) {
        if self.earliest_backoff_end.is_none_or(|end| end > now) {
            return;
        }
        for index in self.eligible..self.entries.len() {
            if self.entries[index].backoff_until <= now {
                self.swap(index, self.eligible);
                self.eligible += 1;
            }
        }
        self.recompute_earliest();
    }

    /// The server delivered a slot line: its failures are forgiven at once.
    pub(super) fn record_success(&mut self, id: ServerId) {
        let Some(&position) = self.positions.get(&id) else {
            return;
        };
        self.entries[position].failures = 0;
        if position >= self.eligible {
            self.swap(position, self.eligible);
            self.eligible += 1;
            self.recompute_earliest();
        }
    }

    /// The server failed once more: it backs off for `base * 2^(failures - 1)`, capped.
    pub(super) fn record_failure(
        &mut self,
        id: ServerId,
        now: Instant,
        base: Duration,
        max: Duration,
    ) {
        let Some(&position) = self.positions.get(&id) else {
            return;
        };
        let entry = &mut self.entries[position];
        entry.failures = entry.failures.saturating_add(1);
        let until = now + backoff(entry.failures, base, max);
        if until <= now {
            // Backoff disabled, or the clock is at its end: nothing to wait for.
            return;
        }
        entry.backoff_until = until;
        if position < self.eligible {
            self.eligible -= 1;
            self.swap(position, self.eligible);
        }
        self.recompute_earliest();
    }

    /// Consecutive failures of `id` since its last success; `None` for a server not in the set.
    pub(super) fn failures(&self, id: ServerId) -> Option<u32> {
        self.positions
            .get(&id)
            .map(|&position| self.entries[position].failures)
    }

    fn swap(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.entries.swap(a, b);
        self.positions.insert(self.entries[a].id, a);
        self.positions.insert(self.entries[b].id, b);
    }

    fn recompute_earliest(&mut self) {
        self.earliest_backoff_end = self.entries[self.eligible..]
            .iter()
            .map(|entry| entry.backoff_until)
            .min();
    }
}

/// How many random draws spreading makes before it counts the free servers.
const SPREAD_TRIES: usize = 8;

/// `base * 2^(failures - 1)`, capped at `max`; `failures` is at least 1.
pub(super) fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1);
    1u32.checked_shl(doublings)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(max, |wait| wait.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        assert_eq!(backoff(1, base, max), base);
        assert_eq!(backoff(2, base, max), Duration::from_secs(1));
        assert_eq!(backoff(7, base, max), Duration::from_secs(30));
        assert_eq!(backoff(40, base, max), max);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }

    #[test]
    fn the_partition_and_positions_survive_every_move() {
        let mut set = ServerSet::default();
        for id in 0..6 {
            assert!(set.insert(ServerId(id)));
        }
        assert!(!set.insert(ServerId(3)));
        let base = Duration::from_millis(10);
        let now = Instant::from_millis(1);
        set.record_failure(ServerId(1), now, base, base);
        set.record_failure(ServerId(4), now, base, base);
        assert_eq!(set.eligible(), 4);
        assert_eq!(set.earliest_backoff_end(), Some(Instant::from_millis(11)));
        assert!(set.remove(ServerId(0)));
        assert!(set.remove(ServerId(4)));
        assert!(!set.remove(ServerId(4)));
        set.record_success(ServerId(1));
        assert_eq!(set.eligible(), 4);
        assert_eq!(set.earliest_backoff_end(), None);
        for (position, entry) in set.entries.iter().enumerate() {
            assert_eq!(set.positions[&entry.id], position);
        }
        let mut ids: Vec<u32> = set.ids().map(|id| id.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 5]);
    }

    #[test]
    fn release_returns_only_the_servers_whose_backoff_is_over() {
        let mut set = ServerSet::default();
        for id in 0..3 {
            set.insert(ServerId(id));
        }
        let base = Duration::from_millis(10);
        let max = Duration::from_secs(1);
        set.record_failure(ServerId(0), Instant::ZERO, base, max);
        set.record_failure(ServerId(1), Instant::ZERO, base, max);
        set.record_failure(ServerId(1), Instant::ZERO, base, max);
        assert_eq!(set.eligible(), 1);
        set.release(Instant::from_millis(10));
        assert_eq!(set.eligible(), 2);
        assert_eq!(set.earliest_backoff_end(), Some(Instant::from_millis(20)));
        set.release(Instant::from_millis(20));
        assert_eq!(set.eligible(), 3);
        assert_eq!(set.earliest_backoff_end(), None);
    }
}

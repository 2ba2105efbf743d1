//! The idle connections, kept the way the lease policy lends them.
//!
//! [`LeasePolicy::Lowest`]: in one bucket per slot value ([`SlotBuckets`]), so that lending
//! the lowest slot, drawn among its ties, and taking it back are O(1).
//!
//! [`LeasePolicy::Random`]: in no order at all ([`AnyOrder`]), so that a uniform draw, a
//! removal and an addition are each O(1).
//!
//! Both are told of a record's whole stay in the pool: [`IdleSet::hold`] when it is kept,
//! [`IdleSet::take`] and [`IdleSet::give_back`] for each lease, [`IdleSet::release`] when it
//! leaves, idle or leased. The hot ones are `#[inline]`, so that they are inlined into the
//! caller's `Pool<K>` across crates.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

use super::LeasePolicy;
use super::buckets::SlotBuckets;
use crate::Rng;

/// Marks an index that is not in [`AnyOrder`].
const ABSENT: u32 = u32::MAX;

/// The idle record indices, as the pool's lease policy needs them.
#[derive(Clone, Debug)]
pub(super) enum IdleSet {
    Lowest(SlotBuckets),
    Random(AnyOrder),
}

impl IdleSet {
    /// An empty set for `policy` with room for `capacity` indices without allocating.
    pub(super) fn try_new(
        policy: LeasePolicy,
        capacity: usize,
    ) -> Result<IdleSet, TryReserveError> {
        Ok(match policy {
            LeasePolicy::Lowest => IdleSet::Lowest(SlotBuckets::try_with_capacity(capacity)?),
            LeasePolicy::Random => IdleSet::Random(AnyOrder::try_with_capacity(capacity)?),
        })
    }

    /// How many records are idle.
    pub(super) fn len(&self) -> usize {
        match self {
            IdleSet::Lowest(set) => set.len(),
            IdleSet::Random(set) => set.items.len(),
        }
    }

    #[cfg(test)]
    pub(super) fn contains(&self, index: u32) -> bool {
        match self {
            IdleSet::Lowest(set) => set.contains(index),
            IdleSet::Random(set) => set.position(index).is_some(),
        }
    }

    /// A new record `index`, idle, with `slot`; the caller guarantees it is not held yet.
    pub(super) fn hold(&mut self, index: u32, slot: u32) {
        match self {
            IdleSet::Lowest(set) => set.hold(index, slot),
            IdleSet::Random(set) => set.insert(index),
        }
    }

    /// Takes the idle record the policy lends next: the lowest slot (ties drawn uniformly, so
    /// no server is favoured), or any idle record, drawn uniformly. `None` when none is idle.
    #[inline]
    pub(super) fn take(&mut self, rng: &mut Rng) -> Option<u32> {
        match self {
            IdleSet::Lowest(set) => set.take(rng),
            IdleSet::Random(set) => set.take(rng),
        }
    }

    /// Makes a record taken before idle again.
    #[inline]
    pub(super) fn give_back(&mut self, index: u32) {
        match self {
            IdleSet::Lowest(set) => set.give_back(index),
            IdleSet::Random(set) => set.give_back(index),
        }
    }

    /// Record `index` leaves the pool, idle or leased; nothing if it is not held.
    pub(super) fn release(&mut self, index: u32) {
        match self {
            IdleSet::Lowest(set) => set.release(index),
            IdleSet::Random(set) => set.remove(index),
        }
    }
}

/// A uniform draw below `choices` (0, without drawing, when there is at most one).
#[inline]
pub(super) fn draw(rng: &mut Rng, choices: usize) -> usize {
    if choices > 1 {
        // `below(choices)` is less than `choices`, so it fits a usize.
        rng.below(choices as u64) as usize
    } else {
        0
    }
}

/// Idle record indices in no order, for a uniform draw.
#[derive(Clone, Debug)]
pub(super) struct AnyOrder {
    /// Every idle record index.
    items: Vec<u32>,
    /// For each record index, its position in `items`, or [`ABSENT`].
    positions: Vec<u32>,
}

impl AnyOrder {
    fn try_with_capacity(capacity: usize) -> Result<AnyOrder, TryReserveError> {
        let mut items = Vec::new();
        items.try_reserve_exact(capacity)?;
        let mut positions = Vec::new();
        positions.try_reserve_exact(capacity)?;
        Ok(AnyOrder { items, positions })
    }

    #[cfg(test)]
    fn position(&self, index: u32) -> Option<u32> {
        self.positions
            .get(index as usize)
            .copied()
            .filter(|&pos| pos != ABSENT)
    }

    /// Adds a new record `index`, making room for its position.
    fn insert(&mut self, index: u32) {
        let at = index as usize;
        if self.positions.len() <= at {
            self.positions.resize(at + 1, ABSENT);
        }
        self.give_back(index);
    }

    /// Adds record `index` again: its position has room since it was inserted.
    #[inline]
    fn give_back(&mut self, index: u32) {
        let position = &mut self.positions[index as usize];
        debug_assert_eq!(*position, ABSENT, "index {index} idle twice");
        // Below the number of records, which fits a u32.
        *position = self.items.len() as u32;
        self.items.push(index);
    }

    #[inline]
    fn take(&mut self, rng: &mut Rng) -> Option<u32> {
        if self.items.is_empty() {
            return None;
        }
        let nth = draw(rng, self.items.len());
        Some(self.remove_at(nth))
    }

    fn remove(&mut self, index: u32) {
        if let Some(&pos) = self.positions.get(index as usize)
            && pos != ABSENT
        {
            self.remove_at(pos as usize);
        }
    }

    /// Removes and returns the index at position `pos` of `items`, which the caller checked
    /// is there.
    #[inline]
    fn remove_at(&mut self, pos: usize) -> u32 {
        let index = self.items.swap_remove(pos);
        self.positions[index as usize] = ABSENT;
        if let Some(&moved) = self.items.get(pos) {
            self.positions[moved as usize] = pos as u32;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn any_order_draws_every_idle_index_and_removes_from_the_middle() {
        let mut set = IdleSet::try_new(LeasePolicy::Random, 8).unwrap();
        for (index, slot) in [(0, 5), (1, 3), (2, 7), (3, 1)] {
            set.hold(index, slot);
        }
        set.release(1);
        set.release(1);
        assert!(!set.contains(1));
        let mut rng = Rng::new(9);
        let mut seen = Vec::new();
        for _ in 0..200 {
            let index = set.take(&mut rng).unwrap();
            seen.push(index);
            set.give_back(index);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 2, 3]);
        assert!(set.contains(3) && !set.contains(1));
        assert_eq!(set.len(), 3);
        let taken = set.take(&mut rng).unwrap();
        set.release(taken);
        assert_eq!(set.len(), 2);
        assert!(!set.contains(taken));
    }
}

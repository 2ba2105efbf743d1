//! The idle connections, kept the way the lease policy lends them.
//!
//! [`LeasePolicy::Lowest`]: by slot, lowest first, an indexed heap with its lowest entry kept
//! in front of it. A request takes the lowest idle connection and gives it back, usually still
//! the lowest. Through the heap alone that is a sift down and a sift up every time, O(log n)
//! in the number of idle connections; with the lowest entry held apart, taking it and giving
//! it back touch the heap not at all, so a request costs the same with 1 idle connection or
//! 1,000.
//!
//! [`LeasePolicy::Random`]: in no order at all, a vector with each index's position, so that
//! a uniform draw, a removal (swap with the last) and an addition are each O(1).

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

use super::LeasePolicy;
use super::heap::IndexedHeap;
use crate::Rng;

/// Marks an index that is not in [`AnyOrder`].
const ABSENT: usize = usize::MAX;

/// The idle record indices, with their slots, as the pool's lease policy needs them.
#[derive(Clone, Debug)]
pub(super) enum IdleSet {
    Lowest(LowestFirst),
    Random(AnyOrder),
}

impl IdleSet {
    /// An empty set for `policy` with room for `capacity` indices without allocating.
    pub(super) fn try_new(
        policy: LeasePolicy,
        capacity: usize,
    ) -> Result<IdleSet, TryReserveError> {
        Ok(match policy {
            LeasePolicy::Lowest => IdleSet::Lowest(LowestFirst::try_with_capacity(capacity)?),
            LeasePolicy::Random => IdleSet::Random(AnyOrder::try_with_capacity(capacity)?),
        })
    }

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

    /// Adds `index` with `slot`; the caller guarantees it is not in the set yet.
    pub(super) fn push(&mut self, index: u32, slot: u32) {
        match self {
            IdleSet::Lowest(set) => set.push(index, slot),
            IdleSet::Random(set) => set.push(index, slot),
        }
    }

    /// Removes `index`; its slot, or `None` if it was not idle.
    pub(super) fn remove(&mut self, index: u32) -> Option<u32> {
        match self {
            IdleSet::Lowest(set) => set.remove(index),
            IdleSet::Random(set) => set.remove(index),
        }
    }

    /// The index the policy lends next: the lowest slot (ties drawn uniformly, so no server
    /// is favoured), or any idle connection, drawn uniformly. `None` when none is idle.
    pub(super) fn pick(&self, rng: &mut Rng) -> Option<u32> {
        match self {
            IdleSet::Lowest(set) => {
                let ties = set.lowest_ties().count();
                let nth = draw(rng, ties);
                set.lowest_ties().nth(nth)
            }
            IdleSet::Random(set) => {
                let nth = draw(rng, set.items.len());
                set.items.get(nth).map(|&(index, _)| index)
            }
        }
    }
}

/// A uniform draw below `choices` (0, without drawing, when there is at most one).
fn draw(rng: &mut Rng, choices: usize) -> usize {
    if choices > 1 {
        // `below(choices)` is less than `choices`, so it fits a usize.
        rng.below(choices as u64) as usize
    } else {
        0
    }
}

/// Idle record indices and slots in no order, for a uniform draw.
#[derive(Clone, Debug)]
pub(super) struct AnyOrder {
    /// `(index, slot)` of every idle record.
    items: Vec<(u32, u32)>,
    /// For each record index, its position in `items`, or [`ABSENT`].
    positions: Vec<usize>,
}

impl AnyOrder {
    fn try_with_capacity(capacity: usize) -> Result<AnyOrder, TryReserveError> {
        let mut items = Vec::new();
        items.try_reserve_exact(capacity)?;
        let mut positions = Vec::new();
        positions.try_reserve_exact(capacity)?;
        Ok(AnyOrder { items, positions })
    }

    fn position(&self, index: u32) -> Option<usize> {
        self.positions
            .get(index as usize)
            .copied()
            .filter(|&pos| pos != ABSENT)
    }

    fn push(&mut self, index: u32, slot: u32) {
        let at = index as usize;
        if self.positions.len() <= at {
            self.positions.resize(at + 1, ABSENT);
        }
        debug_assert_eq!(self.positions[at], ABSENT, "index {index} pushed twice");
        self.positions[at] = self.items.len();
        self.items.push((index, slot));
    }

    fn remove(&mut self, index: u32) -> Option<u32> {
        let pos = self.position(index)?;
        let (_, slot) = self.items.swap_remove(pos);
        self.positions[index as usize] = ABSENT;
        if let Some(&(moved, _)) = self.items.get(pos) {
            self.positions[moved as usize] = pos;
        }
        Some(slot)
    }
}

/// Idle record indices by slot. Invariant: `front`, when set, is no higher than any slot in
/// `heap`.
#[derive(Clone, Debug)]
pub(super) struct LowestFirst {
    /// The lowest idle entry, `(slot, index)`, kept out of the heap.
    front: Option<(u32, u32)>,
    heap: IndexedHeap<u32>,
}

impl LowestFirst {
    /// An empty set with room for `capacity` indices without allocating.
    fn try_with_capacity(capacity: usize) -> Result<LowestFirst, TryReserveError> {
        Ok(LowestFirst {
            front: None,
            heap: IndexedHeap::try_with_capacity(capacity)?,
        })
    }

    /// How many connections are idle.
    fn len(&self) -> usize {
        self.heap.len() + usize::from(self.front.is_some())
    }

    /// Whether `index` is idle.
    #[cfg(test)]
    fn contains(&self, index: u32) -> bool {
        self.front.is_some_and(|(_, front)| front == index) || self.heap.contains(index)
    }

    /// Adds `index` with `slot`; the caller guarantees it is not in the set yet.
    fn push(&mut self, index: u32, slot: u32) {
        match self.front {
            None if self.heap.peek().is_none_or(|(lowest, _)| slot <= lowest) => {
                self.front = Some((slot, index));
            }
            Some((front_slot, front_index)) if slot < front_slot => {
                self.heap.push(front_index, front_slot);
                self.front = Some((slot, index));
            }
            _ => self.heap.push(index, slot),
        }
    }

    /// Removes `index` from wherever it is; its slot, or `None` if it was not idle.
    fn remove(&mut self, index: u32) -> Option<u32> {
        match self.front {
            Some((slot, front)) if front == index => {
                self.front = None;
                Some(slot)
            }
            _ => self.heap.remove(index),
        }
    }

    /// The indices tied for the lowest slot: the front entry, then the heap's ties if they
    /// share its slot. O(ties).
    fn lowest_ties(&self) -> impl Iterator<Item = u32> + '_ {
        let lowest = self
            .front
            .map(|(slot, _)| slot)
            .or_else(|| self.heap.peek().map(|(slot, _)| slot));
        let heap_ties = self
            .heap
            .peek()
            .filter(|&(slot, _)| Some(slot) == lowest)
            .map(|_| self.heap.min_ties())
            .into_iter()
            .flatten();
        self.front
            .map(|(_, index)| index)
            .into_iter()
            .chain(heap_ties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn ties(set: &LowestFirst) -> Vec<u32> {
        let mut ties: Vec<u32> = set.lowest_ties().collect();
        ties.sort_unstable();
        ties
    }

    #[test]
    fn the_lowest_stays_in_front_and_ties_span_front_and_heap() {
        let mut set = LowestFirst::try_with_capacity(8).unwrap();
        set.push(0, 5);
        set.push(1, 3);
        set.push(2, 3);
        set.push(3, 9);
        assert_eq!(set.len(), 4);
        assert_eq!(ties(&set), [1, 2]);
        assert_eq!(set.remove(1), Some(3));
        assert_eq!(ties(&set), [2]);
        assert_eq!(set.remove(2), Some(3));
        assert_eq!(ties(&set), [0]);
        // Given back, the lowest goes in front again without touching the heap.
        set.push(2, 3);
        assert_eq!(set.front, Some((3, 2)));
        assert_eq!(set.remove(3), Some(9));
        assert_eq!(set.remove(3), None);
        assert_eq!(set.len(), 2);
        assert!(set.contains(0) && set.contains(2) && !set.contains(1));
    }

    #[test]
    fn any_order_draws_every_idle_index_and_removes_from_the_middle() {
        let mut set = IdleSet::try_new(LeasePolicy::Random, 8).unwrap();
        for (index, slot) in [(0, 5), (1, 3), (2, 7), (3, 1)] {
            set.push(index, slot);
        }
        assert_eq!(set.remove(1), Some(3));
        assert_eq!(set.remove(1), None);
        let mut rng = Rng::new(9);
        let mut seen: Vec<u32> = (0..200).filter_map(|_| set.pick(&mut rng)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 2, 3]);
        assert!(set.contains(3) && !set.contains(1));
        assert_eq!(set.len(), 3);
    }
}

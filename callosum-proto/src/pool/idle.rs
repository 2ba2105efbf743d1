//! The idle connections by slot, lowest first: an indexed heap with its lowest entry kept in
//! front of it.
//!
//! A request takes the lowest idle connection and gives it back, usually still the lowest.
//! Through the heap alone that is a sift down and a sift up every time, O(log n) in the number
//! of idle connections; with the lowest entry held apart, taking it and giving it back touch
//! the heap not at all, so a request costs the same with 1 idle connection or 1,000.

use alloc::collections::TryReserveError;

use super::heap::IndexedHeap;

/// Idle record indices by slot. Invariant: `front`, when set, is no higher than any slot in
/// `heap`.
#[derive(Clone, Debug)]
pub(super) struct IdleSet {
    /// The lowest idle entry, `(slot, index)`, kept out of the heap.
    front: Option<(u32, u32)>,
    heap: IndexedHeap<u32>,
}

impl IdleSet {
    /// An empty set with room for `capacity` indices without allocating.
    pub(super) fn try_with_capacity(capacity: usize) -> Result<IdleSet, TryReserveError> {
        Ok(IdleSet {
            front: None,
            heap: IndexedHeap::try_with_capacity(capacity)?,
        })
    }

    /// How many connections are idle.
    pub(super) fn len(&self) -> usize {
        self.heap.len() + usize::from(self.front.is_some())
    }

    /// Whether `index` is idle.
    #[cfg(test)]
    pub(super) fn contains(&self, index: u32) -> bool {
        self.front.is_some_and(|(_, front)| front == index) || self.heap.contains(index)
    }

    /// Adds `index` with `slot`; the caller guarantees it is not in the set yet.
    pub(super) fn push(&mut self, index: u32, slot: u32) {
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
    pub(super) fn remove(&mut self, index: u32) -> Option<u32> {
        match self.front {
            Some((slot, front)) if front == index => {
                self.front = None;
                Some(slot)
            }
            _ => self.heap.remove(index),
        }
    }

    /// The `k`-th idle index (`k < len`) in an order of the set's own: the front entry first,
    /// then the heap's. For a uniform draw among the idle connections, whatever their slots.
    pub(super) fn nth(&self, k: usize) -> Option<u32> {
        match (self.front, k) {
            (Some((_, index)), 0) => Some(index),
            (Some(_), k) => self.heap.index_at(k - 1),
            (None, k) => self.heap.index_at(k),
        }
    }

    /// The indices tied for the lowest slot: the front entry, then the heap's ties if they
    /// share its slot. O(ties).
    pub(super) fn lowest_ties(&self) -> impl Iterator<Item = u32> + '_ {
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

    fn ties(set: &IdleSet) -> Vec<u32> {
        let mut ties: Vec<u32> = set.lowest_ties().collect();
        ties.sort_unstable();
        ties
    }

    #[test]
    fn the_lowest_stays_in_front_and_ties_span_front_and_heap() {
        let mut set = IdleSet::try_with_capacity(8).unwrap();
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
    fn nth_reaches_every_idle_index_once() {
        let mut set = IdleSet::try_with_capacity(8).unwrap();
        for (index, slot) in [(0, 5), (1, 3), (2, 7), (3, 1)] {
            set.push(index, slot);
        }
        let mut all: Vec<u32> = (0..set.len()).filter_map(|k| set.nth(k)).collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3]);
        assert_eq!(set.nth(set.len()), None);
    }
}

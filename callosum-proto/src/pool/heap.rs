//! An indexed binary min-heap: items are record indices, each with a priority, and the heap
//! remembers where every index sits so that any of them can be removed from the middle in
//! O(log n).
//!
//! The pool keeps the held connections in one by `Reverse(slot)` (highest first, for
//! eviction), and a lowest-slot pool its non-empty buckets of idle connections in another, by
//! slot (`buckets.rs`).

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

/// Marks an index that is not in the heap.
const ABSENT: u32 = u32::MAX;

/// A binary min-heap of record indices with position tracking.
#[derive(Clone, Debug)]
pub(super) struct IndexedHeap<P> {
    /// The heap itself: `(priority, record index)`, smallest priority at 0.
    items: Vec<(P, u32)>,
    /// For each record index, its position in `items`, or [`ABSENT`]. Positions are below the
    /// number of indices, which fits a `u32`.
    positions: Vec<u32>,
}

impl<P: Ord + Copy> IndexedHeap<P> {
    /// An empty heap with room for `capacity` indices (`0..capacity`) without allocating.
    pub(super) fn try_with_capacity(capacity: usize) -> Result<Self, TryReserveError> {
        let mut items = Vec::new();
        items.try_reserve_exact(capacity)?;
        let mut positions = Vec::new();
        positions.try_reserve_exact(capacity)?;
        Ok(IndexedHeap { items, positions })
    }

    /// Room for indices `0..indices` without allocating: made where allocating is expected,
    /// so that a push where it is not (a checkin) does not.
    pub(super) fn make_room(&mut self, indices: usize) {
        self.items.reserve(indices.saturating_sub(self.items.len()));
        if self.positions.len() < indices {
            self.positions.resize(indices, ABSENT);
        }
    }

    /// How many indices are in the heap.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The smallest priority and its index, if any.
    pub(super) fn peek(&self) -> Option<(P, u32)> {
        self.items.first().copied()
    }

    /// Whether `index` is in the heap.
    #[cfg(test)]
    pub(super) fn contains(&self, index: u32) -> bool {
        self.position(index).is_some()
    }

    /// Adds `index` with `priority`. The caller guarantees `index` is not in the heap yet.
    pub(super) fn push(&mut self, index: u32, priority: P) {
        let slot = index as usize;
        if self.positions.len() <= slot {
            self.positions.resize(slot + 1, ABSENT);
        }
        debug_assert_eq!(self.positions[slot], ABSENT, "index {index} pushed twice");
        let pos = self.items.len();
        self.items.push((priority, index));
        self.positions[slot] = pos as u32;
        self.sift_up(pos);
    }

    /// Removes `index` from wherever it sits; its priority, or `None` if it was not there.
    pub(super) fn remove(&mut self, index: u32) -> Option<P> {
        let pos = self.position(index)?;
        let last = self.items.len() - 1;
        self.swap(pos, last);
        let (priority, _) = self.items.pop()?;
        self.positions[index as usize] = ABSENT;
        if pos < self.items.len() {
            // The former last item now sits at `pos`: it may belong higher or lower.
            self.sift_down(pos);
            self.sift_up(pos);
        }
        Some(priority)
    }

    fn position(&self, index: u32) -> Option<usize> {
        self.positions
            .get(index as usize)
            .copied()
            .filter(|&pos| pos != ABSENT)
            .map(|pos| pos as usize)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.items.swap(a, b);
        self.positions[self.items[a].1 as usize] = a as u32;
        self.positions[self.items[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.items[pos].0 >= self.items[parent].0 {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            let right = left + 1;
            let mut smallest = pos;
            if left < self.items.len() && self.items[left].0 < self.items[smallest].0 {
                smallest = left;
            }
            if right < self.items.len() && self.items[right].0 < self.items[smallest].0 {
                smallest = right;
            }
            if smallest == pos {
                break;
            }
            self.swap(pos, smallest);
            pos = smallest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use core::cmp::Reverse;

    /// Checks the heap property and that every position is tracked both ways.
    fn assert_consistent<P: Ord + Copy + core::fmt::Debug>(heap: &IndexedHeap<P>) {
        for (pos, &(priority, index)) in heap.items.iter().enumerate() {
            assert_eq!(
                heap.positions[index as usize], pos as u32,
                "position of {index}"
            );
            if pos > 0 {
                assert!(
                    heap.items[(pos - 1) / 2].0 <= priority,
                    "heap order at {pos}"
                );
            }
        }
        let tracked = heap.positions.iter().filter(|&&p| p != ABSENT).count();
        assert_eq!(tracked, heap.items.len(), "stray positions");
    }

    #[test]
    fn removing_the_top_repeatedly_sorts() {
        let mut heap = IndexedHeap::try_with_capacity(8).unwrap();
        for (index, priority) in [5u32, 1, 4, 1, 9, 2, 6, 3].into_iter().enumerate() {
            heap.push(index as u32, priority);
            assert_consistent(&heap);
        }
        let mut out = alloc::vec::Vec::new();
        while let Some((priority, index)) = heap.peek() {
            assert_eq!(heap.remove(index), Some(priority));
            assert_consistent(&heap);
            out.push(priority);
        }
        assert_eq!(out, [1, 1, 2, 3, 4, 5, 6, 9]);
    }

    #[test]
    fn reverse_priorities_make_a_max_heap() {
        let mut heap = IndexedHeap::try_with_capacity(4).unwrap();
        for (index, slot) in [3u32, 10, 7].into_iter().enumerate() {
            heap.push(index as u32, Reverse(slot));
        }
        assert_eq!(heap.peek(), Some((Reverse(10), 1)));
    }

    #[test]
    fn removal_from_the_middle_keeps_the_heap_whole() {
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let mut heap = IndexedHeap::try_with_capacity(4).unwrap();
            let mut present = alloc::vec::Vec::new();
            for index in 0..40u32 {
                if rng.below(3) == 0 && !present.is_empty() {
                    let victim = present.swap_remove(rng.below(present.len() as u64) as usize);
                    assert!(heap.remove(victim).is_some());
                    assert!(!heap.contains(victim));
                } else {
                    heap.push(index, rng.below(6) as u32);
                    present.push(index);
                }
                assert_consistent(&heap);
                assert_eq!(heap.len(), present.len());
            }
        }
    }

    #[test]
    fn removing_an_absent_index_is_none() {
        let mut heap: IndexedHeap<u32> = IndexedHeap::try_with_capacity(2).unwrap();
        assert_eq!(heap.remove(0), None);
        assert_eq!(heap.remove(1_000), None);
        heap.push(0, 1);
        assert_eq!(heap.remove(0), Some(1));
        assert_eq!(heap.remove(0), None);
    }
}

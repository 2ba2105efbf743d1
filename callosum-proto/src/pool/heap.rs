//! An indexed binary min-heap: items are record indices, each with a priority, and the heap
//! remembers where every index sits so that any of them can be removed from the middle in
//! O(log n).
//!
//! The pool keeps two of these over its record slab: the idle connections by slot (lowest
//! first) and the held connections by `Reverse(slot)` (highest first).

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

/// Marks an index that is not in the heap.
const ABSENT: usize = usize::MAX;

/// A binary min-heap of record indices with position tracking.
#[derive(Clone, Debug)]
pub(super) struct IndexedHeap<P> {
    /// The heap itself: `(priority, record index)`, smallest priority at 0.
    items: Vec<(P, u32)>,
    /// For each record index, its position in `items`, or [`ABSENT`].
    positions: Vec<usize>,
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
        self.positions[slot] = pos;
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

    /// The indices whose priority equals the smallest one, depth first from the root.
    ///
    /// Every such item has only equal items above it, so they form a subtree at the root. The
    /// walk visits that subtree and looks at its children only: O(ties), whatever the size of
    /// the heap and however deep the ties sit in it.
    pub(super) fn min_ties(&self) -> MinTies<'_, P> {
        MinTies {
            items: &self.items,
            next: if self.items.is_empty() { None } else { Some(0) },
        }
    }

    fn position(&self, index: u32) -> Option<usize> {
        self.positions
            .get(index as usize)
            .copied()
            .filter(|&pos| pos != ABSENT)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.items.swap(a, b);
        self.positions[self.items[a].1 as usize] = a;
        self.positions[self.items[b].1 as usize] = b;
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

/// The indices tied for the smallest priority; see [`IndexedHeap::min_ties`].
pub(super) struct MinTies<'a, P> {
    items: &'a [(P, u32)],
    /// The position of the next tie to yield, if any.
    next: Option<usize>,
}

impl<P: Ord + Copy> MinTies<'_, P> {
    /// Whether the item at `pos` exists and ties for the smallest priority (at position 0).
    fn tied(&self, pos: usize) -> bool {
        match (self.items.first(), self.items.get(pos)) {
            (Some(&(min, _)), Some(&(priority, _))) => priority == min,
            _ => false,
        }
    }

    /// The tie after `pos` in depth-first order: its first tied child, else the tied right
    /// sibling of the nearest of it and its ancestors that has one. No stack is needed, since
    /// a position's parent is `(pos - 1) / 2` and its right sibling `pos + 1` (for odd `pos`).
    fn after(&self, pos: usize) -> Option<usize> {
        // `2 * pos + 2` does not overflow: `pos` indexes a slice of 8-byte items or larger.
        let left = 2 * pos + 1;
        if self.tied(left) {
            return Some(left);
        }
        if self.tied(left + 1) {
            return Some(left + 1);
        }
        let mut pos = pos;
        while pos > 0 {
            if pos % 2 == 1 && self.tied(pos + 1) {
                return Some(pos + 1);
            }
            pos = (pos - 1) / 2;
        }
        None
    }
}

impl<P: Ord + Copy> Iterator for MinTies<'_, P> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let pos = self.next?;
        self.next = self.after(pos);
        Some(self.items[pos].1)
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
            assert_eq!(heap.positions[index as usize], pos, "position of {index}");
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

    #[test]
    fn min_ties_are_exactly_the_items_with_the_smallest_priority() {
        let mut rng = Rng::new(11);
        for _ in 0..300 {
            let mut heap = IndexedHeap::try_with_capacity(0).unwrap();
            let mut priorities = alloc::vec::Vec::new();
            for index in 0..rng.below(200) as u32 {
                let priority = rng.below(4) as u32;
                heap.push(index, priority);
                priorities.push(priority);
            }
            let mut ties: alloc::vec::Vec<u32> = heap.min_ties().collect();
            ties.sort_unstable();
            let min = priorities.iter().min().copied();
            let expected: alloc::vec::Vec<u32> = (0..priorities.len() as u32)
                .filter(|&i| Some(priorities[i as usize]) == min)
                .collect();
            assert_eq!(ties, expected);
        }
    }
}

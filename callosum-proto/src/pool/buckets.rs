//! The idle connections of a lowest-slot pool, one bucket per slot value held.
//!
//! A checkout takes the lowest slot and draws among the idle connections tied for it. Kept as
//! single records in a heap, ten servers tying for slot 0 meant finding the ties in the heap
//! and taking one out of its middle at every checkout, and pushing it back at every checkin.
//! Here each slot value held (idle or leased) has a bucket, and a connection stays in its
//! bucket for as long as the pool holds it: a checkout draws a position in the lowest
//! non-empty bucket and swaps it out, a checkin appends to its bucket, both O(1) whatever
//! the ties. Only a bucket that stops being empty can change the order of buckets; the
//! lowest bucket is kept out of the heap of the others and stays in front when a checkout
//! empties it, so that a pool whose lowest slot has one connection lends it and takes it back
//! without touching the heap.
//!
//! Buckets are made and freed when a slot value starts or stops being held: offers and
//! removals, O(log n), never a checkout or a checkin.

use alloc::collections::{BTreeMap, TryReserveError};
use alloc::vec::Vec;
use core::mem;

use super::heap::IndexedHeap;
use super::idle::draw;
use crate::Rng;

/// Marks a record that is in no bucket, or a position for a record that is not idle.
const ABSENT: u32 = u32::MAX;

/// The room for idle records a bucket keeps however few it holds: the smallest a `Vec<u32>`
/// allocates.
const SPARE: usize = 4;

/// The idle record indices by slot, in buckets of equal slots.
#[derive(Clone, Debug)]
pub(super) struct SlotBuckets {
    /// Buckets by id, in use or free.
    buckets: Vec<Bucket>,
    /// The ids of free buckets, for reuse.
    free: Vec<u32>,
    /// The bucket of every slot value held.
    by_slot: BTreeMap<u32, u32>,
    /// For each record index, where it is.
    places: Vec<Place>,
    /// The bucket lent from last, out of `rest` and no higher than any bucket in it; it may
    /// have run empty since.
    front: Option<u32>,
    /// The other non-empty buckets, by slot. Other empty buckets are in neither.
    rest: IndexedHeap<u32>,
    /// Idle records in all buckets.
    idle: usize,
}

/// The records held with one slot value.
#[derive(Clone, Debug)]
struct Bucket {
    slot: u32,
    /// Records held (idle or leased) with this slot; the bucket is free at 0.
    held: u32,
    /// The idle ones, in no order. Room for `held` is reserved, so a checkin never allocates.
    idle: Vec<u32>,
}

/// Where one record is: its bucket while held, and its position in the bucket's `idle` while
/// idle; [`ABSENT`] otherwise.
#[derive(Clone, Copy, Debug)]
struct Place {
    bucket: u32,
    position: u32,
}

impl Place {
    const NOWHERE: Place = Place {
        bucket: ABSENT,
        position: ABSENT,
    };
}

impl SlotBuckets {
    /// An empty set with room for `capacity` record indices without allocating. Buckets, and
    /// room for them in `rest`, are allocated as slot values are offered.
    pub(super) fn try_with_capacity(capacity: usize) -> Result<SlotBuckets, TryReserveError> {
        let mut places = Vec::new();
        places.try_reserve_exact(capacity)?;
        Ok(SlotBuckets {
            buckets: Vec::new(),
            free: Vec::new(),
            by_slot: BTreeMap::new(),
            places,
            front: None,
            rest: IndexedHeap::try_with_capacity(0)?,
            idle: 0,
        })
    }

    /// How many records are idle.
    pub(super) fn len(&self) -> usize {
        self.idle
    }

    /// Whether `index` is idle.
    #[cfg(test)]
    pub(super) fn contains(&self, index: u32) -> bool {
        self.places
            .get(index as usize)
            .is_some_and(|place| place.position != ABSENT)
    }

    /// A new record `index`, idle, with `slot`; the caller guarantees it is not held yet.
    pub(super) fn hold(&mut self, index: u32, slot: u32) {
        let id = match self.by_slot.get(&slot) {
            Some(&id) => id,
            None => {
                let id = self.new_bucket(slot);
                self.by_slot.insert(slot, id);
                id
            }
        };
        let bucket = &mut self.buckets[id as usize];
        bucket.held += 1;
        let missing = bucket.held as usize - bucket.idle.len();
        bucket.idle.reserve(missing);
        let at = index as usize;
        if self.places.len() <= at {
            self.places.resize(at + 1, Place::NOWHERE);
        }
        debug_assert_eq!(self.places[at].bucket, ABSENT, "index {index} held twice");
        self.places[at].bucket = id;
        self.give_back(index);
    }

    /// Takes an idle record with the lowest slot, drawn uniformly among those tied for it;
    /// `None` when none is idle. It stays held, in its bucket, until given back or released.
    #[inline]
    pub(super) fn take(&mut self, rng: &mut Rng) -> Option<u32> {
        let id = match self.front {
            Some(id) if !self.buckets[id as usize].idle.is_empty() => id,
            _ => self.next_front()?,
        };
        let bucket = &mut self.buckets[id as usize];
        let nth = draw(rng, bucket.idle.len());
        let index = bucket.idle.swap_remove(nth);
        if let Some(&moved) = bucket.idle.get(nth) {
            self.places[moved as usize].position = nth as u32;
        }
        self.places[index as usize].position = ABSENT;
        self.idle -= 1;
        Some(index)
    }

    /// Makes held record `index` idle again; the caller guarantees it is held and not idle.
    #[inline]
    pub(super) fn give_back(&mut self, index: u32) {
        let place = &mut self.places[index as usize];
        debug_assert_eq!(place.position, ABSENT, "index {index} idle twice");
        let id = place.bucket;
        let bucket = &mut self.buckets[id as usize];
        // Below `held`, which fits a u32.
        place.position = bucket.idle.len() as u32;
        bucket.idle.push(index);
        self.idle += 1;
        if bucket.idle.len() == 1 && self.front != Some(id) {
            self.link(id);
        }
    }

    /// Record `index` leaves the pool, idle or leased; nothing if it is not held.
    pub(super) fn release(&mut self, index: u32) {
        let Some(place) = self.places.get_mut(index as usize) else {
            return;
        };
        let Place {
            bucket: id,
            position,
        } = mem::replace(place, Place::NOWHERE);
        let Some(bucket) = self.buckets.get_mut(id as usize) else {
            return;
        };
        if position != ABSENT {
            bucket.idle.swap_remove(position as usize);
            if let Some(&moved) = bucket.idle.get(position as usize) {
                self.places[moved as usize].position = position;
            }
            self.idle -= 1;
            // Run empty: the front may stay (empty), another leaves `rest`.
            if bucket.idle.is_empty() && self.front != Some(id) {
                self.rest.remove(id);
            }
        }
        let bucket = &mut self.buckets[id as usize];
        bucket.held -= 1;
        let held = bucket.held as usize;
        if held == 0 {
            // Its id may go to another slot value: it must not stay in front, even empty.
            if self.front == Some(id) {
                self.front = None;
            }
            self.by_slot.remove(&bucket.slot);
            self.free.push(id);
        }
        // Room for twice what is held at most (or a few, kept for the next slot value that a
        // freed bucket serves without allocating), so that the buckets' memory stays
        // proportional to the connections held, however their slots change.
        let room = (2 * held).max(SPARE);
        if bucket.idle.capacity() > room {
            bucket.idle.shrink_to(room);
        }
    }

    /// The front has run empty: the lowest bucket of `rest` takes its place, if any.
    fn next_front(&mut self) -> Option<u32> {
        let (_, lowest) = self.rest.peek()?;
        self.rest.remove(lowest);
        self.front = Some(lowest);
        Some(lowest)
    }

    /// A bucket for `slot`, holding nothing: a free one reused, or a new one.
    fn new_bucket(&mut self, slot: u32) -> u32 {
        match self.free.pop() {
            Some(id) => {
                // Empty, with the room it kept.
                self.buckets[id as usize].slot = slot;
                id
            }
            None => {
                // At most one bucket per record held, and records number at most a u32.
                let id = self.buckets.len() as u32;
                self.buckets.push(Bucket {
                    slot,
                    held: 0,
                    idle: Vec::new(),
                });
                self.rest.make_room(self.buckets.len());
                id
            }
        }
    }

    /// Bucket `id`, not in front, has just stopped being empty: in front if it is the lowest
    /// (the front, if not empty, goes to `rest`), else in `rest`.
    fn link(&mut self, id: u32) {
        let slot = self.buckets[id as usize].slot;
        match self.front {
            Some(front) if self.buckets[front as usize].slot < slot => self.rest.push(id, slot),
            Some(front) => {
                let bucket = &self.buckets[front as usize];
                if !bucket.idle.is_empty() {
                    self.rest.push(front, bucket.slot);
                }
                self.front = Some(id);
            }
            None if self.rest.peek().is_some_and(|(lowest, _)| lowest < slot) => {
                self.rest.push(id, slot);
            }
            None => self.front = Some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    /// Every held record is in its slot's bucket, at its position if idle; every non-empty
    /// bucket is in front or in `rest`, the front no higher than any of `rest`.
    fn assert_consistent(set: &SlotBuckets) {
        let mut idle = 0;
        for (id, bucket) in set.buckets.iter().enumerate() {
            let id = id as u32;
            assert!(bucket.idle.capacity() <= (2 * bucket.held as usize).max(SPARE));
            if bucket.held == 0 {
                assert!(set.free.contains(&id) && bucket.idle.is_empty());
                continue;
            }
            assert_eq!(set.by_slot.get(&bucket.slot), Some(&id));
            assert!(bucket.idle.capacity() >= bucket.held as usize);
            let held = set.places.iter().filter(|p| p.bucket == id).count();
            assert_eq!(held, bucket.held as usize);
            for (position, &index) in bucket.idle.iter().enumerate() {
                let place = set.places[index as usize];
                assert_eq!((place.bucket, place.position), (id, position as u32));
            }
            idle += bucket.idle.len();
            if set.front != Some(id) {
                assert_eq!(
                    set.rest.contains(id),
                    !bucket.idle.is_empty(),
                    "bucket {id}"
                );
            }
        }
        assert_eq!(idle, set.idle);
        if let Some(front) = set.front {
            assert!(
                set.buckets[front as usize].held > 0,
                "a free bucket in front"
            );
        }
        assert_eq!(set.by_slot.len() + set.free.len(), set.buckets.len());
        if let (Some(front), Some((lowest, _))) = (set.front, set.rest.peek()) {
            assert!(set.buckets[front as usize].slot < lowest);
        }
    }

    #[test]
    fn take_returns_the_lowest_slot_and_draws_all_of_its_ties() {
        let mut set = SlotBuckets::try_with_capacity(8).unwrap();
        // Slot 0 on indices 0, 1, 2; slot 1 on 3; slot 5 on 4.
        for (index, slot) in [(3, 1), (0, 0), (4, 5), (1, 0), (2, 0)] {
            set.hold(index, slot);
            assert_consistent(&set);
        }
        let mut rng = Rng::new(7);
        let mut drawn = [0u32; 3];
        for _ in 0..3_000 {
            let index = set.take(&mut rng).unwrap();
            assert!(index < 3, "{index} is not at the lowest slot");
            drawn[index as usize] += 1;
            set.give_back(index);
            assert_consistent(&set);
        }
        // 1,000 expected each.
        assert!(drawn.iter().all(|&n| (850..1150).contains(&n)), "{drawn:?}");
        // Leased one by one: slot 0's three in some order, then 3, then 4.
        let mut order: Vec<u32> = (0..5).map(|_| set.take(&mut rng).unwrap()).collect();
        assert_eq!(set.take(&mut rng), None);
        assert_consistent(&set);
        order[..3].sort_unstable();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_lower_bucket_given_back_goes_in_front_of_the_one_lent_from() {
        let mut set = SlotBuckets::try_with_capacity(4).unwrap();
        set.hold(0, 2);
        set.hold(1, 4);
        let mut rng = Rng::new(1);
        assert_eq!(set.take(&mut rng), Some(0));
        assert_eq!(set.front, Some(0), "stays in front, empty");
        assert_eq!(set.take(&mut rng), Some(1));
        set.give_back(1);
        set.give_back(0);
        assert_consistent(&set);
        assert_eq!(set.take(&mut rng), Some(0));
        set.give_back(0);
        assert_consistent(&set);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn release_frees_a_bucket_with_its_last_record_and_only_then() {
        let mut set = SlotBuckets::try_with_capacity(4).unwrap();
        set.hold(0, 3);
        set.hold(1, 3);
        set.hold(2, 9);
        let mut rng = Rng::new(2);
        let leased = set.take(&mut rng).unwrap();
        set.release(leased);
        assert_consistent(&set);
        assert!(set.by_slot.contains_key(&3));
        let other = 1 - leased;
        assert!(set.contains(other) && !set.contains(leased));
        set.release(other);
        assert_consistent(&set);
        assert!(!set.by_slot.contains_key(&3));
        assert_eq!(set.take(&mut rng), Some(2));
        // The freed bucket is reused for the next new slot value.
        set.hold(3, 1);
        assert_eq!(set.buckets.len(), 2);
        assert_consistent(&set);
        assert_eq!(set.take(&mut rng), Some(3));
        set.release(7);
        set.release(3);
        set.release(3);
        assert_consistent(&set);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn random_operations_keep_buckets_and_lowest_right() {
        let mut rng = Rng::new(13);
        for _ in 0..100 {
            let mut set = SlotBuckets::try_with_capacity(4).unwrap();
            let mut idle: BTreeSet<(u32, u32)> = BTreeSet::new();
            let mut leased: Vec<(u32, u32)> = Vec::new();
            let mut next = 0u32;
            for _ in 0..200 {
                match rng.below(5) {
                    0 | 1 => {
                        let slot = rng.below(6) as u32;
                        set.hold(next, slot);
                        idle.insert((slot, next));
                        next += 1;
                    }
                    2 => {
                        let lowest = idle.first().map(|&(slot, _)| slot);
                        let taken = set.take(&mut rng);
                        match (lowest, taken) {
                            (None, None) => {}
                            (Some(slot), Some(index)) => {
                                assert!(idle.remove(&(slot, index)), "not the lowest");
                                leased.push((slot, index));
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                    3 if !leased.is_empty() => {
                        let nth = rng.below(leased.len() as u64) as usize;
                        let (slot, index) = leased.swap_remove(nth);
                        set.give_back(index);
                        idle.insert((slot, index));
                    }
                    _ => {
                        if let Some(&(slot, index)) = idle.iter().nth(rng.below(3) as usize) {
                            set.release(index);
                            idle.remove(&(slot, index));
                        } else if let Some((_, index)) = leased.pop() {
                            set.release(index);
                        }
                    }
                }
                assert_consistent(&set);
                assert_eq!(set.len(), idle.len());
            }
        }
    }
}

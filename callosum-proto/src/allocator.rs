//! The server's slot allocator: the lowest free slot, always.
//!
//! Slots are issued from `0` upwards. Each slot carries a generation counter that is odd
//! while the slot is in use: it tells a double release from a live one, and it makes a
//! [`SlotHandle`] kept after its release stale rather than a key to somebody else's slot.
//! A released slot joins the storage's free set, from which the next
//! [`SlotAllocator::acquire`] takes the lowest free slot with no allocation; the slot just
//! below the mark of slots in use lowers the mark instead, so the free set holds only holes.
//!
//! Two storages: [`FixedStorage`] holds at most `N` slots in place (no allocator needed) and
//! keeps its free set in a min-heap; [`GrowableStorage`], behind the `alloc` feature, grows
//! with the highest slot ever issued and keeps what it has grown to (so steady-state
//! operation never allocates), with its free set as a bitmap with summary levels: about one
//! bit per issued slot, and the lowest free slot in one step per level however many holes.

use core::fmt;

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// A slot that was issued, with the generation that tells this use of it from later ones.
///
/// Handles are only meaningful to the allocator that issued them. A handle carries no mark of
/// its allocator: released into another one, it is refused only if that slot is free there or
/// of another generation; otherwise it frees the other allocator's slot. Keep each handle with
/// the allocator it came from.
///
/// ```
/// use callosum_proto::allocator::FixedSlotAllocator;
///
/// let mut slots = FixedSlotAllocator::<8>::new(None).unwrap();
/// let handle = slots.acquire().unwrap();
/// assert_eq!(handle.slot(), 0);
/// ```
///
/// Dropping a handle unused is a warning (`unused_must_use`): its slot would never be
/// released.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # use callosum_proto::allocator::FixedSlotAllocator;
/// let mut slots = FixedSlotAllocator::<4>::new(None).unwrap();
/// slots.acquire().unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "dropping a slot handle leaks its slot: release it when the connection ends"]
pub struct SlotHandle {
    slot: u32,
    generation: u32,
}

impl SlotHandle {
    /// The slot number, as written in the slot line.
    pub fn slot(self) -> u32 {
        self.slot
    }
}

impl fmt::Display for SlotHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {} (generation {})", self.slot, self.generation)
    }
}

/// Every slot the allocator may issue is in use.
///
/// ```
/// use callosum_proto::allocator::{FixedSlotAllocator, SlotsExhausted};
///
/// let mut slots = FixedSlotAllocator::<1>::new(None).unwrap();
/// let _only = slots.acquire().unwrap();
/// assert_eq!(slots.acquire(), Err(SlotsExhausted { limit: 1 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotsExhausted {
    /// How many slots the allocator may issue.
    pub limit: u32,
}

impl fmt::Display for SlotsExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} slots are in use", self.limit)
    }
}

impl core::error::Error for SlotsExhausted {}

/// A release that would corrupt the allocator; it was refused and changed nothing.
///
/// ```
/// use callosum_proto::allocator::{FixedSlotAllocator, ReleaseError};
///
/// let mut slots = FixedSlotAllocator::<8>::new(None).unwrap();
/// let handle = slots.acquire().unwrap();
/// slots.release(handle).unwrap();
/// assert_eq!(slots.release(handle), Err(ReleaseError::NotInUse { slot: 0 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The slot is free: released twice, or never issued.
    NotInUse {
        /// The slot named.
        slot: u32,
    },
    /// The slot was released and issued again since this handle was made; the new holder
    /// keeps it.
    Stale {
        /// The slot named.
        slot: u32,
    },
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseError::NotInUse { slot } => {
                write!(
                    f,
                    "slot {slot} is not in use (double release, or never issued)"
                )
            }
            ReleaseError::Stale { slot } => write!(
                f,
                "stale handle for slot {slot}: it was released and issued to another connection"
            ),
        }
    }
}

impl core::error::Error for ReleaseError {}

/// A slot limit that cannot be honoured.
///
/// ```
/// use callosum_proto::allocator::{FixedSlotAllocator, SlotLimitError};
///
/// assert_eq!(FixedSlotAllocator::<4>::new(Some(0)).err(), Some(SlotLimitError::Zero));
/// assert_eq!(
///     FixedSlotAllocator::<4>::new(Some(5)).err(),
///     Some(SlotLimitError::AboveCapacity { requested: 5, capacity: 4 }),
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotLimitError {
    /// A limit of zero slots would close every connection.
    Zero,
    /// The storage cannot hold that many slots.
    AboveCapacity {
        /// The limit asked for.
        requested: u32,
        /// The most slots the storage holds.
        capacity: u32,
    },
}

impl fmt::Display for SlotLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotLimitError::Zero => f.write_str("a slot limit of 0 would refuse every connection"),
            SlotLimitError::AboveCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "slot limit {requested} is above the storage capacity of {capacity} slots"
            ),
        }
    }
}

impl core::error::Error for SlotLimitError {}

mod sealed {
    pub trait Sealed {}
}

/// Where an allocator keeps its per-slot generations and its free slots.
///
/// Sealed: the two implementations are [`FixedStorage`] and [`GrowableStorage`].
pub trait SlotStorage: sealed::Sealed {
    /// The most slots this storage can track.
    fn capacity(&self) -> u32;
    /// The generation of a slot issued at some time, `None` for a slot never issued.
    fn generation(&self, slot: u32) -> Option<u32>;
    /// Sets the generation of a slot issued at some time.
    fn set_generation(&mut self, slot: u32, generation: u32);
    /// Records the lowest slot never issued, with its generation.
    fn push_slot(&mut self, generation: u32);
    /// Adds a released slot to the free set.
    fn push_free(&mut self, slot: u32);
    /// Takes the lowest slot of the free set.
    fn pop_free(&mut self) -> Option<u32>;
}

/// In-place storage for at most `N` slots (8 bytes each): no allocator needed.
///
/// ```
/// use callosum_proto::allocator::FixedSlotAllocator;
///
/// let mut slots = FixedSlotAllocator::<64>::new(None).unwrap();
/// assert_eq!(slots.limit(), 64);
/// ```
pub struct FixedStorage<const N: usize> {
    generations: heapless::Vec<u32, N>,
    free: heapless::binary_heap::BinaryHeap<u32, heapless::binary_heap::Min, N>,
}

/// A summary (capacity, slots ever issued, free slots below the mark), not every slot.
impl<const N: usize> fmt::Debug for FixedStorage<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedStorage")
            .field("capacity", &N)
            .field("issued", &self.generations.len())
            .field("free", &self.free.len())
            .finish()
    }
}

impl<const N: usize> sealed::Sealed for FixedStorage<N> {}

impl<const N: usize> SlotStorage for FixedStorage<N> {
    fn capacity(&self) -> u32 {
        u32::try_from(N).unwrap_or(u32::MAX)
    }

    fn generation(&self, slot: u32) -> Option<u32> {
        self.generations.get(slot as usize).copied()
    }

    fn set_generation(&mut self, slot: u32, generation: u32) {
        if let Some(entry) = self.generations.get_mut(slot as usize) {
            *entry = generation;
        }
    }

    fn push_slot(&mut self, generation: u32) {
        // The allocator never issues more than `capacity()` slots, so this always fits.
        let pushed = self.generations.push(generation);
        debug_assert!(pushed.is_ok(), "slot pushed beyond capacity");
    }

    fn push_free(&mut self, slot: u32) {
        // Free slots are a subset of issued slots, of which there are at most N.
        let pushed = self.free.push(slot);
        debug_assert!(pushed.is_ok(), "more free slots than issued slots");
    }

    fn pop_free(&mut self) -> Option<u32> {
        self.free.pop()
    }
}

/// Storage that grows with the highest slot ever issued, behind the `alloc` feature.
///
/// Per issued slot it keeps a 4-byte generation and about one bit of free set (a bitmap
/// with summary levels), each in a `Vec` that grows by doubling, so up to twice that just
/// after growth.
///
/// ```
/// use callosum_proto::allocator::GrowableSlotAllocator;
///
/// let mut slots = GrowableSlotAllocator::new(Some(10_000)).unwrap();
/// assert_eq!(slots.acquire().unwrap().slot(), 0);
/// ```
#[cfg(feature = "alloc")]
pub struct GrowableStorage {
    generations: Vec<u32>,
    free: FreeBitmap,
}

/// A summary (slots ever issued, free slots below the mark), not every slot.
#[cfg(feature = "alloc")]
impl fmt::Debug for GrowableStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrowableStorage")
            .field("issued", &self.generations.len())
            .field("free", &self.free.count())
            .finish()
    }
}

#[cfg(feature = "alloc")]
impl sealed::Sealed for GrowableStorage {}

#[cfg(feature = "alloc")]
impl SlotStorage for GrowableStorage {
    fn capacity(&self) -> u32 {
        u32::MAX
    }

    fn generation(&self, slot: u32) -> Option<u32> {
        self.generations.get(slot as usize).copied()
    }

    fn set_generation(&mut self, slot: u32, generation: u32) {
        if let Some(entry) = self.generations.get_mut(slot as usize) {
            *entry = generation;
        }
    }

    fn push_slot(&mut self, generation: u32) {
        self.generations.push(generation);
        self.free.cover(self.generations.len());
    }

    fn push_free(&mut self, slot: u32) {
        self.free.insert(slot as usize);
    }

    fn pop_free(&mut self) -> Option<u32> {
        // Every bit stands for an issued slot, and slots are u32.
        self.free.take_lowest().map(|slot| slot as u32)
    }
}

/// Bits per bitmap word.
#[cfg(feature = "alloc")]
const WORD_BITS: usize = u64::BITS as usize;

/// The free slots of a [`GrowableStorage`], one bit each, with summary levels above them.
///
/// `levels[0]` has a bit per slot, set while the slot is free. Each level above has a bit per
/// word of the level below, set while that word has any bit set, up to a top level of one
/// word. The lowest free slot is then one `trailing_zeros` per level from the top down,
/// whatever the number of free slots: 200,000 slots take three levels (3,125 words, 49, 1).
/// A release sets one bit, and a level above only when the word below was empty. That is
/// 1 + 1/64 + 1/4096 + ... bits per issued slot, where a min-heap (which [`FixedStorage`]
/// keeps) takes 4 bytes per free slot and sifts through about log2(n) levels per operation,
/// missing the cache once it is large.
///
/// Most acquires do not even walk the levels: `first_word` remembers where the last lowest
/// free slot was found, and while that word still has a bit set, its lowest bit is the
/// lowest free slot.
#[cfg(feature = "alloc")]
#[derive(Default)]
struct FreeBitmap {
    levels: Vec<Vec<u64>>,
    /// A word of `levels[0]` below which every word is empty.
    first_word: usize,
}

#[cfg(feature = "alloc")]
impl FreeBitmap {
    /// Makes room for `slots` slots, those added not free. Only grows.
    ///
    /// Only called while no slot is free (a slot is issued for the first time only when no
    /// slot below it is free), so every word added, at any level, is rightly empty.
    fn cover(&mut self, slots: usize) {
        debug_assert!(self.levels.last().is_none_or(|top| top[0] == 0));
        let mut words = slots.div_ceil(WORD_BITS);
        if self
            .levels
            .first()
            .is_some_and(|leaves| leaves.len() >= words)
        {
            // Every level above covers what the leaves cover.
            return;
        }
        for level in 0.. {
            if level == self.levels.len() {
                self.levels.push(Vec::new());
            }
            self.levels[level].resize(words, 0);
            if words == 1 {
                return;
            }
            words = words.div_ceil(WORD_BITS);
        }
    }

    /// Marks `slot` free; it must be covered.
    fn insert(&mut self, slot: usize) {
        self.first_word = self.first_word.min(slot / WORD_BITS);
        let mut index = slot;
        for level in &mut self.levels {
            let word = &mut level[index / WORD_BITS];
            let was_empty = *word == 0;
            *word |= 1 << (index % WORD_BITS);
            if !was_empty {
                // The levels above already know this word has a bit set.
                return;
            }
            index /= WORD_BITS;
        }
    }

    /// Takes the lowest free slot out of the set.
    fn take_lowest(&mut self) -> Option<usize> {
        let slot = match self.levels.first()?.get(self.first_word) {
            Some(&word) if word != 0 => {
                self.first_word * WORD_BITS + word.trailing_zeros() as usize
            }
            _ => self.lowest_from_the_top()?,
        };
        self.first_word = slot / WORD_BITS;
        let mut index = slot;
        for level in &mut self.levels {
            let word = &mut level[index / WORD_BITS];
            *word &= !(1 << (index % WORD_BITS));
            if *word != 0 {
                // The word still has a bit set, as the levels above say.
                break;
            }
            index /= WORD_BITS;
        }
        Some(slot)
    }

    /// The lowest free slot, found from the top level down.
    fn lowest_from_the_top(&self) -> Option<usize> {
        if self.levels.last()?[0] == 0 {
            return None;
        }
        let mut index = 0;
        for level in self.levels.iter().rev() {
            index = index * WORD_BITS + level[index].trailing_zeros() as usize;
        }
        Some(index)
    }

    /// How many slots are free (a count over every word: for `Debug`, not for hot paths).
    fn count(&self) -> u32 {
        self.levels.first().map_or(0, |leaves| {
            leaves.iter().map(|word| word.count_ones()).sum()
        })
    }
}

/// Issues the lowest free slot, and takes slots back exactly once.
///
/// Two flavours, the same rules: [`FixedSlotAllocator`] (at most `N` slots, no allocator) and,
/// with the `alloc` feature, [`GrowableSlotAllocator`] (unlimited by default).
///
/// ```
/// use callosum_proto::allocator::FixedSlotAllocator;
///
/// let mut slots = FixedSlotAllocator::<8>::new(None).unwrap();
/// let zero = slots.acquire().unwrap();
/// let one = slots.acquire().unwrap();
/// slots.release(zero).unwrap();
/// assert_eq!(slots.acquire().unwrap().slot(), 0);
/// assert_eq!(slots.acquire().unwrap().slot(), 2);
/// # let _ = one;
/// ```
#[derive(Debug)]
pub struct SlotAllocator<S: SlotStorage> {
    storage: S,
    /// Every slot from here up is free, and the storage's free set holds the free slots
    /// below it (the holes). A release of the slot just below the mark lowers the mark
    /// instead of adding a hole, so a server whose newest connection ends first, as under
    /// steady churn at the top, never touches the free set.
    mark: u32,
    in_use: u32,
    limit: u32,
}

/// A slot allocator holding at most `N` slots in place, for `no_std` without `alloc`.
pub type FixedSlotAllocator<const N: usize> = SlotAllocator<FixedStorage<N>>;

/// A slot allocator whose storage grows with the busiest moment it has seen.
#[cfg(feature = "alloc")]
pub type GrowableSlotAllocator = SlotAllocator<GrowableStorage>;

impl<const N: usize> FixedSlotAllocator<N> {
    /// An allocator that issues at most `max_slots` slots (`None`: all `N`).
    ///
    /// A limit of zero is refused with [`SlotLimitError::Zero`], whether asked for
    /// (`Some(0)`) or implied by `N == 0`.
    ///
    /// ```
    /// use callosum_proto::allocator::FixedSlotAllocator;
    ///
    /// let slots = FixedSlotAllocator::<16>::new(Some(8)).unwrap();
    /// assert_eq!(slots.limit(), 8);
    /// ```
    pub fn new(max_slots: Option<u32>) -> Result<FixedSlotAllocator<N>, SlotLimitError> {
        SlotAllocator::with_storage(
            FixedStorage {
                generations: heapless::Vec::new(),
                free: heapless::binary_heap::BinaryHeap::new(),
            },
            max_slots,
        )
    }
}

#[cfg(feature = "alloc")]
impl GrowableSlotAllocator {
    /// An allocator that issues at most `max_slots` slots (`None`: unlimited, which in
    /// practice means `u32::MAX`).
    ///
    /// ```
    /// use callosum_proto::allocator::GrowableSlotAllocator;
    ///
    /// assert!(GrowableSlotAllocator::new(Some(0)).is_err());
    /// assert_eq!(GrowableSlotAllocator::new(None).unwrap().limit(), u32::MAX);
    /// ```
    pub fn new(max_slots: Option<u32>) -> Result<GrowableSlotAllocator, SlotLimitError> {
        SlotAllocator::with_storage(
            GrowableStorage {
                generations: Vec::new(),
                free: FreeBitmap::default(),
            },
            max_slots,
        )
    }
}

impl<S: SlotStorage> SlotAllocator<S> {
    fn with_storage(storage: S, max_slots: Option<u32>) -> Result<Self, SlotLimitError> {
        let capacity = storage.capacity();
        let limit = match max_slots {
            // A storage of no slots (`FixedStorage<0>`) would refuse every connection too.
            None | Some(0) if capacity == 0 => return Err(SlotLimitError::Zero),
            None => capacity,
            Some(0) => return Err(SlotLimitError::Zero),
            Some(requested) if requested > capacity => {
                return Err(SlotLimitError::AboveCapacity {
                    requested,
                    capacity,
                });
            }
            Some(requested) => requested,
        };
        Ok(SlotAllocator {
            storage,
            mark: 0,
            in_use: 0,
            limit,
        })
    }

    /// Takes the lowest free slot.
    ///
    /// ```
    /// # use callosum_proto::allocator::FixedSlotAllocator;
    /// let mut slots = FixedSlotAllocator::<8>::new(Some(1)).unwrap();
    /// assert_eq!(slots.acquire().unwrap().slot(), 0);
    /// assert!(slots.acquire().is_err());
    /// ```
    #[must_use = "dropping an acquired slot leaks it: release it when the connection ends"]
    pub fn acquire(&mut self) -> Result<SlotHandle, SlotsExhausted> {
        let slot = match self.storage.pop_free() {
            Some(hole) => hole,
            None if self.mark < self.limit => {
                let slot = self.mark;
                self.mark += 1;
                if self.storage.generation(slot).is_none() {
                    // Never issued: recorded free (an even generation) and taken below.
                    self.storage.push_slot(0);
                }
                slot
            }
            None => return Err(SlotsExhausted { limit: self.limit }),
        };
        // The slot was free, so its generation is even: the new one is odd, in use.
        let generation = self.storage.generation(slot).unwrap_or(0).wrapping_add(1);
        self.storage.set_generation(slot, generation);
        self.in_use += 1;
        Ok(SlotHandle { slot, generation })
    }

    /// Gives a slot back; refused, with nothing changed, unless `handle` is the slot's
    /// current holder.
    ///
    /// ```
    /// # use callosum_proto::allocator::{FixedSlotAllocator, ReleaseError};
    /// let mut slots = FixedSlotAllocator::<8>::new(None).unwrap();
    /// let first = slots.acquire().unwrap();
    /// slots.release(first).unwrap();
    /// let second = slots.acquire().unwrap(); // slot 0 again, a new generation
    /// assert_eq!(slots.release(first), Err(ReleaseError::Stale { slot: 0 }));
    /// assert_eq!(slots.release(second), Ok(()));
    /// ```
    pub fn release(&mut self, handle: SlotHandle) -> Result<(), ReleaseError> {
        let slot = handle.slot;
        match self.storage.generation(slot) {
            Some(current) if current == handle.generation && current % 2 == 1 => {
                self.storage.set_generation(slot, current.wrapping_add(1));
                if slot + 1 == self.mark {
                    self.mark = slot;
                } else {
                    self.storage.push_free(slot);
                }
                self.in_use -= 1;
                Ok(())
            }
            Some(current) if current % 2 == 1 => Err(ReleaseError::Stale { slot }),
            _ => Err(ReleaseError::NotInUse { slot }),
        }
    }

    /// Whether `slot` is held by some connection now.
    ///
    /// ```
    /// # use callosum_proto::allocator::FixedSlotAllocator;
    /// let mut slots = FixedSlotAllocator::<8>::new(None).unwrap();
    /// let handle = slots.acquire().unwrap();
    /// assert!(slots.is_in_use(0));
    /// assert!(!slots.is_in_use(1));
    /// # let _ = handle;
    /// ```
    pub fn is_in_use(&self, slot: u32) -> bool {
        self.storage
            .generation(slot)
            .is_some_and(|generation| generation % 2 == 1)
    }

    /// How many slots are in use.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// The most slots this allocator issues at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `$body` with `$slots` bound to a fixed allocator, and with `alloc` to a growable
    /// one too, both made with `$max`: the rules hold whatever the storage.
    macro_rules! on_each_storage {
        ($max:expr, |$slots:ident| $body:block) => {{
            {
                let mut $slots = FixedSlotAllocator::<16>::new($max).unwrap();
                $body
            }
            #[cfg(feature = "alloc")]
            {
                let mut $slots = GrowableSlotAllocator::new($max).unwrap();
                $body
            }
        }};
    }

    #[test]
    fn issues_the_lowest_free_slot() {
        on_each_storage!(None, |slots| {
            let zero = slots.acquire().unwrap();
            let one = slots.acquire().unwrap();
            let two = slots.acquire().unwrap();
            assert_eq!([zero.slot(), one.slot(), two.slot()], [0, 1, 2]);
            slots.release(zero).unwrap();
            assert_eq!(slots.acquire().unwrap().slot(), 0);
            assert_eq!(slots.acquire().unwrap().slot(), 3);
        });
    }

    #[test]
    fn fixed_storage_issues_the_lowest_free_slot_too() {
        let mut slots = FixedSlotAllocator::<4>::new(None).unwrap();
        let handles: [SlotHandle; 4] = core::array::from_fn(|_| slots.acquire().unwrap());
        assert_eq!(slots.acquire(), Err(SlotsExhausted { limit: 4 }));
        slots.release(handles[2]).unwrap();
        slots.release(handles[1]).unwrap();
        assert_eq!(slots.acquire().unwrap().slot(), 1);
        assert_eq!(slots.acquire().unwrap().slot(), 2);
    }

    #[test]
    fn releases_of_free_slots_are_reported_and_change_nothing() {
        on_each_storage!(None, |slots| {
            let zero = slots.acquire().unwrap();
            slots.release(zero).unwrap();
            assert_eq!(slots.release(zero), Err(ReleaseError::NotInUse { slot: 0 }));
            let never_issued = SlotHandle {
                slot: 7,
                generation: 1,
            };
            assert_eq!(
                slots.release(never_issued),
                Err(ReleaseError::NotInUse { slot: 7 })
            );
            assert_eq!(slots.in_use(), 0);
            assert_eq!(slots.acquire().unwrap().slot(), 0);
            assert_eq!(slots.acquire().unwrap().slot(), 1);
        });
    }

    #[test]
    fn a_stale_handle_cannot_free_the_new_holders_slot() {
        on_each_storage!(None, |slots| {
            let old = slots.acquire().unwrap();
            slots.release(old).unwrap();
            let new = slots.acquire().unwrap();
            assert_eq!(slots.release(old), Err(ReleaseError::Stale { slot: 0 }));
            assert!(slots.is_in_use(0));
            slots.release(new).unwrap();
        });
    }

    #[test]
    fn the_limit_is_honoured_and_frees_up_again() {
        on_each_storage!(Some(2), |slots| {
            let zero = slots.acquire().unwrap();
            let _one = slots.acquire().unwrap();
            assert_eq!(slots.acquire(), Err(SlotsExhausted { limit: 2 }));
            slots.release(zero).unwrap();
            assert_eq!(slots.acquire().unwrap().slot(), 0);
        });
    }

    /// Frees slots on both sides of the bitmap's word and level boundaries (64 and 4,096
    /// slots) and takes them back: always the lowest first, then the slot above them all.
    #[cfg(feature = "alloc")]
    #[test]
    fn the_growable_bitmap_finds_the_lowest_free_slot_across_its_levels() {
        let mut slots = GrowableSlotAllocator::new(None).unwrap();
        let held: Vec<SlotHandle> = (0..5_000).map(|_| slots.acquire().unwrap()).collect();
        let freed = [4_999, 4_097, 4_096, 4_095, 64, 63, 1];
        for slot in freed {
            slots.release(held[slot]).unwrap();
        }
        for slot in freed.iter().rev() {
            assert_eq!(slots.acquire().unwrap().slot(), *slot as u32);
        }
        assert_eq!(slots.acquire().unwrap().slot(), 5_000);
        assert_eq!(slots.in_use(), 5_001);
    }

    /// The free set of 200,000 issued slots, half of them free, takes 3,125 + 49 + 1 words:
    /// 1.016 bits per issued slot (the `Vec`s may hold up to twice that after doubling).
    #[cfg(feature = "alloc")]
    #[test]
    fn the_growable_free_set_takes_about_a_bit_per_issued_slot() {
        let mut slots = GrowableSlotAllocator::new(None).unwrap();
        let held: Vec<SlotHandle> = (0..200_000).map(|_| slots.acquire().unwrap()).collect();
        for handle in held.iter().step_by(2) {
            slots.release(*handle).unwrap();
        }
        let levels = &slots.storage.free.levels;
        let words: Vec<usize> = levels.iter().map(Vec::len).collect();
        assert_eq!(words, [3_125, 49, 1]);
        assert_eq!(slots.storage.free.count(), 100_000);
    }

    #[test]
    fn a_fixed_storage_of_no_slots_is_refused() {
        assert_eq!(
            FixedSlotAllocator::<0>::new(None).err(),
            Some(SlotLimitError::Zero)
        );
        assert_eq!(
            FixedSlotAllocator::<0>::new(Some(0)).err(),
            Some(SlotLimitError::Zero)
        );
        assert_eq!(
            FixedSlotAllocator::<0>::new(Some(1)).err(),
            Some(SlotLimitError::AboveCapacity {
                requested: 1,
                capacity: 0
            })
        );
        assert!(crate::server::FixedServerCore::<0>::new(None).is_err());
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(
            FixedSlotAllocator::<2>::new(Some(0)).err(),
            Some(SlotLimitError::Zero)
        );
        #[cfg(feature = "alloc")]
        assert_eq!(
            GrowableSlotAllocator::new(Some(0)).err(),
            Some(SlotLimitError::Zero)
        );
        assert_eq!(
            FixedSlotAllocator::<2>::new(Some(3)).err(),
            Some(SlotLimitError::AboveCapacity {
                requested: 3,
                capacity: 2
            })
        );
    }
}

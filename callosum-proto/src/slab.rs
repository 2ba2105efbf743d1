//! A generation-checked slab: values stored in a vector, named by [`Key`]s that go stale.
//!
//! A [`Slab`] keeps its values in a vector of entries and reuses freed entries through a free
//! list, so its storage never grows with insert/remove cycles. Every entry has a generation,
//! part of the key, that moves on whenever the entry's key is retired ([`Slab::remove`],
//! [`Slab::renew`]). A stale key therefore finds nothing instead of reaching whatever value
//! reuses the entry: only a key kept across 2^32 retirements of one entry could be mistaken
//! for a current one. A key from another slab is refused only if it names nothing there.
//!
//! Indices stay dense: a freed index is reused before a new entry is added, so no index
//! reaches the slab's bound ([`Slab::bounded`]), and an adapter can keep a table beside the
//! slab indexed by [`Key::index`].
//!
//! ```
//! use callosum_proto::slab::Slab;
//!
//! let mut slab = Slab::bounded(2);
//! let a = slab.insert("a").unwrap();
//! let b = slab.insert("b").unwrap();
//! assert_eq!(slab.insert("c"), Err("c")); // full
//!
//! assert_eq!(slab.remove(a), Some("a"));
//! assert_eq!(slab.get(a), None); // stale
//! let c = slab.insert("c").unwrap();
//! assert_eq!(c.index(), a.index()); // the entry is reused ...
//! assert_ne!(c, a); // ... under a new generation
//! assert_eq!(c.to_string(), "0#1");
//!
//! let renewed = slab.renew(b).unwrap();
//! assert_eq!((slab.get(b), slab.get(renewed)), (None, Some(&"b")));
//! ```

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::fmt;
use core::mem;

/// The most entries a slab holds: indices are `u32`, and `u32::MAX` is excluded so that the
/// count of entries fits a `u32` too.
pub const MAX_LEN: usize = u32::MAX as usize;

/// Names one value in a [`Slab`] until it is removed or its key renewed.
///
/// Displayed as `index#generation`:
///
/// ```
/// use callosum_proto::slab::Slab;
///
/// let mut slab = Slab::with_capacity(1);
/// let key = slab.insert(()).unwrap();
/// assert_eq!((key.index(), key.generation()), (0, 0));
/// assert_eq!(key.to_string(), "0#0");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The entry's index: below the slab's bound, and shared by no two live values.
    pub fn index(self) -> u32 {
        self.index
    }

    /// The entry's generation when this key was issued.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// A key made up from its parts, for tests that need one naming nothing.
    #[cfg(test)]
    pub(crate) fn from_parts(index: u32, generation: u32) -> Key {
        Key { index, generation }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.index, self.generation)
    }
}

/// Values named by generation-checked [`Key`]s, in entries reused through a free list.
///
/// ```
/// use callosum_proto::slab::Slab;
///
/// let mut slab = Slab::with_capacity(4);
/// let key = slab.insert(10).unwrap();
/// *slab.get_mut(key).unwrap() += 1;
/// assert_eq!(slab.get_by_index(key.index()), Some((key, &11)));
/// assert_eq!(slab.iter().collect::<Vec<_>>(), [(key, &11)]);
/// ```
#[derive(Clone, Debug)]
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// The most recently freed entry; each free entry links to the one freed before it.
    free_head: Option<u32>,
    /// Occupied entries.
    len: usize,
    /// The most entries allowed, at most [`MAX_LEN`].
    bound: usize,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    /// Moves on whenever the entry's key is retired, so that key goes stale.
    generation: u32,
    content: Content<T>,
}

#[derive(Clone, Debug)]
enum Content<T> {
    Occupied(T),
    /// Free; `next` links the free list.
    Vacant {
        next: Option<u32>,
    },
}

impl<T> Slab<T> {
    /// An empty slab with room for `capacity` entries allocated now, bounded only by
    /// [`MAX_LEN`].
    pub fn with_capacity(capacity: usize) -> Slab<T> {
        Slab::empty(Vec::with_capacity(capacity), MAX_LEN)
    }

    /// [`Slab::with_capacity`], reporting a failed allocation instead of aborting.
    ///
    /// ```
    /// use callosum_proto::slab::Slab;
    ///
    /// assert!(Slab::<u8>::try_with_capacity(16).is_ok());
    /// assert!(Slab::<u64>::try_with_capacity(usize::MAX).is_err());
    /// ```
    pub fn try_with_capacity(capacity: usize) -> Result<Slab<T>, TryReserveError> {
        let mut entries = Vec::new();
        entries.try_reserve_exact(capacity)?;
        Ok(Slab::empty(entries, MAX_LEN))
    }

    /// An empty slab with room for `capacity` values reserved now, that never holds more than
    /// `bound` (at most [`MAX_LEN`]); a failed allocation is reported instead of aborting.
    ///
    /// ```
    /// use callosum_proto::slab::Slab;
    ///
    /// let mut slab = Slab::try_bounded(1, 2).unwrap();
    /// assert!(slab.insert('a').is_ok() && slab.insert('b').is_ok());
    /// assert_eq!(slab.insert('c'), Err('c'));
    /// ```
    pub fn try_bounded(capacity: usize, bound: usize) -> Result<Slab<T>, TryReserveError> {
        let mut entries = Vec::new();
        entries.try_reserve_exact(capacity.min(bound))?;
        Ok(Slab::empty(entries, bound.min(MAX_LEN)))
    }

    /// An empty slab that never holds more than `bound` values (at most [`MAX_LEN`]), so
    /// every index stays below `bound`. Room for all of them is allocated now: inserting
    /// never allocates.
    ///
    /// ```
    /// use callosum_proto::slab::Slab;
    ///
    /// let mut slab = Slab::bounded(1);
    /// assert!(slab.insert('a').is_ok());
    /// assert!(slab.is_full());
    /// assert_eq!(slab.insert('b'), Err('b'));
    /// ```
    pub fn bounded(bound: usize) -> Slab<T> {
        let bound = bound.min(MAX_LEN);
        Slab::empty(Vec::with_capacity(bound), bound)
    }

    fn empty(entries: Vec<Entry<T>>, bound: usize) -> Slab<T> {
        Slab {
            entries,
            free_head: None,
            len: 0,
            bound,
        }
    }

    /// How many values the slab holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slab holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether [`Slab::insert`] would refuse a value: the slab holds as many as its bound.
    pub fn is_full(&self) -> bool {
        self.len >= self.bound
    }

    /// How many entries are allocated, holding a value or free: the largest number of values
    /// held at once so far. Entries are reused, never released, and number at most
    /// [`MAX_LEN`], so every index is below this.
    ///
    /// ```
    /// use callosum_proto::slab::Slab;
    ///
    /// let mut slab = Slab::with_capacity(0);
    /// for _ in 0..100 {
    ///     let key = slab.insert(()).unwrap();
    ///     slab.remove(key);
    /// }
    /// assert_eq!(slab.footprint(), 1);
    /// ```
    pub fn footprint(&self) -> usize {
        self.entries.len()
    }

    /// Stores `value` in the most recently freed entry, or a new one; its key. A full slab
    /// ([`Slab::is_full`]) hands `value` back.
    pub fn insert(&mut self, value: T) -> Result<Key, T> {
        if self.is_full() {
            return Err(value);
        }
        self.len += 1;
        match self.free_head {
            Some(index) => {
                let entry = &mut self.entries[index as usize];
                let Content::Vacant { next } =
                    mem::replace(&mut entry.content, Content::Occupied(value))
                else {
                    unreachable!("the free list holds only vacant entries")
                };
                self.free_head = next;
                Ok(Key {
                    index,
                    generation: entry.generation,
                })
            }
            None => {
                // No free entry and not full: fewer than `bound` entries, so fewer than
                // MAX_LEN = u32::MAX, and the new index fits.
                let index = self.entries.len() as u32;
                self.entries.push(Entry {
                    generation: 0,
                    content: Content::Occupied(value),
                });
                Ok(Key {
                    index,
                    generation: 0,
                })
            }
        }
    }

    /// The value `key` names, if the key is current.
    pub fn get(&self, key: Key) -> Option<&T> {
        let (current, value) = self.get_by_index(key.index)?;
        (current == key).then_some(value)
    }

    /// The value `key` names, if the key is current, to change it.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let (current, value) = self.get_by_index_mut(key.index)?;
        (current == key).then_some(value)
    }

    /// The value at `index` and its current key, if the entry holds one.
    pub fn get_by_index(&self, index: u32) -> Option<(Key, &T)> {
        let entry = self.entries.get(index as usize)?;
        let Content::Occupied(ref value) = entry.content else {
            return None;
        };
        let generation = entry.generation;
        Some((Key { index, generation }, value))
    }

    /// The value at `index` and its current key, if the entry holds one, to change it.
    pub fn get_by_index_mut(&mut self, index: u32) -> Option<(Key, &mut T)> {
        let entry = self.entries.get_mut(index as usize)?;
        let Content::Occupied(ref mut value) = entry.content else {
            return None;
        };
        let generation = entry.generation;
        Some((Key { index, generation }, value))
    }

    /// Takes out the value `key` names, if the key is current. The key goes stale and the
    /// entry joins the free list.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let next = self.free_head;
        let entry = self.occupied_mut(key)?;
        let Content::Occupied(value) = mem::replace(&mut entry.content, Content::Vacant { next })
        else {
            unreachable!("occupied_mut returns occupied entries only")
        };
        entry.generation = entry.generation.wrapping_add(1);
        self.free_head = Some(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Retires `key` and returns the value's new key, if `key` is current: the value stays,
    /// and whoever kept the old key can no longer reach it.
    pub fn renew(&mut self, key: Key) -> Option<Key> {
        let entry = self.occupied_mut(key)?;
        entry.generation = entry.generation.wrapping_add(1);
        Some(Key {
            index: key.index,
            generation: entry.generation,
        })
    }

    /// Every value with its key, by index.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        (0u32..).zip(&self.entries).filter_map(|(index, entry)| {
            let Content::Occupied(ref value) = entry.content else {
                return None;
            };
            let generation = entry.generation;
            Some((Key { index, generation }, value))
        })
    }

    /// Every value with its key, by index, to change them.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        (0u32..)
            .zip(&mut self.entries)
            .filter_map(|(index, entry)| {
                let Content::Occupied(ref mut value) = entry.content else {
                    return None;
                };
                let generation = entry.generation;
                Some((Key { index, generation }, value))
            })
    }

    /// The entry `key` names, if the key is current.
    fn occupied_mut(&mut self, key: Key) -> Option<&mut Entry<T>> {
        self.entries.get_mut(key.index as usize).filter(|entry| {
            entry.generation == key.generation && matches!(entry.content, Content::Occupied(_))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_removed_key_is_stale_everywhere() {
        let mut slab = Slab::with_capacity(2);
        let key = slab.insert(1).unwrap();
        assert_eq!(slab.remove(key), Some(1));
        assert_eq!(slab.get(key), None);
        assert_eq!(slab.get_mut(key), None);
        assert_eq!(slab.remove(key), None);
        assert_eq!(slab.renew(key), None);
        assert_eq!(slab.get_by_index(key.index()), None);
        assert!(slab.is_empty());
    }

    #[test]
    fn a_renewed_key_is_stale_and_the_new_one_reaches_the_value() {
        let mut slab = Slab::with_capacity(2);
        let old = slab.insert('a').unwrap();
        let new = slab.renew(old).unwrap();
        assert_eq!(new.index(), old.index());
        assert_ne!(new, old);
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.renew(old), None);
        assert_eq!(slab.get_by_index(old.index()), Some((new, &'a')));
        assert_eq!(slab.remove(new), Some('a'));
    }

    #[test]
    fn a_freed_index_is_reused_first_with_a_new_generation() {
        let mut slab = Slab::with_capacity(4);
        let keys: Vec<Key> = (0..3).map(|n| slab.insert(n).unwrap()).collect();
        slab.remove(keys[0]);
        slab.remove(keys[2]);
        let again = slab.insert(7).unwrap();
        assert_eq!(again, Key::from_parts(2, 1));
        assert_eq!(slab.insert(8).unwrap(), Key::from_parts(0, 1));
        assert_eq!(slab.insert(9).unwrap(), Key::from_parts(3, 0));
        assert_eq!(slab.get(keys[2]), None);
        assert_eq!(slab.get(again), Some(&7));
        assert_eq!((slab.len(), slab.footprint()), (4, 4));
    }

    #[test]
    fn a_bounded_slab_keeps_indices_below_its_bound() {
        let mut slab = Slab::bounded(3);
        for round in 0..10 {
            let keys: Vec<Key> = (0..3).map(|n| slab.insert(n).unwrap()).collect();
            assert!(slab.is_full());
            assert_eq!(slab.insert(round), Err(round));
            assert!(keys.iter().all(|key| key.index() < 3));
            slab.remove(keys[round % 3]);
            slab.remove(keys[(round + 1) % 3]);
            slab.remove(keys[(round + 2) % 3]);
        }
        assert_eq!(slab.footprint(), 3);
        assert!(Slab::<()>::bounded(0).insert(()).is_err());
    }

    #[test]
    fn iteration_skips_free_entries() {
        let mut slab = Slab::with_capacity(4);
        let keys: Vec<Key> = (0..4).map(|n| slab.insert(n * 10).unwrap()).collect();
        slab.remove(keys[1]);
        slab.remove(keys[3]);
        let listed: Vec<(Key, i32)> = slab.iter().map(|(key, &value)| (key, value)).collect();
        assert_eq!(listed, vec![(keys[0], 0), (keys[2], 20)]);
        for (_, value) in slab.iter_mut() {
            *value += 1;
        }
        assert_eq!(slab.get(keys[2]), Some(&21));
        assert_eq!(slab.get_by_index_mut(3), None);
    }

    #[test]
    fn a_key_naming_nothing_is_refused() {
        let mut slab = Slab::with_capacity(1);
        let key = slab.insert(()).unwrap();
        for foreign in [Key::from_parts(u32::MAX, 0), Key::from_parts(0, 1)] {
            assert_eq!(slab.get(foreign), None);
            assert_eq!(slab.remove(foreign), None);
            assert_eq!(slab.renew(foreign), None);
        }
        assert_eq!(slab.get_by_index(u32::MAX), None);
        assert_eq!(slab.get(key), Some(&()));
    }
}

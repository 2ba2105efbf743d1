//! A plain model of the slot allocator (how many slots were ever taken, and a sorted set of
//! the free ones among them) and the check that the real allocator agrees with it after
//! every operation.

use std::collections::BTreeSet;

use callosum_proto::allocator::{ReleaseError, SlotAllocator, SlotHandle, SlotStorage};

/// One step applied to the allocator.
#[derive(Clone, Debug)]
pub enum AllocatorOp {
    /// Take the lowest free slot.
    Acquire,
    /// Release one of the handles held now (picked by index, modulo how many there are).
    Release(usize),
    /// Release again a handle already released (double free, or stale after reuse).
    ReleaseAgain(usize),
    /// Take this many slots in a row, each the lowest free one: enough of them carry the
    /// allocator past the word and level boundaries of its free set (64 and 4,096 slots).
    AcquireMany(u16),
}

/// Decodes fuzz input into operations: one byte each, never failing.
pub fn ops_from_bytes(bytes: &[u8]) -> Vec<AllocatorOp> {
    bytes
        .iter()
        .map(|&byte| match byte % 4 {
            0 | 1 => AllocatorOp::Acquire,
            2 => AllocatorOp::Release(usize::from(byte / 4)),
            _ => AllocatorOp::ReleaseAgain(usize::from(byte / 4)),
        })
        .collect()
}

/// The model: every slot below `ceiling` was taken at some time, and `free` holds those
/// that are free now; every slot from `ceiling` up is free.
#[derive(Default)]
struct Model {
    ceiling: u32,
    free: BTreeSet<u32>,
}

impl Model {
    fn lowest_free(&self) -> u32 {
        self.free.first().copied().unwrap_or(self.ceiling)
    }

    fn is_in_use(&self, slot: u32) -> bool {
        slot < self.ceiling && !self.free.contains(&slot)
    }

    fn in_use(&self) -> usize {
        self.ceiling as usize - self.free.len()
    }

    fn take(&mut self, slot: u32) {
        if !self.free.remove(&slot) {
            self.ceiling += 1;
        }
    }
}

/// Applies `ops` to `slots` (which must be new) and to the model, and panics at the first
/// disagreement: a slot that is not the lowest free one, a slot issued twice, a refused
/// acquire below the limit, a double or stale release that was not reported or that
/// changed anything.
pub fn check_allocator_ops<S: SlotStorage>(slots: &mut SlotAllocator<S>, ops: &[AllocatorOp]) {
    let mut model = Model::default();
    let mut held: Vec<SlotHandle> = Vec::new();
    let mut released: Vec<SlotHandle> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            AllocatorOp::Acquire => acquire_one(slots, &mut model, &mut held, step),
            AllocatorOp::AcquireMany(count) => {
                for _ in 0..count {
                    acquire_one(slots, &mut model, &mut held, step);
                }
            }
            AllocatorOp::Release(pick) if !held.is_empty() => {
                let handle = held.swap_remove(pick % held.len());
                assert_eq!(
                    slots.release(handle),
                    Ok(()),
                    "step {step}: release of a live slot"
                );
                model.free.insert(handle.slot());
                released.push(handle);
            }
            AllocatorOp::ReleaseAgain(pick) if !released.is_empty() => {
                let handle = released[pick % released.len()];
                let expected = if model.is_in_use(handle.slot()) {
                    ReleaseError::Stale {
                        slot: handle.slot(),
                    }
                } else {
                    ReleaseError::NotInUse {
                        slot: handle.slot(),
                    }
                };
                assert_eq!(
                    slots.release(handle),
                    Err(expected),
                    "step {step}: bad release not reported"
                );
            }
            AllocatorOp::Release(_) | AllocatorOp::ReleaseAgain(_) => {}
        }
        assert_eq!(
            slots.in_use() as usize,
            model.in_use(),
            "step {step}: count of slots in use"
        );
        for slot in 0..=model.ceiling {
            assert_eq!(
                slots.is_in_use(slot),
                model.is_in_use(slot),
                "step {step}: slot {slot}"
            );
        }
    }
}

/// One acquire, checked against the model: the lowest free slot, or a refusal only at the
/// limit.
fn acquire_one<S: SlotStorage>(
    slots: &mut SlotAllocator<S>,
    model: &mut Model,
    held: &mut Vec<SlotHandle>,
    step: usize,
) {
    match slots.acquire() {
        Ok(handle) => {
            assert!(
                !model.is_in_use(handle.slot()),
                "step {step}: slot issued twice"
            );
            assert_eq!(
                handle.slot(),
                model.lowest_free(),
                "step {step}: not the lowest free slot"
            );
            model.take(handle.slot());
            held.push(handle);
        }
        Err(full) => {
            assert_eq!(full.limit, slots.limit());
            assert_eq!(
                model.in_use() as u64,
                u64::from(slots.limit()),
                "step {step}: refused below the limit"
            );
        }
    }
}

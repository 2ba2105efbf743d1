//! A plain model of the slot allocator (a sorted set of slots in use) and the check that
//! the real allocator agrees with it after every operation.

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

/// Applies `ops` to `slots` (which must be new) and to the model, and panics at the first
/// disagreement: a slot that is not the lowest free one, a slot issued twice, a refused
/// acquire below the limit, a double or stale release that was not reported or that
/// changed anything.
pub fn check_allocator_ops<S: SlotStorage>(slots: &mut SlotAllocator<S>, ops: &[AllocatorOp]) {
    let limit = slots.limit();
    let mut in_use = BTreeSet::new();
    let mut held: Vec<SlotHandle> = Vec::new();
    let mut released: Vec<SlotHandle> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            AllocatorOp::Acquire => {
                let lowest_free = (0..)
                    .find(|slot| !in_use.contains(slot))
                    .expect("u32 range");
                match slots.acquire() {
                    Ok(handle) => {
                        assert_eq!(
                            handle.slot(),
                            lowest_free,
                            "step {step}: not the lowest free slot"
                        );
                        assert!(
                            in_use.insert(handle.slot()),
                            "step {step}: slot issued twice"
                        );
                        held.push(handle);
                    }
                    Err(full) => {
                        assert_eq!(full.limit, limit);
                        assert_eq!(
                            in_use.len() as u64,
                            u64::from(limit),
                            "step {step}: refused below the limit"
                        );
                    }
                }
            }
            AllocatorOp::Release(pick) if !held.is_empty() => {
                let handle = held.swap_remove(pick % held.len());
                assert_eq!(
                    slots.release(handle),
                    Ok(()),
                    "step {step}: release of a live slot"
                );
                in_use.remove(&handle.slot());
                released.push(handle);
            }
            AllocatorOp::ReleaseAgain(pick) if !released.is_empty() => {
                let handle = released[pick % released.len()];
                let expected = if in_use.contains(&handle.slot()) {
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
            in_use.len(),
            "step {step}: count of slots in use"
        );
        for slot in 0..=in_use.last().map_or(0, |&last| last + 1) {
            assert_eq!(
                slots.is_in_use(slot),
                in_use.contains(&slot),
                "step {step}: slot {slot}"
            );
        }
    }
}

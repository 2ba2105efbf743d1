//! Property tests of the slot allocator against a plain model, for both storages.

use callosum_proto::allocator::{FixedSlotAllocator, GrowableSlotAllocator};
use callosum_tests::allocator_model::{AllocatorOp, check_allocator_ops};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = AllocatorOp> {
    prop_oneof![
        3 => Just(AllocatorOp::Acquire),
        2 => any::<usize>().prop_map(AllocatorOp::Release),
        1 => any::<usize>().prop_map(AllocatorOp::ReleaseAgain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn growable_allocator_matches_the_model(
        limit in proptest::option::of(1u32..20),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut slots = GrowableSlotAllocator::new(limit).unwrap();
        check_allocator_ops(&mut slots, &ops);
    }

    #[test]
    fn fixed_allocator_matches_the_model(
        limit in proptest::option::of(1u32..=16),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut slots = FixedSlotAllocator::<16>::new(limit).unwrap();
        check_allocator_ops(&mut slots, &ops);
    }
}

proptest! {
    // Fewer cases: each one issues thousands of slots and checks every one after each step.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Thousands of slots taken in runs between releases at random, so that the growable
    /// free set grows past its word and level boundaries (64 and 4,096 slots) with holes
    /// already in it, and holes fall on both sides of those boundaries.
    #[test]
    fn growable_allocator_matches_the_model_across_bitmap_levels(
        ops in proptest::collection::vec(
            prop_oneof![
                3 => Just(AllocatorOp::Acquire),
                1 => (1u16..3_000).prop_map(AllocatorOp::AcquireMany),
                4 => any::<usize>().prop_map(AllocatorOp::Release),
                1 => any::<usize>().prop_map(AllocatorOp::ReleaseAgain),
            ],
            0..60,
        ),
    ) {
        let mut slots = GrowableSlotAllocator::new(None).unwrap();
        check_allocator_ops(&mut slots, &ops);
    }
}

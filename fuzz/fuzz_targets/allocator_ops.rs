//! Arbitrary acquire/release sequences: the allocator agrees with the model at every step.
#![no_main]

use callosum_proto::allocator::{FixedSlotAllocator, GrowableSlotAllocator};
use callosum_tests::allocator_model::{check_allocator_ops, ops_from_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let ops = ops_from_bytes(rest);
    let limit = (limit % 32 != 0).then_some(u32::from(limit % 32));
    check_allocator_ops(&mut GrowableSlotAllocator::new(limit).unwrap(), &ops);
    let limit = limit.map(|l| l.min(16));
    check_allocator_ops(&mut FixedSlotAllocator::<16>::new(limit).unwrap(), &ops);
});

//! Arbitrary pool operations: the pool agrees with the model and keeps every invariant.
#![no_main]

use callosum_tests::pool_model::{check_pool_ops, ops_from_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [max_slots, seed, ops @ ..] = data else {
        return;
    };
    check_pool_ops(
        usize::from(max_slots % 9),
        u64::from(*seed),
        &ops_from_bytes(ops),
    );
});

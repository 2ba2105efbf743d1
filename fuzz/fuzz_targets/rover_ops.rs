//! Arbitrary server changes, outcomes and clock jumps: the rover keeps every rule.
#![no_main]

use callosum_tests::rover_check::{check_rover_ops, config_from_bytes, ops_from_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((config, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((&seed, ops)) = rest.split_first() else {
        return;
    };
    check_rover_ops(
        config_from_bytes(*config),
        u64::from(seed),
        &ops_from_bytes(ops),
    );
});

//! Arbitrary client inputs, lines split anywhere, leases and server changes: the client core
//! keeps every rule and leaks nothing.
#![no_main]

use callosum_tests::client_check::{check_client_ops, ops_from_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((rover, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((&max_slots, rest)) = rest.split_first() else {
        return;
    };
    let Some((&seed, ops)) = rest.split_first() else {
        return;
    };
    check_client_ops(*rover, max_slots, u64::from(seed), &ops_from_bytes(ops));
});

//! Arbitrary bytes in arbitrary chunks: the decoder agrees with the reference grammar.
#![no_main]

use callosum_tests::slot_line_reference::{check_decoder, stream_and_cuts_from_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (stream, cuts) = stream_and_cuts_from_bytes(data);
    check_decoder(stream, &cuts);
});

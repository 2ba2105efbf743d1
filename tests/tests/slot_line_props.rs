//! Property tests of the slot-line codec against the reference grammar.

use callosum_proto::{Decoded, Decoder, SlotLine};
use callosum_tests::slot_line_reference::check_decoder;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        ..ProptestConfig::default()
    }
}

/// Bytes that make interesting lines: digits, CR, LF, and a few others.
fn line_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => b'0'..=b'9',
        2 => Just(b'\r'),
        2 => Just(b'\n'),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_slot_decodes_at_every_split_point(slot in any::<u32>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
        let line = SlotLine::new(slot);
        let mut stream = line.as_bytes().to_vec();
        stream.extend_from_slice(&tail);
        for split in 0..=stream.len() {
            let mut decoder = Decoder::new();
            let (head, rest) = stream.split_at(split);
            let mut consumed = 0;
            let mut found = None;
            for chunk in [head, rest] {
                if let Decoded::Slot { slot, consumed: n } = decoder.feed(chunk).unwrap() {
                    if found.is_none() {
                        consumed += n;
                        found = Some(slot);
                    }
                } else {
                    consumed += chunk.len();
                }
            }
            prop_assert_eq!(found, Some(slot));
            prop_assert_eq!(consumed, line.as_bytes().len());
        }
    }

    #[test]
    fn every_slot_line_is_the_canonical_form(
        // Small values and powers of ten too: that is where padding or a lost zero shows.
        slot in prop_oneof![
            any::<u32>(),
            0u32..1_000,
            (0u32..10).prop_map(|exp| 10u32.pow(exp)),
            (1u32..10).prop_map(|exp| 10u32.pow(exp) - 1),
            Just(u32::MAX),
        ],
    ) {
        // Decimal, no sign, no padding, no leading zero but `0` itself, then CR LF.
        let line = SlotLine::new(slot);
        let expected = format!("{slot}\r\n");
        prop_assert_eq!(line.as_bytes(), expected.as_bytes());
    }

    #[test]
    fn one_byte_per_read_works(slot in any::<u32>()) {
        let mut decoder = Decoder::new();
        let line = SlotLine::new(slot);
        let (last, head) = line.as_bytes().split_last().unwrap();
        for byte in head {
            prop_assert_eq!(decoder.feed(&[*byte]), Ok(Decoded::NeedMore));
        }
        prop_assert_eq!(decoder.feed(&[*last]), Ok(Decoded::Slot { slot, consumed: 1 }));
    }

    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_agree_with_the_grammar(
        stream in proptest::collection::vec(line_byte(), 0..16),
        cuts in proptest::collection::vec(0usize..16, 0..6),
    ) {
        check_decoder(&stream, &cuts);
    }

    #[test]
    fn leading_zero_runs_around_ten_digits_agree_with_the_grammar(
        zeros in 0usize..12,
        slot in any::<u32>(),
        ending in prop_oneof![Just(&b"\r\n"[..]), Just(&b"\r"[..]), Just(&b""[..]), Just(&b"\n"[..])],
        cuts in proptest::collection::vec(0usize..16, 0..4),
    ) {
        let mut stream = vec![b'0'; zeros];
        stream.extend_from_slice(slot.to_string().as_bytes());
        stream.extend_from_slice(ending);
        check_decoder(&stream, &cuts);
    }

    #[test]
    fn fully_random_bytes_never_panic_and_agree(
        stream in proptest::collection::vec(any::<u8>(), 0..64),
        cuts in proptest::collection::vec(0usize..64, 0..8),
    ) {
        check_decoder(&stream, &cuts);
    }
}

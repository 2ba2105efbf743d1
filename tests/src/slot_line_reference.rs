//! A plain reading of the slot-line grammar (PROTOCOL.md section 1), and the check that the
//! incremental decoder agrees with it however the bytes are cut into reads.
//!
//! The reference looks at the whole stream at once (count the leading digits, then look at
//! what follows them), a different shape from the decoder's byte-at-a-time state machine, so
//! a mistake would have to be made twice in two different ways to go unnoticed.

use callosum_proto::{DecodeError, Decoded, Decoder};

/// What the grammar says about a stream of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A complete line naming `slot`, `len` bytes long; the rest belongs to the application.
    Line {
        /// The slot.
        slot: u32,
        /// Bytes of the line, CR LF included.
        len: usize,
    },
    /// A bad line.
    Error(DecodeError),
    /// A good start of a line that needs more bytes.
    Incomplete,
}

/// The verdict of the grammar on `stream`; `ended` says whether the stream ends there.
pub fn reference_verdict(stream: &[u8], ended: bool) -> Verdict {
    let digits = stream
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    let value = stream[..digits.min(10)]
        .iter()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    if digits >= 10 && value > u64::from(u32::MAX) {
        return Verdict::Error(DecodeError::Overflow { offset: 9 });
    }
    if digits > 10 {
        return Verdict::Error(DecodeError::TooLong);
    }
    let eof = |received| {
        if ended {
            Verdict::Error(DecodeError::UnexpectedEof { received })
        } else {
            Verdict::Incomplete
        }
    };
    match stream.get(digits) {
        None => eof(digits),
        Some(b'\n') => Verdict::Error(DecodeError::LfWithoutCr { offset: digits }),
        Some(b'\r') => match stream.get(digits + 1) {
            None => eof(digits + 1),
            Some(b'\n') if digits == 0 => Verdict::Error(DecodeError::Empty),
            Some(b'\n') => Verdict::Line {
                slot: u32::try_from(value).expect("checked above"),
                len: digits + 2,
            },
            Some(&byte) => Verdict::Error(DecodeError::CrWithoutLf {
                byte,
                offset: digits + 1,
            }),
        },
        Some(&byte) => Verdict::Error(DecodeError::InvalidByte {
            byte,
            offset: digits,
        }),
    }
}

/// Feeds `stream` to a [`Decoder`] in the chunks that `cuts` marks (positions, any order,
/// out-of-range ones ignored) and panics unless the decoder agrees with the reference:
/// the same slot or error, no byte consumed past the line, no byte dropped, and an error
/// (or a finished line) that stays what it is on every later call.
pub fn check_decoder(stream: &[u8], cuts: &[usize]) {
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c <= stream.len())
        .collect();
    bounds.push(0);
    bounds.push(stream.len());
    bounds.sort_unstable();
    bounds.dedup();

    let mut decoder = Decoder::new();
    let mut consumed = 0;
    let mut outcome = None;
    for pair in bounds.windows(2) {
        let chunk = &stream[pair[0]..pair[1]];
        match decoder.feed(chunk) {
            Ok(Decoded::NeedMore) => {
                assert!(
                    outcome.is_none(),
                    "decoder asked for more after it finished"
                );
                consumed += chunk.len();
            }
            Ok(Decoded::Slot { slot, consumed: n }) => {
                assert!(
                    n <= chunk.len(),
                    "consumed {n} of a {}-byte read",
                    chunk.len()
                );
                match outcome {
                    None => {
                        consumed += n;
                        outcome = Some(Ok(slot));
                    }
                    Some(earlier) => {
                        assert_eq!(Some(Ok(slot)), Some(earlier), "finished line changed");
                        assert_eq!(n, 0, "consumed bytes after the line was complete");
                    }
                }
            }
            Err(error) => {
                if let Some(earlier) = outcome {
                    assert_eq!(earlier, Err(error), "an error did not stay the same error");
                }
                outcome = Some(Err(error));
            }
        }
    }

    match reference_verdict(stream, true) {
        Verdict::Line { slot, len } => {
            assert_eq!(outcome, Some(Ok(slot)), "stream {stream:?}");
            assert_eq!(consumed, len, "line length for {stream:?}");
            assert_eq!(decoder.finish(), Ok(slot));
        }
        Verdict::Error(error) => {
            assert_eq!(decoder.finish(), Err(error), "stream {stream:?}");
            if let Some(seen) = outcome {
                assert_eq!(seen, Err(error), "stream {stream:?}");
            }
        }
        Verdict::Incomplete => unreachable!("an ended stream is never incomplete"),
    }
    // Whatever the decoder concluded, later input does not change it.
    match outcome {
        Some(Ok(slot)) => assert_eq!(
            decoder.feed(b"1\r\n"),
            Ok(Decoded::Slot { slot, consumed: 0 })
        ),
        Some(Err(error)) => assert_eq!(decoder.feed(b"1\r\n"), Err(error)),
        None => {}
    }
}

/// Splits fuzz input into a stream and cut points: the first byte says how many cut
/// points follow (one byte each), the rest is the stream.
pub fn stream_and_cuts_from_bytes(bytes: &[u8]) -> (&[u8], Vec<usize>) {
    let Some((&count, rest)) = bytes.split_first() else {
        return (bytes, Vec::new());
    };
    let count = usize::from(count % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(count);
    (stream, cuts.iter().map(|&cut| usize::from(cut)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_reads_the_examples_of_the_protocol() {
        assert_eq!(
            reference_verdict(b"13\r\n", true),
            Verdict::Line { slot: 13, len: 4 }
        );
        assert_eq!(
            reference_verdict(b"0\r\nxyz", true),
            Verdict::Line { slot: 0, len: 3 }
        );
        assert_eq!(reference_verdict(b"1", false), Verdict::Incomplete);
        assert_eq!(
            reference_verdict(b"00000000001\r\n", true),
            Verdict::Error(DecodeError::TooLong)
        );
    }
}

//! The slot line: the first and only bytes the protocol puts on a connection.
//!
//! ```text
//! slot-line = 1*10DIGIT CR LF        ; decimal ASCII, 0 ..= 4294967295
//! ```
//!
//! The server writes the canonical form ([`SlotLine`]) in one write call. The client reads it
//! with a [`Decoder`] that accepts the line split at any byte boundary, never consumes a byte
//! past the LF (what follows belongs to the application), keeps a state of a few bytes
//! whatever the peer sends, and names each kind of bad line in a [`DecodeError`].

use core::fmt;

/// The longest slot line: ten digits, CR and LF.
pub const MAX_LINE_LEN: usize = 12;

/// The most digits a line may carry (`u32::MAX` has ten).
const MAX_DIGITS: u8 = 10;

/// The canonical slot line for one slot, ready to be written in a single call.
///
/// ```
/// use callosum_proto::SlotLine;
///
/// assert_eq!(SlotLine::new(13).as_bytes(), b"13\r\n");
/// assert_eq!(SlotLine::new(0).as_bytes(), b"0\r\n");
/// assert_eq!(SlotLine::new(u32::MAX).as_bytes(), b"4294967295\r\n");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotLine {
    bytes: [u8; MAX_LINE_LEN],
    len: u8,
}

impl SlotLine {
    /// Encodes `slot` as its canonical line.
    ///
    /// ```
    /// # use callosum_proto::SlotLine;
    /// let line = SlotLine::new(7);
    /// assert_eq!(line.as_bytes(), b"7\r\n");
    /// ```
    pub fn new(slot: u32) -> SlotLine {
        let mut bytes = [0; MAX_LINE_LEN];
        let len = encode_into(slot, &mut bytes).expect("MAX_LINE_LEN fits every u32");
        SlotLine {
            bytes,
            len: len as u8,
        }
    }

    /// The bytes to write, CR LF included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for SlotLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = &self.as_bytes()[..usize::from(self.len) - 2];
        let text = core::str::from_utf8(digits).map_err(|_| fmt::Error)?;
        write!(f, "SlotLine({text:?}\\r\\n)")
    }
}

/// The caller's buffer was too small for the line; nothing was written.
///
/// ```
/// use callosum_proto::slot_line::{encode_into, BufferTooSmall};
///
/// let mut buf = [0u8; 3];
/// assert_eq!(encode_into(100, &mut buf), Err(BufferTooSmall { needed: 5, available: 3 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the line needs.
    pub needed: usize,
    /// Bytes the buffer had.
    pub available: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slot line needs {} bytes but the buffer holds {}",
            self.needed, self.available
        )
    }
}

impl core::error::Error for BufferTooSmall {}

/// Writes the canonical line for `slot` at the start of `out` and returns its length.
///
/// ```
/// use callosum_proto::slot_line::encode_into;
///
/// let mut buf = [0u8; 16];
/// let len = encode_into(13, &mut buf).unwrap();
/// assert_eq!(&buf[..len], &[0x31, 0x33, 0x0d, 0x0a]);
/// ```
pub fn encode_into(slot: u32, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut digits = [0u8; MAX_DIGITS as usize];
    let mut start = digits.len();
    let mut rest = slot;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let needed = digits.len() + 2;
    let Some(out) = out.get_mut(..needed) else {
        return Err(BufferTooSmall {
            needed,
            available: out.len(),
        });
    };
    out[..digits.len()].copy_from_slice(digits);
    out[digits.len()..].copy_from_slice(b"\r\n");
    Ok(needed)
}

/// Why a slot line was rejected. Offsets count from the first byte of the line.
///
/// ```
/// use callosum_proto::{slot_line::decode, DecodeError};
///
/// assert_eq!(decode(b"-1\r\n"), Err(DecodeError::InvalidByte { byte: b'-', offset: 0 }));
/// assert_eq!(decode(b"\r\n"), Err(DecodeError::Empty));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// CR LF with no digit before it.
    Empty,
    /// A byte that is neither a digit nor CR/LF where a digit or the CR was due.
    InvalidByte {
        /// The byte received.
        byte: u8,
        /// Its position in the line.
        offset: usize,
    },
    /// CR followed by something other than LF.
    CrWithoutLf {
        /// The byte that followed the CR.
        byte: u8,
        /// Its position in the line.
        offset: usize,
    },
    /// LF with no CR before it.
    LfWithoutCr {
        /// Position of the LF in the line.
        offset: usize,
    },
    /// An eleventh digit: no valid line is that long.
    TooLong,
    /// The digits so far already name a value above `u32::MAX`.
    Overflow {
        /// Position of the digit that overflowed.
        offset: usize,
    },
    /// The stream ended before the line was complete.
    UnexpectedEof {
        /// Bytes of the line received before the end.
        received: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Empty => f.write_str("empty slot line (CR LF with no digits)"),
            DecodeError::InvalidByte { byte, offset } => {
                write!(
                    f,
                    "invalid byte {byte:#04x} at offset {offset} of the slot line"
                )
            }
            DecodeError::CrWithoutLf { byte, offset } => write!(
                f,
                "CR not followed by LF in the slot line (byte {byte:#04x} at offset {offset})"
            ),
            DecodeError::LfWithoutCr { offset } => {
                write!(f, "LF without CR at offset {offset} of the slot line")
            }
            DecodeError::TooLong => f.write_str("slot line has more than 10 digits"),
            DecodeError::Overflow { offset } => write!(
                f,
                "slot number exceeds 4294967295 at offset {offset} of the slot line"
            ),
            DecodeError::UnexpectedEof { received } => write!(
                f,
                "stream ended after {received} bytes, before the slot line was complete"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// What one call to [`Decoder::feed`] found.
///
/// ```
/// use callosum_proto::{Decoded, Decoder};
///
/// let mut decoder = Decoder::new();
/// assert_eq!(decoder.feed(b"1"), Ok(Decoded::NeedMore));
/// assert_eq!(decoder.feed(b"3\r\nhello"), Ok(Decoded::Slot { slot: 13, consumed: 3 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decoded {
    /// Every byte given was part of the line, and the line is not complete yet.
    NeedMore,
    /// The line is complete. `consumed` bytes of this input belonged to it; the rest belong
    /// to the application and must be handed on unchanged.
    Slot {
        /// The slot the server assigned.
        slot: u32,
        /// Bytes of this call's input that were part of the line.
        consumed: usize,
    },
}

/// Where the decoder stands in the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading digits (possibly none yet).
    Digits,
    /// Saw CR after at least one digit; the LF is due.
    SawCr,
    /// Saw CR before any digit; the line is empty whatever comes next.
    SawCrEmpty,
    /// The line is complete.
    Done,
    /// The line was rejected; the error is repeated on every later call.
    Failed(DecodeError),
}

/// An incremental slot-line decoder whose state is a few bytes whatever the peer sends.
///
/// Feed it each read as it arrives; call [`Decoder::finish`] when the stream ends.
///
/// ```
/// use callosum_proto::{Decoded, Decoder, DecodeError};
///
/// // One byte per read works.
/// let mut decoder = Decoder::new();
/// for byte in b"42\r" {
///     assert_eq!(decoder.feed(&[*byte]), Ok(Decoded::NeedMore));
/// }
/// assert_eq!(decoder.feed(b"\n"), Ok(Decoded::Slot { slot: 42, consumed: 1 }));
///
/// // A stream that ends early is an error, not a hang.
/// let mut decoder = Decoder::new();
/// assert_eq!(decoder.feed(b"4"), Ok(Decoded::NeedMore));
/// assert_eq!(decoder.finish(), Err(DecodeError::UnexpectedEof { received: 1 }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoder {
    state: State,
    value: u32,
    digits: u8,
    /// Bytes of the line consumed so far (at most [`MAX_LINE_LEN`]).
    received: u8,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder at the start of a line.
    pub const fn new() -> Decoder {
        Decoder {
            state: State::Digits,
            value: 0,
            digits: 0,
            received: 0,
        }
    }

    /// Consumes bytes of `input` up to the end of the line, and no further.
    ///
    /// After the line is complete every call returns the same slot with `consumed: 0`;
    /// after an error every call returns the same error.
    ///
    /// ```
    /// # use callosum_proto::{Decoded, Decoder, DecodeError};
    /// let mut decoder = Decoder::new();
    /// assert_eq!(decoder.feed(b"7x"), Err(DecodeError::InvalidByte { byte: b'x', offset: 1 }));
    /// assert_eq!(decoder.feed(b"\r\n"), Err(DecodeError::InvalidByte { byte: b'x', offset: 1 }));
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> Result<Decoded, DecodeError> {
        let digits = if self.state == State::Digits {
            self.digit_run(input)
        } else {
            0
        };
        // The common case, the whole line in one read: its end without a step per byte.
        if self.state == State::Digits
            && self.digits > 0
            && input.get(digits..digits + 2) == Some(b"\r\n")
        {
            self.received += 2;
            self.state = State::Done;
            return Ok(Decoded::Slot {
                slot: self.value,
                consumed: digits + 2,
            });
        }
        for (index, &byte) in input.iter().enumerate().skip(digits) {
            match self.state {
                State::Done => {
                    return Ok(Decoded::Slot {
                        slot: self.value,
                        consumed: index,
                    });
                }
                State::Failed(error) => return Err(error),
                State::Digits | State::SawCr | State::SawCrEmpty => self.step(byte),
            }
        }
        match self.state {
            State::Done => Ok(Decoded::Slot {
                slot: self.value,
                consumed: input.len(),
            }),
            State::Failed(error) => Err(error),
            State::Digits | State::SawCr | State::SawCrEmpty => Ok(Decoded::NeedMore),
        }
    }

    /// The stream ended: the slot if the line was complete, else why not.
    ///
    /// ```
    /// # use callosum_proto::{Decoded, Decoder, DecodeError};
    /// let mut decoder = Decoder::new();
    /// assert_eq!(decoder.finish(), Err(DecodeError::UnexpectedEof { received: 0 }));
    /// let _ = decoder.feed(b"9\r\n");
    /// assert_eq!(decoder.finish(), Ok(9));
    /// ```
    pub fn finish(&self) -> Result<u32, DecodeError> {
        match self.state {
            State::Done => Ok(self.value),
            State::Failed(error) => Err(error),
            State::Digits | State::SawCr | State::SawCrEmpty => Err(DecodeError::UnexpectedEof {
                received: usize::from(self.received),
            }),
        }
    }

    /// Whether the line is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many bytes of the line it has taken so far. A reader that asks for at most
    /// `MAX_LINE_LEN - received()` more bytes never reads past the longest possible line.
    pub fn received(&self) -> usize {
        usize::from(self.received)
    }

    /// Takes the digits at the start of `input` in a tight loop, the value kept in a local:
    /// the common case of a line that arrives whole. Stops at the first byte that is not a
    /// digit, and before a digit that [`Decoder::step`] must turn into an error (an 11th
    /// digit, or one that overflows), leaving those to it. Returns how many bytes it took.
    fn digit_run(&mut self, input: &[u8]) -> usize {
        let room = usize::from(MAX_DIGITS - self.digits);
        // One pass over at most ten digits, accumulated in a u64 (no overflow possible), with
        // one range check at the end; only an out-of-range value walks the digits again to
        // stop before the one that overflows.
        let mut value = u64::from(self.value);
        let mut taken = 0;
        for &byte in input.iter().take(room) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value * 10 + u64::from(digit);
            taken += 1;
        }
        let Ok(value) = u32::try_from(value) else {
            return self.digit_run_to_overflow(&input[..taken]);
        };
        self.value = value;
        // At most ten digits (`room`).
        self.digits += taken as u8;
        self.received += taken as u8;
        taken
    }

    /// Takes the leading `digits` that keep the value within a u32 and stops before the one
    /// that does not, for [`Decoder::step`] to report.
    fn digit_run_to_overflow(&mut self, digits: &[u8]) -> usize {
        let mut taken = 0;
        for &byte in digits {
            let next = u64::from(self.value) * 10 + u64::from(byte - b'0');
            let Ok(fits) = u32::try_from(next) else {
                break;
            };
            self.value = fits;
            taken += 1;
        }
        // At most ten digits.
        self.digits += taken as u8;
        self.received += taken as u8;
        taken
    }

    /// Advances by one byte of the line; only called before the line ends.
    fn step(&mut self, byte: u8) {
        let offset = usize::from(self.received);
        self.received += 1;
        self.state = match (self.state, byte) {
            (State::Digits, b'0'..=b'9') => self.push_digit(byte - b'0', offset),
            (State::Digits, b'\r') if self.digits == 0 => State::SawCrEmpty,
            (State::Digits, b'\r') => State::SawCr,
            (State::Digits, b'\n') => State::Failed(DecodeError::LfWithoutCr { offset }),
            (State::Digits, _) => State::Failed(DecodeError::InvalidByte { byte, offset }),
            (State::SawCr, b'\n') => State::Done,
            (State::SawCrEmpty, b'\n') => State::Failed(DecodeError::Empty),
            (State::SawCr | State::SawCrEmpty, _) => {
                State::Failed(DecodeError::CrWithoutLf { byte, offset })
            }
            (State::Done | State::Failed(_), _) => self.state,
        };
    }

    fn push_digit(&mut self, digit: u8, offset: usize) -> State {
        if self.digits == MAX_DIGITS {
            return State::Failed(DecodeError::TooLong);
        }
        self.digits += 1;
        match self
            .value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(digit)))
        {
            Some(value) => {
                self.value = value;
                State::Digits
            }
            None => State::Failed(DecodeError::Overflow { offset }),
        }
    }
}

/// Decodes a whole line from one buffer: the slot and the bytes the line took.
///
/// An input that stops before the line ends is [`DecodeError::UnexpectedEof`].
///
/// ```
/// use callosum_proto::slot_line::decode;
///
/// assert_eq!(decode(b"007\r\nrest"), Ok((7, 5)));
/// ```
pub fn decode(input: &[u8]) -> Result<(u32, usize), DecodeError> {
    let mut decoder = Decoder::new();
    match decoder.feed(input)? {
        Decoded::Slot { slot, consumed } => Ok((slot, consumed)),
        // Every byte was part of an unfinished line: the input ended too early.
        Decoded::NeedMore => Err(DecodeError::UnexpectedEof {
            received: input.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_canonical_form() {
        assert_eq!(SlotLine::new(13).as_bytes(), [0x31, 0x33, 0x0d, 0x0a]);
        assert_eq!(SlotLine::new(0).as_bytes(), [0x30, 0x0d, 0x0a]);
        assert_eq!(SlotLine::new(10).as_bytes(), b"10\r\n");
        assert_eq!(SlotLine::new(u32::MAX).as_bytes(), b"4294967295\r\n");
    }

    #[test]
    fn encode_into_refuses_a_short_buffer_and_writes_nothing() {
        let mut buf = [0xAAu8; 4];
        assert_eq!(
            encode_into(12345, &mut buf),
            Err(BufferTooSmall {
                needed: 7,
                available: 4
            })
        );
        assert_eq!(buf, [0xAA; 4]);
    }

    #[test]
    fn decodes_whole_lines() {
        assert_eq!(decode(b"0\r\n"), Ok((0, 3)));
        assert_eq!(decode(b"13\r\n"), Ok((13, 4)));
        assert_eq!(decode(b"4294967295\r\n"), Ok((u32::MAX, 12)));
    }

    #[test]
    fn accepts_leading_zeros_up_to_ten_digits() {
        assert_eq!(decode(b"007\r\n"), Ok((7, 5)));
        assert_eq!(decode(b"0000000000\r\n"), Ok((0, 12)));
    }

    #[test]
    fn stops_at_the_lf_and_reports_what_it_consumed() {
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.feed(b"5\r\nGET /"),
            Ok(Decoded::Slot {
                slot: 5,
                consumed: 3
            })
        );
        assert_eq!(
            decoder.feed(b"more"),
            Ok(Decoded::Slot {
                slot: 5,
                consumed: 0
            })
        );
    }

    #[test]
    fn accepts_every_split_point() {
        let line = b"4294967295\r\n";
        for split in 0..=line.len() {
            let mut decoder = Decoder::new();
            let (head, tail) = line.split_at(split);
            let first = decoder.feed(head).unwrap();
            if split == line.len() {
                assert_eq!(
                    first,
                    Decoded::Slot {
                        slot: u32::MAX,
                        consumed: split
                    }
                );
            } else {
                assert_eq!(first, Decoded::NeedMore);
                assert_eq!(
                    decoder.feed(tail),
                    Ok(Decoded::Slot {
                        slot: u32::MAX,
                        consumed: tail.len()
                    })
                );
            }
        }
    }

    #[test]
    fn rejects_an_empty_line() {
        assert_eq!(decode(b"\r\n"), Err(DecodeError::Empty));
    }

    #[test]
    fn rejects_non_digits_with_their_value_and_offset() {
        let cases: [(&[u8], u8, usize); 7] = [
            (b"-1\r\n", b'-', 0),
            (b"+1\r\n", b'+', 0),
            (b" 1\r\n", b' ', 0),
            (b"1\t\r\n", b'\t', 1),
            (b"1.5\r\n", b'.', 1),
            (b"0x1\r\n", b'x', 1),
            ("1\u{e9}\r\n".as_bytes(), 0xC3, 1),
        ];
        for (line, byte, offset) in cases {
            assert_eq!(
                decode(line),
                Err(DecodeError::InvalidByte { byte, offset }),
                "{line:?}"
            );
        }
    }

    #[test]
    fn rejects_cr_without_lf() {
        assert_eq!(
            decode(b"12\rx"),
            Err(DecodeError::CrWithoutLf {
                byte: b'x',
                offset: 3
            })
        );
        assert_eq!(
            decode(b"1\r\r\n"),
            Err(DecodeError::CrWithoutLf {
                byte: b'\r',
                offset: 2
            })
        );
        assert_eq!(
            decode(b"\r1"),
            Err(DecodeError::CrWithoutLf {
                byte: b'1',
                offset: 1
            })
        );
    }

    #[test]
    fn rejects_lf_without_cr() {
        assert_eq!(decode(b"12\n"), Err(DecodeError::LfWithoutCr { offset: 2 }));
        assert_eq!(decode(b"\n"), Err(DecodeError::LfWithoutCr { offset: 0 }));
    }

    #[test]
    fn rejects_an_eleventh_digit() {
        assert_eq!(decode(b"00000000001\r\n"), Err(DecodeError::TooLong));
    }

    #[test]
    fn rejects_values_above_u32_max() {
        assert_eq!(
            decode(b"4294967296\r\n"),
            Err(DecodeError::Overflow { offset: 9 })
        );
        assert_eq!(
            decode(b"9999999999\r\n"),
            Err(DecodeError::Overflow { offset: 9 })
        );
    }

    #[test]
    fn rejects_the_end_of_stream_before_the_line() {
        assert_eq!(decode(b""), Err(DecodeError::UnexpectedEof { received: 0 }));
        assert_eq!(
            decode(b"12\r"),
            Err(DecodeError::UnexpectedEof { received: 3 })
        );
    }

    #[test]
    fn an_error_stays_an_error() {
        let mut decoder = Decoder::new();
        let error = decoder.feed(b"1\n").unwrap_err();
        assert_eq!(decoder.feed(b"\r\n"), Err(error));
        assert_eq!(decoder.finish(), Err(error));
    }

    #[test]
    fn garbage_is_rejected_within_twelve_bytes() {
        let mut decoder = Decoder::new();
        let garbage = [b'9'; 1 << 20];
        assert!(decoder.feed(&garbage).is_err());
        assert!(usize::from(decoder.received) <= MAX_LINE_LEN);
    }

    #[test]
    fn errors_say_what_was_wrong() {
        extern crate std;
        use std::string::ToString;
        let text = DecodeError::InvalidByte {
            byte: b'-',
            offset: 0,
        }
        .to_string();
        assert_eq!(text, "invalid byte 0x2d at offset 0 of the slot line");
    }
}

//! The `mio-client` example's output: one line per event, with repeats of the same line held
//! back (a client whose one server backs off would print `no servers to try` ten times a
//! second). The crate's tests (`tests/example_client.rs`) check this very code.
//!
//! The rule, the same in every adapter's example client:
//!
//! - a line that differs from the one before is printed at once;
//! - the same line again is printed at most once per [`INTERVAL`] (when it comes at least
//!   that long after it was last printed), and otherwise only counted;
//! - when a different line comes, and at exit, the count of the occurrences not printed, if
//!   any, is printed first as `{line} (repeated {n} times)`.
//!
//! So every event is either printed or counted in exactly one note.

use std::io::{self, Write};
use std::time::{Duration, Instant};

/// The shortest time between two printings of the same line.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The last line printed, and how often it came since without being printed.
#[derive(Debug, Default)]
pub struct Repeats {
    last: Option<(String, Instant)>,
    held_back: u64,
}

impl Repeats {
    /// Prints `line`, which came at `now`, to `out`, or counts it (see the module docs).
    pub fn line(&mut self, line: &str, now: Instant, out: &mut impl Write) -> io::Result<()> {
        if let Some((last, printed_at)) = &mut self.last
            && last == line
        {
            if now.saturating_duration_since(*printed_at) < INTERVAL {
                self.held_back += 1;
                return Ok(());
            }
            *printed_at = now;
            return writeln!(out, "{line}");
        }
        self.finish(out)?;
        self.last = Some((line.to_owned(), now));
        writeln!(out, "{line}")
    }

    /// Prints the note of the occurrences held back, if any: call it before exiting.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        let held_back = std::mem::take(&mut self.held_back);
        match &self.last {
            Some((last, _)) if held_back > 0 => {
                writeln!(out, "{last} (repeated {held_back} times)")
            }
            _ => Ok(()),
        }
    }
}

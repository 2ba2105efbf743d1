//! The `mio-client` example's output rule, compiled from its file
//! (`examples/shared/repeats.rs`): repeated lines held back and counted. (The `mio-server`
//! example's service is tested with the other adapters' example servers, in `callosum-tests`:
//! `tests/tests/example_servers/mio.rs`.)

#[path = "../examples/shared/repeats.rs"]
mod repeats;

use std::time::{Duration, Instant};

use repeats::{INTERVAL, Repeats};

/// Feeds `lines` at the given offsets from one start, then exits; returns what was printed.
fn printed(lines: &[(u64, &str)]) -> Vec<String> {
    let start = Instant::now();
    let mut repeats = Repeats::default();
    let mut out = Vec::new();
    for &(ms, line) in lines {
        let at = start + Duration::from_millis(ms);
        repeats.line(line, at, &mut out).unwrap();
    }
    repeats.finish(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn different_lines_are_all_printed() {
    assert_eq!(
        printed(&[(0, "kept slot 0 from A"), (1, "kept slot 1 from A")]),
        ["kept slot 0 from A", "kept slot 1 from A"]
    );
}

#[test]
fn a_line_repeated_within_a_second_is_counted_and_noted_when_another_comes() {
    assert_eq!(
        printed(&[
            (0, "no servers to try"),
            (100, "no servers to try"),
            (200, "no servers to try"),
            (300, "kept slot 0 from A"),
        ]),
        [
            "no servers to try",
            "no servers to try (repeated 2 times)",
            "kept slot 0 from A",
        ]
    );
}

#[test]
fn a_line_repeated_for_seconds_is_printed_once_a_second_and_every_occurrence_counted() {
    // Ten a second for 2.5 s: printed at 0, 1 and 2 s; the 22 others are in the note, at exit.
    let lines: Vec<(u64, &str)> = (0..25).map(|i| (i * 100, "no servers to try")).collect();
    assert_eq!(
        printed(&lines),
        [
            "no servers to try",
            "no servers to try",
            "no servers to try",
            "no servers to try (repeated 22 times)",
        ]
    );
    assert_eq!(INTERVAL, Duration::from_secs(1));
}

#[test]
fn a_line_that_comes_back_after_another_is_printed_again() {
    assert_eq!(
        printed(&[(0, "a"), (1, "b"), (2, "a"), (3, "a")]),
        ["a", "b", "a", "a (repeated 1 times)"]
    );
}

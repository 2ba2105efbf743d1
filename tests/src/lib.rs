//! Reference models of PROTOCOL.md and the checking code that compares them with the real
//! state machines of `callosum-proto`.
//!
//! The property tests in `tests/` and the fuzz targets in `fuzz/` both call this code, so one
//! model decides what "correct" means for both. A check panics with a message naming the
//! broken rule; proptest and libFuzzer both report a panic as a failure.
//!
//! With the `adapters` feature (on by default; the fuzz crate turns it off), [`conformance`]
//! is the harness of the conformance suite run against every adapter, and [`loopback`]
//! holds the servers that the benchmark programs in `src/bin/` measure. On Linux, it also
//! gives [`memory`], the harness of the example servers' memory tests.

pub mod allocator_model;
pub mod client_check;
#[cfg(feature = "adapters")]
pub mod conformance;
#[cfg(feature = "adapters")]
pub mod loopback;
#[cfg(all(feature = "adapters", target_os = "linux"))]
pub mod memory;
pub mod pool_model;
pub mod rover_check;
pub mod slot_line_reference;

/// The README's code blocks, compiled and run as doctests so that they stay true: this crate
/// depends on every adapter, so each block finds its own.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

//! The adapters' example line servers, compiled from the examples' own files, against
//! clients that misbehave: each one's memory stays bounded with a line that never ends, with
//! a client that never reads its replies, and with 10,000 idle connections; and each serves
//! lines as its example promises. One module an adapter: [`smol`] (`examples/shared/lines.rs`,
//! which `smol-server` and `smol-cluster` run), [`tokio`] (the same for `tokio-server` and
//! `tokio-cluster`) and [`mio`] (`examples/shared/echo.rs`, which `mio-server` runs).
//!
//! Linux only: the harness is `callosum_tests::memory`. Every test of this binary holds its
//! lock ([`memory::serial`]), one test at a time; each test that measures memory runs in a
//! process of its own ([`memory::isolated`]), which no other test's allocations share; the
//! idle connections' client ends are held by another child process, this binary run again
//! for [`idle_connection_holder`]. The figures are printed (`--nocapture` shows them).
#![cfg(all(target_os = "linux", feature = "adapters"))]

use callosum_tests::memory;

mod mio;
mod smol;
mod threaded;
mod tokio;

/// The idle connections the idle tests open.
const IDLE: usize = 10_000;

/// The name of [`idle_connection_holder`] in this binary, for [`memory::IdleHolder::spawn`].
const HOLDER: &str = "idle_connection_holder";

/// Not a test of its own (run without the holder's environment, it returns at once): the
/// child process of each adapter's idle test, which holds the client ends of the idle
/// connections so that they cost the server's process nothing but its own ends.
#[test]
fn idle_connection_holder() {
    memory::hold_if_asked();
}

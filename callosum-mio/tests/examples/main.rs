//! The examples' own logic, compiled from their files: the `mio-server` line service
//! (`examples/shared/echo.rs`) against hostile clients, with its memory measured, and the
//! `mio-client` output rule (`examples/shared/repeats.rs`). Every wait is bounded by a
//! deadline, none is a fixed sleep.
#![cfg(target_os = "linux")]

#[path = "../../examples/shared/echo.rs"]
mod echo;
#[path = "../../examples/shared/repeats.rs"]
mod repeats;

mod client;
mod server;

//! Conformance of the mio adapter to PROTOCOL.md on loopback (127.0.0.1, port 0): every
//! wait is bounded by a deadline, none is a fixed sleep.

mod client;
mod harness;
mod server;

//! The mio adapter's own socket tests on loopback (127.0.0.1, port 0): tokens, the tables
//! of sockets, readiness, and what the adapter does with the core's outputs. The protocol's
//! conformance, across every adapter pair, is the workspace's `tests` crate. Every wait is
//! bounded by a deadline, none is a fixed sleep.

mod client;
mod harness;
mod server;

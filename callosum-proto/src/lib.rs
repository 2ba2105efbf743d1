//! The sans-IO core of Callosum, a self-balancing distributed services protocol.
//!
//! Every server numbers its connections with the lowest free *slot* and writes that number
//! as the first line on the connection. Every client keeps a pool of the lowest-numbered
//! connections it can find, lends its idle ones, and runs a *rover* that keeps sampling
//! random servers for better slots. Low numbers are scarce (each server has one slot 0), so
//! load spreads by itself. The specification is the repository's `docs/PROTOCOL.md`.
//!
//! This crate holds only the decisions: it takes bytes and timestamps and returns what to
//! do. It owns no socket, reads no clock and starts no thread, so one implementation serves
//! every runtime adapter and the deterministic simulation alike.
//!
//! This crate is `#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod adapter;
pub mod allocator;
#[cfg(feature = "alloc")]
pub mod client;
#[cfg(feature = "alloc")]
pub mod pool;
mod rng;
#[cfg(feature = "alloc")]
pub mod rover;
pub mod server;
mod server_id;
#[cfg(feature = "alloc")]
pub mod slab;
pub mod slot_line;
mod time;

#[cfg(feature = "alloc")]
pub use client::{ClientConfig, ClientCore};
#[cfg(feature = "alloc")]
pub use pool::{Lease, Offer, Pool, PoolConfig};
pub use rng::Rng;
#[cfg(feature = "alloc")]
pub use rover::{AttemptId, Rover, RoverConfig, RoverConfigError};
pub use server_id::ServerId;
pub use slot_line::{DecodeError, Decoded, Decoder, SlotLine};
pub use time::Instant;

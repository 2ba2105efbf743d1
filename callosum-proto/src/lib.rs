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
//! This crate is `#![no_std]`. Without features it offers the time and randomness types,
//! the slot-line codec, the fixed-capacity slot allocator and the server core. The `alloc`
//! feature (on by default) adds growable storage (the unbounded slot allocator, the
//! generation-checked [`slab`]), the pool, the rover and the client core. The `std` feature
//! adds `adapter`: what every adapter on `std` needs (the clock conversion, the reading
//! of I/O errors, what a lease's reads pass on, host-name lookups), written once.
//!
//! # Call order
//!
//! Every state machine here is driven the same way, and never reads a clock itself:
//!
//! 1. **Inputs**: tell it what happened as it happens, with `handle_*(…, now)` (`now` an
//!    [`Instant`] from the adapter's clock, never going back).
//! 2. **Outputs**: after every input, drain its outputs and act on each one.
//! 3. **Timers**: sleep until its next timeout (or the next input, whichever is first), then
//!    call `handle_timeout(now)` and go back to step 2.
//!
//! - **Server core** ([`server::ServerCore`]): [`server::ServerCore::handle_accept`] returns
//!   its decision directly ([`server::Accept`]: write this line, or close at once), and
//!   [`server::ServerCore::handle_closed`] is called exactly once when a connection ends.
//!   An accept error goes to [`server::ServerCore::handle_accept_error`], which returns when
//!   to accept again; that instant is also its `poll_timeout()`, after which the adapter calls
//!   `handle_timeout(now)` and accepts again. [`server::ServerCore::handle_drain`] starts a
//!   drain and returns its status (what to do with the connections, when to give up on them);
//!   the deadline is in its `poll_timeout()` too. No output queue.
//! - **Client core** ([`client::ClientCore`], with `alloc`): the rover, the pool, the servers
//!   and the leases in one machine with one output queue, drained with
//!   [`client::ClientCore::poll_output`] until it yields [`client::Output::Timeout`]. Its
//!   [module docs](client#call-order) detail the inputs, with an example. Adapters and the
//!   simulator drive this, never the pool or the rover on their own.
//! - **Pool** ([`pool::Pool`]) and **rover** ([`rover::Rover`]): the client core's parts,
//!   public for their own tests and models.
//!
//! ```
//! use callosum_proto::Instant;
//! use callosum_proto::server::{Accept, FixedServerCore};
//!
//! let mut server = FixedServerCore::<64>::new(None).unwrap();
//! // A connection was accepted: write the line in one call, or close at once.
//! let Accept::Assigned { conn, line } = server.handle_accept() else { panic!("full") };
//! assert_eq!(line.as_bytes(), b"0\r\n");
//! // ... whatever ends it later (FIN, RST, error), report it once:
//! assert_eq!(server.handle_closed(conn), Ok(0));
//! // accept() failed (EMFILE): do not accept again before `resume`.
//! let resume = server.handle_accept_error(Instant::from_millis(7));
//! assert_eq!(server.poll_timeout(), Some(resume));
//! server.handle_timeout(resume);
//! ```
#![no_std]
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

//! The sans-IO core of Callosum, a self-balancing distributed services protocol.
//!
//! Every server numbers its connections with the lowest free *slot* and writes that number
//! as the first line on the connection. Every client keeps a pool of the lowest-numbered
//! connections it can find, always uses its lowest idle one, and runs a *rover* that keeps
//! sampling random servers for better slots. Low numbers are scarce (each server has one
//! slot 0), so load spreads by itself. The contract is `PROTOCOL.md`.
//!
//! This crate holds only the decisions: it takes bytes and timestamps and returns what to
//! do. It owns no socket, reads no clock and starts no thread, so one implementation serves
//! every runtime adapter and the deterministic simulation alike.
//!
//! This crate is `#![no_std]`. Without features it offers the time and randomness types,
//! the slot-line codec, the fixed-capacity slot allocator and the server core. The `alloc`
//! feature (on by default) adds growable storage (the unbounded slot allocator, the
//! generation-checked [`slab`]), the pool and the rover.
//!
//! # Call order
//!
//! Every state machine here is driven the same way, and never reads a clock itself:
//!
//! 1. **Inputs**: tell it what happened as it happens, with `handle_*(…, now)` (`now` an
//!    [`Instant`] from the adapter's clock, never going back).
//! 2. **Outputs**: after every input, drain `poll_action()` and `poll_event()` until both
//!    are `None`, and act on each one.
//! 3. **Timers**: sleep until `poll_timeout()` (or the next input, whichever is first), then
//!    call `handle_timeout(now)` and go back to step 2.
//!
//! Each of the three uses the part of that pattern it needs:
//!
//! - **Server core** ([`server::ServerCore`]): [`server::ServerCore::handle_accept`] returns
//!   its decision directly ([`server::Accept`]: write this line, or close at once), and
//!   [`server::ServerCore::handle_closed`] is called exactly once when a connection ends.
//!   An accept error goes to [`server::ServerCore::handle_accept_error`], which returns when
//!   to accept again; that instant is also its `poll_timeout()`, after which the adapter calls
//!   `handle_timeout(now)` and accepts again. No action or event queue.
//! - **Pool** ([`pool::Pool`], with `alloc`): no time and no queue. Each operation
//!   (`offer`, `checkout`, `checkin`, `remove`) returns its outcome, and whatever connection
//!   it hands back must be closed. After any change to what the pool holds, tell the rover:
//!   `rover.set_demand(pool.wanted(), now)`.
//! - **Rover** ([`rover::Rover`], with `alloc`): the whole pattern; its
//!   [module docs](rover#call-order) detail the inputs. Each [`rover::Event::Connection`] is
//!   offered to the pool.
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
//!
//! A client joins a rover and a pool (the adapter's sockets are played by strings here):
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use callosum_proto::rover::{Action, Event};
//! use callosum_proto::{Instant, Offer, Pool, PoolConfig, Rover, RoverConfig, ServerId};
//!
//! let mut pool = Pool::new(PoolConfig { max_slots: 2 }, 1).unwrap();
//! let mut rover = Rover::new(RoverConfig::default(), 2).unwrap();
//! rover.add_server(ServerId(7));
//! let now = Instant::ZERO;
//! rover.set_demand(pool.wanted(), now);
//! rover.start(now);
//! // Step 2: act on the actions (this "socket" connects and reads its line at once) ...
//! while let Some(action) = rover.poll_action() {
//!     if let Action::Connect { attempt, .. } = action {
//!         rover.handle_connected(attempt, now).unwrap();
//!         assert_eq!(rover.handle_received(attempt, b"3\r\n", now), Ok(3));
//!     }
//! }
//! // ... and on the events: connections go to the pool.
//! while let Some(event) = rover.poll_event() {
//!     if let Event::Connection { server, slot, .. } = event {
//!         assert!(matches!(pool.offer(server, slot, "socket"), Offer::Kept(_)));
//!     }
//! }
//! rover.set_demand(pool.wanted(), now);
//! assert_eq!(pool.wanted(), 0);
//! // A request: check out the lowest idle connection, use it, check it in.
//! let lease = pool.checkout().unwrap();
//! assert!(pool.checkin(lease.id, lease.conn).is_ok());
//! // Step 3: the rover's next scheduled attempt, about one interval later.
//! assert!(rover.poll_timeout().is_some_and(|t| t > now));
//! # }
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

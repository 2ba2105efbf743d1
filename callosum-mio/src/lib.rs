//! Callosum on a `mio` event loop: a [`Server`] that numbers its connections, and a
//! [`Client`] whose rover finds low-numbered connections for its pool, as components of
//! *your* loop. They register with your [`mio::Registry`] under tokens you reserve for
//! them ([`TokenRange`]), take your events, and tell you when they next need to be woken.
//! For a program without a loop of its own, [`run`] is a small one.
//!
//! Every protocol decision (slots, the slot line, which connection to keep, evict or lend,
//! when to rove where) is made by [`callosum_proto`], the sans-IO core; this crate does the
//! socket I/O, the clock and the plumbing. The protocol is described in the workspace's
//! `PROTOCOL.md`.
//!
//! # Call order
//!
//! 1. Make the components ([`Server::bind`], [`Client::new`]), then `register` each with
//!    your registry and a [`TokenRange`] of its own; `add_server` and `start` the client.
//! 2. Poll with the timeout [`timeout_until`] computes from every component's
//!    `poll_timeout` (and your own deadlines).
//! 3. Give each `mio` event to the component whose `handles(token)` is true, with
//!    `handle_event`. Then call every component's `handle_timeout` (it acts only on what is
//!    due).
//! 4. After every input, drain `poll_event` until `None`, and act on the events: read a
//!    [`ServerEvent::Readable`] connection until `WouldBlock`, log the client's outcomes,
//!    and so on. Events queue up, so none is lost when several arrive in one poll.
//! 5. Go back to 2. Calls you make in between (a `checkout`, a `close`) may queue events
//!    too: drain again before polling.
//!
//! ```
//! use callosum_mio::{Client, ClientConfig, ClientEvent, Server, ServerEvent, TokenRange};
//! use mio::{Events, Poll};
//! use std::io::{Read, Write};
//! use std::time::{Duration, Instant};
//!
//! let mut poll = Poll::new()?;
//! let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default())?;
//! server.register(poll.registry(), TokenRange::new(0..1_000))?;
//! let mut client = Client::new(ClientConfig::default(), 1)
//!     .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
//! client.add_server(server.local_addr()?);
//! client.register(poll.registry(), TokenRange::new(1_000..2_000))?;
//! client.start();
//!
//! let deadline = Instant::now() + Duration::from_secs(10);
//! let mut events = Events::with_capacity(128);
//! let mut lease = None;
//! let mut reply = Vec::new();
//! while reply != b"ping" && Instant::now() < deadline {
//!     let timeout = callosum_mio::timeout_until([
//!         server.poll_timeout(),
//!         client.poll_timeout(),
//!         Some(deadline),
//!     ]);
//!     poll.poll(&mut events, timeout)?;
//!     for event in &events {
//!         if server.handles(event.token()) {
//!             server.handle_event(event);
//!         } else if client.handles(event.token()) {
//!             client.handle_event(event);
//!         }
//!     }
//!     server.handle_timeout();
//!     client.handle_timeout();
//!     // An echo server.
//!     while let Some(event) = server.poll_event() {
//!         if let ServerEvent::Readable { conn } = event {
//!             let mut buf = [0u8; 256];
//!             while let Ok(n @ 1..) = server.read(conn, &mut buf) {
//!                 server.write(conn, &buf[..n])?;
//!             }
//!         }
//!     }
//!     // A client that sends one request on its lowest connection.
//!     while let Some(event) = client.poll_event() {
//!         if let ClientEvent::Readable { .. } = event {
//!             let conn = client.conn_mut(lease.as_ref().unwrap()).unwrap();
//!             let mut buf = [0u8; 256];
//!             while let Ok(n @ 1..) = conn.read(&mut buf) {
//!                 reply.extend_from_slice(&buf[..n]);
//!             }
//!         }
//!     }
//!     if lease.is_none() {
//!         if let Some(new) = client.checkout() {
//!             client.conn_mut(&new).unwrap().write_all(b"ping")?;
//!             lease = Some(new);
//!         }
//!     }
//! }
//! assert_eq!(reply, b"ping");
//! client.checkin(lease.unwrap());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Features
//!
//! - `log`: logs every event as it is drained with `poll_event`, with the `log` crate:
//!   readiness at trace level, accept errors at warn level, the rest at debug level.

mod client;
mod clock;
mod conn;
mod run;
mod server;
mod token;

pub use client::{
    Client, ClientConfig, ClientConfigError, ClientEvent, ClientStatus, Lease, LeaseId,
    RemoveCause, ServerHeld,
};
pub use conn::Conn;
pub use run::{Happened, Parts, run, timeout_until};
pub use server::{
    CloseCause, RefuseReason, Server, ServerConfig, ServerConnId, ServerEvent, ServerStatus,
};
pub use token::TokenRange;

pub use callosum_proto;
pub use callosum_proto::pool::{PoolStats, PoolStatus};
pub use callosum_proto::rover::{ConnectFailure, HandshakeFailure};
pub use callosum_proto::server::ServerStats;
pub use callosum_proto::{DecodeError, PoolConfig, RoverConfig, ServerId};

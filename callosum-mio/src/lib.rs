//! Callosum on a `mio` event loop: a [`Server`] that numbers its connections, and a
//! [`Client`] whose rover finds low-numbered connections for its pool, as components of
//! *your* loop. They register with your [`mio::Registry`] under tokens you reserve for
//! them ([`TokenRange`]), take your events, and tell you when they next need to be woken.
//! For a program without a loop of its own, [`run`] is a small one.
//!
//! Every protocol decision (slots, the slot line, which connection to keep, evict or lend,
//! when to rove where, what a connection's end means) is made by [`callosum_proto`], the
//! sans-IO core: the client drives its [`ClientCore`](callosum_proto::client::ClientCore),
//! the server its [`ServerCore`](callosum_proto::server::ServerCore). This crate does the
//! socket I/O, the clock and the plumbing, and speaks the core's words: [`ClientEvent`],
//! [`ClientStatus`], [`ServerStatus`] are the same in every adapter. The protocol is
//! specified in the repository's `docs/PROTOCOL.md`.
//!
//! # Call order
//!
//! 1. Make the components ([`Server::bind`], [`Client::new`]) and `register` each with your
//!    registry and a [`TokenRange`] of its own ([`Client::tokens_needed`] says how many the
//!    client needs). Add servers to the client ([`Client::add_server`]): the first one
//!    starts its rover.
//! 2. Poll with the timeout [`timeout_until`] computes from every component's
//!    `poll_timeout` (and your own deadlines).
//! 3. Give each `mio` event to the component whose `handles(token)` is true, with
//!    `handle_event`. Then call every component's `handle_timeout` (it acts only on what is
//!    due).
//! 4. After every input, drain until `None`: [`Server::poll_event`] (read a
//!    [`ServerEvent::Readable`] connection until `WouldBlock`, ...), [`Client::poll_event`]
//!    (what the rover and the pool did) and [`Client::poll_lease_ready`] (a connection you
//!    leased can be read or written). Events queue up, so none is lost when several
//!    arrive in one poll.
//! 5. Go back to 2. Calls you make in between (a `checkout`, a `checkin`, a `close`) may
//!    queue events too: drain again before polling.
//!
//! A client sends one request on one of its connections to an echo server, and reads the
//! reply:
//!
//! ```
//! use callosum_mio::{Client, ClientConfig, ClientEvent, Server, ServerConfig, ServerEvent};
//! use callosum_mio::{Lease, TokenRange};
//! use mio::{Events, Poll};
//! use std::io::{Read, Write};
//! use std::time::{Duration, Instant};
//!
//! let mut poll = Poll::new()?;
//! let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default())?;
//! server.register(poll.registry(), TokenRange::new(0..1_000))?;
//! let mut config = ClientConfig::default();
//! config.pool.max_slots = 4;
//! let mut client = Client::new(config).map_err(std::io::Error::other)?;
//! client.register(poll.registry(), TokenRange::new(1_000..2_000))?;
//! client.add_server(server.local_addr());
//!
//! let deadline = Instant::now() + Duration::from_secs(10);
//! let mut events = Events::with_capacity(128);
//! let mut lease: Option<Lease> = None;
//! let mut reply = Vec::new();
//! let mut log = Vec::new();
//! while reply != b"ping" {
//!     assert!(Instant::now() < deadline, "no reply in time");
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
//!     // What the rover and the pool did, in the words every adapter prints.
//!     while let Some(event) = client.poll_event() {
//!         log.push(event.to_string());
//!     }
//!     // The reply, when the leased connection has bytes to read.
//!     while let Some(ready) = client.poll_lease_ready() {
//!         if let Some(lease) = &lease
//!             && ready.lease == lease.id()
//!             && ready.readable
//!         {
//!             let conn = client.conn_mut(lease).unwrap();
//!             let mut buf = [0u8; 256];
//!             while let Ok(n @ 1..) = conn.read(&mut buf) {
//!                 reply.extend_from_slice(&buf[..n]);
//!             }
//!         }
//!     }
//!     // One request, on an idle connection, once there is one.
//!     if lease.is_none() {
//!         if let Some(new) = client.checkout() {
//!             client.conn_mut(&new).unwrap().write_all(b"ping")?;
//!             lease = Some(new);
//!         }
//!     }
//! }
//! client.checkin(lease.unwrap());
//! assert!(log[0].starts_with("kept slot 0 from 127.0.0.1:"), "{log:?}");
//! assert_eq!(client.status().pool.leased, 0);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Leases
//!
//! A [`Lease`] from [`Client::checkout`] goes back to idle only when its holder says the
//! exchange finished: [`Client::checkin`], once the whole reply is read (and even then a
//! connection that ended, or has bytes nobody read, is closed instead). Found broken:
//! [`Client::checkin_broken`]. A lease that is simply dropped (an early return, a `?`, a
//! timeout of your own) is never lost: the client takes it back at its next call, to idle if
//! its connection was never asked for ([`Client::conn_mut`]), and otherwise closed and
//! reported as [`ClientEvent::Removed`] with [`RemoveCause::Interrupted`], since the reply
//! to an abandoned request may still come and must not reach the next caller.
//!
//! # Features
//!
//! - `log`: logs every event as it is drained with `poll_event`, with the `log` crate:
//!   readiness at trace level, accept errors at warn level, the rest at debug level.

mod client;
mod conn;
mod run;
mod server;
mod token;

pub use callosum_proto::client::{
    BadServerSpec, LeasePolicy, NameId, NameStatus, PoolSizing, ResolveFailure, ServerSpec,
};
pub use client::{Client, LOOKUP_POLL, Lease, LeaseReady, Resolve, SystemResolver};
pub use conn::Conn;
pub use run::{Happened, Parts, run, timeout_until};
pub use server::{CloseCause, Server, ServerConnId, ServerEvent};
pub use token::TokenRange;

pub use callosum_proto;
pub use callosum_proto::DecodeError;
pub use callosum_proto::adapter::{ServerError, is_closed_before_reply};
pub use callosum_proto::client::{
    ClientConfig, ClientConfigError, ClientEvent, ClientStats, ClientStatus, ClosedBeforeReply,
    Failure, LeaseId, RemoveCause, RemovedCounts, ServerConnections,
};
pub use callosum_proto::pool::{PoolConfig, PoolConfigError, PoolStats, PoolStatus};
pub use callosum_proto::rover::{ConnectFailure, HandshakeFailure, RoverConfig, RoverConfigError};
pub use callosum_proto::server::{
    DrainPhase, DrainReport, DrainStatus, ServerConfig, ServerStats, ServerStatus,
};

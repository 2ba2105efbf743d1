//! Callosum over real TCP sockets with async-io and futures-lite: the smol adapter.
//!
//! Every decision (which slot, which connection to keep, when to rove and where, what a
//! connection's end means, who is next in line for an idle connection) is taken by
//! `callosum-proto`'s server and client cores; this crate owns the sockets and the timers.
//! The types in its signatures come from the core and are re-exported here, so the words
//! (events, causes, status fields, settings) are the same in every adapter.
//!
//! - [`Server`]: listens, gives each connection the lowest free slot, writes the slot line in
//!   one write, and frees the slot when the connection ends.
//! - [`Client`]: a rover that keeps trying random servers and a pool that keeps the lowest
//!   slots found. [`Client::get`] lends an idle connection, or says why it could not
//!   ([`GetError`]: no servers, the driver not running, the client closed, or a timeout with
//!   the last connect or handshake failure).
//!
//! A lent connection goes back to the pool as idle only when its holder says the exchange
//! finished, with [`PooledConn::finish`]. A [`PooledConn`] dropped after a read or a write
//! without that call (a timeout, a `select!`, a task abort) is closed and removed as
//! [`RemoveCause::Interrupted`], so a late reply can never reach the next caller; one
//! dropped untouched goes back to idle; a broken one is closed.
//!
//! The client's background work runs in its [`Driver`], a future you spawn on the executor of
//! your choice; nothing is spawned behind your back.
//!
//! ```
//! use callosum_smol::{Client, ClientConfig, Server, ServerConfig};
//! use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
//!
//! smol::block_on(async {
//!     // A server that echoes one line per request (examples/smol-server.rs is one that is
//!     // safe against hostile clients: a cap on line length, backpressure, small buffers).
//!     let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?;
//!     let addr = server.local_addr();
//!     smol::spawn(async move {
//!         while let Ok(conn) = server.accept().await {
//!             smol::spawn(async move {
//!                 let (reader, mut writer) = futures_lite::io::split(conn);
//!                 let mut lines = BufReader::new(reader).lines();
//!                 while let Some(Ok(line)) = futures_lite::StreamExt::next(&mut lines).await {
//!                     if writer.write_all(format!("{line}\n").as_bytes()).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             })
//!             .detach();
//!         }
//!     })
//!     .detach();
//!
//!     // A client with that one server.
//!     let (client, driver) = Client::new(ClientConfig::default())?;
//!     smol::spawn(driver).detach();
//!     client.add_server(addr);
//!     let mut conn = client.get().await?;
//!     conn.write_all(b"hello\n").await?;
//!     let mut reply = String::new();
//!     BufReader::new(&mut conn).read_line(&mut reply).await?;
//!     assert_eq!(reply, "hello\n");
//!     conn.finish(); // the whole reply was read: the connection is idle again
//!     assert!(client.status().pool.idle >= 1);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! .unwrap();
//! ```

mod client;
mod server;

pub use callosum_proto;
pub use callosum_proto::DecodeError;
pub use callosum_proto::adapter::{Lookup, Resolve};
pub use callosum_proto::adapter::{ServerError, is_closed_before_reply};
pub use callosum_proto::allocator::SlotLimitError;
pub use callosum_proto::client::{
    BadServerSpec, LeasePolicy, NameId, NameStatus, PoolSizing, ResolveFailure, ServerSpec,
};
pub use callosum_proto::client::{
    ClientConfig, ClientConfigError, ClientEvent, ClientStats, ClientStatus, ClosedBeforeReply,
    Failure, GetError, RemoveCause, RemovedCounts, ServerConnections,
};
pub use callosum_proto::pool::{PoolConfig, PoolConfigError, PoolStats, PoolStatus};
pub use callosum_proto::rover::{ConnectFailure, HandshakeFailure, RoverConfig, RoverConfigError};
pub use callosum_proto::server::{
    DrainPhase, DrainReport, DrainStatus, ServerConfig, ServerStats, ServerStatus,
};
pub use client::{Client, Driver, PooledConn, SystemResolver};
pub use server::{Server, ServerConn, ShutDown};

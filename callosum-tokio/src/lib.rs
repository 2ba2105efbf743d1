//! Callosum on tokio's own reactor and timers: the tokio adapter.
//!
//! Every decision (which slot, which connection to keep, when to rove and where, what a
//! connection's end means, who is next in line for an idle connection) is taken by
//! `callosum-proto`'s server and client cores; this crate owns the sockets and the timers.
//! The types in its signatures come from the core and are re-exported here, so the words
//! (events, causes, status fields, settings, errors) are the same in every adapter.
//!
//! - [`Server`]: listens (IPv4 or IPv6), gives each connection the lowest free slot, writes
//!   the slot line in one write, and frees the slot when the connection ends. A
//!   [`ServerConn`] is tokio's `AsyncRead` and `AsyncWrite`.
//! - [`Client`]: a rover that keeps trying random servers and a pool that keeps the lowest
//!   slots found. [`Client::get`] lends an idle connection as a [`PooledConn`], also
//!   tokio's `AsyncRead` and `AsyncWrite`. [`PooledConn::finish`] says the exchange is
//!   complete; a guard dropped in the middle of one (a timeout, a cancelled task) is closed,
//!   never handed to the next caller with the rest of its reply.
//!
//! The client's background work runs in its [`Driver`], a future you spawn on a tokio
//! runtime (current-thread or multi-thread); it spawns one short task per connection attempt
//! there. Nothing else runs behind your back, and no other reactor or thread is started.
//!
//! ```
//! use callosum_tokio::{Client, ClientConfig, Server, ServerConfig};
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // A server that echoes one line per request.
//! let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?;
//! let addr = server.local_addr();
//! tokio::spawn(async move {
//!     while let Ok(conn) = server.accept().await {
//!         tokio::spawn(async move {
//!             let (reader, mut writer) = tokio::io::split(conn);
//!             let mut lines = BufReader::new(reader).lines();
//!             while let Ok(Some(line)) = lines.next_line().await {
//!                 if writer.write_all(format!("{line}\n").as_bytes()).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//!
//! // A client with that one server.
//! let (client, driver) = Client::new(ClientConfig::default())?;
//! tokio::spawn(driver);
//! client.add_server(addr);
//! let mut conn = client.get().await?;
//! conn.write_all(b"hello\n").await?;
//! let mut reply = String::new();
//! BufReader::new(&mut conn).read_line(&mut reply).await?;
//! assert_eq!(reply, "hello\n");
//! conn.finish(); // the whole reply was read: back to the pool
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod client;
mod server;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

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

/// Polls both futures, `first` first each time; the output of whichever finishes first.
async fn race<T>(first: impl Future<Output = T>, second: impl Future<Output = T>) -> T {
    let (mut first, mut second) = (pin!(first), pin!(second));
    poll_fn(|cx| match first.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(output),
        Poll::Pending => second.as_mut().poll(cx),
    })
    .await
}

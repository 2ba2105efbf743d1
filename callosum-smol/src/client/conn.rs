//! The guard a caller holds while using a pooled connection.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use async_io::Async;
use callosum_proto::adapter;
use callosum_proto::client::{Lease, LeaseId, LeaseUse, Returned};
use callosum_proto::slab::Key;
use futures_lite::{AsyncRead, AsyncWrite};

use super::state::{PooledStream, Shared};

/// The stream leaves a `PooledConn` only in `detach` and `finish`, which consume it, and in
/// `drop`.
const HELD_UNTIL_DETACHED: &str = "a PooledConn holds its stream until detached";

/// A connection lent by the pool: an idle one when it was taken.
///
/// It reads and writes like the stream (and derefs to it). **Call [`PooledConn::finish`] once
/// the exchange is over** (the whole reply was read): only then does the connection go back
/// to the pool as idle, for the next caller.
///
/// Dropping the guard instead is always safe, and decides by what the guard saw:
///
/// - **untouched** (no read, write, flush or close through it, and the stream never reached
///   through [`Deref`]): the connection goes back to idle, as nothing was said on it;
/// - **touched without `finish`** (a timeout, a `select!` or a task abort dropped it in the
///   middle of an exchange): a reply may still be on its way, so the connection is closed and
///   removed from the pool as [`RemoveCause::Interrupted`](crate::RemoveCause::Interrupted),
///   never handed to the next caller with someone else's reply in it;
/// - **broken** (a read saw the end of the stream or an error, a write failed, the write half
///   was closed, or [`PooledConn::mark_broken`] was called): it is closed and removed as
///   [`RemoveCause::Broken`](crate::RemoveCause::Broken), `finish` or not. If it ended
///   before any byte of a reply (a read or a write gave
///   [`ClosedBeforeReply`](crate::ClosedBeforeReply)), every other connection of its server
///   goes with it ([`RemoveCause::ServerClosing`](crate::RemoveCause::ServerClosing)), so
///   that a request sent again meets another server's connection or a newer one.
///
/// The guard cannot see what is done with the stream through [`Deref`] (`get_ref`,
/// `peek`, reads through `&Async<TcpStream>`), so reaching it that way counts as touching it.
/// [`PooledConn::detach`] takes the connection out of the pool for good.
///
/// ```no_run
/// use callosum_smol::{Client, ClientConfig};
/// use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
///
/// smol::block_on(async {
///     let (client, driver) = Client::new(ClientConfig::default()).unwrap();
///     smol::spawn(driver).detach();
///     client.add_server("127.0.0.1:7000".parse::<callosum_smol::ServerSpec>().unwrap());
///     let mut conn = client.get().await.unwrap();
///     conn.write_all(b"hello\n").await.unwrap();
///     let mut reply = String::new();
///     BufReader::new(&mut conn).read_line(&mut reply).await.unwrap();
///     println!("slot {} on {} said {reply}", conn.slot(), conn.server());
///     conn.finish(); // the whole reply was read: back to the pool, idle
/// });
/// ```
///
/// **A connection that ends before any byte of the reply** (the end of the stream, a reset or
/// a broken pipe, met by a read or a write before a read gave a byte) is not `Ok(0)`: it is
/// an error that [`is_closed_before_reply`](crate::is_closed_before_reply) recognises (kind
/// `ConnectionAborted`, inner error [`ClosedBeforeReply`](crate::ClosedBeforeReply)). Its
/// server closed it without answering, as a draining server does between two requests, so
/// an idempotent request can be sent again on another connection (the guard is broken, so
/// its connection is closed and never lent again). The end after some bytes of the reply is
/// passed on as it came: that reply is broken, and whether to send the request again is the
/// application's call.
///
/// ```no_run
/// use callosum_smol::{Client, is_closed_before_reply};
/// use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
///
/// /// One idempotent request, sent again if its connection closed before any reply byte.
/// async fn get_key(client: &Client) -> std::io::Result<String> {
///     match exchange(client).await {
///         Err(error) if is_closed_before_reply(&error) => exchange(client).await,
///         answered => answered,
///     }
/// }
///
/// async fn exchange(client: &Client) -> std::io::Result<String> {
///     let mut conn = client.get().await.map_err(std::io::Error::other)?;
///     conn.write_all(b"GET key\n").await?;
///     let mut reply = String::new();
///     BufReader::new(&mut conn).read_line(&mut reply).await?;
///     conn.finish();
///     Ok(reply)
/// }
/// ```
pub struct PooledConn {
    shared: Arc<Shared>,
    id: LeaseId,
    /// Its place in the client's table of sockets.
    key: Key,
    server: SocketAddr,
    slot: u32,
    /// `None` only once detached, finished or dropped.
    stream: Option<PooledStream>,
    /// The reads, writes and failures seen through the guard.
    used: LeaseUse,
    /// Whether the stream was reached through `Deref`, where the guard cannot see what is
    /// done with it (atomic, so that the guard stays `Sync`).
    reached: AtomicBool,
}

impl PooledConn {
    pub(crate) fn new(shared: Arc<Shared>, lease: Lease<Key>, stream: PooledStream) -> PooledConn {
        PooledConn {
            shared,
            id: lease.id,
            key: lease.conn,
            server: lease.server,
            slot: lease.slot,
            stream: Some(stream),
            used: LeaseUse::default(),
            reached: AtomicBool::new(false),
        }
    }

    /// The connection's slot on its server.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The server the connection goes to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Says the exchange on this connection finished (the whole reply was read) and returns
    /// it to the pool: idle for the next caller, unless it is broken (then it is closed).
    /// Without this call, a guard dropped after any read or write closes its connection.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # use futures_lite::{AsyncReadExt, AsyncWriteExt};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let mut conn = client.get().await.unwrap();
    /// conn.write_all(b"ping\n").await.unwrap();
    /// let mut reply = [0u8; 5];
    /// conn.read_exact(&mut reply).await.unwrap();
    /// conn.finish();
    /// # });
    /// ```
    pub fn finish(mut self) {
        self.give_back(true);
    }

    /// Says the exchange finished but the server's answer was a failure (an "unavailable"
    /// or an internal error, as the application judges it): the connection is closed and the
    /// server backs off in the rover, so that a server that fails fast, whose connections are
    /// idle most, does not draw more than its share
    /// ([`LeaseEnd::ServerFailed`](callosum_proto::client::LeaseEnd::ServerFailed)).
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # use futures_lite::{AsyncReadExt, AsyncWriteExt};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let mut conn = client.get().await.unwrap();
    /// conn.write_all(b"ping\n").await.unwrap();
    /// let mut reply = [0u8; 5];
    /// conn.read_exact(&mut reply).await.unwrap();
    /// if &reply == b"fail\n" {
    ///     conn.finish_failed();
    /// } else {
    ///     conn.finish();
    /// }
    /// # });
    /// ```
    pub fn finish_failed(mut self) {
        self.used.mark_server_failed();
        self.give_back(true);
    }

    /// Says the connection is no good (a protocol error the application saw, say): it is
    /// closed and removed from the pool when the guard goes, [`PooledConn::finish`] or not.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let mut conn = client.get().await.unwrap();
    /// conn.mark_broken();
    /// assert!(conn.is_broken());
    /// # });
    /// ```
    pub fn mark_broken(&mut self) {
        self.used.mark_broken();
    }

    /// Whether the connection will be closed rather than kept: it was marked broken, or one
    /// of its reads or writes failed.
    pub fn is_broken(&self) -> bool {
        self.used.is_broken()
    }

    /// Takes the connection out of the pool for good (its place is freed at once) and
    /// returns the stream, which is now the caller's alone.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let conn = client.get().await.unwrap();
    /// let stream = conn.detach();
    /// println!("still connected to {}", stream.get_ref().peer_addr().unwrap());
    /// # });
    /// ```
    pub fn detach(mut self) -> Async<TcpStream> {
        let stream = self.stream.take().expect(HELD_UNTIL_DETACHED);
        let (id, key) = (self.id, self.key);
        let detached = self.shared.input(|state, now| {
            state.forget(key);
            state.core.detach(id, now)
        });
        if let Err(error) = detached {
            // Unreachable through this crate's API, which holds each lease once.
            log::error!("callosum client: {error}");
        }
        stream
    }

    /// Returns the lease to the core, `finished` when the holder said the exchange finished;
    /// the core keeps it idle or closes it by [`LeaseUse::end`]'s rule.
    fn give_back(&mut self, finished: bool) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let mut used = self.used;
        if self.reached.load(Ordering::Relaxed) {
            used.record_io();
        }
        let (id, key, end) = (self.id, self.key, used.end(finished));
        self.shared.input(|state, now| {
            // Back in its place first: the check-in may close it.
            state.put_back(key, stream);
            match state.core.checkin(id, key, end, now) {
                Ok(Returned::Idle(pooled)) => state.watch(key, pooled, now),
                Ok(Returned::Closed) => {}
                // Unreachable through this crate's API; the core closed the stream.
                Err(error) => log::error!("callosum client: {error}"),
            }
        });
    }

    /// The stream for a read or a write through the guard, which records it.
    fn stream_for_io(&mut self) -> Pin<&mut PooledStream> {
        self.used.record_io();
        Pin::new(self.stream.as_mut().expect(HELD_UNTIL_DETACHED))
    }
}

/// The stream itself, for its methods (`get_ref`, `readable`, `peek`, ...). The guard cannot
/// see what is done through it, so reaching the stream this way counts as using the
/// connection: dropped without [`PooledConn::finish`], it is closed. Reads and writes
/// through this do not mark the connection broken when they fail.
impl Deref for PooledConn {
    type Target = Async<TcpStream>;

    fn deref(&self) -> &Async<TcpStream> {
        self.reached.store(true, Ordering::Relaxed);
        self.stream.as_ref().expect(HELD_UNTIL_DETACHED)
    }
}

impl fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("server", &self.server)
            .field("slot", &self.slot)
            .field("used", &self.used)
            .finish()
    }
}

/// Returns the connection as the guard saw it: idle if untouched, closed as interrupted if
/// touched (no [`PooledConn::finish`] came), closed as broken if broken.
impl Drop for PooledConn {
    fn drop(&mut self) {
        self.give_back(false);
    }
}

impl AsyncRead for PooledConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let result = ready!(self.stream_for_io().poll_read(cx, buf));
        Poll::Ready(adapter::lease_read(&mut self.used, !buf.is_empty(), result))
    }
}

impl AsyncWrite for PooledConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = ready!(self.stream_for_io().poll_write(cx, buf));
        Poll::Ready(adapter::lease_write(&mut self.used, result))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = ready!(self.stream_for_io().poll_flush(cx));
        Poll::Ready(adapter::lease_write(&mut self.used, result))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing the write half means the connection cannot be reused.
        self.used.mark_broken();
        self.stream_for_io().poll_close(cx)
    }
}

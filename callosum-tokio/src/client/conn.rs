//! The guard a caller holds while using a pooled connection.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use callosum_proto::adapter;
use callosum_proto::client::{Lease, LeaseId, LeaseUse, Returned};
use callosum_proto::slab::Key;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::state::Shared;

/// The stream leaves a `PooledConn` only when it is finished, detached or dropped, each of
/// which consumes it.
const HELD: &str = "a PooledConn holds its stream until it is finished, detached or dropped";

/// A connection lent by the pool: an idle one when it was taken. Tokio's
/// [`AsyncRead`] and [`AsyncWrite`] over the socket, and [`Deref`] to the [`TcpStream`].
///
/// When the exchange is complete (the whole reply read), say so with
/// [`PooledConn::finish`]: the connection goes back to the pool for the next caller.
/// Dropping the guard instead is always safe, and decides by what the guard saw:
///
/// - **untouched** (no read, write, flush or shutdown through it, and the stream never
///   reached through [`Deref`]): the connection goes back to idle, as nothing was said on it;
/// - **touched without `finish`** (`tokio::time::timeout`, a `select!` or an aborted task
///   dropped it in the middle of an exchange): a reply may still be on its way, so the
///   connection is closed and removed from the pool as
///   [`RemoveCause::Interrupted`](crate::RemoveCause::Interrupted), never handed to the next
///   caller with someone else's reply in it;
/// - **broken** (a read saw the end of the stream or an error, a write failed, the write half
///   was shut down, or [`PooledConn::mark_broken`] was called): it is closed and removed as
///   [`RemoveCause::Broken`](crate::RemoveCause::Broken), `finish` or not. If it ended
///   before any byte of a reply (a read or a write gave
///   [`ClosedBeforeReply`](crate::ClosedBeforeReply)), every other connection of its server
///   goes with it ([`RemoveCause::ServerClosing`](crate::RemoveCause::ServerClosing)), so
///   that a request sent again meets another server's connection or a newer one.
///
/// ```no_run
/// use callosum_tokio::{Client, ClientConfig};
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
///
/// # async fn request(client: &Client) -> Result<String, Box<dyn std::error::Error>> {
/// let mut conn = client.get().await?;
/// conn.write_all(b"hello\n").await?;
/// let mut reply = String::new();
/// BufReader::new(&mut conn).read_line(&mut reply).await?;
/// println!("slot {} on {} said {reply}", conn.slot(), conn.server());
/// conn.finish(); // back to the pool
/// # Ok(reply)
/// # }
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
/// use callosum_tokio::{Client, is_closed_before_reply};
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    key: Key,
    server: SocketAddr,
    slot: u32,
    /// `None` only once finished, detached or dropped.
    stream: Option<TcpStream>,
    /// The reads, writes and failures seen through the guard.
    used: LeaseUse,
    /// Whether the stream was reached through `Deref`, where the guard cannot see what is
    /// done with it (atomic, so that the guard stays `Sync`).
    reached: AtomicBool,
}

impl PooledConn {
    pub(crate) fn new(shared: Arc<Shared>, lease: Lease<Key>, stream: TcpStream) -> PooledConn {
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

    /// Says the connection is no good (a protocol error the application saw, say): it is
    /// closed and removed from the pool when the guard goes, finished or not.
    ///
    /// ```no_run
    /// # async fn broken(client: &callosum_tokio::Client) {
    /// let mut conn = client.get().await.unwrap();
    /// conn.mark_broken();
    /// assert!(conn.is_broken());
    /// # }
    /// ```
    pub fn mark_broken(&mut self) {
        self.used.mark_broken();
    }

    /// Whether the connection will be closed rather than kept: it was marked broken, or one
    /// of its reads or writes failed.
    pub fn is_broken(&self) -> bool {
        self.used.is_broken()
    }

    /// The exchange is complete: the connection goes back to the pool for the next caller
    /// (unless it is broken). Call it once the whole reply was read; a guard dropped
    /// without it after a read or a write is closed instead.
    ///
    /// ```no_run
    /// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// # async fn exchange(client: &callosum_tokio::Client) -> std::io::Result<()> {
    /// let mut conn = client.get().await.unwrap();
    /// conn.write_all(b"ping\n").await?;
    /// let mut reply = [0u8; 5];
    /// conn.read_exact(&mut reply).await?;
    /// conn.finish();
    /// # Ok(())
    /// # }
    /// ```
    pub fn finish(mut self) {
        self.give_back(true);
    }

    /// The exchange is complete but the server's answer was a failure (an "unavailable" or
    /// an internal error, as the application judges it): the connection is closed and the
    /// server backs off in the rover, so that a server that fails fast, whose connections are
    /// idle most, does not draw more than its share
    /// ([`LeaseEnd::ServerFailed`](callosum_proto::client::LeaseEnd::ServerFailed)).
    ///
    /// ```no_run
    /// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// # async fn exchange(client: &callosum_tokio::Client) -> std::io::Result<()> {
    /// let mut conn = client.get().await.unwrap();
    /// conn.write_all(b"ping\n").await?;
    /// let mut reply = [0u8; 5];
    /// conn.read_exact(&mut reply).await?;
    /// if &reply == b"fail\n" {
    ///     conn.finish_failed();
    /// } else {
    ///     conn.finish();
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn finish_failed(mut self) {
        self.used.mark_server_failed();
        self.give_back(true);
    }

    /// Takes the connection out of the pool for good (its place is freed at once) and
    /// returns the stream, which is now the caller's alone.
    ///
    /// ```no_run
    /// # async fn detach(client: &callosum_tokio::Client) {
    /// let conn = client.get().await.unwrap();
    /// let stream = conn.detach();
    /// println!("still connected to {}", stream.peer_addr().unwrap());
    /// # }
    /// ```
    pub fn detach(mut self) -> TcpStream {
        let stream = self.stream.take().expect(HELD);
        let (id, key) = (self.id, self.key);
        let detached = self.shared.input(|state, now| {
            drop(state.conns.remove(key));
            state.core.detach(id, now)
        });
        if let Err(error) = detached {
            // Unreachable through this crate's API, which holds each lease once.
            log::error!("callosum client: {error}");
        }
        stream
    }

    /// Checks the lease in, ended as its use says.
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

    fn stream_mut(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect(HELD)
    }
}

/// The stream itself, for its methods (`peer_addr`, `set_nodelay`, `readable`, `try_read`,
/// ...). What is done through it is not seen by the guard, so a guard whose stream was
/// reached this way counts as touched: dropped without [`PooledConn::finish`], it is closed.
impl Deref for PooledConn {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        self.reached.store(true, Ordering::Relaxed);
        self.stream.as_ref().expect(HELD)
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

impl Drop for PooledConn {
    fn drop(&mut self) {
        self.give_back(false);
    }
}

impl AsyncRead for PooledConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.used.record_io();
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let result = ready!(Pin::new(self.stream_mut()).poll_read(cx, buf));
        let bytes = result.map(|()| buf.filled().len() - before);
        Poll::Ready(adapter::lease_read(&mut self.used, room, bytes).map(drop))
    }
}

impl AsyncWrite for PooledConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.used.record_io();
        let result = ready!(Pin::new(self.stream_mut()).poll_write(cx, buf));
        Poll::Ready(adapter::lease_write(&mut self.used, result))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.used.record_io();
        let result = ready!(Pin::new(self.stream_mut()).poll_write_vectored(cx, bufs));
        Poll::Ready(adapter::lease_write(&mut self.used, result))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|stream| stream.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.used.record_io();
        let result = ready!(Pin::new(self.stream_mut()).poll_flush(cx));
        Poll::Ready(adapter::lease_write(&mut self.used, result))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing the write half means the connection cannot be reused.
        self.used.record_io();
        self.used.mark_broken();
        Pin::new(self.stream_mut()).poll_shutdown(cx)
    }
}

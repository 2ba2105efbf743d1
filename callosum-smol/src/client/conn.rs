//! The guard a caller holds while using a pooled connection.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;
use callosum_proto::pool::{Checkin, Lease, PooledId as ConnId, Removed};
use futures_lite::{AsyncRead, AsyncWrite};

use super::state::{PooledStream, Shared};
use super::{ClientEvent, RemoveCause};

/// The stream leaves a `PooledConn` only in `detach`, which consumes it, and in `drop`.
const HELD_UNTIL_DETACHED: &str = "a PooledConn holds its stream until detached";

/// A connection lent by the pool: the lowest idle slot when it was taken.
///
/// It derefs to the stream, and reads and writes like it; bytes the server sent right after
/// its slot line come first. Dropping it returns the connection to the pool. A connection that failed (a read
/// saw the end of the stream or an error, a write failed) is not returned but closed, and
/// [`PooledConn::mark_broken`] does the same for a failure only the application can see.
/// [`PooledConn::detach`] takes the connection out of the pool for good.
///
/// ```no_run
/// use callosum_smol::{Client, ClientConfig};
/// use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
///
/// smol::block_on(async {
///     let (client, driver) = Client::new(ClientConfig::default()).unwrap();
///     smol::spawn(driver).detach();
///     client.add_server("127.0.0.1:7000".parse().unwrap());
///     let mut conn = client.get().await.unwrap();
///     conn.write_all(b"hello\n").await.unwrap();
///     let mut reply = String::new();
///     BufReader::new(&mut conn).read_line(&mut reply).await.unwrap();
///     println!("slot {} on {} said {reply}", conn.slot(), conn.server());
/// }); // `conn` goes back to the pool here
/// ```
pub struct PooledConn {
    shared: Arc<Shared>,
    id: ConnId,
    slot: u32,
    /// `None` only once detached.
    conn: Option<PooledStream>,
    broken: bool,
}

impl PooledConn {
    pub(crate) fn new(shared: Arc<Shared>, lease: Lease<PooledStream>) -> PooledConn {
        PooledConn {
            shared,
            id: lease.id,
            slot: lease.slot,
            conn: Some(lease.conn),
            broken: false,
        }
    }

    /// The connection's slot on its server.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let conn = client.get().await.unwrap();
    /// println!("using slot {}", conn.slot());
    /// # });
    /// ```
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The server the connection goes to.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let conn = client.get().await.unwrap();
    /// println!("talking to {}", conn.server());
    /// # });
    /// ```
    pub fn server(&self) -> SocketAddr {
        self.pooled().server
    }

    /// The underlying socket, for options and addresses.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let conn = client.get().await.unwrap();
    /// println!("local address {}", conn.get_ref().local_addr().unwrap());
    /// # });
    /// ```
    pub fn get_ref(&self) -> &TcpStream {
        self.pooled().stream.get_ref()
    }

    /// Says the connection is no good (a protocol error the application saw, say): on drop
    /// it is closed and removed from the pool instead of being returned.
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
        self.broken = true;
    }

    /// Whether the connection will be closed rather than returned on drop.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let conn = client.get().await.unwrap();
    /// assert!(!conn.is_broken());
    /// # });
    /// ```
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Takes the connection out of the pool for good (its place is freed at once) and
    /// returns the stream with any bytes that came after the slot line and were not read.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// let conn = client.get().await.unwrap();
    /// let (stream, unread) = conn.detach();
    /// // `stream` is now the caller's alone; `unread` comes before anything read from it.
    /// # drop((stream, unread));
    /// # });
    /// ```
    pub fn detach(mut self) -> (Async<TcpStream>, Vec<u8>) {
        let conn = self.conn.take().expect(HELD_UNTIL_DETACHED);
        let mut state = self.shared.lock();
        // Removing a lease frees its place; the stream is already ours.
        let _ = state.pool.remove(self.id);
        self.shared.settle(&mut state, None);
        (conn.stream, conn.leftover)
    }

    fn pooled(&self) -> &PooledStream {
        self.conn.as_ref().expect(HELD_UNTIL_DETACHED)
    }

    fn pooled_mut(&mut self) -> &mut PooledStream {
        self.conn.as_mut().expect(HELD_UNTIL_DETACHED)
    }

    /// Reads and writes go through here: a failure means the connection is done.
    fn note(&mut self, failed: bool) {
        if failed {
            self.broken = true;
        }
    }
}

/// The stream itself, for its methods (`get_ref`, `readable`, `peek`, ...). Read through the
/// guard rather than through this, or bytes that came with the slot line would be skipped.
impl Deref for PooledConn {
    type Target = Async<TcpStream>;

    fn deref(&self) -> &Async<TcpStream> {
        &self.pooled().stream
    }
}

impl fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("server", &self.conn.as_ref().map(|conn| conn.server))
            .field("slot", &self.slot)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let server = conn.server;
        let mut state = self.shared.lock();
        // Bytes that came with the slot line and were never read would reach the next
        // caller as the start of its answer: the exchange is out of step, so the connection
        // goes. After the client was dropped, nothing would watch it while idle: it goes too.
        let cause = if self.broken {
            Some(RemoveCause::Broken)
        } else if !conn.leftover.is_empty() {
            Some(RemoveCause::UnsolicitedData)
        } else if state.closed {
            Some(RemoveCause::ClientClosed)
        } else {
            None
        };
        match cause {
            Some(cause) => {
                // The stream is dropped (closed) at the end of this function.
                if let Ok(Removed::Leased { .. }) = state.pool.remove(self.id) {
                    let event = ClientEvent::Removed {
                        server,
                        slot: self.slot,
                        cause,
                    };
                    state.push_event(event, self.shared.events_capacity);
                    self.shared.event_queued.notify(usize::MAX);
                }
            }
            None => match state.pool.checkin(self.id, conn) {
                Ok(Checkin::Idle(_)) => {
                    self.shared.idle_available.notify(usize::MAX);
                    state.wake_watcher();
                }
                // Evicted while leased, or its server was removed: dropping it closes it.
                Ok(Checkin::Close(_)) => {}
                Err(error) => log::error!("callosum client: {error}"),
            },
        }
        self.shared.settle(&mut state, None);
    }
}

impl AsyncRead for PooledConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let conn = this.pooled_mut();
        if !conn.leftover.is_empty() {
            let n = buf.len().min(conn.leftover.len());
            buf[..n].copy_from_slice(&conn.leftover[..n]);
            conn.leftover.drain(..n);
            return Poll::Ready(Ok(n));
        }
        let result = Pin::new(&mut conn.stream).poll_read(cx, buf);
        let failed = match &result {
            Poll::Ready(Ok(0)) => !buf.is_empty(),
            Poll::Ready(Err(error)) => error.kind() != io::ErrorKind::Interrupted,
            _ => false,
        };
        this.note(failed);
        result
    }
}

impl AsyncWrite for PooledConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let conn = this.pooled_mut();
        let result = Pin::new(&mut conn.stream).poll_write(cx, buf);
        let failed =
            matches!(&result, Poll::Ready(Err(e)) if e.kind() != io::ErrorKind::Interrupted);
        this.note(failed);
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = self.pooled_mut();
        Pin::new(&mut conn.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing the write half means the connection cannot be reused.
        self.broken = true;
        let conn = self.pooled_mut();
        Pin::new(&mut conn.stream).poll_close(cx)
    }
}

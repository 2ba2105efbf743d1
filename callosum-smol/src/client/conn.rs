//! The guard a caller holds while using a pooled connection.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;
use callosum_proto::client::{Lease, LeaseEnd, LeaseId};
use futures_lite::{AsyncRead, AsyncWrite};

use super::state::{PooledStream, Shared};

/// The stream leaves a `PooledConn` only in `detach`, which consumes it, and in `drop`.
const HELD_UNTIL_DETACHED: &str = "a PooledConn holds its stream until detached";

/// A connection lent by the pool: the lowest idle slot when it was taken.
///
/// It derefs to the stream, and reads and writes like it. Dropping it returns the connection
/// to the pool. A connection that failed (a read saw the end of the stream or an error, a
/// write failed) is returned broken and closed, and [`PooledConn::mark_broken`] does the same
/// for a failure only the application can see. [`PooledConn::detach`] takes the connection
/// out of the pool for good.
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
    id: LeaseId,
    server: SocketAddr,
    slot: u32,
    /// `None` only once detached or dropped.
    stream: Option<PooledStream>,
    broken: bool,
}

impl PooledConn {
    pub(crate) fn new(shared: Arc<Shared>, lease: Lease<PooledStream>) -> PooledConn {
        PooledConn {
            shared,
            id: lease.id,
            server: lease.server,
            slot: lease.slot,
            stream: Some(lease.conn),
            broken: false,
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

    /// Says the connection is no good (a protocol error the application saw, say): on drop
    /// it is returned broken, so it is closed and removed from the pool.
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

    /// Whether the connection will be closed rather than kept on drop: it was marked broken,
    /// or one of its reads or writes failed.
    pub fn is_broken(&self) -> bool {
        self.broken
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
        let id = self.id;
        if let Err(error) = self.shared.input(|state, now| state.core.detach(id, now)) {
            // Unreachable through this crate's API, which holds each lease once.
            log::error!("callosum client: {error}");
        }
        stream
    }

    fn stream(&self) -> &PooledStream {
        self.stream.as_ref().expect(HELD_UNTIL_DETACHED)
    }

    fn stream_mut(&mut self) -> &mut PooledStream {
        self.stream.as_mut().expect(HELD_UNTIL_DETACHED)
    }
}

/// The stream itself, for its methods (`get_ref`, `readable`, `peek`, ...). Reads and writes
/// through the guard mark the connection broken when they fail; through this, they do not.
impl Deref for PooledConn {
    type Target = Async<TcpStream>;

    fn deref(&self) -> &Async<TcpStream> {
        self.stream()
    }
}

impl fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("server", &self.server)
            .field("slot", &self.slot)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let end = if self.broken {
            LeaseEnd::Broken
        } else {
            LeaseEnd::Finished
        };
        let id = self.id;
        let returned = self
            .shared
            .input(|state, now| state.core.checkin(id, stream, end, now));
        if let Err(error) = returned {
            // Unreachable through this crate's API; the core closed the stream.
            log::error!("callosum client: {error}");
        }
    }
}

impl AsyncRead for PooledConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(self.stream_mut()).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(0)) if !buf.is_empty() => self.broken = true,
            Poll::Ready(Err(error)) if error.kind() != io::ErrorKind::Interrupted => {
                self.broken = true;
            }
            _ => {}
        }
        result
    }
}

impl AsyncWrite for PooledConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(self.stream_mut()).poll_write(cx, buf);
        if let Poll::Ready(Err(error)) = &result
            && error.kind() != io::ErrorKind::Interrupted
        {
            self.broken = true;
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream_mut()).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing the write half means the connection cannot be reused.
        self.broken = true;
        Pin::new(self.stream_mut()).poll_close(cx)
    }
}

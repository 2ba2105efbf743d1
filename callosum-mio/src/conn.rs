//! [`Conn`]: one TCP connection as the application sees it, with the bytes the protocol
//! still owes it in either direction.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

/// A connection handed to the application: a server's accepted connection or a pool's
/// connection. Read and write it through this type (it implements [`Read`] and [`Write`]),
/// never through the raw stream, because it keeps what the protocol still owes:
///
/// - on a client, the bytes that followed the slot line in the same read come first out of
///   [`Read::read`], before anything new from the socket ([`Conn::buffered`] shows them);
/// - on a server, the rest of a slot line that the socket did not take at once is written
///   before any byte of the application's; until then [`Write::write`] answers
///   [`io::ErrorKind::WouldBlock`] and a writable event follows.
///
/// Like any non-blocking socket, read until `WouldBlock` after each readable event: `mio`
/// reports readiness changes only.
///
/// ```no_run
/// use std::io::{Read, Write};
/// # fn demo(client: &mut callosum_mio::Client, lease: &callosum_mio::Lease) -> std::io::Result<()> {
/// let conn = client.conn_mut(lease).expect("a lease of this client");
/// conn.write_all(b"PING\n")?;
/// let mut reply = [0u8; 64];
/// let n = conn.read(&mut reply)?;
/// # let _ = n; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    /// Bytes for the application to read before the socket's.
    inbound: Vec<u8>,
    /// How many of `inbound` it has read.
    inbound_read: usize,
    /// Bytes to write before the application's.
    outbound: Vec<u8>,
    /// Set when a read saw the end of the stream or an I/O error failed the connection.
    ended: Option<Ended>,
}

/// How a connection was found to have ended, by a read or a write through [`Conn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A read returned 0: the peer closed its side.
    PeerClosed,
    /// An I/O error other than `WouldBlock` or `Interrupted`.
    Failed(io::ErrorKind),
}

impl Conn {
    /// A connection whose application reads start with `inbound` and whose application
    /// writes follow `outbound`.
    pub(crate) fn new(stream: TcpStream, inbound: Vec<u8>, outbound: Vec<u8>) -> Conn {
        Conn {
            stream,
            inbound,
            inbound_read: 0,
            outbound,
            ended: None,
        }
    }

    /// The underlying stream, for socket options and addresses. Do not read or write it
    /// directly: see the type's docs.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client, lease: &callosum_mio::Lease) -> std::io::Result<()> {
    /// client.conn_mut(lease).unwrap().stream().set_nodelay(true)?;
    /// # Ok(()) }
    /// ```
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The peer's address.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client, lease: &callosum_mio::Lease) -> std::io::Result<()> {
    /// println!("talking to {}", client.conn_mut(lease).unwrap().peer_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Bytes already received and not yet read by the application: on a pool's connection,
    /// what followed the slot line in the same read. [`Read::read`] returns them first.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client, lease: &callosum_mio::Lease) {
    /// let early = client.conn_mut(lease).unwrap().buffered().len();
    /// # let _ = early; }
    /// ```
    pub fn buffered(&self) -> &[u8] {
        &self.inbound[self.inbound_read..]
    }

    /// Whether a read or write through this connection found its end.
    pub(crate) fn ended(&self) -> Option<Ended> {
        self.ended
    }

    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes what is left of the protocol's bytes. `Ok(true)` when none is left,
    /// `Ok(false)` when the socket would block (a writable event follows).
    pub(crate) fn flush_outbound(&mut self) -> io::Result<bool> {
        while !self.outbound.is_empty() {
            match self.stream.write(&self.outbound) {
                Ok(0) => return Err(self.fail(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    self.outbound.drain(..written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.fail(error)),
            }
        }
        Ok(true)
    }

    /// Reads once from the socket itself, to probe an idle connection.
    pub(crate) fn read_socket(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.stream.read(buf);
        self.note(result)
    }

    /// Records the end a result shows, and passes the result on.
    fn note(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Ok(0) => {
                self.ended.get_or_insert(Ended::PeerClosed);
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(error) if is_transient(&error) => Err(error),
            Err(error) => Err(self.fail(error)),
        }
    }

    fn fail(&mut self, error: io::Error) -> io::Error {
        self.ended.get_or_insert(Ended::Failed(error.kind()));
        error
    }
}

/// `WouldBlock` and `Interrupted` say nothing about the connection's health.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Read for Conn {
    /// The buffered bytes first, then the socket. A read of 0 bytes into a non-empty buffer
    /// means the peer closed its side.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(buf.len());
            buf[..n].copy_from_slice(&buffered[..n]);
            self.inbound_read += n;
            if self.inbound_read == self.inbound.len() {
                self.inbound = Vec::new();
                self.inbound_read = 0;
            }
            return Ok(n);
        }
        let result = self.stream.read(buf);
        self.note(result)
    }
}

impl Write for Conn {
    /// Writes after the protocol's pending bytes; `WouldBlock` while some are pending.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.flush_outbound()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = self.stream.write(buf);
        match result {
            Err(error) if !is_transient(&error) => Err(self.fail(error)),
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.flush_outbound()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.stream.flush()
    }
}

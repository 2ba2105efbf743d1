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
    /// what followed the slot line in the same read. [`Read::read`] returns them first. A
    /// lease checked in with some still unread is removed rather than lent again (they would
    /// reach the next lessee): see [`Client::checkin`](crate::Client::checkin).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A connected pair: a `Conn` on one end (with `outbound` pending) and a blocking
    /// std stream on the other.
    fn pair(outbound: &[u8]) -> (Conn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        near.set_nonblocking(true).unwrap();
        let conn = Conn::new(TcpStream::from_std(near), Vec::new(), outbound.to_vec());
        (conn, far)
    }

    #[test]
    fn pending_protocol_bytes_go_first_and_survive_a_full_socket() {
        let (mut conn, mut far) = pair(b"");
        // Fill the socket until it would block, as if the line could not be written.
        let filler = vec![b'.'; 64 * 1024];
        let mut sent = 0;
        loop {
            match conn.stream_mut().write(&filler) {
                Ok(n) => sent += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("{error}"),
            }
        }
        conn.outbound = b"42\r\n".to_vec();
        assert!(!conn.flush_outbound().unwrap());
        let blocked = conn.write(b"app").unwrap_err();
        assert_eq!(blocked.kind(), io::ErrorKind::WouldBlock);
        // The peer drains the filler; the line, then the application's bytes follow.
        let mut filler_read = vec![0u8; sent];
        far.read_exact(&mut filler_read).unwrap();
        // Wait for writability as a mio user would, bounded by a deadline.
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.registry()
            .register(conn.stream_mut(), mio::Token(0), mio::Interest::WRITABLE)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !conn.flush_outbound().unwrap() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the socket drained but the line was not written"
            );
            poll.poll(&mut events, Some(left)).unwrap();
        }
        conn.write_all(b"app").unwrap();
        let mut rest = [0u8; 7];
        far.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"42\r\napp");
    }

    #[test]
    fn buffered_bytes_are_read_before_the_socket_and_the_end_is_recorded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut far, _) = listener.accept().unwrap();
        let mut conn = Conn::new(TcpStream::from_std(near), b"early".to_vec(), Vec::new());
        far.write_all(b"late").unwrap();
        drop(far);
        let mut buf = [0u8; 3];
        assert_eq!(conn.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf, b"ear");
        assert_eq!(conn.buffered(), b"ly");
        assert_eq!(conn.read(&mut buf).unwrap(), 2);
        assert!(conn.buffered().is_empty());
        // The std stream was blocking: the socket's bytes, then its end.
        let mut late = [0u8; 4];
        conn.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"late");
        assert_eq!(conn.ended(), None);
        assert_eq!(conn.read(&mut buf).unwrap(), 0);
        assert_eq!(conn.ended(), Some(Ended::PeerClosed));
    }
}

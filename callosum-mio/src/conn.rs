//! [`Conn`]: one TCP connection as the application sees it, with the rest of the slot line
//! the protocol still owes the peer.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use callosum_proto::adapter::{self, Read as Outcome};
use mio::net::TcpStream;

/// A connection handed to the application: a server's accepted connection or a client's
/// leased one. Read and write it through this type (it implements [`Read`] and [`Write`]),
/// never through the raw stream: it records the end of the connection when a read or write
/// finds it, and on a server it writes the rest of a slot line that the socket did not take
/// at once before any byte of the application's (until then [`Write::write`] answers
/// [`io::ErrorKind::WouldBlock`], and a writable event follows).
///
/// Like any non-blocking socket, read until `WouldBlock` after each readable notification:
/// `mio` reports readiness changes only.
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
    /// What a full socket did not take of the slot line, to write before the application's
    /// bytes: empty, and no allocation, once written, which is at once in practice (a fresh
    /// socket takes the line's few bytes in its first write call).
    line: Box<[u8]>,
    /// Set when a read saw the end of the stream or an I/O error failed the connection.
    ended: Option<Ended>,
    /// Whether the server registered the socket for `WRITABLE` as well as `READABLE`: only
    /// while a write would block or part of the slot line is pending (a client leaves it
    /// false). A `bool` in what was padding: the connection is no bigger for it.
    write_interest: bool,
    /// Set when the client's check of a connection nobody was reading ([`Conn::check_read`])
    /// found nothing to read, and cleared by the next readable event
    /// ([`Conn::note_readable`]). Meanwhile a read answers `WouldBlock` without a system
    /// call: the socket would say the same, since any byte or end arriving after the check
    /// brings a readable event (mio's readiness is edge-triggered). That saves a lease's
    /// first read the call the check just made. Also in padding.
    drained: bool,
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
    /// A connection whose application writes follow `line` (empty on a client; a server
    /// makes it empty and then calls [`Conn::send_line`]).
    pub(crate) fn new(stream: TcpStream, line: Vec<u8>) -> Conn {
        Conn {
            stream,
            line: line.into_boxed_slice(),
            ended: None,
            write_interest: false,
            drained: false,
        }
    }

    /// The underlying stream, for socket options and addresses. Do not read or write it
    /// directly: see the type's docs.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Whether a read or write through this connection found its end.
    pub(crate) fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// Whether part of the slot line is still unwritten.
    pub(crate) fn line_pending(&self) -> bool {
        !self.line.is_empty()
    }

    /// Whether the socket is registered for `WRITABLE` (see [`Conn::set_write_interest`]).
    pub(crate) fn write_interest(&self) -> bool {
        self.write_interest
    }

    /// Records whether the socket is now registered for `WRITABLE`: the server sets it when
    /// it adds that interest and clears it when it takes it away again.
    pub(crate) fn set_write_interest(&mut self, registered: bool) {
        self.write_interest = registered;
    }

    /// Records an I/O error of the connection's own (a failed `reregister`) as its end, and
    /// passes it on.
    pub(crate) fn fail_with(&mut self, error: io::Error) -> io::Error {
        self.fail(error)
    }

    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// A read by the client's check of a connection nobody is reading (an idle one, or one
    /// coming back from a lease): the socket's own answer, not recorded as an end (the check
    /// tells the core). If it would block, later reads answer `WouldBlock` without a call
    /// until [`Conn::note_readable`].
    pub(crate) fn check_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.stream.read(buf);
        self.drained = matches!(&result, Err(error) if error.kind() == io::ErrorKind::WouldBlock);
        result
    }

    /// A readable event (bytes, the end of the stream or an error) came for the socket: the
    /// next read asks the socket again.
    pub(crate) fn note_readable(&mut self) {
        self.drained = false;
    }

    /// Writes a server's slot line, straight from the caller's buffer, and keeps what the
    /// socket did not take for [`Conn::flush_line`]. `Ok(true)` when all of it went out.
    pub(crate) fn send_line(&mut self, line: &[u8]) -> io::Result<bool> {
        let mut rest = line;
        let written = write_line(&mut self.stream, &mut rest);
        // An empty rest, the usual case, allocates nothing.
        self.line = rest.into();
        written.map_err(|error| self.fail(error))
    }

    /// Writes what is left of the slot line. `Ok(true)` when none is left, `Ok(false)` when
    /// the socket would block (a writable event follows if the socket is registered for
    /// it: the server keeps `WRITABLE` interest while the line is pending).
    pub(crate) fn flush_line(&mut self) -> io::Result<bool> {
        if self.line.is_empty() {
            return Ok(true);
        }
        let mut rest = &self.line[..];
        let written = write_line(&mut self.stream, &mut rest);
        self.line = rest.into();
        written.map_err(|error| self.fail(error))
    }

    /// Records the end a read's result shows, and passes the result on.
    fn note_read(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        match (adapter::read_outcome(&result), result) {
            (Outcome::End, result) => {
                self.ended.get_or_insert(Ended::PeerClosed);
                result
            }
            (Outcome::Failed, Err(error)) => Err(self.fail(error)),
            (_, result) => result,
        }
    }

    fn fail(&mut self, error: io::Error) -> io::Error {
        self.ended.get_or_insert(Ended::Failed(error.kind()));
        error
    }
}

impl Read for Conn {
    /// Reads the socket. A read of 0 bytes into a non-empty buffer means the peer closed its
    /// side. On a client's lease, a read before the first readable event may answer
    /// `WouldBlock` without a system call: the pool checked the socket when it came back.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = self.stream.read(buf);
        self.note_read(result)
    }
}

impl Write for Conn {
    /// Writes after the rest of the slot line; `WouldBlock` while some of it is pending.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.flush_line()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = self.stream.write(buf);
        match (adapter::read_outcome(&result), result) {
            (Outcome::Failed, Err(error)) => Err(self.fail(error)),
            (_, result) => result,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.flush_line()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.stream.flush()
    }
}

/// Writes what is left of a slot line to `out`, leaving in `line` what it did not take: the
/// whole line in the first write call, as the protocol requires (old clients parse each read
/// on its own); only if a socket ever took less does the rest follow, on later calls.
/// `Ok(false)` when it would block.
fn write_line(out: &mut impl Write, line: &mut &[u8]) -> io::Result<bool> {
    while !line.is_empty() {
        let result = out.write(line);
        match (adapter::read_outcome(&result), result) {
            (_, Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            (_, Ok(written)) => *line = &line[written..],
            (Outcome::Pending, Err(_)) => return Ok(false),
            (Outcome::Retry, Err(_)) => {}
            (_, Err(error)) => return Err(error),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each write call it gets.
    #[derive(Default)]
    struct Counting {
        calls: Vec<Vec<u8>>,
    }

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_slot_line_goes_out_in_one_write_call() {
        let line = callosum_proto::SlotLine::new(4_294_967_295);
        let mut out = Counting::default();
        let mut pending = line.as_bytes();
        assert!(write_line(&mut out, &mut pending).unwrap());
        assert!(pending.is_empty());
        assert_eq!(out.calls, [line.as_bytes().to_vec()]);
    }
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// A connected pair: a `Conn` on one end (non-blocking as in a `mio` loop, or blocking
    /// for a test that waits on its reads) and a blocking std stream on the other.
    fn pair(nonblocking: bool) -> (Conn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        near.set_nonblocking(nonblocking).unwrap();
        (Conn::new(TcpStream::from_std(near), Vec::new()), far)
    }

    #[test]
    fn the_rest_of_the_line_goes_first_and_survives_a_full_socket() {
        let (mut conn, mut far) = pair(true);
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
        assert!(!conn.send_line(b"42\r\n").unwrap());
        assert!(conn.line_pending());
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while !conn.flush_line().unwrap() {
            let left = deadline.saturating_duration_since(Instant::now());
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
    fn a_read_records_the_end_of_the_stream() {
        let (mut conn, mut far) = pair(false);
        far.write_all(b"late").unwrap();
        drop(far);
        let mut late = [0u8; 4];
        conn.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"late");
        assert_eq!(conn.ended(), None);
        assert_eq!(conn.read(&mut late).unwrap(), 0);
        assert_eq!(conn.ended(), Some(Ended::PeerClosed));
    }

    #[test]
    fn after_a_check_found_nothing_reads_wait_for_the_next_readable_event() {
        let (mut conn, mut far) = pair(true);
        let mut byte = [0u8; 1];
        let checked = conn.check_read(&mut byte).unwrap_err();
        assert_eq!(checked.kind(), io::ErrorKind::WouldBlock);
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.registry()
            .register(conn.stream_mut(), mio::Token(0), mio::Interest::READABLE)
            .unwrap();
        far.write_all(b"reply").unwrap();
        // The bytes came with a readable event; until it is noted, a read asks nothing.
        let deadline = Instant::now() + Duration::from_secs(10);
        while events.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no readable event for the reply");
            poll.poll(&mut events, Some(left)).unwrap();
        }
        let mut reply = [0u8; 5];
        let early = conn.read(&mut reply).unwrap_err();
        assert_eq!(early.kind(), io::ErrorKind::WouldBlock);
        conn.note_readable();
        assert_eq!(conn.read(&mut reply).unwrap(), 5);
        assert_eq!(&reply, b"reply");
    }
}

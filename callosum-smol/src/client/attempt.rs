//! The socket half of one rover attempt: connect, then read the slot line in reads no larger
//! than the core allows. What each step means is the [`Host`]'s business.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};

use async_io::Async;
use callosum_proto::AttemptId;
use callosum_proto::adapter::{Read, read_outcome};
use callosum_proto::slot_line::MAX_LINE_LEN;
use futures_lite::AsyncReadExt;

/// What one read of the slot line gave.
pub(crate) enum LineRead<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// The end of the stream.
    End,
    /// The read failed.
    Failed,
}

/// The client an attempt reports to.
pub(crate) trait Host: Send + Sync + 'static {
    /// The connect finished; the stream back if the attempt goes on to read its line.
    fn connected(
        self: &Arc<Self>,
        attempt: AttemptId,
        connected: io::Result<Async<TcpStream>>,
    ) -> Option<Async<TcpStream>>;

    /// A read of the line finished; the stream back, with the most bytes to read next, if
    /// the line needs more. Otherwise the host kept the stream or dropped it.
    fn read(
        self: &Arc<Self>,
        attempt: AttemptId,
        read: LineRead<'_>,
        stream: Async<TcpStream>,
    ) -> Option<(Async<TcpStream>, usize)>;
}

/// Runs `attempt` against `server` until the host says it is over.
///
/// The core owns the deadlines: when one passes, the host drops this task, which closes the
/// socket. The task holds only a weak reference, so an abandoned client does not live on
/// through its attempts.
pub(crate) async fn run<H: Host>(host: Weak<H>, attempt: AttemptId, server: SocketAddr) {
    let connected = Async::<TcpStream>::connect(server).await;
    let Some(stream) = host
        .upgrade()
        .and_then(|host| host.connected(attempt, connected))
    else {
        return;
    };
    if let Err(error) = stream.get_ref().set_nodelay(true) {
        log::debug!("callosum client: set_nodelay on a connection to {server}: {error}");
    }
    let mut stream = stream;
    let mut buf = [0u8; MAX_LINE_LEN];
    let mut at_most = MAX_LINE_LEN;
    loop {
        let result = (&stream).read(&mut buf[..at_most.min(MAX_LINE_LEN)]).await;
        let read = match read_outcome(&result) {
            Read::Bytes(n) => LineRead::Bytes(&buf[..n]),
            Read::End => LineRead::End,
            Read::Failed => LineRead::Failed,
            Read::Pending | Read::Retry => continue,
        };
        let Some(host) = host.upgrade() else {
            return;
        };
        match host.read(attempt, read, stream) {
            Some((back, next)) => (stream, at_most) = (back, next),
            None => return,
        }
    }
}

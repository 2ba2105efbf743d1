//! The socket half of one rover attempt, a task of its own: connect, then read the slot line
//! in reads no larger than the core allows. What each step means is the core's business.

use std::net::SocketAddr;

use callosum_proto::AttemptId;
use callosum_proto::adapter::{Read, read_outcome};
use callosum_proto::slot_line::MAX_LINE_LEN;
use tokio::net::TcpStream;

use super::state::WeakShared;

/// What one read of the slot line gave.
pub(crate) enum LineRead<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// The end of the stream.
    End,
    /// The read failed.
    Failed,
}

/// Runs `attempt` against `server` until the client says it is over.
///
/// The core owns the deadlines: when one passes, the client aborts this task, which closes
/// the socket. The task holds only a weak reference, so an abandoned client does not live on
/// through its attempts.
pub(crate) async fn run(client: WeakShared, attempt: AttemptId, server: SocketAddr) {
    let connected = TcpStream::connect(server).await;
    let Some(stream) = client
        .upgrade()
        .and_then(|client| client.connected(attempt, connected))
    else {
        return;
    };
    if let Err(error) = stream.set_nodelay(true) {
        log::debug!("callosum client: set_nodelay on a connection to {server}: {error}");
    }
    let mut stream = stream;
    let mut buf = [0u8; MAX_LINE_LEN];
    let mut at_most = MAX_LINE_LEN;
    loop {
        let result = match stream.readable().await {
            Ok(()) => stream.try_read(&mut buf[..at_most.min(MAX_LINE_LEN)]),
            Err(error) => Err(error),
        };
        let read = match read_outcome(&result) {
            Read::Bytes(n) => LineRead::Bytes(&buf[..n]),
            Read::End => LineRead::End,
            Read::Failed => LineRead::Failed,
            // Readiness the read did not confirm: wait for it again.
            Read::Pending | Read::Retry => continue,
        };
        let Some(client) = client.upgrade() else {
            return;
        };
        match client.read(attempt, read, stream) {
            Some((back, next)) => (stream, at_most) = (back, next),
            None => return,
        }
    }
}

//! The examples' line protocol: each line a client sends comes back after the service time.
//! `tokio_util::codec::LinesCodec` frames the lines, with a cap on their length, and one
//! reply is sent (and flushed) before the next line is read, so a client that never reads its
//! replies fills the socket's buffers and then waits: the server never queues replies for it.

use std::time::Duration;

use callosum_tokio::ServerConn;
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

/// The longest line accepted, its newline excluded: 64 KiB.
const MAX_LINE: usize = 64 * 1024;

/// Serves one connection until it ends: for each line received, waits `service` and writes
/// the line back.
pub async fn serve_lines(conn: ServerConn, service: Duration) {
    let mut lines = Framed::new(conn, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = lines.next().await {
        let reply = match line {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                // A best effort: the connection closes either way.
                let _ = lines.send("error: line too long").await;
                return;
            }
            Err(LinesCodecError::Io(_)) => return,
        };
        if !service.is_zero() {
            tokio::time::sleep(service).await;
        }
        if lines.send(reply).await.is_err() {
            return;
        }
    }
}

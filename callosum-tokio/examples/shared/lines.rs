//! The examples' line protocol: each line a client sends comes back after the service time.
//! `tokio_util::codec::LinesCodec` frames the lines. Written to be copied into a server that
//! faces clients it does not trust:
//!
//! - **A cap on line length**: a line may be at most [`MAX_LINE`] bytes, its newline
//!   included. A client that sends more without a newline gets [`TOO_LONG`] and the
//!   connection is closed, so a line that never ends is held in one buffer that never
//!   grows past twice [`MAX_LINE`] (the codec's buffer grows by doubling).
//! - **Backpressure**: one reply at a time, and nothing is read while a reply waits for its
//!   service time or for the socket to take it. A client that sends and never reads fills
//!   the kernel's buffers, and then its own writes block; the server holds at most the line
//!   it is answering and the bytes after it, never a queue of replies.
//! - **A small footprint per connection**: the codec's read buffer starts empty
//!   (`FramedRead::with_capacity(.., 0)`: `Framed::new` and `FramedRead::new` give every
//!   connection 8 KiB at once), grows while a line is in progress, and is let go of (beyond
//!   [`KEEP_IDLE`] bytes) once every line in it is answered. Replies are written straight to
//!   the socket, so there is no write buffer either.
//! - **Work per event independent of the number of connections**: each connection is its own
//!   task, woken only by its own socket or timer.
//! - **Draining** (`Server::drain`, for a rolling restart): a connection is closed between
//!   two requests. Every line in the codec's buffer is answered first (a line half received
//!   is read to its end); an idle connection waits for its next request and the drain
//!   together, so it is closed as soon as the drain starts.
//!
//! The codec takes lines as text: a reply is the line and `\n`, whether it ended in `\n` or
//! `\r\n`, and a line that is not UTF-8 closes the connection without a reply.

use std::time::Duration;

use bytes::BytesMut;
use callosum_tokio::ServerConn;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// The longest line accepted, its newline included: 64 KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// The reply to a line longer than [`MAX_LINE`], after which the connection is closed.
pub const TOO_LONG: &[u8] = b"error: line too long\n";

/// A read buffer holding more than this is let go of once every line in it is answered, so
/// that a connection that once sent a long line does not keep its buffer while idle.
pub const KEEP_IDLE: usize = 1024;

/// Serves one connection until it ends, or until it is between requests while the server
/// drains: for each line received, waits `service` and writes the line back.
///
/// Not an `async fn`: the connection goes into the codec before the future is made, so the
/// future, which the connection's task holds all the while it is idle, holds it once. The
/// future of an `async fn` keeps room for its arguments beside whatever is made of them:
/// here, a second `ServerConn` in every connection's task.
pub fn serve_lines(conn: ServerConn, service: Duration) -> impl Future<Output = ()> {
    // The codec's limit leaves the newline out; a `\r` before it counts, as any byte does.
    let codec = LinesCodec::new_with_max_length(MAX_LINE - 1);
    let mut draining = conn.draining();
    let mut lines = FramedRead::with_capacity(conn, codec, 0);
    async move {
        // The codec reads only when no whole line is in its buffer, so nothing is read until
        // the reply to this one is written.
        loop {
            let next = if lines.read_buffer().is_empty() {
                // Between requests: a draining server closes the connection here, and an idle
                // one as soon as the drain starts.
                if lines.get_ref().is_draining() {
                    return;
                }
                // `biased`: a request that has come is served, even if the drain started too.
                let next = tokio::select! {
                    biased;
                    next = lines.next() => Some(next),
                    () = &mut draining => None,
                };
                match next {
                    Some(next) => next,
                    // Idle when the drain started.
                    None if lines.read_buffer().is_empty() => return,
                    // Part of a line came while waiting: it is read to its end first.
                    None => continue,
                }
            } else {
                // A line in the buffer, whole or half received, is answered first.
                lines.next().await
            };
            let Some(line) = next else {
                return;
            };
            let mut reply = match line {
                Ok(line) => line,
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    // A best effort: the connection closes either way.
                    let _ = lines.get_mut().write_all(TOO_LONG).await;
                    return;
                }
                Err(LinesCodecError::Io(_)) => return,
            };
            if !service.is_zero() {
                tokio::time::sleep(service).await;
            }
            reply.push('\n');
            if lines.get_mut().write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            let buffer = lines.read_buffer_mut();
            // `try_reclaim` (bytes 1.7 and later) never allocates: it succeeds on an empty
            // buffer exactly when the allocation behind it (which `capacity` may not show,
            // after lines were split off its front) holds more than `KEEP_IDLE` bytes.
            if buffer.is_empty() && buffer.try_reclaim(KEEP_IDLE + 1) {
                *buffer = BytesMut::new();
            }
        }
    }
}

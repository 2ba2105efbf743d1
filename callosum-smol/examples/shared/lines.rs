//! The examples' line protocol: each line a client sends comes back, as sent, after the
//! service time. Written to be copied into a server that faces clients it does not trust:
//!
//! - **A cap on line length**: a line may be at most [`MAX_LINE`] bytes, its newline
//!   included. A client that sends more without a newline gets `error: line too long` and
//!   the connection is closed, so a line that never ends costs at most [`MAX_LINE`] bytes.
//! - **Backpressure**: one reply at a time, and nothing is read while a reply waits for its
//!   service time or for the socket to take it. A client that sends and never reads fills
//!   the kernel's buffers, and then its own writes block; the server holds at most one
//!   buffer of [`MAX_LINE`] bytes for it, never a queue of replies.
//! - **A small footprint per connection**: no buffer while a connection is idle. Bytes are
//!   read into a chunk on the stack of the poll that reads them, and only what arrived is
//!   kept, in a buffer that grows while a line is in progress and is let go of (beyond
//!   [`KEEP_IDLE`] bytes) once every line in it is answered.
//! - **Work per event independent of the number of connections**: each connection is its own
//!   task, woken only by its own socket or timer.
//! - **Draining** (`Server::drain`, for a rolling restart): a connection is closed between
//!   two requests. Every line in hand is answered first (a line half received is read to its
//!   end); an idle connection waits for its next request and the drain together, so it is
//!   closed as soon as the drain starts.

use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use async_io::Timer;
use callosum_smol::ServerConn;
use futures_lite::{AsyncRead, AsyncWriteExt, future, ready};

/// The longest line accepted, its newline included: 64 KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// The reply to a line longer than [`MAX_LINE`], after which the connection is closed.
pub const TOO_LONG: &[u8] = b"error: line too long\n";

/// The most bytes one read takes (on the stack of the poll, never kept in the connection).
const READ_CHUNK: usize = 4096;

/// A buffer larger than this is let go of once every line in it is answered, so that a
/// connection that once sent a long line does not keep its buffer while idle.
pub const KEEP_IDLE: usize = 1024;

/// Serves one connection until it ends, or until it is between requests while the server
/// drains: for each line received, waits `service` and writes the line back (its line
/// ending as sent).
pub async fn serve_lines(mut conn: ServerConn, service: Duration) {
    let mut draining = conn.draining();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Answer the complete lines in hand, one at a time, reading nothing meanwhile.
        let mut start = 0;
        while let Some(len) = buf[start..].iter().position(|&byte| byte == b'\n') {
            let line = start..start + len + 1;
            if !service.is_zero() {
                Timer::after(service).await;
            }
            if conn.write_all(&buf[line.clone()]).await.is_err() {
                return;
            }
            start = line.end;
        }
        buf.drain(..start);
        if buf.len() >= MAX_LINE {
            // A best effort: the connection closes either way.
            let _ = conn.write_all(TOO_LONG).await;
            return;
        }
        if buf.is_empty() && buf.capacity() > KEEP_IDLE {
            buf = Vec::new();
        }
        let read = if buf.is_empty() {
            // Between requests: a draining server closes the connection here, and an idle
            // one as soon as the drain starts.
            if conn.is_draining() {
                return;
            }
            let read = async { Some(read_some(&mut conn, &mut buf).await) };
            let drained = async {
                (&mut draining).await;
                None
            };
            future::or(read, drained).await
        } else {
            // A line half received is read to its end, and answered, first.
            Some(read_some(&mut conn, &mut buf).await)
        };
        match read {
            Some(Ok(0) | Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
}

/// Reads onto the end of `buf` (at most [`READ_CHUNK`] bytes, and never past [`MAX_LINE`]),
/// which grows by what arrived. The chunk read into lives only during a poll, so a
/// connection waiting here holds no buffer of its own.
async fn read_some(conn: &mut ServerConn, buf: &mut Vec<u8>) -> io::Result<usize> {
    let room = MAX_LINE.saturating_sub(buf.len()).min(READ_CHUNK);
    future::poll_fn(|cx| {
        let mut chunk = [0u8; READ_CHUNK];
        let chunk = &mut chunk[..room];
        let n = ready!(Pin::new(&mut *conn).poll_read(cx, chunk))?;
        buf.extend_from_slice(&chunk[..n]);
        Poll::Ready(Ok(n))
    })
    .await
}

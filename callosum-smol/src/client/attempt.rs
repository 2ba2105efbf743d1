//! One rover attempt: connect, read the slot line, hand the socket over.

use std::io;
use std::net::{SocketAddr, TcpStream};

use async_io::Async;
use callosum_proto::rover::{AttemptId, ConnectFailure};
use callosum_proto::slot_line::MAX_LINE_LEN;
use futures_lite::AsyncReadExt;

use super::state::{PooledStream, SharedRef};

/// Runs attempt `id` against `addr`, reporting each step to the rover.
///
/// The rover owns the deadlines: when one passes it says `Close`, and the client drops this
/// task, which closes the socket. The task holds only a weak reference to the client, so an
/// abandoned client does not live on through its attempts.
pub(crate) async fn attempt(shared: SharedRef, id: AttemptId, addr: SocketAddr) {
    let connected = Async::<TcpStream>::connect(addr).await;
    let Some(client) = shared.upgrade() else {
        return;
    };
    let stream = {
        let mut state = client.lock();
        let now = state.clock.now();
        let reported = match &connected {
            Ok(_) => state.rover.handle_connected(id, now),
            Err(error) => state
                .rover
                .handle_connect_failed(id, connect_failure(error), now),
        };
        client.settle(&mut state, None);
        match (reported, connected) {
            (Ok(()), Ok(stream)) => stream,
            _ => return,
        }
    };
    drop(client);
    if let Err(error) = stream.get_ref().set_nodelay(true) {
        log::debug!("callosum client: set_nodelay on a connection to {addr}: {error}");
    }

    // Never read past the longest possible line: a hostile server gets at most 12 bytes in.
    let mut line = [0u8; MAX_LINE_LEN];
    let mut filled = 0;
    let mut pending = Some(PooledStream {
        stream,
        server: addr,
        leftover: Vec::new(),
    });
    loop {
        let Some(conn) = pending.as_mut() else {
            return;
        };
        let read = (&conn.stream).read(&mut line[filled..]).await;
        let Some(client) = shared.upgrade() else {
            return;
        };
        let mut state = client.lock();
        let now = state.clock.now();
        let reported = match read {
            Ok(0) => state.rover.handle_closed(id, now).map(|()| 0),
            Ok(n) => {
                let received = &line[filled..filled + n];
                let consumed = state.rover.handle_received(id, received, now);
                if let (Ok(consumed), Some(conn)) = (&consumed, pending.as_mut()) {
                    conn.leftover.extend_from_slice(&received[*consumed..]);
                }
                filled += n;
                consumed
            }
            Err(_) => state.rover.handle_read_failed(id, now).map(|()| 0),
        };
        client.settle(&mut state, Some((id, &mut pending)));
        let still_running = state.rover.attempts().any(|info| info.attempt == id);
        if reported.is_err() || !still_running || filled == line.len() {
            // Finished: the socket went to the pool, or it is dropped (closed) here.
            return;
        }
    }
}

fn connect_failure(error: &io::Error) -> ConnectFailure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => ConnectFailure::Reset,
        io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
        _ => ConnectFailure::Other,
    }
}

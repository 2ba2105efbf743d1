//! The client's two tables of sockets and what their readiness means: attempts (indexed by
//! [`AttemptId::index`]) connect and read their slot line; pooled connections (keyed by the
//! key the core holds) are watched while idle and lent while leased.

use std::io::{self, Read as _};
use std::net::SocketAddr;

use callosum_proto::Instant as CoreInstant;
use callosum_proto::adapter::{self, Read};
use callosum_proto::client::{Handshake, IdleSignal, LeaseId, LeaseUse, Ready};
use callosum_proto::pool::PooledId;
use callosum_proto::rover::{AttemptId, ConnectFailure};
use callosum_proto::slab::Key;
use callosum_proto::slot_line::MAX_LINE_LEN;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::Client;
use crate::conn::Conn;

/// The socket of one attempt in flight.
#[derive(Debug)]
pub(super) struct Attempt {
    id: AttemptId,
    stream: TcpStream,
    connected: bool,
    /// The most bytes the next read may take ([`Handshake::NeedMore`]).
    at_most: usize,
}

/// A socket the core holds (or is being offered) under its key.
#[derive(Debug)]
pub(super) struct Pooled {
    pub(super) conn: Conn,
    pub(super) held: Held,
    /// Readiness seen while leased and not yet told ([`super::LeaseReady`]).
    pub(super) ready: Readiness,
    /// What the current lease did with it: how it ends if the lease is dropped.
    pub(super) used: LeaseUse,
}

/// What the core calls this socket now: the id to tell it about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// Being handed over with `deliver`; the core's answer names it next (or closes it).
    Offered,
    /// Idle under this id: its readiness is a signal for the core.
    Idle(PooledId),
    /// Lent under this lease: its readiness is the application's.
    Leased(LeaseId),
}

/// Readiness of a leased connection waiting in the [`super::ReadyQueue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Readiness {
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// Whether the connection's key is in the queue (once at most).
    pub(super) queued: bool,
}

/// Whether an event may mean bytes, the end of the stream or an error to read.
fn readable(event: &Event) -> bool {
    event.is_readable() || event.is_read_closed() || event.is_error()
}

/// Reads one byte from a connection nobody is reading: what it shows, or `None` if it is
/// silent (would block).
pub(super) fn probe(conn: &mut Conn) -> Option<IdleSignal> {
    let mut byte = [0u8; 1];
    loop {
        match adapter::read_outcome(&conn.check_read(&mut byte)) {
            Read::Pending => return None,
            Read::Retry => {}
            Read::Bytes(_) => return Some(IdleSignal::Bytes),
            Read::End => return Some(IdleSignal::Closed),
            Read::Failed => return Some(IdleSignal::Failed),
        }
    }
}

/// Whether an attempt's connect completed (`Ok(true)`), is still under way (`Ok(false)`),
/// or failed.
fn connect_progress(stream: &TcpStream, event: &Event) -> Result<bool, ConnectFailure> {
    match stream.take_error() {
        Ok(Some(error)) | Err(error) => return Err(adapter::connect_failure(&error)),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        // Not connected yet: still connecting, unless the socket says it is over.
        Err(error) if error.kind() == io::ErrorKind::NotConnected => {
            if event.is_error() || event.is_read_closed() || event.is_write_closed() {
                Err(ConnectFailure::Other)
            } else {
                Ok(false)
            }
        }
        Err(error) => Err(adapter::connect_failure(&error)),
    }
}

impl Client {
    /// [`Output::Connect`](callosum_proto::client::Output::Connect): opens the attempt's
    /// socket under its token; an error at once is the attempt's failure.
    pub(super) fn connect(&mut self, attempt: AttemptId, server: SocketAddr) {
        let index = attempt.index() as usize;
        // `register` checked the range holds every attempt's token.
        let token = Token(self.tokens.start() + index);
        let opened = TcpStream::connect(server).and_then(|mut stream| {
            if let Some(registry) = &self.registry {
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
            }
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.attempts[index] = Some(Attempt {
                    id: attempt,
                    stream,
                    connected: false,
                    at_most: MAX_LINE_LEN,
                });
            }
            Err(error) => {
                let reason = adapter::connect_failure(&error);
                let _ = self
                    .core
                    .handle_connect_failed(attempt, reason, self.clock.now());
            }
        }
    }

    /// [`Output::Abort`](callosum_proto::client::Output::Abort): closes the attempt's socket.
    pub(super) fn close_attempt(&mut self, attempt: AttemptId) {
        let index = attempt.index() as usize;
        if self.attempts[index]
            .as_ref()
            .is_some_and(|socket| socket.id == attempt)
        {
            self.drop_attempt(index);
        }
    }

    /// [`Output::Close`](callosum_proto::client::Output::Close): closes a pooled socket.
    pub(super) fn close_pooled(&mut self, key: Key) {
        if let Some(mut pooled) = self.pooled.remove(key)
            && let Some(registry) = &self.registry
        {
            let _ = registry.deregister(pooled.conn.stream_mut());
        }
    }

    /// Takes the attempt at `index` out of its table and closes its socket.
    fn drop_attempt(&mut self, index: usize) {
        if let Some(mut attempt) = self.attempts[index].take()
            && let Some(registry) = &self.registry
        {
            let _ = registry.deregister(&mut attempt.stream);
        }
    }

    /// An event on an attempt's socket: the connect's completion, then the slot line.
    pub(super) fn attempt_ready(&mut self, index: usize, event: &Event, now: CoreInstant) {
        let Some(attempt) = self.attempts[index].as_mut() else {
            return;
        };
        let id = attempt.id;
        if !attempt.connected {
            match connect_progress(&attempt.stream, event) {
                Ok(false) => return,
                Ok(true) => {
                    attempt.connected = true;
                    if self.core.handle_connected(id, now).is_err() {
                        self.drop_attempt(index);
                        return;
                    }
                }
                Err(reason) => {
                    self.drop_attempt(index);
                    let _ = self.core.handle_connect_failed(id, reason, now);
                    return;
                }
            }
        }
        self.read_line(index, now);
    }

    /// Reads the slot line, at most what the core allows at a time, until it is complete,
    /// the attempt ends, or the socket would block.
    fn read_line(&mut self, index: usize, now: CoreInstant) {
        let mut buf = [0u8; MAX_LINE_LEN];
        loop {
            let Some(attempt) = self.attempts[index].as_mut() else {
                return;
            };
            let id = attempt.id;
            let room = attempt.at_most.min(MAX_LINE_LEN);
            match adapter::read_outcome(&attempt.stream.read(&mut buf[..room])) {
                Read::Bytes(n) => match self.core.handle_received(id, &buf[..n], now) {
                    Ok(Handshake::NeedMore { at_most }) => attempt.at_most = at_most,
                    Ok(Handshake::Complete(ready)) => {
                        if let Some(stream) = self.attempts[index].take().map(|a| a.stream) {
                            self.pool_connection(stream, ready, now);
                        }
                        return;
                    }
                    // The failure was reported; a stale attempt was aborted already.
                    Ok(Handshake::Failed) | Err(_) => {
                        self.drop_attempt(index);
                        return;
                    }
                },
                Read::Pending => return,
                Read::Retry => {}
                Read::End => {
                    self.drop_attempt(index);
                    let _ = self.core.handle_closed(id, now);
                    return;
                }
                Read::Failed => {
                    self.drop_attempt(index);
                    let _ = self.core.handle_read_failed(id, now);
                    return;
                }
            }
        }
    }

    /// Moves a socket whose line is complete to the pooled table under a pooled token, and
    /// hands it to the core. A kept one that could not be moved (no token left, or the
    /// re-registration failed) is reported to the core as failed, which closes it.
    fn pool_connection(&mut self, stream: TcpStream, ready: Ready, now: CoreInstant) {
        let pooled = Pooled {
            conn: Conn::new(stream, Vec::new()),
            held: Held::Offered,
            ready: Readiness::default(),
            used: LeaseUse::default(),
        };
        let Ok(key) = self.pooled.insert(pooled) else {
            unreachable!("a process holds fewer than u32::MAX sockets")
        };
        let token = self
            .tokens
            .token(self.attempts.len() + key.index() as usize);
        let moved = match (&self.registry, token, self.pooled.get_mut(key)) {
            (Some(registry), Some(token), Some(pooled)) => registry
                .reregister(
                    pooled.conn.stream_mut(),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok(),
            _ => false,
        };
        let Some(id) = self.core.deliver(ready, key, now) else {
            return; // not kept: the core closes it
        };
        let Some(pooled) = self.pooled.get_mut(key) else {
            return;
        };
        pooled.held = Held::Idle(id);
        // Bytes that came after the line, in a later read, are the idle connection's.
        let signal = if moved {
            probe(&mut pooled.conn)
        } else {
            Some(IdleSignal::Failed)
        };
        if let Some(signal) = signal {
            let _ = self.core.handle_idle_signal(id, signal, now);
        }
    }

    /// An event on a pooled socket: an idle one is probed at once, a leased one's readiness
    /// is the application's.
    pub(super) fn pooled_ready(&mut self, index: u32, event: &Event, now: CoreInstant) {
        let Some((key, pooled)) = self.pooled.get_by_index_mut(index) else {
            return;
        };
        if readable(event) {
            pooled.conn.note_readable();
        }
        match pooled.held {
            Held::Offered => {}
            Held::Idle(id) => {
                if readable(event)
                    && let Some(signal) = probe(&mut pooled.conn)
                {
                    let _ = self.core.handle_idle_signal(id, signal, now);
                }
            }
            Held::Leased(_) => {
                pooled.ready.readable |= readable(event);
                pooled.ready.writable |= event.is_writable();
                if !pooled.ready.queued && (pooled.ready.readable || pooled.ready.writable) {
                    pooled.ready.queued = true;
                    self.ready.push(key);
                }
            }
        }
    }
}

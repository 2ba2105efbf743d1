//! The line-echo service of the `mio-server` example, apart from its command line so that the
//! example-server tests (`tests/tests/example_servers/mio.rs` in `callosum-tests`) drive the
//! very code the example runs.
//!
//! Each line a client sends comes back after the service time, one request at a time per
//! connection (each reply waits for the one before). It is written to be safe to copy:
//!
//! - **Work per event is for the connection the event is about.** Replies that wait for
//!   their service time sit in their connection's queue, and a timer map keyed by due time
//!   holds one entry per connection with replies waiting: a wake-up looks only at what is
//!   due, never at every connection.
//! - **A line is at most [`MAX_LINE`] bytes**, its newline included: a longer one is
//!   answered [`TOO_LONG`] (after the replies owed before it) and the connection is closed.
//! - **Backpressure:** a connection whose replies (written but not sent, or waiting for
//!   their service time) pass [`HIGH_WATER`] bytes is not read until they drop to half of
//!   that; the peer's writes then block in TCP. A client that never reads its replies costs
//!   a bounded amount, whatever it sends.
//! - **A small footprint:** an idle connection is a `Session` of a few machine words with
//!   no heap allocation; buffers are released when they empty.
//! - **Draining** (`Server::drain`, for a rolling restart): a connection is closed between
//!   two requests, once every line received is answered and written (a line half received
//!   is read to its end first). An idle one is closed at its `ServerEvent::Draining`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use callosum_mio::{Server, ServerConnId, ServerEvent};

/// The longest line served, in bytes, its newline included.
pub const MAX_LINE: usize = 64 * 1024;

/// The reply to a line longer than [`MAX_LINE`], before the connection is closed.
pub const TOO_LONG: &[u8] = b"error: line too long\n";

/// Reply bytes owed to a connection above which it is not read.
pub const HIGH_WATER: usize = 16 * 1024;

/// Reply bytes owed below which a connection that was not read is read again.
const LOW_WATER: usize = HIGH_WATER / 2;

/// What a reply waiting for its service time costs beyond its bytes, counted against
/// [`HIGH_WATER`] so that a flood of empty lines is bounded too.
const WAITING_COST: usize = size_of::<(Instant, Vec<u8>)>();

/// The most bytes one read takes (on the stack, shared by every connection).
const READ_CHUNK: usize = 4096;

/// An emptied reply buffer with more capacity than this is freed, not kept.
const KEEP: usize = 1024;

/// The service: every connection's [`Session`], and the timers of replies not yet due.
#[derive(Debug)]
pub struct Echo {
    service: Duration,
    /// Sessions by slot, as the server numbers its connections (densely).
    sessions: Vec<Option<Session>>,
    /// The first waiting reply of each connection that has one, by due time and slot. A
    /// connection that ended leaves its entry, which is skipped when due.
    timers: BTreeMap<(Instant, u32), ServerConnId>,
    /// Connections whose owed replies dropped below [`LOW_WATER`] while they were not read:
    /// read them at the next wake-up (what waits in their socket raised its event already).
    resume: Vec<ServerConnId>,
}

/// One connection's state.
#[derive(Debug)]
struct Session {
    conn: ServerConnId,
    /// The start of a line whose newline has not come yet.
    partial: Vec<u8>,
    /// Replies waiting for their service time, with their due times, in order.
    waiting: VecDeque<(Instant, Vec<u8>)>,
    /// Reply bytes due and not yet taken by the socket.
    out: Vec<u8>,
    /// Bytes owed: `out`, and each waiting reply with [`WAITING_COST`].
    owed: usize,
    /// Not read while `owed` is above [`LOW_WATER`] after passing [`HIGH_WATER`].
    paused: bool,
    /// A line was too long: read no more, close once every reply is written.
    closing: bool,
}

impl Session {
    fn new(conn: ServerConnId) -> Session {
        Session {
            conn,
            partial: Vec::new(),
            waiting: VecDeque::new(),
            out: Vec::new(),
            owed: 0,
            paused: false,
            closing: false,
        }
    }

    /// Takes bytes read from the connection: complete lines become replies. Returns the due
    /// time of a first waiting reply (the connection's timer to set), if one started waiting.
    fn take(&mut self, mut bytes: &[u8], service: Duration, now: Instant) -> Option<Instant> {
        let mut timer = None;
        while !bytes.is_empty() && !self.closing {
            let newline = bytes.iter().position(|&byte| byte == b'\n');
            let (part, rest) = bytes.split_at(newline.map_or(bytes.len(), |at| at + 1));
            bytes = rest;
            let len = self.partial.len() + part.len();
            // Without its newline yet, a line of MAX_LINE bytes is too long already.
            if len > MAX_LINE || (newline.is_none() && len >= MAX_LINE) {
                self.partial = Vec::new();
                self.closing = true;
                // After the replies owed before it, not after a service time of its own.
                timer = timer.or(self.reply(TOO_LONG, &[], Duration::ZERO, now));
            } else if newline.is_none() {
                self.partial.extend_from_slice(part);
            } else {
                let head = std::mem::take(&mut self.partial);
                timer = timer.or(self.reply(&head, part, service, now));
            }
        }
        if self.owed > HIGH_WATER {
            self.paused = true;
        }
        timer
    }

    /// Owes the reply `head` + `tail`: due now (into `out`) or after `service`, once the
    /// replies before it are due. Returns its due time if it is the first one waiting.
    fn reply(
        &mut self,
        head: &[u8],
        tail: &[u8],
        service: Duration,
        now: Instant,
    ) -> Option<Instant> {
        let len = head.len() + tail.len();
        if service.is_zero() && self.waiting.is_empty() {
            self.out.extend_from_slice(head);
            self.out.extend_from_slice(tail);
            self.owed += len;
            return None;
        }
        let start = self.waiting.back().map_or(now, |&(due, _)| due.max(now));
        let due = start + service;
        let mut line = Vec::with_capacity(len);
        line.extend_from_slice(head);
        line.extend_from_slice(tail);
        self.owed += len + WAITING_COST;
        let first = self.waiting.is_empty();
        self.waiting.push_back((due, line));
        first.then_some(due)
    }

    /// Moves the replies due by `now` into `out`; returns the next one's due time.
    fn release(&mut self, now: Instant) -> Option<Instant> {
        while let Some((due, _)) = self.waiting.front() {
            if *due > now {
                return Some(*due);
            }
            if let Some((_, line)) = self.waiting.pop_front() {
                self.out.extend_from_slice(&line);
                self.owed = self.owed.saturating_sub(WAITING_COST);
            }
        }
        if self.waiting.capacity() * WAITING_COST > KEEP {
            self.waiting = VecDeque::new();
        }
        None
    }
}

impl Echo {
    /// A service that answers each line after `service` (zero: at once).
    pub fn new(service: Duration) -> Echo {
        Echo {
            service,
            sessions: Vec::new(),
            timers: BTreeMap::new(),
            resume: Vec::new(),
        }
    }

    /// Handles one event of `server` (the connection events; others are the caller's).
    pub fn handle(&mut self, server: &mut Server, event: ServerEvent, now: Instant) {
        match event {
            ServerEvent::Accepted { conn, slot, .. } => {
                let index = slot as usize;
                if self.sessions.len() <= index {
                    self.sessions.resize_with(index + 1, || None);
                }
                self.sessions[index] = Some(Session::new(conn));
            }
            ServerEvent::Closed { conn, .. } if self.session_mut(conn).is_some() => {
                self.sessions[conn.slot() as usize] = None;
            }
            ServerEvent::Readable { conn } => {
                self.read(server, conn, now);
                // Also when the connection is not read: a write finds a peer that is gone.
                self.flush(server, conn);
            }
            // Closed there if it is between requests; otherwise after its last reply.
            ServerEvent::Writable { conn } | ServerEvent::Draining { conn } => {
                self.flush(server, conn);
            }
            _ => {}
        }
    }

    /// Lets time pass: writes the replies due by `now` and reads the connections whose
    /// backpressure ended. Returns when to be woken next (`now` if there is more to do at
    /// once); `None`: only events bring work.
    pub fn wake(&mut self, server: &mut Server, now: Instant) -> Option<Instant> {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let conn = entry.remove();
            let Some(session) = self.session_mut(conn) else {
                continue; // it ended meanwhile
            };
            if let Some(next) = session.release(now) {
                self.timers.insert((next, conn.slot()), conn);
            }
            self.flush(server, conn);
        }
        for conn in std::mem::take(&mut self.resume) {
            self.read(server, conn, now);
            self.flush(server, conn);
        }
        if self.resume.is_empty() {
            self.timers.first_key_value().map(|(&(due, _), _)| due)
        } else {
            Some(now)
        }
    }

    fn session_mut(&mut self, conn: ServerConnId) -> Option<&mut Session> {
        self.sessions
            .get_mut(conn.slot() as usize)
            .and_then(Option::as_mut)
            .filter(|session| session.conn == conn)
    }

    /// Reads `conn` until it would block, ends, or owes too much to be read on.
    fn read(&mut self, server: &mut Server, conn: ServerConnId, now: Instant) {
        let mut buf = [0u8; READ_CHUNK];
        let service = self.service;
        loop {
            let Some(session) = self.session_mut(conn) else {
                return;
            };
            if session.paused || session.closing {
                return;
            }
            match server.read(conn, &mut buf) {
                Ok(n @ 1..) => {
                    if let Some(due) = session.take(&buf[..n], service, now) {
                        self.timers.insert((due, conn.slot()), conn);
                    }
                }
                // Would block; or ended, and a Closed event follows.
                Ok(0) | Err(_) => return,
            }
        }
    }

    /// Writes what `conn` is owed until the socket would block; then closes it if it is
    /// closing or the server drains and it owes nothing more (between requests), or marks it
    /// to be read again if its backpressure ended.
    fn flush(&mut self, server: &mut Server, conn: ServerConnId) {
        let Some(session) = self.session_mut(conn) else {
            return;
        };
        while !session.out.is_empty() {
            match server.write(conn, &session.out) {
                Ok(n @ 1..) => {
                    session.out.drain(..n);
                    session.owed = session.owed.saturating_sub(n);
                }
                // Would block, and a Writable event follows; or ended, and Closed follows.
                Ok(0) | Err(_) => break,
            }
        }
        if session.out.is_empty() && session.out.capacity() > KEEP {
            session.out = Vec::new();
        }
        let answered = session.out.is_empty() && session.waiting.is_empty();
        let between_requests = answered && session.partial.is_empty();
        if (session.closing && answered) || (server.is_draining() && between_requests) {
            server.close(conn);
        } else if !session.closing && session.paused && session.owed <= LOW_WATER {
            session.paused = false;
            self.resume.push(conn);
        }
    }
}

//! Checking code for the client core: random input sequences applied to a real
//! [`ClientCore`] by a model adapter that keeps track of every connection it ever handed in,
//! with the rules of PROTOCOL.md sections 3, 4 and 6 checked after each input.
//!
//! Shared by the property tests (`tests/client_props.rs`) and the fuzz target `client_ops`:
//! both build a list of [`ClientOp`] (the fuzzer with [`ops_from_bytes`]) and call
//! [`check_client_ops`], which panics with a message naming the broken rule.
//!
//! What is checked, after every input:
//! - the pool holds at most `max_slots`, and the core's idle and leased counts match what the
//!   model adapter handed in and took out;
//! - no connection is lent twice, closed twice, or closed while lent;
//! - no attempt is started for, and no connection kept from, a server that is not in the set;
//! - every slot line is judged as the reference grammar judges it, whatever the split, and bytes
//!   after the line fail the attempt;
//! - at the end (every lease returned, the client closed), every connection ever handed in has
//!   been closed exactly once and no attempt is left open: nothing leaks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use callosum_proto::Instant;
use callosum_proto::client::{
    ClientConfig, ClientCore, ClientEvent, Handshake, IdleSignal, Lease, LeaseEnd, LeaseId,
    LeasePolicy, NotLeased, Output, PoolSizing, Returned, Ticket,
};
use callosum_proto::rover::{AttemptId, ConnectFailure, StaleAttempt};
use callosum_proto::slot_line::MAX_LINE_LEN;

use crate::rover_check::{LINES, config_from_bytes};
use crate::slot_line_reference::{Verdict, reference_verdict};

/// One input to the client core. `usize` operands pick, by index modulo, among the attempts
/// seen so far (an even pick among the live ones, an odd one among all, so stale ones are
/// exercised too), the leases held, the tickets taken or the idle connections.
///
/// ```
/// use callosum_tests::client_check::{check_client_ops, ClientOp};
///
/// let ops = [ClientOp::AddServer(1), ClientOp::Connected(0), ClientOp::Received(0, b"0\r\n".to_vec())];
/// check_client_ops([0; 8], 2, 7, &ops);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// `add_server` of the n-th of four addresses.
    AddServer(u8),
    /// `remove_server` of the n-th of four addresses.
    RemoveServer(u8),
    /// `handle_connected` for the picked attempt.
    Connected(usize),
    /// `handle_connect_failed` for the picked attempt.
    ConnectFailed(usize),
    /// `handle_received` with these bytes (cut to what the core allows) for the picked attempt.
    Received(usize, Vec<u8>),
    /// `handle_closed` for the picked attempt.
    Closed(usize),
    /// `handle_read_failed` for the picked attempt.
    ReadFailed(usize),
    /// `checkout`.
    Checkout,
    /// `join_line`.
    JoinLine,
    /// `checkout_in_line` for the picked ticket.
    CheckoutInLine(usize),
    /// `leave_line` for the picked ticket.
    LeaveLine(usize),
    /// `checkin` of the picked lease.
    Checkin(usize, LeaseEnd),
    /// `checkin` under a lease id already returned, with a fresh connection.
    StaleCheckin(usize),
    /// `detach` of the picked lease.
    Detach(usize),
    /// `handle_idle_signal` for the picked idle connection.
    Idle(usize, IdleSignal),
    /// Move the clock this many microseconds and call `handle_timeout(now)`.
    Advance(u64),
    /// Move the clock to exactly the last timeout asked for and call `handle_timeout(now)`.
    AdvanceToTimeout,
    /// `close`.
    Close,
}

/// Decodes a fuzzer's bytes into operations; total: any input gives a list, never a panic.
///
/// ```
/// use callosum_tests::client_check::{ops_from_bytes, ClientOp};
///
/// assert_eq!(ops_from_bytes(&[0, 3]), [ClientOp::AddServer(3)]);
/// assert!(ops_from_bytes(&[]).is_empty());
/// ```
pub fn ops_from_bytes(bytes: &[u8]) -> Vec<ClientOp> {
    let mut input = bytes.iter().copied();
    let mut ops = Vec::new();
    while let Some(tag) = input.next() {
        let mut arg = || input.next().unwrap_or(0);
        let end = |byte: u8| match byte % 4 {
            0 => LeaseEnd::Finished,
            1 => LeaseEnd::Interrupted,
            2 => LeaseEnd::Broken,
            _ => LeaseEnd::ClosedBeforeReply,
        };
        let op = match tag % 18 {
            0 => ClientOp::AddServer(arg()),
            1 => ClientOp::RemoveServer(arg()),
            2 => ClientOp::Connected(usize::from(arg())),
            3 => ClientOp::ConnectFailed(usize::from(arg())),
            4 => {
                let pick = usize::from(arg());
                let line = match LINES.get(usize::from(arg()) % 12) {
                    Some(line) => line.to_vec(),
                    None => (0..arg() % 8).map(|_| arg()).collect(),
                };
                ClientOp::Received(pick, line)
            }
            5 => ClientOp::Closed(usize::from(arg())),
            6 => ClientOp::ReadFailed(usize::from(arg())),
            7 => ClientOp::Checkout,
            8 => ClientOp::JoinLine,
            9 => ClientOp::CheckoutInLine(usize::from(arg())),
            10 => ClientOp::LeaveLine(usize::from(arg())),
            11 => {
                let pick = usize::from(arg());
                ClientOp::Checkin(pick, end(arg()))
            }
            12 => ClientOp::StaleCheckin(usize::from(arg())),
            13 => ClientOp::Detach(usize::from(arg())),
            14 => {
                let pick = usize::from(arg());
                let signal = match arg() % 3 {
                    0 => IdleSignal::Closed,
                    1 => IdleSignal::Bytes,
                    _ => IdleSignal::Failed,
                };
                ClientOp::Idle(pick, signal)
            }
            15 => ClientOp::Advance(u64::from(arg()) * 10_000),
            16 => ClientOp::AdvanceToTimeout,
            // Rarely: a closed client has little left to check.
            _ if arg() % 16 == 0 => ClientOp::Close,
            _ => ClientOp::Checkout,
        };
        ops.push(op);
    }
    ops
}

/// Applies `ops` to a client core whose rover is configured from `rover` (see
/// [`config_from_bytes`]) and whose pool holds at most `1 + max_slots % 4` connections
/// (sized to demand or fixed, lending a random or the lowest idle one, by the next bits),
/// checking every rule after each one and, at the end, that nothing leaked.
pub fn check_client_ops(rover: [u8; 8], max_slots: u8, seed: u64, ops: &[ClientOp]) {
    let mut config = ClientConfig::default();
    config.pool.max_slots = 1 + usize::from(max_slots % 4);
    if max_slots & 4 != 0 {
        config.sizing = PoolSizing::Fixed;
    }
    if max_slots & 8 != 0 {
        config.lease = LeasePolicy::Lowest;
    }
    config.rover = config_from_bytes(rover);
    let mut model = Model::new(config, seed);
    for (step, op) in ops.iter().enumerate() {
        model.context = format!("step {step} ({op:?})");
        model.apply(op);
        model.drain();
        model.check();
    }
    model.context = "finish".to_owned();
    model.finish();
}

/// Where a connection the model handed in is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    /// The core holds it (idle, or waiting for its `Output::Close`).
    InCore,
    /// A lease the model holds.
    Lent,
    /// Detached: the model took it for good.
    Detached,
    /// The core handed it back in `Output::Close`.
    Closed,
}

/// An attempt the core asked for, and what the model fed it.
#[derive(Debug)]
struct Attempt {
    id: AttemptId,
    live: bool,
    fed: Vec<u8>,
}

struct Model {
    core: ClientCore<u32>,
    max_slots: usize,
    now: Instant,
    timeout: Option<Instant>,
    servers: BTreeSet<SocketAddr>,
    attempts: Vec<Attempt>,
    conns: BTreeMap<u32, Conn>,
    next_conn: u32,
    leases: Vec<Lease<u32>>,
    returned: Vec<LeaseId>,
    tickets: Vec<Ticket>,
    closed: bool,
    context: String,
}

impl Model {
    fn new(config: ClientConfig, seed: u64) -> Model {
        let max_slots = config.pool.max_slots;
        Model {
            core: ClientCore::new(config, seed).expect("a valid configuration"),
            max_slots,
            now: Instant::ZERO,
            timeout: None,
            servers: BTreeSet::new(),
            attempts: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            leases: Vec::new(),
            returned: Vec::new(),
            tickets: Vec::new(),
            closed: false,
            context: String::new(),
        }
    }

    fn apply(&mut self, op: &ClientOp) {
        let now = self.now;
        match *op {
            ClientOp::AddServer(n) => {
                let server = address(n);
                let added = self.core.add_server(server, now);
                let expected = !self.closed && !self.servers.contains(&server);
                assert_eq!(added, expected, "{}: add_server said {added}", self.context);
                if added {
                    self.servers.insert(server);
                }
            }
            ClientOp::RemoveServer(n) => {
                let server = address(n);
                let removed = self.core.remove_server(server, now);
                let known = self.servers.remove(&server);
                assert_eq!(
                    removed, known,
                    "{}: remove_server said {removed}",
                    self.context
                );
            }
            ClientOp::Connected(pick) => {
                if let Some(at) = self.pick_attempt(pick) {
                    let result = self.core.handle_connected(self.attempts[at].id, now);
                    self.expect_stale_unless_live(at, result);
                }
            }
            ClientOp::ConnectFailed(pick) => {
                if let Some(at) = self.pick_attempt(pick) {
                    let id = self.attempts[at].id;
                    let result = self
                        .core
                        .handle_connect_failed(id, ConnectFailure::Refused, now);
                    self.expect_stale_unless_live(at, result);
                    self.attempts[at].live = false;
                }
            }
            ClientOp::Received(pick, ref bytes) => {
                if let Some(at) = self.pick_attempt(pick) {
                    self.receive(at, bytes);
                }
            }
            ClientOp::Closed(pick) => {
                if let Some(at) = self.pick_attempt(pick) {
                    let result = self.core.handle_closed(self.attempts[at].id, now);
                    self.expect_stale_unless_live(at, result);
                    self.attempts[at].live = false;
                }
            }
            ClientOp::ReadFailed(pick) => {
                if let Some(at) = self.pick_attempt(pick) {
                    let result = self.core.handle_read_failed(self.attempts[at].id, now);
                    self.expect_stale_unless_live(at, result);
                    self.attempts[at].live = false;
                }
            }
            ClientOp::Checkout => {
                if let Some(lease) = self.core.checkout(now) {
                    self.lent(lease);
                }
            }
            ClientOp::JoinLine => self.tickets.push(self.core.join_line(now)),
            ClientOp::CheckoutInLine(pick) => {
                if let Some(&ticket) = pick_from(&self.tickets, pick)
                    && let Some(lease) = self.core.checkout_in_line(ticket, now)
                {
                    self.tickets.retain(|&held| held != ticket);
                    self.lent(lease);
                }
            }
            ClientOp::LeaveLine(pick) => {
                if let Some(&ticket) = pick_from(&self.tickets, pick) {
                    self.core.leave_line(ticket, now);
                    self.tickets.retain(|&held| held != ticket);
                }
            }
            ClientOp::Checkin(pick, end) => {
                if !self.leases.is_empty() {
                    let lease = self.leases.swap_remove(pick % self.leases.len());
                    self.conns.insert(lease.conn, Conn::InCore);
                    let returned = self.core.checkin(lease.id, lease.conn, end, now);
                    let ctx = &self.context;
                    match returned {
                        Ok(Returned::Idle(_)) => {
                            assert!(
                                end == LeaseEnd::Finished && !self.closed,
                                "{ctx}: idle again"
                            )
                        }
                        Ok(Returned::Closed) => {}
                        Err(error) => panic!("{ctx}: a current lease was refused: {error}"),
                    }
                    self.returned.push(lease.id);
                }
            }
            ClientOp::StaleCheckin(pick) => {
                if let Some(&lease) = pick_from(&self.returned, pick) {
                    let conn = self.hand_in();
                    let refused = self.core.checkin(lease, conn, LeaseEnd::Finished, now);
                    assert_eq!(
                        refused,
                        Err(NotLeased { lease }),
                        "{}: a lease returned twice",
                        self.context
                    );
                }
            }
            ClientOp::Detach(pick) => {
                if !self.leases.is_empty() {
                    let lease = self.leases.swap_remove(pick % self.leases.len());
                    let detached = self.core.detach(lease.id, now);
                    assert_eq!(detached, Ok(()), "{}: detach", self.context);
                    self.conns.insert(lease.conn, Conn::Detached);
                }
            }
            ClientOp::Idle(pick, signal) => {
                let idle: Vec<_> = self
                    .core
                    .idle_mut()
                    .map(|(id, &mut conn)| (id, conn))
                    .collect();
                if let Some(&(id, conn)) = pick_from(&idle, pick) {
                    let ctx = &self.context;
                    assert_eq!(
                        self.conns.get(&conn),
                        Some(&Conn::InCore),
                        "{ctx}: idle {conn}"
                    );
                    let result = self.core.handle_idle_signal(id, signal, now);
                    assert_eq!(result, Ok(()), "{ctx}: idle signal");
                }
            }
            ClientOp::Advance(micros) => {
                self.now = Instant::from_micros(self.now.as_micros().saturating_add(micros));
                self.core.handle_timeout(self.now);
            }
            ClientOp::AdvanceToTimeout => {
                if let Some(due) = self.timeout.filter(|&due| due > self.now) {
                    self.now = due;
                }
                self.core.handle_timeout(self.now);
            }
            ClientOp::Close => {
                self.core.close(now);
                self.closed = true;
            }
        }
    }

    /// Feeds `bytes`, cut to what the core allows, and checks the answer against the
    /// reference grammar.
    fn receive(&mut self, at: usize, bytes: &[u8]) {
        let now = self.now;
        let attempt = &mut self.attempts[at];
        let room = MAX_LINE_LEN - attempt.fed.len().min(MAX_LINE_LEN);
        let chunk = &bytes[..bytes.len().min(room)];
        let answer = self.core.handle_received(attempt.id, chunk, now);
        let ctx = &self.context;
        if !attempt.live {
            assert_eq!(
                answer,
                Err(StaleAttempt {
                    attempt: attempt.id
                }),
                "{ctx}: stale"
            );
            return;
        }
        attempt.fed.extend_from_slice(chunk);
        let verdict = reference_verdict(&attempt.fed, false);
        let answer = answer.unwrap_or_else(|stale| panic!("{ctx}: a live attempt is {stale}"));
        match (answer, verdict) {
            (Handshake::NeedMore { at_most }, Verdict::Incomplete) => {
                assert_eq!(at_most, MAX_LINE_LEN - attempt.fed.len(), "{ctx}: room");
            }
            (Handshake::Complete(ready), Verdict::Line { slot, len }) => {
                assert_eq!(
                    (ready.slot(), len),
                    (slot, attempt.fed.len()),
                    "{ctx}: line"
                );
                attempt.live = false;
                let conn = self.hand_in();
                self.core.deliver(ready, conn, now);
            }
            (Handshake::Failed, Verdict::Error(_)) => attempt.live = false,
            (Handshake::Failed, Verdict::Line { len, .. }) => {
                assert!(len < attempt.fed.len(), "{ctx}: a whole line failed");
                attempt.live = false;
            }
            (answer, verdict) => {
                panic!(
                    "{ctx}: {:?} gave {answer:?}, the grammar says {verdict:?}",
                    attempt.fed
                )
            }
        }
    }

    /// An even pick chooses among the live attempts (if any), an odd one among all, so that
    /// lines get completed as well as stale ids refused.
    fn pick_attempt(&self, pick: usize) -> Option<usize> {
        let live: Vec<usize> = (0..self.attempts.len())
            .filter(|&at| self.attempts[at].live)
            .collect();
        match pick_from(&live, pick / 2) {
            Some(&at) if pick.is_multiple_of(2) => Some(at),
            _ => pick_from(&self.attempts, pick).map(|_| pick % self.attempts.len()),
        }
    }

    fn expect_stale_unless_live(&self, at: usize, result: Result<(), StaleAttempt>) {
        let attempt = &self.attempts[at];
        let expected = if attempt.live {
            Ok(())
        } else {
            Err(StaleAttempt {
                attempt: attempt.id,
            })
        };
        assert_eq!(result, expected, "{}: {}", self.context, attempt.id);
    }

    /// A new connection, handed to the core.
    fn hand_in(&mut self) -> u32 {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(conn, Conn::InCore);
        conn
    }

    fn lent(&mut self, lease: Lease<u32>) {
        let ctx = &self.context;
        assert!(!self.closed, "{ctx}: lent after close");
        assert!(
            self.servers.contains(&lease.server),
            "{ctx}: lent from a dropped server"
        );
        let was = self.conns.insert(lease.conn, Conn::Lent);
        assert_eq!(was, Some(Conn::InCore), "{ctx}: lent {} twice", lease.conn);
        self.leases.push(lease);
    }

    /// Acts on every output, checking each.
    fn drain(&mut self) {
        loop {
            let ctx = &self.context;
            match self.core.poll_output() {
                Output::Connect { attempt, server } => {
                    assert!(self.servers.contains(&server), "{ctx}: connect to {server}");
                    let live = self.attempts.iter().any(|known| known.id == attempt);
                    assert!(!live, "{ctx}: {attempt} started twice");
                    self.attempts.push(Attempt {
                        id: attempt,
                        live: true,
                        fed: Vec::new(),
                    });
                }
                Output::Abort(attempt) => {
                    let known = self.attempts.iter_mut().find(|known| known.id == attempt);
                    let known =
                        known.unwrap_or_else(|| panic!("{ctx}: abort of unknown {attempt}"));
                    assert!(known.live, "{ctx}: {attempt} aborted after its end");
                    known.live = false;
                }
                Output::Close(conn) => {
                    let was = self.conns.insert(conn, Conn::Closed);
                    assert_eq!(was, Some(Conn::InCore), "{ctx}: closed {conn}");
                }
                Output::Resolve { name, .. } => panic!("{ctx}: lookup of {name}, never added"),
                Output::Event(ClientEvent::Kept { server, .. }) => {
                    assert!(self.servers.contains(&server), "{ctx}: kept from {server}");
                }
                Output::Event(_) | Output::Idle => {}
                Output::Timeout(timeout) => {
                    self.timeout = timeout;
                    return;
                }
            }
        }
    }

    fn check(&self) {
        let ctx = &self.context;
        let status = self.core.status();
        assert!(status.pool.held <= self.max_slots, "{ctx}: {status:?}");
        let in_core = self
            .conns
            .values()
            .filter(|&&conn| conn == Conn::InCore)
            .count();
        assert_eq!(
            status.pool.idle, in_core,
            "{ctx}: the idle ones are the core's"
        );
        assert_eq!(
            status.pool.leased + status.pool.evicted_awaiting_return,
            self.leases.len(),
            "{ctx}: leases"
        );
        for server in &status.servers {
            assert!(
                self.servers.contains(&server.server),
                "{ctx}: status lists {server:?}"
            );
        }
        assert_eq!(status.waiting_gets, self.tickets.len(), "{ctx}: the line");
        if self.closed {
            let live = self.attempts.iter().filter(|attempt| attempt.live).count();
            assert_eq!(live, 0, "{ctx}: attempts after close");
        }
    }

    /// Returns every lease, closes the client: every connection must be closed or detached,
    /// every attempt ended.
    fn finish(&mut self) {
        for lease in std::mem::take(&mut self.leases) {
            self.conns.insert(lease.conn, Conn::InCore);
            let _ = self
                .core
                .checkin(lease.id, lease.conn, LeaseEnd::Finished, self.now);
        }
        self.core.close(self.now);
        self.closed = true;
        self.drain();
        self.check();
        for (conn, state) in &self.conns {
            assert!(
                matches!(state, Conn::Closed | Conn::Detached),
                "{}: connection {conn} leaked ({state:?})",
                self.context
            );
        }
        assert_eq!(
            self.core.status().pool.held,
            0,
            "{}: held after close",
            self.context
        );
    }
}

fn address(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(n % 4)))
}

fn pick_from<T>(items: &[T], pick: usize) -> Option<&T> {
    (!items.is_empty()).then(|| &items[pick % items.len()])
}

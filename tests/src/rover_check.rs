//! Checking code for the rover: random operation sequences applied to a real
//! [`Rover`] with a virtual clock, every rule of PROTOCOL.md section 4 checked after each one.
//!
//! Shared by the property tests (`tests/rover_props.rs`) and the fuzz targets: both build a
//! list of [`RoverOp`] (the fuzzer with [`ops_from_bytes`]) and call [`check_rover_ops`],
//! which panics with a message naming the broken rule.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use callosum_proto::rover::{
    Action, AttemptId, AttemptPhase, ConnectFailure, Event, HandshakeFailure, Rover, RoverConfig,
};
use callosum_proto::{Instant, ServerId};

use crate::slot_line_reference::{Verdict, reference_verdict};

/// One input to the rover. Attempt operands (`usize`) pick, by index modulo, among the
/// attempts in flight followed by the recently finished ones, so stale ids get exercised too.
///
/// ```
/// use callosum_tests::rover_check::{check_rover_ops, RoverOp};
/// use callosum_proto::rover::RoverConfig;
///
/// let ops = [RoverOp::AddServer(1), RoverOp::Start, RoverOp::Connected(0), RoverOp::Advance(5_000_000)];
/// check_rover_ops(RoverConfig::default(), 7, &ops);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoverOp {
    /// `add_server(ServerId(n))`.
    AddServer(u8),
    /// `remove_server(ServerId(n))`.
    RemoveServer(u8),
    /// `start(now)`.
    Start,
    /// `stop()`.
    Stop,
    /// `set_demand(n, now)`.
    SetDemand(u8),
    /// Move the clock this many microseconds (saturating) and call `handle_timeout(now)`.
    Advance(u64),
    /// Move the clock to exactly `poll_timeout()` (if any, and not back) and call
    /// `handle_timeout(now)`: what a well-behaved adapter does, deadlines hit to the micro.
    AdvanceToTimeout,
    /// `handle_connected` for the picked attempt.
    Connected(usize),
    /// `handle_connect_failed` for the picked attempt.
    ConnectFailed(usize, ConnectFailure),
    /// `handle_received` with these bytes for the picked attempt.
    Received(usize, Vec<u8>),
    /// `handle_closed` for the picked attempt.
    Closed(usize),
    /// `handle_read_failed` for the picked attempt.
    ReadFailed(usize),
    /// Every input, for a finished attempt: each must be refused and change nothing.
    StaleInput(usize),
    /// `handle_conn_lost(ServerId(n), now)`: a pooled connection broke, a probe is owed.
    ConnLost(u8),
    /// `set_held(ServerId(n), held)`: what spreading avoids.
    SetHeld(u8, u8),
    /// `handle_near_miss(now)`: the pool turned a connection away by a hair.
    NearMiss,
    /// `handle_kept()`: the pool kept a connection.
    Kept,
}

/// Byte strings worth sending as the slot line: valid, split, trailed, and each kind of bad.
pub(crate) const LINES: [&[u8]; 10] = [
    b"0\r\n",
    b"13\r\nGET /",
    b"4",
    b"2\r",
    b"\n",
    b"-1\r\n",
    b"\r\n",
    b"00000000001",
    b"4294967296\r\n",
    b"",
];

/// Decodes eight bytes into a valid configuration that still covers the extremes: intervals
/// from 1 ms, jitter up to the whole interval, short and long timeouts, one to eight attempts
/// in flight, fill on and off, backoff off (base 0) or capped, near misses off or hastening to
/// an eighth of the interval.
pub fn config_from_bytes(bytes: [u8; 8]) -> RoverConfig {
    let [
        interval,
        jitter,
        connect,
        handshake,
        in_flight,
        fill,
        base,
        cap,
    ] = bytes;
    let interval = Duration::from_millis(1 + u64::from(interval) * 10);
    let backoff_base = Duration::from_millis(u64::from(base) * 4);
    RoverConfig {
        interval,
        jitter: interval * u32::from(jitter % 101) / 100,
        connect_timeout: Duration::from_millis(1 + u64::from(connect) * 10),
        handshake_timeout: Duration::from_millis(1 + u64::from(handshake) * 10),
        max_in_flight: 1 + usize::from(in_flight % 8),
        fill: fill % 2 == 1,
        backoff_base,
        backoff_max: backoff_base + Duration::from_millis(u64::from(cap) * 20),
        spread: fill & 2 != 0,
        probes: fill & 4 != 0,
        near_miss_interval: (fill & 8 != 0).then(|| (interval / 8).max(Duration::from_micros(1))),
    }
}

/// Decodes a fuzzer's bytes into operations; total: any input gives a list, never a panic.
///
/// ```
/// use callosum_tests::rover_check::{ops_from_bytes, RoverOp};
///
/// assert_eq!(ops_from_bytes(&[0, 3]), [RoverOp::AddServer(3)]);
/// assert!(ops_from_bytes(&[]).is_empty());
/// ```
pub fn ops_from_bytes(bytes: &[u8]) -> Vec<RoverOp> {
    let mut input = bytes.iter().copied();
    let mut ops = Vec::new();
    while let Some(tag) = input.next() {
        let mut arg = || input.next().unwrap_or(0);
        let op = match tag % 17 {
            0 => RoverOp::AddServer(arg() % 8),
            1 => RoverOp::RemoveServer(arg() % 8),
            2 => RoverOp::Start,
            3 => RoverOp::Stop,
            4 => RoverOp::SetDemand(arg()),
            5 => {
                let size = u64::from(arg());
                RoverOp::Advance(match arg() % 5 {
                    0 => 0,
                    1 => size * 1_000,
                    2 => size * 10_000,
                    3 => size * 3_600_000_000,
                    _ => u64::MAX,
                })
            }
            6 => RoverOp::Connected(usize::from(arg())),
            7 => {
                let pick = usize::from(arg());
                let reason = match arg() % 4 {
                    0 => ConnectFailure::Refused,
                    1 => ConnectFailure::Reset,
                    2 => ConnectFailure::TimedOut,
                    _ => ConnectFailure::Other,
                };
                RoverOp::ConnectFailed(pick, reason)
            }
            8 => {
                let pick = usize::from(arg());
                let selector = usize::from(arg());
                let line = match LINES.get(selector % 12) {
                    Some(line) => line.to_vec(),
                    None => (0..arg() % 8).map(|_| arg()).collect(),
                };
                RoverOp::Received(pick, line)
            }
            9 => RoverOp::Closed(usize::from(arg())),
            10 => RoverOp::ReadFailed(usize::from(arg())),
            11 => RoverOp::AdvanceToTimeout,
            12 => RoverOp::StaleInput(usize::from(arg())),
            13 => RoverOp::ConnLost(arg() % 8),
            14 => RoverOp::SetHeld(arg() % 8, arg() % 4),
            15 => RoverOp::NearMiss,
            _ => RoverOp::Kept,
        };
        ops.push(op);
    }
    ops
}

/// What the checker knows of one attempt in flight.
#[derive(Debug)]
struct Tracked {
    server: ServerId,
    phase: AttemptPhase,
    deadline: Instant,
    /// The bytes received so far: the start of a slot line, judged by the reference grammar
    /// ([`reference_verdict`]), not by the crate's own decoder.
    received: Vec<u8>,
}

/// What the current step is allowed to produce.
#[derive(Debug, Default)]
struct Expect {
    /// An attempt whose input this step was, and the outcome its input calls for.
    input: Option<(AttemptId, Outcome)>,
    /// Attempts may time out (only `handle_timeout`).
    timeouts: bool,
    /// A scheduled tick may run (start or handle_timeout): at most one `NoServers`.
    tick: bool,
    /// Aborts allowed: every attempt (stop) or those of one server (remove_server).
    abort_all: bool,
    abort_server: Option<ServerId>,
}

/// The outcome the reference grammar and the input call for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The attempt stays in flight.
    Continue,
    /// `Event::Connection` with this slot.
    Connection(u32),
    /// `Event::Unreachable` with this reason, and a Close.
    Unreachable(ConnectFailure),
    /// `Event::HandshakeFailed` with this reason, and a Close.
    HandshakeFailed(HandshakeFailure),
}

struct Checker {
    rover: Rover,
    config: RoverConfig,
    now: Instant,
    servers: BTreeSet<ServerId>,
    running: bool,
    /// Attempts in flight, in launch order.
    live: Vec<(AttemptId, Tracked)>,
    /// Attempts that ended, most recent last (a few, for stale inputs).
    recent: Vec<AttemptId>,
    ended: HashSet<AttemptId>,
    launched: usize,
}

/// Every action and event the rover has queued, in order.
///
/// ```
/// use callosum_proto::rover::{Rover, RoverConfig};
/// use callosum_proto::{Instant, ServerId};
/// use callosum_tests::rover_check::{connects, drain};
///
/// let mut rover = Rover::new(RoverConfig::default(), 1).unwrap();
/// rover.add_server(ServerId(7));
/// rover.start(Instant::ZERO);
/// let (actions, events) = drain(&mut rover);
/// assert_eq!(connects(&actions)[0].1, ServerId(7));
/// assert!(events.is_empty());
/// ```
pub fn drain(rover: &mut Rover) -> (Vec<Action>, Vec<Event>) {
    let actions = std::iter::from_fn(|| rover.poll_action()).collect();
    let events = std::iter::from_fn(|| rover.poll_event()).collect();
    (actions, events)
}

/// The connect attempts among `actions`: (attempt, server). See [`drain`] for an example.
pub fn connects(actions: &[Action]) -> Vec<(AttemptId, ServerId)> {
    actions
        .iter()
        .filter_map(|action| match *action {
            Action::Connect { attempt, server } => Some((attempt, server)),
            Action::Close { .. } => None,
        })
        .collect()
}

/// Runs `ops` against a rover built from `config` and `seed`, checking after every step:
///
/// - a `Connect` names a server in the set (never one dropped and not re-added), only while
///   running, with a fresh id and a deadline of `now + connect_timeout`;
/// - `in_flight() <= max_in_flight`, and `attempts()` matches what the checker tracks;
/// - after `handle_timeout(now)` no attempt has a deadline `<= now` and `poll_timeout()` is
///   `None` or later than `now`; a `TimedOut` only comes from `handle_timeout` and only
///   for an attempt whose deadline had come;
/// - every `Connect` ends exactly once: a `Connection` event, or a `Close` action (with one
///   `Unreachable`/`HandshakeFailed` event when it failed, none when it was aborted);
/// - aborts only from `stop` or from dropping that attempt's server, and no event for them;
/// - the outcome of an input matches the input (and, for bytes, the reference grammar of
///   [`crate::slot_line_reference`], a reading independent of the crate's decoder);
///   inputs for finished attempts are refused and change nothing;
/// - at most one `NoServers` per tick, and only from a tick.
///
/// At the end the rover is stopped and every attempt must have ended.
///
/// # Panics
///
/// When the rover breaks a rule; the message names it. Also if `config` is invalid.
///
/// ```
/// use callosum_tests::rover_check::{check_rover_ops, RoverOp};
/// use callosum_proto::rover::RoverConfig;
///
/// check_rover_ops(RoverConfig::default(), 1, &[RoverOp::Start, RoverOp::Advance(u64::MAX)]);
/// ```
pub fn check_rover_ops(config: RoverConfig, seed: u64, ops: &[RoverOp]) {
    let rover = Rover::new(config.clone(), seed).expect("check_rover_ops needs a valid config");
    let mut checker = Checker {
        rover,
        config,
        now: Instant::ZERO,
        servers: BTreeSet::new(),
        running: false,
        live: Vec::new(),
        recent: Vec::new(),
        ended: HashSet::new(),
        launched: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        checker.apply(op);
        let after_timeout = matches!(op, RoverOp::Advance(_) | RoverOp::AdvanceToTimeout);
        checker.check_state(&format!("step {step} ({op:?})"), after_timeout);
    }
    checker.rover.stop();
    checker.running = false;
    checker.settle(
        &Expect {
            abort_all: true,
            ..Expect::default()
        },
        "final stop",
    );
    assert!(
        checker.live.is_empty(),
        "every Connect ends exactly once: {} attempts never ended",
        checker.live.len()
    );
    assert_eq!(
        checker.ended.len(),
        checker.launched,
        "every Connect ends exactly once"
    );
}

impl Checker {
    /// The attempt an operand picks: in flight first, then recently finished.
    fn pick(&self, index: usize) -> Option<AttemptId> {
        let total = self.live.len() + self.recent.len();
        if total == 0 {
            return None;
        }
        let index = index % total;
        self.live
            .iter()
            .map(|(id, _)| *id)
            .chain(self.recent.iter().copied())
            .nth(index)
    }

    fn apply(&mut self, op: &RoverOp) {
        let label = format!("{op:?}");
        let mut expect = Expect::default();
        match *op {
            RoverOp::AddServer(n) => {
                let id = ServerId(u32::from(n));
                let added = self.servers.insert(id);
                assert_eq!(
                    self.rover.add_server(id),
                    added,
                    "add_server says if it is new"
                );
            }
            RoverOp::RemoveServer(n) => {
                let id = ServerId(u32::from(n));
                let removed = self.servers.remove(&id);
                assert_eq!(
                    self.rover.remove_server(id),
                    removed,
                    "remove_server says if it was known"
                );
                expect.abort_server = Some(id);
            }
            RoverOp::Start => {
                expect.tick = !self.running;
                self.running = true;
                self.rover.start(self.now);
            }
            RoverOp::Stop => {
                self.running = false;
                self.rover.stop();
                expect.abort_all = true;
            }
            RoverOp::SetDemand(n) => self.rover.set_demand(usize::from(n), self.now),
            RoverOp::ConnLost(n) => self
                .rover
                .handle_conn_lost(ServerId(u32::from(n)), self.now),
            RoverOp::SetHeld(n, held) => {
                self.rover
                    .set_held(ServerId(u32::from(n)), usize::from(held));
            }
            RoverOp::NearMiss => self.rover.handle_near_miss(self.now),
            RoverOp::Kept => self.rover.handle_kept(),
            RoverOp::Advance(micros) => {
                self.now = Instant::from_micros(self.now.as_micros().saturating_add(micros));
                expect.timeouts = true;
                expect.tick = true;
                self.rover.handle_timeout(self.now);
            }
            RoverOp::AdvanceToTimeout => {
                if let Some(due) = self.rover.poll_timeout() {
                    self.now = self.now.max(due);
                }
                expect.timeouts = true;
                expect.tick = true;
                self.rover.handle_timeout(self.now);
            }
            RoverOp::StaleInput(index) => {
                if !self.recent.is_empty() {
                    let attempt = self.recent[index % self.recent.len()];
                    self.check_stale(attempt, &label);
                }
            }
            RoverOp::Connected(index)
            | RoverOp::ConnectFailed(index, _)
            | RoverOp::Received(index, _)
            | RoverOp::Closed(index)
            | RoverOp::ReadFailed(index) => {
                let Some(attempt) = self.pick(index) else {
                    return self.settle(&expect, &label);
                };
                if self.tracked(attempt).is_none() {
                    self.check_stale(attempt, &label);
                    return self.settle(&expect, &label);
                }
                let outcome = self.input(attempt, op);
                expect.input = Some((attempt, outcome));
            }
        }
        self.settle(&expect, &label);
    }

    /// Feeds an input for a live attempt and returns the outcome it calls for.
    fn input(&mut self, attempt: AttemptId, op: &RoverOp) -> Outcome {
        let now = self.now;
        let handshake_timeout = self.config.handshake_timeout;
        let tracked = self
            .live
            .iter_mut()
            .find(|(id, _)| *id == attempt)
            .map(|(_, tracked)| tracked)
            .expect("picked a live attempt");
        let refused = "an input for an attempt in flight is accepted";
        match op {
            RoverOp::Connected(_) => {
                self.rover.handle_connected(attempt, now).expect(refused);
                if tracked.phase == AttemptPhase::Connecting {
                    tracked.phase = AttemptPhase::Handshaking;
                    tracked.deadline = now + handshake_timeout;
                }
                Outcome::Continue
            }
            RoverOp::ConnectFailed(_, reason) => {
                self.rover
                    .handle_connect_failed(attempt, *reason, now)
                    .expect(refused);
                // Unreachable means never established: a connection that was established
                // (connected, or reset, which only an established one is) failed its
                // handshake, whatever the moment the adapter noticed.
                if tracked.phase == AttemptPhase::Handshaking || *reason == ConnectFailure::Reset {
                    Outcome::HandshakeFailed(HandshakeFailure::ReadFailed)
                } else {
                    Outcome::Unreachable(*reason)
                }
            }
            RoverOp::Received(_, bytes) => {
                let consumed = self
                    .rover
                    .handle_received(attempt, bytes, now)
                    .expect(refused);
                let before = tracked.received.len();
                let mut stream = tracked.received.clone();
                stream.extend_from_slice(bytes);
                let (expected, outcome) = match reference_verdict(&stream, false) {
                    Verdict::Incomplete => {
                        tracked.received = stream;
                        // Bytes prove the connect, as `handle_connected` would.
                        if !bytes.is_empty() && tracked.phase == AttemptPhase::Connecting {
                            tracked.phase = AttemptPhase::Handshaking;
                            tracked.deadline = now + handshake_timeout;
                        }
                        (bytes.len(), Outcome::Continue)
                    }
                    // The line ends in this read: the bytes after it are not the rover's.
                    Verdict::Line { slot, len } => (len - before, Outcome::Connection(slot)),
                    Verdict::Error(error) => (
                        bytes.len(),
                        Outcome::HandshakeFailed(HandshakeFailure::Decode(error)),
                    ),
                };
                assert_eq!(
                    consumed, expected,
                    "handle_received consumes the slot line and not a byte after it"
                );
                outcome
            }
            RoverOp::Closed(_) => {
                self.rover.handle_closed(attempt, now).expect(refused);
                let Verdict::Error(error) = reference_verdict(&tracked.received, true) else {
                    panic!("a live attempt's line is unfinished, so its end is an error");
                };
                Outcome::HandshakeFailed(HandshakeFailure::Decode(error))
            }
            RoverOp::ReadFailed(_) => {
                self.rover.handle_read_failed(attempt, now).expect(refused);
                Outcome::HandshakeFailed(HandshakeFailure::ReadFailed)
            }
            _ => Outcome::Continue,
        }
    }

    /// Every input for a finished attempt is refused with that id and produces nothing.
    fn check_stale(&mut self, attempt: AttemptId, label: &str) {
        let now = self.now;
        let rule = "an input for a finished attempt is refused (StaleAttempt)";
        let stale = |result: Result<(), callosum_proto::rover::StaleAttempt>| {
            assert_eq!(
                result.map_err(|e| e.attempt),
                Err(attempt),
                "{label}: {rule}"
            );
        };
        stale(self.rover.handle_connected(attempt, now));
        stale(
            self.rover
                .handle_connect_failed(attempt, ConnectFailure::Refused, now),
        );
        stale(self.rover.handle_received(attempt, b"1\r\n", now).map(drop));
        stale(self.rover.handle_closed(attempt, now));
        stale(self.rover.handle_read_failed(attempt, now));
        assert_eq!(
            self.rover.poll_action(),
            None,
            "{label}: a stale input produces no action"
        );
        assert_eq!(
            self.rover.poll_event(),
            None,
            "{label}: a stale input produces no event"
        );
    }

    /// Drains the outputs of one step and checks them against what the step allows.
    fn settle(&mut self, expect: &Expect, label: &str) {
        let (actions, events) = drain(&mut self.rover);
        let closed: HashSet<AttemptId> = actions
            .iter()
            .filter_map(|action| match *action {
                Action::Close { attempt } => Some(attempt),
                Action::Connect { .. } => None,
            })
            .collect();
        let mut failed = HashSet::new();
        let mut no_servers = 0;
        let mut input_outcome = Outcome::Continue;

        for event in &events {
            match *event {
                Event::NoServers => no_servers += 1,
                Event::Connection {
                    attempt,
                    server,
                    slot,
                } => {
                    let tracked = self.untrack(attempt).unwrap_or_else(|| {
                        panic!("{label}: Connection for {attempt}, which is not in flight")
                    });
                    assert_eq!(
                        tracked.server, server,
                        "{label}: Connection names its server"
                    );
                    assert!(
                        !closed.contains(&attempt),
                        "{label}: a delivered connection is not also closed"
                    );
                    assert!(
                        self.servers.contains(&server),
                        "{label}: nothing of a dropped server is delivered"
                    );
                    self.check_input_outcome(expect, attempt, Outcome::Connection(slot), label);
                    input_outcome = Outcome::Connection(slot);
                    self.finish(attempt, label);
                }
                Event::Unreachable {
                    attempt,
                    server,
                    reason,
                } => {
                    let outcome = Outcome::Unreachable(reason);
                    self.failure(expect, attempt, server, outcome, &closed, label);
                    failed.insert(attempt);
                    if Some(attempt) == expect.input.map(|(id, _)| id) {
                        input_outcome = outcome;
                    }
                }
                Event::HandshakeFailed {
                    attempt,
                    server,
                    reason,
                } => {
                    let outcome = Outcome::HandshakeFailed(reason);
                    self.failure(expect, attempt, server, outcome, &closed, label);
                    failed.insert(attempt);
                    if Some(attempt) == expect.input.map(|(id, _)| id) {
                        input_outcome = outcome;
                    }
                }
            }
        }
        assert!(
            no_servers <= usize::from(expect.tick),
            "{label}: NoServers at most once per due tick, and only from a tick"
        );
        if let Some((attempt, outcome)) = expect.input {
            assert_eq!(
                input_outcome, outcome,
                "{label}: the outcome of an input for {attempt} matches the input"
            );
        }

        for action in &actions {
            match *action {
                Action::Connect { attempt, server } => {
                    assert!(self.running, "{label}: a stopped rover launches nothing");
                    assert!(
                        self.servers.contains(&server),
                        "{label}: Connect only to a server in the set (never a dropped one)"
                    );
                    assert!(
                        self.tracked(attempt).is_none() && !self.ended.contains(&attempt),
                        "{label}: a Connect has a fresh id"
                    );
                    self.launched += 1;
                    self.live.push((
                        attempt,
                        Tracked {
                            server,
                            phase: AttemptPhase::Connecting,
                            deadline: self.now + self.config.connect_timeout,
                            received: Vec::new(),
                        },
                    ));
                }
                Action::Close { attempt } => {
                    if failed.contains(&attempt) {
                        continue;
                    }
                    let tracked = self.untrack(attempt).unwrap_or_else(|| {
                        panic!("{label}: Close for {attempt}, which is not in flight")
                    });
                    assert!(
                        expect.abort_all || expect.abort_server == Some(tracked.server),
                        "{label}: an attempt is aborted only by stop or by dropping its server"
                    );
                    self.finish(attempt, label);
                }
            }
        }
    }

    /// A failure event: the attempt was in flight, is closed in the same step, and the
    /// failure is one the step allows.
    fn failure(
        &mut self,
        expect: &Expect,
        attempt: AttemptId,
        server: ServerId,
        outcome: Outcome,
        closed: &HashSet<AttemptId>,
        label: &str,
    ) {
        let tracked = self.untrack(attempt).unwrap_or_else(|| {
            panic!(
                "{label}: failure event for {attempt}, which is not in flight (aborted or ended)"
            )
        });
        assert_eq!(
            tracked.server, server,
            "{label}: a failure names its server"
        );
        assert!(
            closed.contains(&attempt),
            "{label}: a failed attempt is closed in the same step"
        );
        let timed_out = match outcome {
            Outcome::Unreachable(ConnectFailure::TimedOut) => {
                tracked.phase == AttemptPhase::Connecting
            }
            Outcome::HandshakeFailed(HandshakeFailure::TimedOut) => {
                tracked.phase == AttemptPhase::Handshaking
            }
            _ => false,
        };
        let is_input = expect.input.map(|(id, _)| id) == Some(attempt);
        if is_input {
            self.check_input_outcome(expect, attempt, outcome, label);
        } else {
            assert!(
                expect.timeouts && timed_out,
                "{label}: an attempt fails on its own only by timing out in its phase ({outcome:?})"
            );
            assert!(
                tracked.deadline <= self.now,
                "{label}: an attempt times out only once its deadline has come"
            );
        }
        self.finish(attempt, label);
    }

    fn check_input_outcome(
        &self,
        expect: &Expect,
        attempt: AttemptId,
        outcome: Outcome,
        label: &str,
    ) {
        let expected = expect
            .input
            .filter(|(id, _)| *id == attempt)
            .map(|(_, o)| o);
        assert_eq!(
            expected,
            Some(outcome),
            "{label}: an attempt ends only because of its own input"
        );
    }

    fn tracked(&self, attempt: AttemptId) -> Option<&Tracked> {
        self.live
            .iter()
            .find(|(id, _)| *id == attempt)
            .map(|(_, tracked)| tracked)
    }

    fn untrack(&mut self, attempt: AttemptId) -> Option<Tracked> {
        let position = self.live.iter().position(|(id, _)| *id == attempt)?;
        Some(self.live.remove(position).1)
    }

    fn finish(&mut self, attempt: AttemptId, label: &str) {
        assert!(self.ended.insert(attempt), "{label}: {attempt} ended twice");
        self.recent.push(attempt);
        if self.recent.len() > 8 {
            self.recent.remove(0);
        }
    }

    /// State checks after every step.
    fn check_state(&self, label: &str, after_timeout: bool) {
        let rover = &self.rover;
        assert_eq!(rover.is_running(), self.running, "{label}: is_running");
        assert!(
            rover.in_flight() <= self.config.max_in_flight,
            "{label}: in_flight <= max_in_flight"
        );
        assert_eq!(
            rover.in_flight(),
            self.live.len(),
            "{label}: in_flight counts the attempts launched and not ended"
        );
        let servers: BTreeSet<ServerId> = rover.servers().collect();
        assert_eq!(servers, self.servers, "{label}: servers() is the set");
        for info in rover.attempts() {
            let tracked = self.tracked(info.attempt).unwrap_or_else(|| {
                panic!("{label}: attempts() lists {}, not in flight", info.attempt)
            });
            assert_eq!(info.server, tracked.server, "{label}: attempts() server");
            assert_eq!(info.phase, tracked.phase, "{label}: attempts() phase");
            assert_eq!(
                info.deadline, tracked.deadline,
                "{label}: deadlines are connect_timeout from launch, handshake_timeout from connected"
            );
            assert!(
                self.servers.contains(&info.server),
                "{label}: no attempt in flight to a dropped server"
            );
        }
        if !self.running {
            assert!(
                self.live.is_empty(),
                "{label}: a stopped rover has nothing in flight"
            );
        }
        if after_timeout {
            assert!(
                rover.attempts().all(|info| info.deadline > self.now),
                "{label}: after handle_timeout(now) no attempt has a deadline <= now"
            );
            assert!(
                rover.poll_timeout().is_none_or(|due| due > self.now),
                "{label}: after handle_timeout(now) poll_timeout is None or later than now"
            );
        }
    }
}

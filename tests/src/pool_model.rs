//! The reference model of the client pool (PROTOCOL.md section 3) and the checking code that
//! runs a sequence of operations against it and the real [`Pool`] side by side.
//!
//! The model is deliberately plain: a `Vec` of records scanned linearly. The checker also
//! keeps a ledger of every connection token it ever offered, so that a token lost inside the
//! pool, or handed out twice, is caught at the step where it happens.
//!
//! ```
//! use callosum_tests::pool_model::{check_pool_ops, ops_from_bytes, PoolOp};
//!
//! check_pool_ops(2, 7, &[
//!     PoolOp::Offer { server: 1, slot: 3 },
//!     PoolOp::Checkout,
//!     PoolOp::Offer { server: 2, slot: 1 },
//!     PoolOp::Offer { server: 3, slot: 0 }, // evicts the leased slot 3
//!     PoolOp::Checkin { lease: 0 },          // closed on return
//! ]);
//! check_pool_ops(3, 1, &ops_from_bytes(b"any bytes at all"));
//! ```

use std::collections::{HashMap, HashSet};

use callosum_proto::ServerId;
use callosum_proto::pool::{
    Checkin, CheckinError, ConnState, Evicted, Offer, Pool, PoolConfig, PoolConfigError, PoolStats,
    PoolStatus, PooledId as ConnId, Removed, UnknownConn,
};

/// One operation on the pool, as the property test and the fuzz target generate them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolOp {
    /// A new connection from `server` with slot `slot`.
    Offer {
        /// The server it came from.
        server: u8,
        /// Its slot there.
        slot: u32,
    },
    /// Ask for the lowest idle connection.
    Checkout,
    /// Return outstanding lease number `lease` (modulo their count); nothing without leases.
    Checkin {
        /// Which lease.
        lease: usize,
    },
    /// Check in a stray connection under an id that is no longer a lease: one already
    /// returned, or retired (the "returned twice" fault). Nothing if there is none yet.
    CheckinStale {
        /// Which such id (modulo their count).
        which: usize,
    },
    /// Report a connection the pool knows (idle, leased or evicted) as broken.
    Remove {
        /// Which connection (modulo their count).
        which: usize,
    },
    /// Remove under an id that names nothing any more: one of a lease already returned, or
    /// retired. Nothing if there is none yet.
    RemoveStale {
        /// Which such id (modulo their count).
        which: usize,
    },
    /// Take a server out of service: its idle connections are closed, its leased ones
    /// evicted.
    RemoveServer {
        /// The server.
        server: u8,
    },
}

/// Decodes any bytes into operations, for fuzzing: one opcode byte, then one argument byte
/// (missing bytes read as 0). Offers get four servers and slots 0..16, so evictions happen.
///
/// ```
/// use callosum_tests::pool_model::{ops_from_bytes, PoolOp};
///
/// assert_eq!(ops_from_bytes(&[0, 0x13, 3]), [
///     PoolOp::Offer { server: 1, slot: 3 },
///     PoolOp::Checkout,
/// ]);
/// assert!(ops_from_bytes(&[]).is_empty());
/// ```
pub fn ops_from_bytes(bytes: &[u8]) -> Vec<PoolOp> {
    bytes
        .chunks(2)
        .map(|pair| {
            let arg = pair.get(1).copied().unwrap_or(0);
            match pair[0] % 10 {
                0..=2 => PoolOp::Offer {
                    server: (arg >> 4) & 3,
                    slot: u32::from(arg & 15),
                },
                3 | 4 => PoolOp::Checkout,
                5 | 6 => PoolOp::Checkin {
                    lease: usize::from(arg),
                },
                7 => PoolOp::CheckinStale {
                    which: usize::from(arg),
                },
                8 if arg >= 0xF0 => PoolOp::RemoveServer {
                    server: (arg >> 2) & 3,
                },
                8 => PoolOp::Remove {
                    which: usize::from(arg),
                },
                _ => PoolOp::RemoveStale {
                    which: usize::from(arg),
                },
            }
        })
        .collect()
}

/// Runs `ops` on a real `Pool<u64>` and on the model, and panics, naming the broken rule, at
/// the first step where they disagree or an invariant of PROTOCOL.md section 3 fails.
///
/// `max_slots` 0 (or above the limit) checks that the configuration is refused instead.
///
/// ```
/// use callosum_tests::pool_model::{check_pool_ops, PoolOp};
///
/// check_pool_ops(0, 1, &[PoolOp::Checkout]); // refused as a config error: nothing to run
/// check_pool_ops(1, 1, &[PoolOp::Offer { server: 0, slot: 0 }, PoolOp::Remove { which: 0 }]);
/// ```
pub fn check_pool_ops(max_slots: usize, seed: u64, ops: &[PoolOp]) {
    let expected_error = if max_slots == 0 {
        Some(PoolConfigError::ZeroMaxSlots)
    } else if max_slots > PoolConfig::MAX_SLOTS_LIMIT {
        Some(PoolConfigError::TooManySlots { max_slots })
    } else {
        None
    };
    let pool = match (Pool::new(PoolConfig { max_slots }, seed), expected_error) {
        (Ok(pool), None) => pool,
        (Err(error), Some(expected)) => {
            assert_eq!(error, expected, "config error: wrong kind");
            return;
        }
        (result, expected) => panic!(
            "config: max_slots {max_slots} gave {:?}, expected {expected:?}",
            result.err()
        ),
    };
    let mut checker = Checker::new(pool, max_slots);
    for (step, op) in ops.iter().enumerate() {
        checker.context = format!("step {step}, {op:?}");
        checker.apply(*op);
        checker.check_invariants();
    }
}

/// Where a connection token is, from the test's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// Inside the pool, idle.
    InPool,
    /// Held by the test: being offered, leased (evicted or not), or a stray one.
    WithTest,
    /// Handed back for closing, and closed: must never be seen again.
    Closed,
}

/// A connection as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Record {
    id: ConnId,
    server: ServerId,
    slot: u32,
    token: u64,
    state: ConnState,
}

impl Record {
    fn is_held(&self) -> bool {
        self.state != ConnState::Evicted
    }
}

struct Checker {
    pool: Pool<u64>,
    max_slots: usize,
    /// The model: every connection the pool knows.
    records: Vec<Record>,
    /// Leases the test holds, evicted ones included: (lease id, token).
    leases: Vec<(ConnId, u64)>,
    /// Ids of leases returned with `checkin`, for the returned-twice fault.
    returned: Vec<ConnId>,
    /// Ids that name nothing any more.
    retired: Vec<ConnId>,
    /// Every id the pool ever issued: a new one must not be among them.
    issued: HashSet<ConnId>,
    tokens: HashMap<u64, Token>,
    next_token: u64,
    stats: PoolStats,
    peak_evicted: usize,
    /// The step being checked, for messages.
    context: String,
}

impl Checker {
    fn new(pool: Pool<u64>, max_slots: usize) -> Checker {
        Checker {
            pool,
            max_slots,
            records: Vec::new(),
            leases: Vec::new(),
            returned: Vec::new(),
            retired: Vec::new(),
            issued: HashSet::new(),
            tokens: HashMap::new(),
            next_token: 0,
            stats: PoolStats::default(),
            peak_evicted: 0,
            context: String::new(),
        }
    }

    fn apply(&mut self, op: PoolOp) {
        match op {
            PoolOp::Offer { server, slot } => self.offer(ServerId(u32::from(server)), slot),
            PoolOp::Checkout => self.checkout(),
            PoolOp::Checkin { lease } => self.checkin(lease),
            PoolOp::CheckinStale { which } => self.checkin_stale(which),
            PoolOp::Remove { which } => self.remove(which),
            PoolOp::RemoveStale { which } => self.remove_stale(which),
            PoolOp::RemoveServer { server } => self.remove_server(ServerId(u32::from(server))),
        }
    }

    fn offer(&mut self, server: ServerId, slot: u32) {
        let token = self.new_token();
        let held = self.records.iter().filter(|r| r.is_held()).count();
        let highest = self
            .records
            .iter()
            .filter(|r| r.is_held())
            .map(|r| r.slot)
            .max();
        let awaiting = self
            .records
            .iter()
            .filter(|r| r.state == ConnState::Evicted)
            .count();
        // PROTOCOL.md section 3: memory bounded by max_slots, however long leases are kept.
        let records_full = held + awaiting >= 2 * self.max_slots;
        self.stats.offered += 1;
        match self.pool.offer(server, slot, token) {
            Offer::Kept(id) => {
                let ctx = &self.context;
                assert!(
                    held < self.max_slots && !records_full,
                    "{ctx}: offer: kept although {held} of {} were held",
                    self.max_slots
                );
                self.stats.kept += 1;
                self.adopt(id, server, slot, token);
            }
            Offer::Replaced { kept, evicted } => {
                let ctx = &self.context;
                assert!(
                    held == self.max_slots && highest.is_some_and(|h| slot < h) && !records_full,
                    "{ctx}: offer: replaced although the pool held {held} of {} with highest \
                     slot {highest:?} and the offer was slot {slot}",
                    self.max_slots
                );
                self.evicted(evicted, highest);
                self.stats.kept += 1;
                self.stats.replaced += 1;
                self.adopt(kept, server, slot, token);
            }
            Offer::Rejected(conn) => {
                let ctx = &self.context;
                assert!(
                    records_full || (held == self.max_slots && highest.is_some_and(|h| slot >= h)),
                    "{ctx}: offer: rejected although the pool held {held} of {} with highest \
                     slot {highest:?}, {awaiting} evicted awaiting return, and the offer was \
                     slot {slot}",
                    self.max_slots
                );
                assert_eq!(conn, token, "{ctx}: offer: rejected a different connection");
                self.stats.rejected += 1;
                self.close(token, Token::WithTest);
            }
        }
    }

    /// Checks an eviction against the model: the victim is a held connection with the highest
    /// slot (the only candidate when that slot is unique), idle or leased as reported.
    fn evicted(&mut self, evicted: Evicted<u64>, highest: Option<u32>) {
        let (id, server, slot, conn) = match evicted {
            Evicted::Idle {
                id,
                server,
                slot,
                conn,
            } => (id, server, slot, Some(conn)),
            Evicted::Leased { id, server, slot } => (id, server, slot, None),
        };
        let ctx = &self.context;
        let at = self
            .position_of(id)
            .unwrap_or_else(|| panic!("{ctx}: evict: {id} is not a connection of the model"));
        let victim = self.records[at];
        assert!(victim.is_held(), "{ctx}: evict: {id} was already evicted");
        assert_eq!(
            Some(victim.slot),
            highest,
            "{ctx}: evict: not the highest slot held"
        );
        assert_eq!(
            (victim.server, victim.slot),
            (server, slot),
            "{ctx}: evict: wrong server or slot reported"
        );
        match conn {
            Some(conn) => {
                assert_eq!(
                    victim.state,
                    ConnState::Idle,
                    "{ctx}: evict: reported idle, was leased"
                );
                assert_eq!(
                    conn, victim.token,
                    "{ctx}: evict: wrong connection handed back"
                );
                self.records.swap_remove(at);
                self.retired.push(id);
                self.close(conn, Token::InPool);
            }
            None => {
                assert_eq!(
                    victim.state,
                    ConnState::Leased,
                    "{ctx}: evict: reported leased, was idle"
                );
                self.records[at].state = ConnState::Evicted;
            }
        }
    }

    fn checkout(&mut self) {
        let lowest = self
            .records
            .iter()
            .filter(|r| r.state == ConnState::Idle)
            .map(|r| r.slot)
            .min();
        let ctx = &self.context;
        let Some(lease) = self.pool.checkout() else {
            assert_eq!(
                lowest, None,
                "{ctx}: checkout: nothing handed out, but an idle connection is unreachable"
            );
            self.stats.empty_checkouts += 1;
            return;
        };
        assert_eq!(
            Some(lease.slot),
            lowest,
            "{ctx}: checkout: not the lowest idle slot"
        );
        let state = self.tokens.get(&lease.conn).copied();
        assert_eq!(
            state,
            Some(Token::InPool),
            "{ctx}: checkout: handed out connection {} that is not idle in the pool \
             (leased twice, evicted, or closed)",
            lease.conn
        );
        let at = self
            .records
            .iter()
            .position(|r| r.token == lease.conn)
            .unwrap_or_else(|| panic!("{ctx}: checkout: connection unknown to the model"));
        let record = self.records[at];
        assert_eq!(
            record.state,
            ConnState::Idle,
            "{ctx}: checkout: evicted or leased connection handed out"
        );
        assert_eq!(
            (record.server, record.slot),
            (lease.server, lease.slot),
            "{ctx}: checkout: wrong server or slot in the lease"
        );
        self.issue(lease.id);
        self.retired.push(record.id);
        self.records[at].id = lease.id;
        self.records[at].state = ConnState::Leased;
        self.tokens.insert(lease.conn, Token::WithTest);
        self.leases.push((lease.id, lease.conn));
        self.stats.checkouts += 1;
    }

    fn checkin(&mut self, lease: usize) {
        if self.leases.is_empty() {
            return;
        }
        let (id, token) = self.leases.swap_remove(lease % self.leases.len());
        let at = self.position_of(id);
        let ctx = &self.context;
        let at = at.unwrap_or_else(|| panic!("{ctx}: checkin: the model lost lease {id}"));
        match self.pool.checkin(id, token) {
            Ok(Checkin::Idle(new_id)) => {
                assert_eq!(
                    self.records[at].state,
                    ConnState::Leased,
                    "{ctx}: checkin: an evicted connection went back to idle"
                );
                // The lease's id retires; the idle connection has the new one, which is what
                // an adapter finds among the idle connections too.
                let listed = self
                    .pool
                    .idle_mut()
                    .find(|(_, conn)| **conn == token)
                    .map(|(listed, _)| listed);
                let ctx = &self.context;
                assert_eq!(
                    listed,
                    Some(new_id),
                    "{ctx}: checkin: the new id is not the idle connection's"
                );
                self.issue(new_id);
                self.records[at].id = new_id;
                self.records[at].state = ConnState::Idle;
                self.tokens.insert(token, Token::InPool);
                self.returned.push(id);
            }
            Ok(Checkin::Close(conn)) => {
                assert_eq!(
                    self.records[at].state,
                    ConnState::Evicted,
                    "{ctx}: checkin: a connection that was not evicted was closed"
                );
                assert_eq!(conn, token, "{ctx}: checkin: wrong connection handed back");
                self.records.swap_remove(at);
                self.retired.push(id);
                self.close(token, Token::WithTest);
            }
            Err(error) => panic!("{ctx}: checkin: a current lease was refused: {error}"),
        }
    }

    fn checkin_stale(&mut self, which: usize) {
        let Some(id) = self.stale_id(which) else {
            return;
        };
        // A returned id never names a connection again: checkin and checkout issue new ids.
        let stray = self.new_token();
        let ctx = &self.context;
        match self.pool.checkin(id, stray) {
            Err(CheckinError::NotLeased { id: refused, conn }) => {
                assert_eq!(refused, id, "{ctx}: stale checkin: wrong id in the error");
                assert_eq!(
                    conn, stray,
                    "{ctx}: stale checkin: connection not handed back"
                );
            }
            Ok(_) => panic!(
                "{ctx}: stale checkin: {id}, already returned or retired, was accepted \
                 (a connection returned twice could be handed to two callers)"
            ),
            Err(error) => panic!("{ctx}: stale checkin: unexpected error {error}"),
        }
        self.close(stray, Token::WithTest);
    }

    fn remove(&mut self, which: usize) {
        if self.records.is_empty() {
            return;
        }
        let record = self.records.swap_remove(which % self.records.len());
        let ctx = &self.context;
        match (self.pool.remove(record.id), record.state) {
            (Ok(Removed::Idle { conn, .. }), ConnState::Idle) => {
                assert_eq!(
                    conn, record.token,
                    "{ctx}: remove: wrong connection handed back"
                );
                self.close(conn, Token::InPool);
            }
            (Ok(Removed::Leased { .. }), ConnState::Leased)
            | (Ok(Removed::Evicted { .. }), ConnState::Evicted) => {
                let at = self.leases.iter().position(|&(id, _)| id == record.id);
                let at = at.unwrap_or_else(|| panic!("{ctx}: remove: the test had no such lease"));
                self.leases.swap_remove(at);
                self.close(record.token, Token::WithTest);
            }
            (result, state) => panic!(
                "{ctx}: remove: {} in state {state:?} gave {result:?}",
                record.id
            ),
        }
        self.retired.push(record.id);
        self.stats.removed_broken += 1;
    }

    fn remove_server(&mut self, server: ServerId) {
        let expected: HashSet<ConnId> = self
            .records
            .iter()
            .filter(|r| r.server == server && r.is_held())
            .map(|r| r.id)
            .collect();
        let mut reported = HashSet::new();
        for evicted in self.pool.remove_server(server) {
            let (id, conn) = match evicted {
                Evicted::Idle { id, conn, .. } => (id, Some(conn)),
                Evicted::Leased { id, .. } => (id, None),
            };
            let ctx = &self.context;
            assert!(
                reported.insert(id),
                "{ctx}: remove_server: {id} reported twice"
            );
            let at = self.position_of(id).unwrap_or_else(|| {
                panic!("{ctx}: remove_server: {id} is not a connection of the model")
            });
            let record = self.records[at];
            assert_eq!(
                record.server, server,
                "{ctx}: remove_server: another server's connection"
            );
            match (conn, record.state) {
                (Some(conn), ConnState::Idle) => {
                    assert_eq!(conn, record.token, "{ctx}: remove_server: wrong connection");
                    self.records.swap_remove(at);
                    self.retired.push(id);
                    self.close(conn, Token::InPool);
                }
                (None, ConnState::Leased) => self.records[at].state = ConnState::Evicted,
                (conn, state) => panic!(
                    "{ctx}: remove_server: {id} in state {state:?} reported as idle: {}",
                    conn.is_some()
                ),
            }
        }
        let ctx = &self.context;
        assert_eq!(
            reported, expected,
            "{ctx}: remove_server: not every held connection of the server"
        );
        self.stats.removed_with_server += reported.len() as u64;
    }

    fn remove_stale(&mut self, which: usize) {
        let Some(id) = self.stale_id(which) else {
            return;
        };
        let ctx = &self.context;
        assert_eq!(
            self.pool.remove(id),
            Err(UnknownConn { id }),
            "{ctx}: stale remove: a returned or retired id acted on the pool \
             (it could close a healthy idle connection)"
        );
    }

    /// Id number `which` (modulo their count) among those returned with `checkin` and those
    /// retired otherwise; `None` if there is none yet.
    fn stale_id(&self, which: usize) -> Option<ConnId> {
        let candidates = self.returned.len() + self.retired.len();
        if candidates == 0 {
            return None;
        }
        let which = which % candidates;
        Some(match self.returned.get(which) {
            Some(&id) => id,
            None => self.retired[which - self.returned.len()],
        })
    }

    /// Records a newly kept connection.
    fn adopt(&mut self, id: ConnId, server: ServerId, slot: u32, token: u64) {
        self.issue(id);
        self.records.push(Record {
            id,
            server,
            slot,
            token,
            state: ConnState::Idle,
        });
        self.tokens.insert(token, Token::InPool);
    }

    /// Checks that `id` is new.
    fn issue(&mut self, id: ConnId) {
        let ctx = &self.context;
        assert!(
            self.issued.insert(id),
            "{ctx}: ids: {id} issued twice (a stale id could act on it)"
        );
    }

    /// A token the pool has never seen, held by the test.
    fn new_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.tokens.insert(token, Token::WithTest);
        token
    }

    /// Marks `token`, expected `from` where it was, as closed.
    fn close(&mut self, token: u64, from: Token) {
        let ctx = &self.context;
        let was = self.tokens.insert(token, Token::Closed);
        assert_eq!(
            was,
            Some(from),
            "{ctx}: tokens: connection {token} handed back for closing from the wrong place"
        );
    }

    fn position_of(&self, id: ConnId) -> Option<usize> {
        self.records.iter().position(|r| r.id == id)
    }

    fn check_invariants(&mut self) {
        let ctx = &self.context;
        let count = |state| self.records.iter().filter(|r| r.state == state).count();
        let (idle, leased, evicted) = (
            count(ConnState::Idle),
            count(ConnState::Leased),
            count(ConnState::Evicted),
        );
        // `PoolStatus` is non-exhaustive: built from the default, field by field.
        let mut expected = PoolStatus::default();
        expected.held = idle + leased;
        expected.idle = idle;
        expected.leased = leased;
        expected.evicted_awaiting_return = evicted;
        let status = self.pool.status();
        assert_eq!(
            status, expected,
            "{ctx}: status: counts differ from the model"
        );
        assert!(
            status.held <= self.max_slots,
            "{ctx}: max_slots: {} held, max {}",
            status.held,
            self.max_slots
        );
        assert_eq!(
            self.pool.max_slots(),
            self.max_slots,
            "{ctx}: max_slots changed"
        );
        assert_eq!(
            self.pool.wanted(),
            self.max_slots - status.held,
            "{ctx}: wanted is not max_slots - held"
        );
        assert_eq!(
            self.pool.stats(),
            &self.stats,
            "{ctx}: stats differ from the model"
        );

        // Every connection listed once, as the model has it.
        let listed: HashMap<ConnId, _> = self
            .pool
            .connections()
            .map(|c| (c.id, (c.server, c.slot, c.state)))
            .collect();
        let model: HashMap<ConnId, _> = self
            .records
            .iter()
            .map(|r| (r.id, (r.server, r.slot, r.state)))
            .collect();
        assert_eq!(
            self.pool.connections().count(),
            listed.len(),
            "{ctx}: connections: an id listed twice"
        );
        assert_eq!(listed, model, "{ctx}: connections differ from the model");

        // Memory: records are reused; only evicted-while-leased ones can add to max_slots.
        self.peak_evicted = self.peak_evicted.max(evicted);
        assert!(
            self.pool.footprint() <= self.max_slots + self.peak_evicted,
            "{ctx}: memory: {} records for max_slots {} and at most {} evicted awaiting return",
            self.pool.footprint(),
            self.max_slots,
            self.peak_evicted
        );

        // Leases: one per leased or evicted record, no connection leased twice.
        let lease_tokens: HashSet<u64> = self.leases.iter().map(|&(_, t)| t).collect();
        assert_eq!(
            lease_tokens.len(),
            self.leases.len(),
            "{ctx}: leases: a connection leased twice"
        );
        assert_eq!(
            self.leases.len(),
            leased + evicted,
            "{ctx}: leases: the test holds a lease the model does not know, or the reverse"
        );
        for &(id, token) in &self.leases {
            let record = self.records.iter().find(|r| r.id == id);
            assert!(
                record.is_some_and(|r| r.token == token && r.state != ConnState::Idle),
                "{ctx}: leases: {id} held by the test is not leased in the model"
            );
        }

        // Tokens: every one offered is idle in the pool, with the test, or closed; never two.
        let in_pool = self
            .tokens
            .values()
            .filter(|&&t| t == Token::InPool)
            .count();
        let with_test = self
            .tokens
            .values()
            .filter(|&&t| t == Token::WithTest)
            .count();
        assert_eq!(
            in_pool, idle,
            "{ctx}: tokens: idle connections lost or duplicated"
        );
        assert_eq!(
            with_test,
            self.leases.len(),
            "{ctx}: tokens: connections with the test lost or duplicated"
        );
        for record in &self.records {
            let expected = if record.state == ConnState::Idle {
                Token::InPool
            } else {
                Token::WithTest
            };
            assert_eq!(
                self.tokens.get(&record.token),
                Some(&expected),
                "{ctx}: tokens: connection {} is in the wrong place",
                record.token
            );
        }
    }
}

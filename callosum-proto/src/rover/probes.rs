//! Targeted probes: servers owed an early attempt of their own instead of waiting for the
//! random draw to come to them.
//!
//! Two kinds of server are owed one: a server added while the rover runs (new capacity,
//! tried within one interval), and a server whose pooled connection just broke (a restart:
//! tried again on a short backoff until it answers). A probe that fails is scheduled again
//! by the rover, at most [`PROBE_LIMIT`] times in a row, then the server is left to the
//! random draw and its ordinary backoff: a server that stays down costs a bounded number of
//! probes.
//!
//! The list holds only the servers owed a probe, usually none or a few, so a linear scan is
//! the cheapest structure.

use alloc::vec::Vec;

use crate::{Instant, ServerId};

/// Probes of one server in a row before it is left to the random draw: with delays of
/// 0.5, 1, 2, 2, ... s (see `RoverConfig::probes`), about 12 s of trying.
pub(super) const PROBE_LIMIT: u8 = 8;

#[derive(Clone, Debug)]
struct Probe {
    server: ServerId,
    /// When the next probe is due; `None` while its attempt is in flight.
    due: Option<Instant>,
    /// Probes still allowed after the one in flight or due.
    left: u8,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Probes {
    list: Vec<Probe>,
}

impl Probes {
    /// `server` is owed a probe at `due`, with a fresh budget. A probe already owed keeps
    /// the earlier of the two times.
    pub(super) fn schedule(&mut self, server: ServerId, due: Instant) {
        match self.list.iter_mut().find(|probe| probe.server == server) {
            Some(probe) => {
                probe.due = Some(probe.due.map_or(due, |owed| owed.min(due)));
                probe.left = PROBE_LIMIT - 1;
            }
            None => self.list.push(Probe {
                server,
                due: Some(due),
                left: PROBE_LIMIT - 1,
            }),
        }
    }

    /// `server` is owed nothing more: it answered, or it left the set.
    pub(super) fn remove(&mut self, server: ServerId) {
        self.list.retain(|probe| probe.server != server);
    }

    pub(super) fn clear(&mut self) {
        self.list.clear();
    }

    /// The earliest probe due, if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.list.iter().filter_map(|probe| probe.due).min()
    }

    /// A server whose probe is due at `now`; it stays due until an attempt to it is
    /// [`launched`](Probes::launched).
    pub(super) fn due(&self, now: Instant) -> Option<ServerId> {
        self.list
            .iter()
            .find(|probe| probe.due.is_some_and(|due| due <= now))
            .map(|probe| probe.server)
    }

    /// An attempt to `server` was launched, for its probe or by the random draw: either
    /// way the server is being tried, so a probe it is owed is in flight now.
    pub(super) fn launched(&mut self, server: ServerId) {
        if let Some(probe) = self.list.iter_mut().find(|probe| probe.server == server) {
            probe.due = None;
        }
    }

    /// Whether `server`'s probe has an attempt in flight.
    pub(super) fn in_flight(&self, server: ServerId) -> bool {
        self.list
            .iter()
            .any(|probe| probe.server == server && probe.due.is_none())
    }

    /// The attempt of `server`'s probe in flight was aborted: nothing is left to answer it,
    /// so the probe is due again at `due`.
    pub(super) fn aborted(&mut self, server: ServerId, due: Instant) {
        if let Some(probe) = self.list.iter_mut().find(|probe| probe.server == server) {
            probe.due = Some(due);
        }
    }

    /// `server` failed: if its probe was in flight, the next one is due at `retry_at`, or,
    /// with the budget spent, it is owed nothing more. A probe still waiting keeps its time.
    pub(super) fn failed(&mut self, server: ServerId, retry_at: Instant) {
        let Some(position) = self.list.iter().position(|probe| probe.server == server) else {
            return;
        };
        let probe = &mut self.list[position];
        if probe.due.is_some() {
            return;
        }
        if probe.left == 0 {
            self.list.swap_remove(position);
        } else {
            probe.left -= 1;
            probe.due = Some(retry_at);
        }
    }

    #[cfg(test)]
    pub(super) fn is_owed(&self, server: ServerId) -> bool {
        self.list.iter().any(|probe| probe.server == server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    #[test]
    fn a_probe_is_due_once_then_retried_until_its_budget_is_spent() {
        let mut probes = Probes::default();
        probes.schedule(ServerId(1), ms(500));
        assert_eq!(probes.next_due(), Some(ms(500)));
        assert_eq!(probes.due(ms(499)), None);
        let mut at = 500;
        for _ in 0..PROBE_LIMIT {
            assert_eq!(probes.due(ms(at)), Some(ServerId(1)));
            probes.launched(ServerId(1));
            assert_eq!(probes.next_due(), None, "in flight");
            at += 1_000;
            probes.failed(ServerId(1), ms(at));
        }
        assert!(!probes.is_owed(ServerId(1)), "budget spent");
    }

    #[test]
    fn a_failure_while_waiting_keeps_the_time_and_the_earlier_schedule_wins() {
        let mut probes = Probes::default();
        probes.schedule(ServerId(1), ms(900));
        probes.failed(ServerId(1), ms(5_000));
        assert_eq!(probes.next_due(), Some(ms(900)));
        probes.schedule(ServerId(1), ms(300));
        probes.schedule(ServerId(1), ms(700));
        assert_eq!(probes.next_due(), Some(ms(300)));
        probes.remove(ServerId(1));
        assert_eq!(probes.next_due(), None);
    }
}

//! What a client can tell about itself: the same fields in every adapter.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use super::{NameStatus, RemoveCause};
use crate::pool::{PoolStats, PoolStatus};

/// A snapshot of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStatus {
    /// Every known server, in the order they were added, with the slots held there.
    pub servers: Vec<ServerConnections>,
    /// How many connections the pool holds, idle and leased.
    pub pool: PoolStatus,
    /// The host names added, each with what it resolved to last (see
    /// [`ClientCore::add_name`](super::ClientCore::add_name)).
    pub names: Vec<NameStatus>,
    /// How many connections the pool keeps now: `max_slots` with
    /// [`PoolSizing::Fixed`](super::PoolSizing::Fixed), what the client's demand needs with
    /// [`PoolSizing::Demand`](super::PoolSizing::Demand).
    pub target: usize,
    /// Connection attempts in flight.
    pub attempts_in_flight: usize,
    /// Callers waiting for an idle connection, in line.
    pub waiting_gets: usize,
    /// Whether the client was closed.
    pub closed: bool,
    /// The counters since the client started.
    pub stats: ClientStats,
}

/// One server and the slots the client holds on it (lowest first).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConnections {
    /// The server.
    pub server: SocketAddr,
    /// The slots held there, not counting connections evicted while leased.
    pub slots: Vec<u32>,
    /// How many of those are leased now.
    pub leased: usize,
    /// Connections of this server lent since it was added: the requests it was given.
    pub leases: u64,
}

/// Counters since the client started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// The pool's own counters (offers, checkouts, ...).
    pub pool: PoolStats,
    /// Connections removed, by cause.
    pub removed: RemovedCounts,
    /// Attempts that never got a TCP connection.
    pub unreachable: u64,
    /// Attempts that connected but gave no slot line.
    pub handshake_failed: u64,
    /// Connections that died young (see
    /// [`ClientConfig::young_death`](super::ClientConfig::young_death)), each counted as a
    /// failure of its server.
    pub died_young: u64,
    /// Calls of [`ClientCore::checkout`](super::ClientCore::checkout): every `get` starts
    /// with one.
    pub gets: u64,
    /// Callers that found nothing idle and waited in line
    /// ([`ClientCore::join_line`](super::ClientCore::join_line)).
    pub waits: u64,
    /// Time spent in line by the callers served or gone since (the mean wait is
    /// `wait_time / waits`, once they are all served).
    pub wait_time: Duration,
    /// Lookups of host names that failed (each also a
    /// [`ClientEvent::ResolveFailed`](super::ClientEvent::ResolveFailed)).
    pub resolve_failed: u64,
    /// Callers that gave up waiting at their timeout
    /// ([`ClientCore::get_timed_out`](super::ClientCore::get_timed_out)).
    pub timed_out_gets: u64,
}

/// Connections removed from the pool, one counter per [`RemoveCause`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RemovedCounts {
    /// [`RemoveCause::ClosedByServer`].
    pub closed_by_server: u64,
    /// [`RemoveCause::UnsolicitedData`].
    pub unsolicited_data: u64,
    /// [`RemoveCause::Error`].
    pub error: u64,
    /// [`RemoveCause::Broken`].
    pub broken: u64,
    /// [`RemoveCause::ServerFailed`].
    pub server_failed: u64,
    /// [`RemoveCause::Interrupted`].
    pub interrupted: u64,
    /// [`RemoveCause::ServerRemoved`].
    pub server_removed: u64,
    /// [`RemoveCause::ServerClosing`].
    pub server_closing: u64,
    /// [`RemoveCause::ClientClosed`].
    pub client_closed: u64,
    /// [`RemoveCause::Surplus`].
    pub surplus: u64,
    /// [`RemoveCause::MaxLifetime`].
    pub max_lifetime: u64,
    /// [`RemoveCause::IdleTimeout`].
    pub idle_timeout: u64,
}

impl RemovedCounts {
    /// Counts one removal.
    pub(crate) fn count(&mut self, cause: RemoveCause) {
        let counter = match cause {
            RemoveCause::ClosedByServer => &mut self.closed_by_server,
            RemoveCause::UnsolicitedData => &mut self.unsolicited_data,
            RemoveCause::Error => &mut self.error,
            RemoveCause::Broken => &mut self.broken,
            RemoveCause::ServerFailed => &mut self.server_failed,
            RemoveCause::Interrupted => &mut self.interrupted,
            RemoveCause::ServerRemoved => &mut self.server_removed,
            RemoveCause::ServerClosing => &mut self.server_closing,
            RemoveCause::ClientClosed => &mut self.client_closed,
            RemoveCause::Surplus => &mut self.surplus,
            RemoveCause::MaxLifetime => &mut self.max_lifetime,
            RemoveCause::IdleTimeout => &mut self.idle_timeout,
        };
        *counter += 1;
    }
}

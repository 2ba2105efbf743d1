//! The client's table of servers: each address known once, under an id the rover and the pool
//! use.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::ServerId;

/// Addresses by id and ids by address. Ids are handed out in order and never reused (a
/// connection evicted while leased may still name a removed server's id when it comes back),
/// so the table lists servers in the order they were added, and finding a server's address,
/// which every checkout does, is an index into a vector: 40 bytes per server ever added.
#[derive(Clone, Debug, Default)]
pub(super) struct ServerTable {
    by_id: Vec<Option<SocketAddr>>,
    /// Connections lent, per server id: for status.
    leases: Vec<u64>,
    by_addr: BTreeMap<SocketAddr, ServerId>,
}

impl ServerTable {
    /// Adds an address under a new id; `None` if it is known already, or if `u32::MAX` servers
    /// were added already.
    pub(super) fn insert(&mut self, addr: SocketAddr) -> Option<ServerId> {
        if self.by_addr.contains_key(&addr) {
            return None;
        }
        let id = ServerId(u32::try_from(self.by_id.len()).ok()?);
        self.by_id.push(Some(addr));
        self.leases.push(0);
        self.by_addr.insert(addr, id);
        Some(id)
    }

    /// Removes an address, returning the id it had.
    pub(super) fn remove(&mut self, addr: SocketAddr) -> Option<ServerId> {
        let id = self.by_addr.remove(&addr)?;
        self.by_id[id.0 as usize] = None;
        Some(id)
    }

    /// One more connection of `id` lent.
    pub(super) fn count_lease(&mut self, id: ServerId) {
        if let Some(leases) = self.leases.get_mut(id.0 as usize) {
            *leases += 1;
        }
    }

    /// Connections of `id` lent so far.
    pub(super) fn leases(&self, id: ServerId) -> u64 {
        self.leases.get(id.0 as usize).copied().unwrap_or(0)
    }

    pub(super) fn addr(&self, id: ServerId) -> Option<SocketAddr> {
        self.by_id.get(id.0 as usize).copied().flatten()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (ServerId, SocketAddr)> + '_ {
        (0u32..)
            .zip(&self.by_id)
            .filter_map(|(id, addr)| addr.map(|addr| (ServerId(id), addr)))
    }

    pub(super) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.by_id.iter().flatten().copied()
    }
}

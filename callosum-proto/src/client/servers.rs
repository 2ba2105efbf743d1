//! The client's table of servers: each address known once, under an id the rover and the pool
//! use.

use alloc::collections::BTreeMap;
use core::net::SocketAddr;

use crate::ServerId;

/// Addresses by id and ids by address. Ids are handed out in order and never reused, so the
/// table lists servers in the order they were added.
#[derive(Clone, Debug, Default)]
pub(super) struct ServerTable {
    by_id: BTreeMap<ServerId, SocketAddr>,
    by_addr: BTreeMap<SocketAddr, ServerId>,
    next: u32,
}

impl ServerTable {
    /// Adds an address under a new id; `None` if it is known already.
    pub(super) fn insert(&mut self, addr: SocketAddr) -> Option<ServerId> {
        if self.by_addr.contains_key(&addr) {
            return None;
        }
        let id = ServerId(self.next);
        self.next = self.next.wrapping_add(1);
        self.by_id.insert(id, addr);
        self.by_addr.insert(addr, id);
        Some(id)
    }

    /// Removes an address, returning the id it had.
    pub(super) fn remove(&mut self, addr: SocketAddr) -> Option<ServerId> {
        let id = self.by_addr.remove(&addr)?;
        self.by_id.remove(&id);
        Some(id)
    }

    pub(super) fn addr(&self, id: ServerId) -> Option<SocketAddr> {
        self.by_id.get(&id).copied()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (ServerId, SocketAddr)> + '_ {
        self.by_id.iter().map(|(&id, &addr)| (id, addr))
    }

    pub(super) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.by_id.values().copied()
    }
}

//! Lending pooled connections to the application: [`Lease`], and the readiness of leased
//! connections ([`LeaseReady`]).

use std::collections::VecDeque;
use std::net::SocketAddr;

use callosum_proto::client::{LeaseEnd, LeaseId, Returned};
use callosum_proto::slab::Key;

use super::Client;
use super::sockets::{Held, probe};
use crate::Conn;

/// A connection lent by [`Client::checkout`]: use it through [`Client::conn_mut`], then
/// give it back with [`Client::checkin`] or [`Client::checkin_broken`]. It cannot be
/// copied, so it cannot be returned twice.
///
/// A lease must be given back. One that is dropped instead is lost: its socket stays open
/// and its place in the pool stays taken until the client is dropped. Hence `#[must_use]`
/// (and `let _ = client.checkout()` silences it, by Rust's rules: do not write it).
///
/// ```no_run
/// # fn demo(client: &mut callosum_mio::Client) {
/// let lease = client.checkout().expect("an idle connection");
/// println!("slot {} on {}", lease.slot(), lease.server());
/// client.checkin(lease);
/// # }
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lease must be checked in: a dropped one keeps its socket and its place in the pool"]
pub struct Lease {
    id: LeaseId,
    key: Key,
    server: SocketAddr,
    slot: u32,
}

impl Lease {
    /// This lease's id, as [`LeaseReady`] names it.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The server the connection is to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The connection's slot on its server.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// A leased connection may be read (bytes, or its end) or written: drained with
/// [`Client::poll_lease_ready`]. This is `mio`'s own part of the client: the other adapters
/// wait on their connections instead, so it is not a [`ClientEvent`](crate::ClientEvent).
///
/// `mio` reports changes of readiness only: after a `readable` one, read until
/// `WouldBlock`. At most one notification per lease waits at a time; what arrives meanwhile
/// is merged into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseReady {
    /// The lease.
    pub lease: LeaseId,
    /// It may have bytes, or its end, to read.
    pub readable: bool,
    /// It can take writes.
    pub writable: bool,
}

/// The keys of leased connections with readiness not yet told, each once at most.
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    keys: VecDeque<Key>,
}

impl ReadyQueue {
    pub(super) fn push(&mut self, key: Key) {
        self.keys.push_back(key);
    }
}

impl Client {
    /// Lends out the idle connection with the lowest slot (ties broken at random); `None`
    /// if none is idle.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// assert!(client.checkout().is_none());
    /// assert_eq!(client.status().stats.pool.empty_checkouts, 1);
    /// ```
    ///
    /// Ignoring the result is flagged:
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// fn demo(client: &mut callosum_mio::Client) {
    ///     client.checkout();
    /// }
    /// ```
    #[must_use = "a lease must be checked in: a dropped one keeps its socket and its place in the pool"]
    pub fn checkout(&mut self) -> Option<Lease> {
        let lease = self.core.checkout(self.clock.now()).map(|lease| {
            if let Some(pooled) = self.pooled.get_mut(lease.conn) {
                pooled.held = Held::Leased(lease.id);
            }
            Lease {
                id: lease.id,
                key: lease.conn,
                server: lease.server,
                slot: lease.slot,
            }
        });
        self.drive();
        lease
    }

    /// The leased connection, to read and write; `None` once the lease is no longer
    /// current. (Leases carry no mark of their client: keep each with the client that lent
    /// it, as a lease of another client may name one of this client's connections.)
    ///
    /// ```no_run
    /// use std::io::Write;
    /// # fn demo(client: &mut callosum_mio::Client) -> std::io::Result<()> {
    /// let lease = client.checkout().unwrap();
    /// client.conn_mut(&lease).unwrap().write_all(b"GET\n")?;
    /// # client.checkin(lease); Ok(()) }
    /// ```
    pub fn conn_mut(&mut self, lease: &Lease) -> Option<&mut Conn> {
        self.pooled
            .get_mut(lease.key)
            .filter(|pooled| pooled.held == Held::Leased(lease.id))
            .map(|pooled| &mut pooled.conn)
    }

    /// Gives a leased connection back after a finished exchange: it is idle again, unless
    /// it is found broken (a read or write through it found its end or failed, or bytes are
    /// waiting that nobody read: the exchange did not finish), which returns it as
    /// [`Client::checkin_broken`] does. A connection evicted, or whose server was removed,
    /// while it was out is closed now (its removal was reported then).
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// let lease = client.checkout().unwrap();
    /// client.checkin(lease);
    /// assert_eq!(client.status().pool.leased, 0);
    /// # }
    /// ```
    pub fn checkin(&mut self, lease: Lease) {
        self.give_back(lease, LeaseEnd::Finished);
    }

    /// Gives back a leased connection that the application found broken: it is closed and
    /// reported as [`ClientEvent::Removed`](crate::ClientEvent::Removed) (cause
    /// [`RemoveCause::Broken`](crate::RemoveCause::Broken)).
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// let lease = client.checkout().unwrap();
    /// client.checkin_broken(lease);
    /// assert_eq!(client.status().stats.removed.broken, 1);
    /// # }
    /// ```
    pub fn checkin_broken(&mut self, lease: Lease) {
        self.give_back(lease, LeaseEnd::Broken);
    }

    /// The next leased connection whose readiness changed, if any.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// assert_eq!(client.poll_lease_ready(), None);
    /// ```
    #[must_use]
    pub fn poll_lease_ready(&mut self) -> Option<LeaseReady> {
        while let Some(key) = self.ready.keys.pop_front() {
            let Some(pooled) = self.pooled.get_mut(key) else {
                continue;
            };
            let ready = std::mem::take(&mut pooled.ready);
            if let Held::Leased(lease) = pooled.held {
                return Some(LeaseReady {
                    lease,
                    readable: ready.readable,
                    writable: ready.writable,
                });
            }
        }
        None
    }

    fn give_back(&mut self, lease: Lease, end: LeaseEnd) {
        let Some(pooled) = self
            .pooled
            .get_mut(lease.key)
            .filter(|pooled| pooled.held == Held::Leased(lease.id))
        else {
            return; // not a current lease of this client
        };
        // Its readiness is nobody's now: drop what was not told.
        if std::mem::take(&mut pooled.ready).queued {
            self.ready.keys.retain(|&key| key != lease.key);
        }
        let end = match end {
            LeaseEnd::Finished
                if pooled.conn.ended().is_some() || probe(pooled.conn.stream_mut()).is_some() =>
            {
                LeaseEnd::Broken
            }
            end => end,
        };
        let returned = self
            .core
            .checkin(lease.id, lease.key, end, self.clock.now());
        if let (Ok(Returned::Idle(id)), Some(pooled)) = (returned, self.pooled.get_mut(lease.key)) {
            pooled.held = Held::Idle(id);
        }
        self.drive();
    }
}

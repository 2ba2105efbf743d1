//! Lending pooled connections to the application: [`Lease`], the queue through which a
//! dropped lease comes back ([`Dropped`]), and the readiness of leased connections
//! ([`LeaseReady`]).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use callosum_proto::adapter;
use callosum_proto::client::{LeaseEnd, LeaseId, LeaseUse, Returned};
use callosum_proto::slab::Key;

use super::Client;
use super::sockets::{Held, Pooled, probe};
use crate::Conn;

/// A connection lent by [`Client::checkout`]: use it through [`Client::conn_mut`], then
/// give it back. It cannot be copied, so it cannot be returned twice, and it cannot be lost:
///
/// - [`Client::checkin`]: the exchange finished (the whole reply was read). The connection
///   is idle again, unless it is found broken: it ended, or bytes are waiting that nobody
///   read.
/// - [`Client::checkin_broken`]: the application found it broken. It is closed.
/// - **Dropped** without either (a timeout, an early return, a `?`, a panic unwinding): the
///   client takes it back at its next call (any `&mut self` method, `handle_event` and
///   `handle_timeout` included; [`Client::poll_timeout`] is due at once while one waits). A
///   lease whose connection was never asked for ([`Client::conn_mut`]) goes back to idle,
///   as a finished one would; one whose connection was asked for is closed and reported as
///   [`ClientEvent::Removed`](crate::ClientEvent::Removed) with cause
///   [`RemoveCause::Interrupted`](crate::RemoveCause::Interrupted): a reply may still be on
///   its way, and it must never reach the next caller.
///
/// So the one call to remember is `checkin` once the reply is read: forgetting it costs a
/// connection (closed and replaced by the rover), never a wrong reply.
///
/// A `Lease` is [`Send`]: it shares with its client a small queue behind an
/// `Arc<Mutex<..>>`, so it may be dropped on another thread; the client, on its own thread,
/// takes it back at its next call (nothing wakes a `poll` that is already waiting).
///
/// ```no_run
/// use std::io::{Read, Write};
/// # fn demo(client: &mut callosum_mio::Client) -> std::io::Result<()> {
/// let lease = client.checkout().expect("an idle connection");
/// println!("slot {} on {}", lease.slot(), lease.server());
/// let conn = client.conn_mut(&lease).expect("a lease of this client");
/// conn.write_all(b"ping\n")?; // an error here drops the lease: closed as interrupted
/// // ... read the whole reply, as readiness comes (Client::poll_lease_ready) ...
/// client.checkin(lease); // the exchange finished: idle again
/// # Ok(()) }
/// ```
#[must_use = "a lease dropped at once goes back to idle; check it in once its exchange finished"]
pub struct Lease {
    id: LeaseId,
    key: Key,
    server: SocketAddr,
    slot: u32,
    /// Where dropping it sends it; `None` once it was given back.
    dropped: Option<Arc<Dropped>>,
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

    /// Takes the lease apart without sending it to the queue of dropped leases.
    fn disarm(mut self) -> (LeaseId, Key) {
        self.dropped = None;
        (self.id, self.key)
    }
}

impl Drop for Lease {
    /// Sends the lease to its client's queue of dropped leases, unless it was given back.
    fn drop(&mut self) {
        if let Some(dropped) = self.dropped.take() {
            dropped.push(self.id, self.key);
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("server", &self.server)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Lease {
    /// The same lease of the same connection (a lease id is never reused).
    fn eq(&self, other: &Lease) -> bool {
        (self.id, self.key) == (other.id, other.key)
    }
}

impl Eq for Lease {}

/// Leases dropped without being given back, shared by a client and the leases it lent: a
/// lease's `Drop` pushes its id and key, the client drains them at its next call.
///
/// An `Arc<Mutex<..>>` rather than an `Rc<RefCell<..>>`, so that a [`Lease`] stays `Send`:
/// the cost is an atomic count per checkout and per return, and an uncontended lock per
/// client call (the client's own thread is the only other user).
#[derive(Debug, Default)]
pub(super) struct Dropped {
    leases: Mutex<Vec<(LeaseId, Key)>>,
}

impl Dropped {
    fn push(&self, lease: LeaseId, key: Key) {
        // A panic while the lock was held cannot leave the list half-written: keep using it.
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.push((lease, key));
    }

    /// Whether a dropped lease waits.
    pub(super) fn any(&self) -> bool {
        !self
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn take(&self) -> Vec<(LeaseId, Key)> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *leases)
        }
    }
}

/// How a lease came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Given {
    /// [`Client::checkin`]: the exchange finished.
    Finished,
    /// [`Client::checkin_broken`].
    Broken,
    /// [`Client::checkin_failed`].
    ServerFailed,
    /// Dropped: its use decides ([`LeaseUse::end`]).
    Dropped,
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
    /// Lends out an idle connection (by [`ClientConfig::lease`](crate::ClientConfig::lease)); `None`
    /// if none is idle.
    ///
    /// ```
    /// # use callosum_mio::Client;
    /// let mut client = Client::new(Default::default()).unwrap();
    /// assert!(client.checkout().is_none());
    /// assert_eq!(client.status().stats.pool.empty_checkouts, 1);
    /// ```
    ///
    /// Ignoring the result is flagged (the lease would go straight back):
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// fn demo(client: &mut callosum_mio::Client) {
    ///     client.checkout();
    /// }
    /// ```
    #[must_use = "a lease dropped at once goes back to idle; check it in once its exchange finished"]
    pub fn checkout(&mut self) -> Option<Lease> {
        self.return_dropped();
        let lease = self.core.checkout(self.clock.now()).map(|lease| {
            if let Some(pooled) = self.pooled.get_mut(lease.conn) {
                pooled.held = Held::Leased(lease.id);
                pooled.used = LeaseUse::default();
            }
            Lease {
                id: lease.id,
                key: lease.conn,
                server: lease.server,
                slot: lease.slot,
                dropped: Some(Arc::clone(&self.dropped)),
            }
        });
        self.drive();
        lease
    }

    /// The leased connection, to read and write; `None` once the lease is no longer
    /// current. Asking for it counts as using the lease: dropped from now on without a
    /// checkin, the lease is closed as interrupted (see [`Lease`]). (Leases carry no mark
    /// of their client: keep each with the client that lent it, as a lease of another client
    /// may name one of this client's connections.) Reading and writing through
    /// [`Client::read`] and [`Client::write`] instead tells a connection closed before any
    /// byte of the reply (a request to send again) from the end of a reply.
    ///
    /// ```no_run
    /// use std::io::Write;
    /// # fn demo(client: &mut callosum_mio::Client) -> std::io::Result<()> {
    /// let lease = client.checkout().unwrap();
    /// client.conn_mut(&lease).unwrap().write_all(b"GET\n")?;
    /// # client.checkin(lease); Ok(()) }
    /// ```
    pub fn conn_mut(&mut self, lease: &Lease) -> Option<&mut Conn> {
        self.return_dropped();
        self.pooled
            .get_mut(lease.key)
            .filter(|pooled| pooled.held == Held::Leased(lease.id))
            .map(|pooled| {
                pooled.used.record_io();
                &mut pooled.conn
            })
    }

    /// Reads the leased connection as [`Client::conn_mut`]'s [`Read`] does (`WouldBlock`
    /// when nothing is there yet), except at its end: a connection that ends (the end of
    /// the stream, a reset) before any byte of the reply came through this call is an error
    /// that [`is_closed_before_reply`](crate::is_closed_before_reply) recognises (kind
    /// `ConnectionAborted`, inner error [`ClosedBeforeReply`](crate::ClosedBeforeReply)),
    /// not `Ok(0)`. Its server closed it without answering, as a draining server does
    /// between two requests, so an idempotent request can be sent again on another lease;
    /// this one is broken, and is closed when it is given back. The end after some bytes
    /// of the reply is `Ok(0)`, as it came. A lease that is not current is `NotConnected`.
    ///
    /// ```no_run
    /// use callosum_mio::is_closed_before_reply;
    /// # fn demo(client: &mut callosum_mio::Client, lease: callosum_mio::Lease) {
    /// let mut reply = [0u8; 64];
    /// match client.read(&lease, &mut reply) {
    ///     Ok(n) => println!("{n} bytes of the reply"),
    ///     Err(error) if is_closed_before_reply(&error) => {
    ///         client.checkin(lease); // closed, as it is broken
    ///         // ... send the request again on the next lease from `checkout`
    ///     }
    ///     Err(error) => println!("{error}"), // `WouldBlock`: wait for readiness
    /// }
    /// # }
    /// ```
    pub fn read(&mut self, lease: &Lease, buf: &mut [u8]) -> io::Result<usize> {
        self.return_dropped();
        let pooled = self.leased(lease)?;
        let result = pooled.conn.read(buf);
        adapter::lease_read(&mut pooled.used, !buf.is_empty(), result)
    }

    /// Writes to the leased connection as [`Client::conn_mut`]'s [`Write`] does, except
    /// when the connection was closed under it: a reset or a broken pipe before any byte of
    /// the reply is the same error as [`Client::read`]'s, which
    /// [`is_closed_before_reply`](crate::is_closed_before_reply) recognises.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) -> std::io::Result<()> {
    /// let lease = client.checkout().unwrap();
    /// let written = client.write(&lease, b"GET key\n")?;
    /// # let _ = written; client.checkin(lease); Ok(()) }
    /// ```
    pub fn write(&mut self, lease: &Lease, buf: &[u8]) -> io::Result<usize> {
        self.return_dropped();
        let pooled = self.leased(lease)?;
        let result = pooled.conn.write(buf);
        adapter::lease_write(&mut pooled.used, result)
    }

    /// The socket of a current lease, its use recorded; `NotConnected` for any other lease.
    fn leased(&mut self, lease: &Lease) -> io::Result<&mut Pooled> {
        let pooled = self
            .pooled
            .get_mut(lease.key)
            .filter(|pooled| pooled.held == Held::Leased(lease.id))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "not a current lease of this client",
                )
            })?;
        pooled.used.record_io();
        Ok(pooled)
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
        self.return_dropped();
        let (id, key) = lease.disarm();
        self.give_back(id, key, Given::Finished);
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
        self.return_dropped();
        let (id, key) = lease.disarm();
        self.give_back(id, key, Given::Broken);
    }

    /// Gives back a leased connection whose exchange finished with a failure the server
    /// answered (an "unavailable" or an internal error, as the application judges it): it is
    /// closed, reported as [`ClientEvent::Removed`](crate::ClientEvent::Removed) (cause
    /// [`RemoveCause::ServerFailed`](crate::RemoveCause::ServerFailed)), and the server backs
    /// off in the rover, so that a server that fails fast, whose connections are idle most,
    /// does not draw more than its share.
    ///
    /// ```no_run
    /// # fn demo(client: &mut callosum_mio::Client) {
    /// let lease = client.checkout().unwrap();
    /// client.checkin_failed(lease);
    /// assert_eq!(client.status().stats.removed.server_failed, 1);
    /// # }
    /// ```
    pub fn checkin_failed(&mut self, lease: Lease) {
        self.return_dropped();
        let (id, key) = lease.disarm();
        self.give_back(id, key, Given::ServerFailed);
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
        self.return_dropped();
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

    /// Takes back every lease dropped since the last call, each as its use says: untouched
    /// as finished, used as interrupted. Every public `&mut self` call starts with it.
    pub(super) fn return_dropped(&mut self) {
        for (id, key) in self.dropped.take() {
            self.give_back(id, key, Given::Dropped);
        }
    }

    fn give_back(&mut self, lease: LeaseId, key: Key, given: Given) {
        let Some(pooled) = self
            .pooled
            .get_mut(key)
            .filter(|pooled| pooled.held == Held::Leased(lease))
        else {
            return; // not a current lease of this client
        };
        // Its readiness is nobody's now: drop what was not told.
        if std::mem::take(&mut pooled.ready).queued {
            self.ready.keys.retain(|&queued| queued != key);
        }
        let mut used = pooled.used;
        match given {
            Given::Broken => used.mark_broken(),
            Given::ServerFailed => used.mark_server_failed(),
            Given::Finished | Given::Dropped => {}
        }
        let end = match used.end(given == Given::Finished) {
            // One rule for "finished", whoever said it: a connection that ended, or has
            // bytes nobody read, did not finish its exchange.
            LeaseEnd::Finished
                if pooled.conn.ended().is_some() || probe(&mut pooled.conn).is_some() =>
            {
                LeaseEnd::Broken
            }
            end => end,
        };
        let returned = self.core.checkin(lease, key, end, self.clock.now());
        if let (Ok(Returned::Idle(id)), Some(pooled)) = (returned, self.pooled.get_mut(key)) {
            pooled.held = Held::Idle(id);
        }
        self.drive();
    }
}

//! A Callosum client: the core's rover and pool over real sockets.

mod attempt;
mod conn;
mod driver;
mod resolve;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use callosum_proto::Instant;
use callosum_proto::adapter::{self, Resolve};
use callosum_proto::client::{
    ClientConfig, ClientConfigError, ClientCore, ClientEvent, ClientStatus, EventQueue, GetError,
    Lease, ServerSpec, Ticket,
};
use callosum_proto::slab::Key;
use futures_lite::future;

pub use conn::PooledConn;
pub use driver::Driver;
pub use resolve::SystemResolver;

use state::{DriverState, Shared, State};

/// A place in the core's line of waiting `get` calls, given up when dropped (served, timed
/// out or cancelled).
struct Place<'a> {
    shared: &'a Arc<Shared>,
    ticket: Ticket,
}

impl Place<'_> {
    fn join(shared: &Arc<Shared>) -> Place<'_> {
        let ticket = shared.input(|state, now| state.core.join_line(now));
        Place { shared, ticket }
    }

    /// The connection, if this place is first in line and one is idle.
    fn checkout(&self) -> Option<PooledConn> {
        let ticket = self.ticket;
        lend(self.shared, |state, now| {
            state.core.checkout_in_line(ticket, now)
        })
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let ticket = self.ticket;
        self.shared
            .input(|state, now| state.core.leave_line(ticket, now));
    }
}

/// Checks out with `checkout` and hands the lease, with its socket, to a guard.
fn lend(
    shared: &Arc<Shared>,
    checkout: impl FnOnce(&mut State, Instant) -> Option<Lease<Key>>,
) -> Option<PooledConn> {
    let (lease, stream) = shared.input(|state, now| {
        let lease = checkout(state, now)?;
        let stream = state.lend(lease.conn);
        Some((lease, stream))
    })?;
    Some(PooledConn::new(Arc::clone(shared), lease, stream))
}

/// The client's handle; the last one dropped closes the client.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A Callosum client: a rover looking for low slots on its servers and a pool holding the
/// lowest it found. Cheap to clone; clones share one pool.
///
/// [`Client::new`] also returns the [`Driver`] future, which does the background work and
/// must be spawned (on any executor). No runtime is started behind your back.
///
/// ```no_run
/// use callosum_smol::{Client, ClientConfig};
/// use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
///
/// smol::block_on(async {
///     let (client, driver) = Client::new(ClientConfig::default()).unwrap();
///     smol::spawn(driver).detach();
///     client.add_server("127.0.0.1:7000".parse::<callosum_smol::ServerSpec>().unwrap());
///     client.add_server("127.0.0.1:7001".parse::<callosum_smol::ServerSpec>().unwrap());
///     let mut conn = client.get().await.unwrap(); // an idle connection
///     conn.write_all(b"ping\n").await.unwrap();
///     let mut reply = String::new();
///     BufReader::new(&mut conn).read_line(&mut reply).await.unwrap();
///     conn.finish(); // back to the pool; dropped without this, it would be closed
/// });
/// ```
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
    get_timeout: Duration,
}

impl Client {
    /// A client with no servers yet, and the future that drives it. The seed of its random
    /// choices is [`ClientConfig::seed`], or a fresh one when that is `None`.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let mut config = ClientConfig::default();
    /// config.pool.max_slots = 20;
    /// config.seed = Some(7); // fixed for a reproducible run
    /// let (client, driver) = Client::new(config).unwrap();
    ///
    /// let mut config = ClientConfig::default();
    /// config.pool.max_slots = 0;
    /// assert!(Client::new(config).is_err());
    /// # drop((client, driver));
    /// ```
    pub fn new(config: ClientConfig) -> Result<(Client, Driver), ClientConfigError> {
        Client::with_resolver(config, SystemResolver)
    }

    /// [`Client::new`] with host names looked up by `resolver` instead of the system's.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig, Lookup, Resolve};
    ///
    /// struct NoNames;
    /// impl Resolve for NoNames {
    ///     fn lookup(&self, host: &str, _port: u16) -> Lookup {
    ///         let error = std::io::Error::other(format!("{host}: no such name"));
    ///         Box::pin(async move { Err(error) })
    ///     }
    /// }
    /// let (client, driver) = Client::with_resolver(ClientConfig::default(), NoNames).unwrap();
    /// # drop((client, driver));
    /// ```
    pub fn with_resolver(
        config: ClientConfig,
        resolver: impl Resolve,
    ) -> Result<(Client, Driver), ClientConfigError> {
        let seed = config.seed.unwrap_or_else(adapter::random_seed);
        let get_timeout = config.get_timeout;
        let events = EventQueue::new(config.events_capacity);
        let capacity = config.pool.max_slots;
        let core = ClientCore::new(config, seed)?;
        let shared = Shared::new(core, events, capacity, Arc::new(resolver));
        let driver = Driver::new(Arc::clone(&shared));
        let client = Client {
            handle: Arc::new(Handle { shared }),
            get_timeout,
        };
        Ok((client, driver))
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Adds a server for the rover to try, or a host name whose every address is one
    /// (looked up at once, by the driver, and again every
    /// [`ClientConfig::resolve_interval`]); `false` if it was known already. The first server
    /// starts the rover.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig, ServerSpec};
    /// use std::net::SocketAddr;
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    /// assert!(client.add_server(addr));
    /// assert!(!client.add_server(addr));
    /// let name: ServerSpec = "localhost:7000".parse().unwrap();
    /// assert!(client.add_server(name));
    /// ```
    pub fn add_server(&self, server: impl Into<ServerSpec>) -> bool {
        let server = server.into();
        self.shared()
            .input(|state, now| state.core.add(&server, now))
    }

    /// Removes a server: its attempts in flight are aborted and never delivered, its idle
    /// connections are closed, and its leased ones give their places up at once and are
    /// closed when returned. A host name is no longer looked up, and the servers only it
    /// stood for are removed so. An address given directly is removed unless a host name
    /// still resolves to it (it stays while the name lists it). `false` if it was not added
    /// (the address directly, or the name).
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    /// use std::net::SocketAddr;
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    /// client.add_server(addr);
    /// assert!(client.remove_server(addr));
    /// assert!(!client.remove_server(addr));
    /// ```
    pub fn remove_server(&self, server: impl Into<ServerSpec>) -> bool {
        let server = server.into();
        self.shared()
            .input(|state, now| state.core.remove(&server, now))
    }

    /// Takes an idle connection (by [`ClientConfig::lease`]), waiting up to the configured
    /// [`ClientConfig::get_timeout`] for one to become idle. Waiting callers are served in
    /// the order they came. Call [`PooledConn::finish`] on the connection once its exchange
    /// is over, or it is closed when dropped.
    ///
    /// Fails, saying why ([`GetError`]):
    ///
    /// - [`GetError::Closed`] at once if the client was closed ([`Client::close`]);
    /// - [`GetError::NoServers`] at once if no server is configured
    ///   ([`Client::add_server`]);
    /// - [`GetError::NotRunning`] if the [`Driver`] is not running: at once if it was
    ///   dropped or finished (and as soon as that happens to a `get` already waiting), at the
    ///   timeout if it was never polled;
    /// - [`GetError::TimedOut`] otherwise, carrying the last connect or handshake failure
    ///   seen (often the reason the pool is empty).
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// match client.get().await {
    ///     Ok(conn) => println!("slot {} on {}", conn.slot(), conn.server()),
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # });
    /// ```
    pub async fn get(&self) -> Result<PooledConn, GetError> {
        self.get_timeout(self.get_timeout).await
    }

    /// Like [`Client::get`], waiting at most `timeout`.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig, GetError};
    /// use std::time::Duration;
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let got = smol::block_on(client.get_timeout(Duration::from_secs(10)));
    /// assert_eq!(got.unwrap_err(), GetError::NoServers); // at once
    /// ```
    pub async fn get_timeout(&self, timeout: Duration) -> Result<PooledConn, GetError> {
        if let Some(error) = self.refusal() {
            return Err(error);
        }
        if let Some(conn) = self.try_get() {
            return Ok(conn);
        }
        // A timeout beyond the system clock's reach never fires.
        let mut deadline = Timer::after(timeout);
        let place = Place::join(self.shared());
        loop {
            let idle = self.shared().idle.listen();
            if let Some(conn) = place.checkout() {
                return Ok(conn);
            }
            // Closing the client and the driver's end both wake the waiting calls.
            if let Some(error) = self.refusal() {
                return Err(error);
            }
            let timed_out = future::or(
                async {
                    idle.await;
                    false
                },
                async {
                    (&mut deadline).await;
                    true
                },
            )
            .await;
            if timed_out {
                return place.checkout().ok_or_else(|| self.timed_out(timeout));
            }
        }
    }

    /// Why a `get` fails at once, if it does: the client is closed, it has no servers, or
    /// its driver ended.
    fn refusal(&self) -> Option<GetError> {
        let state = self.shared().lock();
        match state.core.get_error(Duration::ZERO) {
            error @ (GetError::Closed | GetError::NoServers) => Some(error),
            _ if state.driver == DriverState::Ended => Some(GetError::NotRunning),
            _ => None,
        }
    }

    /// Why a `get` that waited `waited` found nothing (counted as a timed-out get).
    fn timed_out(&self, waited: Duration) -> GetError {
        let mut state = self.shared().lock();
        match state.core.get_timed_out(waited) {
            GetError::TimedOut { .. } if state.driver != DriverState::Running => {
                GetError::NotRunning
            }
            error => error,
        }
    }

    /// Takes an idle connection (by [`ClientConfig::lease`]) if there is one and no [`Client::get`]
    /// call is already waiting (those are served first, in the order they came); never
    /// waits.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert!(client.try_get().is_none());
    /// ```
    pub fn try_get(&self) -> Option<PooledConn> {
        lend(self.shared(), |state, now| state.core.checkout(now))
    }

    /// Closes the client, for every clone of it: the rover stops (its attempts are aborted),
    /// idle connections are closed now and lent ones when they come back, each reported as
    /// removed ([`RemoveCause::ClientClosed`](crate::RemoveCause::ClientClosed)); the
    /// [`Driver`] finishes, and every waiting and later `get` fails as [`GetError::Closed`].
    /// Dropping the last handle closes the client too.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig, GetError};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// client.add_server("127.0.0.1:7000".parse::<callosum_smol::ServerSpec>().unwrap());
    /// client.close();
    /// assert!(client.status().closed);
    /// assert_eq!(smol::block_on(client.get()).unwrap_err(), GetError::Closed);
    /// ```
    pub fn close(&self) {
        self.shared().close();
    }

    /// The next event, waiting for one.
    ///
    /// ```no_run
    /// # use callosum_smol::{Client, ClientConfig};
    /// # smol::block_on(async {
    /// # let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    /// # smol::spawn(driver).detach();
    /// client.add_server("127.0.0.1:7000".parse::<callosum_smol::ServerSpec>().unwrap());
    /// println!("{}", client.next_event().await);
    /// # });
    /// ```
    pub async fn next_event(&self) -> ClientEvent {
        loop {
            let queued = self.shared().event_queued.listen();
            if let Some(event) = self.try_next_event() {
                return event;
            }
            queued.await;
        }
    }

    /// The next event if one is waiting.
    ///
    /// ```
    /// use callosum_smol::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert_eq!(client.try_next_event(), None);
    /// ```
    pub fn try_next_event(&self) -> Option<ClientEvent> {
        self.shared().lock().events.pop()
    }

    /// How many events were dropped, unread, because more than
    /// [`ClientConfig::events_capacity`] were waiting.
    pub fn events_dropped(&self) -> u64 {
        self.shared().lock().events.dropped()
    }

    /// The core's snapshot: connections per server, pool counts, attempts, waiting gets and
    /// counters.
    pub fn status(&self) -> ClientStatus {
        self.shared().lock().core.status()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("status", &self.status())
            .finish()
    }
}

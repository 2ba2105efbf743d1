//! A Callosum client: the core's rover and pool over tokio sockets.

mod attempt;
mod conn;
mod driver;
mod resolve;
mod state;

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use callosum_proto::adapter::{self, Resolve};
use callosum_proto::client::{
    ClientConfig, ClientConfigError, ClientCore, ClientEvent, ClientStatus, EventQueue, GetError,
    Lease, ServerSpec, Ticket,
};
use callosum_proto::slab::Key;
use tokio::net::TcpStream;

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

    /// The connection if this place is first in line and one is idle; an error if none can
    /// come any more.
    fn checkout(&self) -> Result<Option<PooledConn>, GetError> {
        let ticket = self.ticket;
        let lent = self
            .shared
            .input(|state, now| lend(state, |state| state.core.checkout_in_line(ticket, now)))?;
        Ok(lent.map(|(lease, stream)| PooledConn::new(Arc::clone(self.shared), lease, stream)))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let ticket = self.ticket;
        self.shared
            .input(|state, now| state.core.leave_line(ticket, now));
    }
}

/// A lease from the core, with its socket.
type Lent = (Lease<Key>, TcpStream);

/// Checks out with `checkout`, unless no connection can come any more (closed, no servers,
/// the driver gone): the lease and its socket, or nothing yet.
fn lend(
    state: &mut State,
    checkout: impl FnOnce(&mut State) -> Option<Lease<Key>>,
) -> Result<Option<Lent>, GetError> {
    match state.core.get_error(Duration::ZERO) {
        error @ (GetError::Closed | GetError::NoServers) => return Err(error),
        _ if matches!(state.driver, DriverState::Ended) => return Err(GetError::NotRunning),
        _ => {}
    }
    let Some(lease) = checkout(state) else {
        return Ok(None);
    };
    let stream = state.lend(lease.conn);
    Ok(Some((lease, stream)))
}

/// The client's handle; the last one dropped closes the client.
struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    fn close(&self) {
        self.shared.input(|state, now| state.core.close(now));
        // The driver ends, whether or not the core's timeout changed.
        self.shared.signals.driver.notify_one();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

/// A Callosum client on tokio: a rover looking for low slots on its servers and a pool
/// holding the lowest it found. Cheap to clone; clones share one pool. Its methods may be
/// called from any thread, inside a runtime or not.
///
/// [`Client::new`] also returns the [`Driver`] future, which does the background work and
/// must be spawned on a tokio runtime.
///
/// ```no_run
/// use callosum_tokio::{Client, ClientConfig};
/// use tokio::io::AsyncWriteExt;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let (client, driver) = Client::new(ClientConfig::default())?;
/// tokio::spawn(driver);
/// client.add_server("127.0.0.1:7000".parse::<callosum_tokio::ServerSpec>()?);
/// client.add_server("127.0.0.1:7001".parse::<callosum_tokio::ServerSpec>()?);
/// let mut conn = client.get().await?; // an idle connection
/// conn.write_all(b"ping\n").await?;
/// # Ok(())
/// # }
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
    /// use callosum_tokio::{Client, ClientConfig};
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
    /// use callosum_tokio::{Client, ClientConfig, Lookup, Resolve};
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
    /// use callosum_tokio::{Client, ClientConfig, ServerSpec};
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
    /// use callosum_tokio::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let addr: std::net::SocketAddr = "127.0.0.1:7000".parse().unwrap();
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
    /// the order they came.
    ///
    /// Call [`PooledConn::finish`] on the connection once its exchange is over, or it is
    /// closed when dropped after a read or a write.
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
    /// # async fn example(client: callosum_tokio::Client) {
    /// match client.get().await {
    ///     Ok(conn) => println!("slot {} on {}", conn.slot(), conn.server()),
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    pub async fn get(&self) -> Result<PooledConn, GetError> {
        self.get_timeout(self.get_timeout).await
    }

    /// Like [`Client::get`], waiting at most `timeout`.
    ///
    /// ```
    /// use callosum_tokio::{Client, ClientConfig, GetError};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// let error = client.get_timeout(Duration::from_millis(1)).await.unwrap_err();
    /// assert_eq!(error, GetError::NoServers);
    /// assert_eq!(error.to_string(), "no servers: add one with add_server");
    /// # });
    /// ```
    pub async fn get_timeout(&self, timeout: Duration) -> Result<PooledConn, GetError> {
        if let Some(conn) = self.checkout()? {
            return Ok(conn);
        }
        // A timeout beyond the clock's reach never fires.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let place = Place::join(self.shared());
        loop {
            let mut idle = pin!(self.shared().idle.notified());
            // Registered before asking, so an idle connection in between is not missed.
            idle.as_mut().enable();
            if let Some(conn) = place.checkout()? {
                return Ok(conn);
            }
            let Some(deadline) = deadline else {
                idle.await;
                continue;
            };
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                if let Some(conn) = place.checkout()? {
                    return Ok(conn);
                }
                let mut state = self.shared().lock();
                return Err(match state.driver {
                    DriverState::NotStarted => GetError::NotRunning,
                    _ => state.core.get_timed_out(timeout),
                });
            }
        }
    }

    /// Takes an idle connection (by [`ClientConfig::lease`]) if there is one and no [`Client::get`]
    /// call is already waiting (those are served first, in the order they came); never
    /// waits.
    ///
    /// ```
    /// use callosum_tokio::{Client, ClientConfig};
    ///
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// assert!(client.try_get().is_none());
    /// ```
    pub fn try_get(&self) -> Option<PooledConn> {
        self.checkout().ok().flatten()
    }

    fn checkout(&self) -> Result<Option<PooledConn>, GetError> {
        let lent = self
            .shared()
            .input(|state, now| lend(state, |state| state.core.checkout(now)))?;
        Ok(lent.map(|(lease, stream)| PooledConn::new(Arc::clone(self.shared()), lease, stream)))
    }

    /// Closes the client, for every clone of it: the rover stops (its attempts are aborted),
    /// idle connections are closed now and lent ones when they come back, each reported as
    /// removed ([`RemoveCause::ClientClosed`](crate::RemoveCause::ClientClosed)); the
    /// [`Driver`] finishes, and every waiting and later `get` fails with
    /// [`GetError::Closed`]. Dropping the last handle closes the client too.
    ///
    /// ```
    /// use callosum_tokio::{Client, ClientConfig, GetError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    /// client.add_server("127.0.0.1:7000".parse::<callosum_tokio::ServerSpec>().unwrap());
    /// client.close();
    /// assert!(client.status().closed);
    /// assert_eq!(client.get().await.unwrap_err(), GetError::Closed);
    /// # });
    /// ```
    pub fn close(&self) {
        self.handle.close();
    }

    /// The next event, waiting for one.
    ///
    /// ```no_run
    /// # async fn example(client: callosum_tokio::Client) {
    /// client.add_server("127.0.0.1:7000".parse::<callosum_tokio::ServerSpec>().unwrap());
    /// println!("{}", client.next_event().await);
    /// # }
    /// ```
    pub async fn next_event(&self) -> ClientEvent {
        loop {
            let mut queued = pin!(self.shared().event_queued.notified());
            queued.as_mut().enable();
            if let Some(event) = self.try_next_event() {
                return event;
            }
            queued.await;
        }
    }

    /// The next event if one is waiting.
    ///
    /// ```
    /// use callosum_tokio::{Client, ClientConfig};
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

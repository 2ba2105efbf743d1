//! [`run`]: a small event loop for users who do not have their own.

use std::io;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll};

use crate::{Client, ClientEvent, LeaseReady, Server, ServerEvent};

/// What [`run`] hands to its callback.
///
/// ```
/// use callosum_mio::Happened;
///
/// fn is_mine(happened: &Happened<'_>) -> bool {
///     matches!(happened, Happened::Foreign(_))
/// }
/// assert!(!is_mine(&Happened::Woke));
/// ```
#[derive(Debug)]
pub enum Happened<'e> {
    /// An event of the server.
    Server(ServerEvent),
    /// An event of the client.
    Client(ClientEvent),
    /// A connection the client lent is ready to read or write.
    Lease(LeaseReady),
    /// A `mio` event for a token outside the components' ranges: one of the user's.
    Foreign(&'e Event),
    /// Once per turn of the loop, after the events and timeouts: run your own timers and
    /// call [`Parts::wake_at`] for the next one.
    Woke,
}

/// The components [`run`] drives, lent to its callback, and the callback's own wake-up.
///
/// ```no_run
/// # fn demo(parts: &mut callosum_mio::Parts<'_>) {
/// if let Some(client) = parts.client.as_deref_mut() {
///     if let Some(lease) = client.checkout() {
///         client.checkin(lease);
///     }
/// }
/// parts.wake_at(std::time::Instant::now() + std::time::Duration::from_millis(50));
/// # }
/// ```
#[derive(Debug)]
pub struct Parts<'a> {
    /// The server, if [`run`] was given one.
    pub server: Option<&'a mut Server>,
    /// The client, if [`run`] was given one.
    pub client: Option<&'a mut Client>,
    wake_at: Option<Instant>,
}

impl Parts<'_> {
    /// Asks for a [`Happened::Woke`] at `at` at the latest. Each `Woke` forgets the earlier
    /// requests: ask again from it for whatever is still pending.
    ///
    /// ```no_run
    /// # fn demo(parts: &mut callosum_mio::Parts<'_>, due: std::time::Instant) {
    /// parts.wake_at(due);
    /// # }
    /// ```
    pub fn wake_at(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |earlier| earlier.min(at)));
    }
}

/// The `mio` poll timeout for the earliest of `deadlines` (`None` entries are ignored):
/// `None` (wait for an event) if there is none, zero if it has passed.
///
/// ```
/// use callosum_mio::timeout_until;
/// use std::time::{Duration, Instant};
///
/// assert_eq!(timeout_until([None, None]), None);
/// let past = Instant::now();
/// assert_eq!(timeout_until([Some(past), None]), Some(Duration::ZERO));
/// let later = Instant::now() + Duration::from_secs(60);
/// assert!(timeout_until([Some(later)]).unwrap() > Duration::from_secs(59));
/// ```
pub fn timeout_until<I>(deadlines: I) -> Option<Duration>
where
    I: IntoIterator<Item = Option<Instant>>,
{
    let earliest = deadlines.into_iter().flatten().min()?;
    Some(earliest.saturating_duration_since(Instant::now()))
}

/// Runs a loop on `poll` that drives `server` and `client` (either may be `None`) until the
/// callback breaks, and hands the callback every event: the components' after each input,
/// `mio` events for other tokens as [`Happened::Foreign`], and one [`Happened::Woke`] per
/// turn (the first before polling). Register the components with `poll.registry()` first.
///
/// A `poll` interrupted by a signal is retried; any other poll error ends the loop.
///
/// ```
/// use callosum_mio::{run, Client, ClientEvent, Happened, Server, TokenRange};
/// use std::ops::ControlFlow;
///
/// let mut poll = mio::Poll::new()?;
/// let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), Default::default())?;
/// server.register(poll.registry(), TokenRange::new(0..100))?;
/// let mut client = Client::new(Default::default()).unwrap();
/// client.add_server(server.local_addr());
/// client.register(poll.registry(), TokenRange::new(100..100 + client.tokens_needed()))?;
///
/// let mut kept = 0;
/// run(&mut poll, Some(&mut server), Some(&mut client), |_, happened| {
///     if let Happened::Client(ClientEvent::Kept { .. }) = happened {
///         kept += 1;
///     }
///     if kept == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
/// })?;
/// // An idle client keeps two connections (its pool is sized to its demand).
/// assert_eq!(client.status().servers[0].slots.len(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn run<F>(
    poll: &mut Poll,
    server: Option<&mut Server>,
    client: Option<&mut Client>,
    mut on: F,
) -> io::Result<()>
where
    F: FnMut(&mut Parts<'_>, Happened<'_>) -> ControlFlow<()>,
{
    let mut parts = Parts {
        server,
        client,
        wake_at: None,
    };
    let mut events = Events::with_capacity(256);
    loop {
        // Drain what the components queued outside the loop (add_server, checkin, ...).
        if drain(&mut parts, &mut on).is_break() {
            return Ok(());
        }
        parts.wake_at = None;
        if on(&mut parts, Happened::Woke).is_break() {
            return Ok(());
        }
        let timeout = timeout_until([
            parts.server.as_deref().and_then(Server::poll_timeout),
            parts.client.as_deref().and_then(Client::poll_timeout),
            parts.wake_at,
        ]);
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        for event in &events {
            let token = event.token();
            if let Some(server) = parts.server.as_deref_mut().filter(|s| s.handles(token)) {
                server.handle_event(event);
            } else if let Some(client) = parts.client.as_deref_mut().filter(|c| c.handles(token)) {
                client.handle_event(event);
            } else if on(&mut parts, Happened::Foreign(event)).is_break() {
                return Ok(());
            }
            if drain(&mut parts, &mut on).is_break() {
                return Ok(());
            }
        }
        if let Some(server) = parts.server.as_deref_mut() {
            server.handle_timeout();
        }
        if let Some(client) = parts.client.as_deref_mut() {
            client.handle_timeout();
        }
    }
}

/// Hands every queued event of both components to the callback.
fn drain<F>(parts: &mut Parts<'_>, on: &mut F) -> ControlFlow<()>
where
    F: FnMut(&mut Parts<'_>, Happened<'_>) -> ControlFlow<()>,
{
    loop {
        if let Some(event) = parts.server.as_deref_mut().and_then(Server::poll_event) {
            on(parts, Happened::Server(event))?;
        } else if let Some(event) = parts.client.as_deref_mut().and_then(Client::poll_event) {
            on(parts, Happened::Client(event))?;
        } else if let Some(ready) = parts
            .client
            .as_deref_mut()
            .and_then(Client::poll_lease_ready)
        {
            on(parts, Happened::Lease(ready))?;
        } else {
            return ControlFlow::Continue(());
        }
    }
}

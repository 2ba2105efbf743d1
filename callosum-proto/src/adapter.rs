//! What every adapter on `std` needs, written once (the `std` feature): the one conversion
//! between the system clock and the core's [`Instant`], the one reading of each
//! `io::Error` an adapter meets, what a lease's reads and writes pass on to its holder
//! ([`lease_read`], [`lease_write`], [`is_closed_before_reply`]), and host-name lookups
//! ([`Resolve`], [`report_lookup`]).
//!
//! ```
//! use callosum_proto::adapter::{Clock, Read, read_outcome};
//! use std::io;
//!
//! let clock = Clock::new();
//! let deadline = clock.now() + std::time::Duration::from_millis(5);
//! assert!(clock.to_std(deadline).is_some());
//! assert_eq!(read_outcome(&Ok(0)), Read::End);
//! assert_eq!(read_outcome(&Err(io::ErrorKind::WouldBlock.into())), Read::Pending);
//! ```

use std::boxed::Box;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant as StdInstant};
use std::vec::Vec;

use crate::Instant;
use crate::allocator::SlotLimitError;
use crate::client::{
    ClientCore, ClosedBeforeReply, LeaseUse, NameId, ResolveFailure, StreamEnd, UnknownName,
};
use crate::rover::ConnectFailure;

/// The adapter's clock: core instants are microseconds since the clock was made.
///
/// Overflow has one rule: a core instant too far ahead for the system clock is `None` from
/// [`Clock::to_std`], which the adapter treats as "no deadline"; a system instant before the
/// epoch is [`Instant::ZERO`].
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: StdInstant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            epoch: StdInstant::now(),
        }
    }

    /// The current time as a core instant.
    pub fn now(&self) -> Instant {
        self.from_std(StdInstant::now())
    }

    /// A system instant as a core instant, rounded down to the microsecond.
    pub fn from_std(&self, at: StdInstant) -> Instant {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// A core instant as a system instant; `None` when the system clock cannot represent it
    /// (treat it as never). Converting back gives the same core instant, so a timer set for
    /// the result never wakes before the core's deadline.
    pub fn to_std(&self, at: Instant) -> Option<StdInstant> {
        self.epoch
            .checked_add(Duration::from_micros(at.as_micros()))
    }
}

/// A seed for a client whose [`ClientConfig::seed`](crate::client::ClientConfig::seed) is
/// `None`: drawn from the standard library's per-process random keys and the time, so that
/// clients started together do not choose in step.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(StdInstant::now())
}

/// Why a connect failed, from its I/O error.
///
/// ```
/// use callosum_proto::adapter::connect_failure;
/// use callosum_proto::rover::ConnectFailure;
///
/// let refused = std::io::ErrorKind::ConnectionRefused.into();
/// assert_eq!(connect_failure(&refused), ConnectFailure::Refused);
/// ```
pub fn connect_failure(error: &io::Error) -> ConnectFailure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        // A reset, or a broken pipe (what Linux reports for a reset after the peer's FIN),
        // happens only to an established connection: the core counts it as a handshake
        // failure, as it would at the first read.
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ConnectFailure::Reset,
        io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
        _ => ConnectFailure::Other,
    }
}

/// Why a server could not start, the same in every adapter.
///
/// ```
/// use callosum_proto::adapter::ServerError;
/// use callosum_proto::server::GrowableServerCore;
///
/// let error = ServerError::Config(GrowableServerCore::new(Some(0)).unwrap_err());
/// assert!(error.to_string().starts_with("invalid server configuration: "));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration cannot be honoured.
    Config(SlotLimitError),
    /// The listening socket could not be set up.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(error) => write!(f, "invalid server configuration: {error}"),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Config(error) => Some(error),
            ServerError::Bind { source, .. } => Some(source),
        }
    }
}

/// For code that speaks `io::Result`: a bind failure keeps the operating system's error kind
/// (an address in use stays `AddrInUse`), a configuration error is `InvalidInput`.
impl From<ServerError> for io::Error {
    fn from(error: ServerError) -> io::Error {
        let kind = match &error {
            ServerError::Config(_) => io::ErrorKind::InvalidInput,
            ServerError::Bind { source, .. } => source.kind(),
        };
        io::Error::new(kind, error)
    }
}

/// What an `accept` error means for the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcceptError {
    /// Nothing to accept now (`WouldBlock`): wait for readiness.
    Pending,
    /// One connection went wrong (aborted or reset before it was accepted, or the call was
    /// interrupted): accept again at once, nothing is short.
    PerConnection,
    /// The process or system is short of something (descriptors, memory, buffers): back off
    /// with [`ServerCore::handle_accept_error`](crate::server::ServerCore::handle_accept_error)
    /// and keep serving the connections it has.
    Resource,
}

/// Reads an `accept` error.
///
/// ```
/// use callosum_proto::adapter::{AcceptError, accept_error};
///
/// assert_eq!(accept_error(&std::io::ErrorKind::ConnectionAborted.into()), AcceptError::PerConnection);
/// // EMFILE, too many open files:
/// assert_eq!(accept_error(&std::io::Error::from_raw_os_error(24)), AcceptError::Resource);
/// ```
pub fn accept_error(error: &io::Error) -> AcceptError {
    match error.kind() {
        io::ErrorKind::WouldBlock => AcceptError::Pending,
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => AcceptError::PerConnection,
        _ => AcceptError::Resource,
    }
}

/// What one read from a socket gave, in the terms the core takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Read {
    /// This many bytes.
    Bytes(usize),
    /// The end of the stream.
    End,
    /// Nothing yet (`WouldBlock`): wait for readiness.
    Pending,
    /// Interrupted: read again.
    Retry,
    /// The read failed (a reset included).
    Failed,
}

/// Reads the result of a read.
///
/// ```
/// use callosum_proto::adapter::{Read, read_outcome};
///
/// assert_eq!(read_outcome(&Ok(3)), Read::Bytes(3));
/// assert_eq!(read_outcome(&Err(std::io::ErrorKind::ConnectionReset.into())), Read::Failed);
/// ```
pub fn read_outcome(result: &io::Result<usize>) -> Read {
    match result {
        Ok(0) => Read::End,
        Ok(n) => Read::Bytes(*n),
        Err(error) => match error.kind() {
            io::ErrorKind::WouldBlock => Read::Pending,
            io::ErrorKind::Interrupted => Read::Retry,
            _ => Read::Failed,
        },
    }
}

/// What a read through a lease's guard passes on to its holder, recorded in `used`: bytes
/// as they came; the end of the stream (`Ok(0)` into a buffer with `room`) or a reset as
/// [`ClosedBeforeReply`] if no byte of the reply came before it, and as it came otherwise;
/// any other failure as it came, the connection broken. One rule for every adapter's guard,
/// so that an application tells a request to send again ([`is_closed_before_reply`]) from
/// a broken reply the same way on each.
///
/// ```
/// use callosum_proto::adapter::{is_closed_before_reply, lease_read};
/// use callosum_proto::client::LeaseUse;
///
/// // The server closed the connection before answering: the request can be sent again.
/// let mut used = LeaseUse::default();
/// let read = lease_read(&mut used, true, Ok(0));
/// assert!(is_closed_before_reply(&read.unwrap_err()));
/// assert!(used.is_broken());
/// // Closed after part of the reply: the end of the stream, as it came.
/// let mut used = LeaseUse::default();
/// assert_eq!(lease_read(&mut used, true, Ok(3)).unwrap(), 3);
/// assert_eq!(lease_read(&mut used, true, Ok(0)).unwrap(), 0);
/// assert!(used.is_broken());
/// ```
pub fn lease_read(used: &mut LeaseUse, room: bool, result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Ok(0) if room => ended(used, result),
        Ok(bytes) => {
            used.record_read(bytes);
            Ok(bytes)
        }
        Err(error) => lease_failure(used, error),
    }
}

/// What a write (or a flush) through a lease's guard passes on to its holder, recorded in
/// `used`: a reset or a broken pipe before any byte of the reply as [`ClosedBeforeReply`]
/// (the request was written into a connection its server had closed), any other failure as
/// it came, the connection broken.
///
/// ```
/// use callosum_proto::adapter::{is_closed_before_reply, lease_write};
/// use callosum_proto::client::LeaseUse;
/// use std::io;
///
/// let mut used = LeaseUse::default();
/// let written = lease_write(&mut used, Err::<usize, _>(io::ErrorKind::BrokenPipe.into()));
/// assert!(is_closed_before_reply(&written.unwrap_err()));
/// ```
pub fn lease_write<T>(used: &mut LeaseUse, result: io::Result<T>) -> io::Result<T> {
    result.or_else(|error| lease_failure(used, error))
}

/// Whether an I/O error from a lease's guard is [`ClosedBeforeReply`]: its connection ended
/// before any byte of the reply, so the server may not have seen the request, and an
/// idempotent request can be sent again on another connection, once the guard is given up
/// (the one it met was closed and removed, with every other of its server:
/// [`LeaseEnd::ClosedBeforeReply`](crate::client::LeaseEnd::ClosedBeforeReply)). A draining server closes a connection between two requests, so a request
/// written an instant after meets exactly this. Its kind is `ConnectionAborted` (never
/// `UnexpectedEof`, which `read_exact` reports for a reply cut short); test with this
/// function rather than by kind.
///
/// ```
/// use callosum_proto::adapter::is_closed_before_reply;
/// use callosum_proto::client::ClosedBeforeReply;
/// use std::io;
///
/// let error = io::Error::from(ClosedBeforeReply);
/// assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
/// assert!(is_closed_before_reply(&error));
/// assert!(!is_closed_before_reply(&io::ErrorKind::ConnectionAborted.into()));
/// ```
pub fn is_closed_before_reply(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<ClosedBeforeReply>())
}

/// The error of a request whose connection ended before any byte of its reply, kind
/// `ConnectionAborted` (see [`is_closed_before_reply`]).
impl From<ClosedBeforeReply> for io::Error {
    fn from(error: ClosedBeforeReply) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, error)
    }
}

/// A failed read or write of a lease: the end of the connection if the peer reset it,
/// broken for any other failure but an interrupted or would-block call (tried again).
fn lease_failure<T>(used: &mut LeaseUse, error: io::Error) -> io::Result<T> {
    match error.kind() {
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Err(error),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ended(used, Err(error)),
        _ => {
            used.mark_broken();
            Err(error)
        }
    }
}

/// The connection ended under the lease: [`ClosedBeforeReply`] before any byte of the
/// reply, the result as it came after some.
fn ended<T>(used: &mut LeaseUse, as_it_came: io::Result<T>) -> io::Result<T> {
    match used.record_end() {
        StreamEnd::BeforeReply => Err(ClosedBeforeReply.into()),
        StreamEnd::InReply => as_it_came,
    }
}

/// A host-name lookup under way: the addresses, or why there are none.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Looks host names up for an async adapter's client (`Client::with_resolver` in smol and
/// tokio): the system's resolver by default, a fixed table in tests, a service registry.
///
/// ```
/// use callosum_proto::adapter::{Lookup, Resolve};
/// use std::net::SocketAddr;
///
/// /// Every name is the same two servers.
/// struct Fixed(Vec<SocketAddr>);
///
/// impl Resolve for Fixed {
///     fn lookup(&self, _host: &str, port: u16) -> Lookup {
///         let addrs = self.0.iter().map(|a| SocketAddr::new(a.ip(), port)).collect();
///         Box::pin(async move { Ok(addrs) })
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, each with `port`.
    fn lookup(&self, host: &str, port: u16) -> Lookup;
}

/// Reports the end of a lookup of `name` to the client core: the addresses, or a failure
/// ([`ResolveFailure::LookupFailed`]; the error itself is the adapter's to log). A name
/// removed meanwhile is [`UnknownName`].
///
/// ```
/// use callosum_proto::Instant;
/// use callosum_proto::adapter::report_lookup;
/// use callosum_proto::client::{ClientConfig, ClientCore};
/// use std::io;
///
/// let mut core = ClientCore::<u32>::new(ClientConfig::default(), 1).unwrap();
/// let name = core.add_name("svc.local", 7000, Instant::ZERO).unwrap();
/// let failed = Err(io::Error::new(io::ErrorKind::NotFound, "no such name"));
/// report_lookup(&mut core, name, &failed, Instant::ZERO).unwrap();
/// assert_eq!(core.status().stats.resolve_failed, 1);
/// ```
pub fn report_lookup<K>(
    core: &mut ClientCore<K>,
    name: NameId,
    result: &io::Result<Vec<SocketAddr>>,
    now: Instant,
) -> Result<(), UnknownName> {
    match result {
        Ok(addrs) => core.handle_resolved(name, addrs, now),
        Err(_) => core.handle_resolve_failed(name, ResolveFailure::LookupFailed, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_converted_to_std_converts_back_to_itself() {
        let clock = Clock::new();
        let deadline = Instant::from_micros(1_234_567);
        let std = clock.to_std(deadline).unwrap();
        assert_eq!(clock.from_std(std), deadline);
        assert_eq!(clock.from_std(std + Duration::from_nanos(999)), deadline);
    }

    #[test]
    fn before_the_epoch_is_zero() {
        let clock = Clock::new();
        if let Some(before) = clock.epoch.checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.from_std(before), Instant::ZERO);
        }
    }

    #[test]
    fn a_lease_tells_an_end_before_the_reply_from_one_within_it() {
        // A reset before any byte: the request can be sent again.
        let mut used = LeaseUse::default();
        let reset = lease_read(&mut used, true, Err(io::ErrorKind::ConnectionReset.into()));
        assert!(is_closed_before_reply(&reset.unwrap_err()));
        // A reset after some bytes: passed on as it came.
        let mut used = LeaseUse::default();
        assert_eq!(lease_read(&mut used, true, Ok(2)).unwrap(), 2);
        let reset = lease_read(&mut used, true, Err(io::ErrorKind::ConnectionReset.into()));
        let reset = reset.unwrap_err();
        assert!(!is_closed_before_reply(&reset));
        assert_eq!(reset.kind(), io::ErrorKind::ConnectionReset);
        assert!(used.is_broken());
        // A read into no room is no end; an interrupted or would-block call breaks nothing.
        let mut used = LeaseUse::default();
        assert_eq!(lease_read(&mut used, false, Ok(0)).unwrap(), 0);
        for kind in [io::ErrorKind::Interrupted, io::ErrorKind::WouldBlock] {
            assert_eq!(
                lease_read(&mut used, true, Err(kind.into()))
                    .unwrap_err()
                    .kind(),
                kind
            );
            assert_eq!(
                lease_write(&mut used, Err::<(), _>(kind.into()))
                    .unwrap_err()
                    .kind(),
                kind
            );
        }
        assert!(!used.is_broken());
        // Any other failure breaks the connection and is passed on.
        let denied = lease_write(
            &mut used,
            Err::<(), _>(io::ErrorKind::PermissionDenied.into()),
        );
        assert_eq!(denied.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert!(used.is_broken());
    }

    #[test]
    fn resource_shortages_back_off_and_connection_troubles_do_not() {
        for kind in [io::ErrorKind::OutOfMemory, io::ErrorKind::Other] {
            assert_eq!(accept_error(&kind.into()), AcceptError::Resource);
        }
        for errno in [23, 24, 105] {
            // ENFILE, EMFILE, ENOBUFS on Linux.
            let error = io::Error::from_raw_os_error(errno);
            assert_eq!(accept_error(&error), AcceptError::Resource, "{error}");
        }
        assert_eq!(
            accept_error(&io::ErrorKind::Interrupted.into()),
            AcceptError::PerConnection
        );
    }
}

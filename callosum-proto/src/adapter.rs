//! What every adapter on `std` needs, written once (the `std` feature): the one conversion
//! between the system clock and the core's [`Instant`], and the one reading of each
//! `io::Error` an adapter meets.
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

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use crate::Instant;
use crate::allocator::SlotLimitError;
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

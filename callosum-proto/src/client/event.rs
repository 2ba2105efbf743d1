//! What a client tells its user: the events, why a connection left the pool, and the bounded
//! queue every adapter keeps them in.

use alloc::collections::VecDeque;
use core::fmt;
use core::net::SocketAddr;

use super::{NameId, ResolveFailure};
use crate::rover::{ConnectFailure, HandshakeFailure};

/// Something that happened to the client's connections, in the words every adapter uses.
///
/// Its `Display` is the line the example clients print.
///
/// ```
/// use callosum_proto::client::{ClientEvent, RemoveCause};
///
/// let server = "127.0.0.1:7000".parse().unwrap();
/// assert_eq!(ClientEvent::Kept { server, slot: 0 }.to_string(), "kept slot 0 from 127.0.0.1:7000");
/// let removed = ClientEvent::Removed { server, slot: 3, cause: RemoveCause::ClosedByServer };
/// assert_eq!(removed.to_string(), "removed slot 3 from 127.0.0.1:7000: closed by the server while idle");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The rover found a connection and the pool kept it.
    Kept {
        /// The server it is on.
        server: SocketAddr,
        /// Its slot there.
        slot: u32,
    },
    /// The rover found a connection the full pool did not want (its slot is no lower than the
    /// highest held); it was closed, which frees the slot on its server.
    Rejected {
        /// The server it was on.
        server: SocketAddr,
        /// Its slot there.
        slot: u32,
    },
    /// A connection made way for a lower slot (reported after the [`ClientEvent::Kept`] of the
    /// one that replaced it). Closed now if it was idle, when it is returned if leased.
    Evicted {
        /// The server it is on.
        server: SocketAddr,
        /// Its slot there.
        slot: u32,
    },
    /// A connection attempt never got a TCP connection.
    Unreachable {
        /// The server tried.
        server: SocketAddr,
        /// What went wrong.
        reason: ConnectFailure,
    },
    /// A connection was made but did not give a slot line.
    HandshakeFailed {
        /// The server tried.
        server: SocketAddr,
        /// What went wrong.
        reason: HandshakeFailure,
    },
    /// A host name could not be resolved; the servers it stood for stay
    /// ([`ClientCore::handle_resolve_failed`](super::ClientCore::handle_resolve_failed)).
    ResolveFailed {
        /// The name (its host is in [`ClientStatus::names`](super::ClientStatus::names)).
        name: NameId,
        /// Why.
        failure: ResolveFailure,
    },
    /// The rover had no server to try (none known, or all backing off).
    NoServers,
    /// A connection left the pool for a reason other than eviction.
    Removed {
        /// The server it was on.
        server: SocketAddr,
        /// Its slot there.
        slot: u32,
        /// Why it left.
        cause: RemoveCause,
    },
}

impl fmt::Display for ClientEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::Kept { server, slot } => write!(f, "kept slot {slot} from {server}"),
            ClientEvent::Rejected { server, slot } => {
                write!(f, "rejected slot {slot} from {server}")
            }
            ClientEvent::Evicted { server, slot } => {
                write!(f, "evicted slot {slot} from {server}")
            }
            ClientEvent::Unreachable { server, reason } => {
                write!(f, "unreachable {server}: {reason}")
            }
            ClientEvent::HandshakeFailed { server, reason } => {
                write!(f, "handshake failed {server}: {reason}")
            }
            ClientEvent::NoServers => f.write_str("no servers to try"),
            ClientEvent::ResolveFailed { name, failure } => {
                write!(f, "{name} not resolved: {failure}")
            }
            ClientEvent::Removed {
                server,
                slot,
                cause,
            } => write!(f, "removed slot {slot} from {server}: {cause}"),
        }
    }
}

/// Why a connection left the pool (other than eviction, which is [`ClientEvent::Evicted`]).
///
/// ```
/// use callosum_proto::client::RemoveCause;
///
/// assert_eq!(RemoveCause::Interrupted.to_string(), "returned in the middle of an exchange");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RemoveCause {
    /// The server closed it while it was idle (between requests).
    ClosedByServer,
    /// Bytes came from the server while nobody had asked anything: right after the slot line,
    /// or later while idle. They would reach the next caller as the start of its answer.
    UnsolicitedData,
    /// The socket failed while idle.
    Error,
    /// Its user returned it as broken.
    Broken,
    /// Its user returned it saying the server's answer was a failure
    /// ([`LeaseEnd::ServerFailed`](super::LeaseEnd::ServerFailed)).
    ServerFailed,
    /// Its lease ended without its user saying the exchange finished (the future holding it
    /// was dropped by a timeout or a cancellation): the reply may still be on its way.
    Interrupted,
    /// Its server was removed from the client.
    ServerRemoved,
    /// Another connection of its server closed under a request before any byte of the reply
    /// ([`LeaseEnd::ClosedBeforeReply`](super::LeaseEnd::ClosedBeforeReply)): the server is
    /// closing its connections (a drain, a restart), so this one, opened before, went too.
    ServerClosing,
    /// The client was closed.
    ClientClosed,
    /// Held beyond what the client's demand needs ([`PoolSizing::Demand`](super::PoolSizing)):
    /// the highest idle slot is let go as the pool shrinks.
    Surplus,
    /// Idle when it had lived its [`ClientConfig::max_lifetime`](super::ClientConfig).
    MaxLifetime,
    /// Idle for its [`ClientConfig::idle_timeout`](super::ClientConfig).
    IdleTimeout,
}

impl fmt::Display for RemoveCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoveCause::ClosedByServer => "closed by the server while idle",
            RemoveCause::UnsolicitedData => "unsolicited bytes from the server",
            RemoveCause::Error => "socket error while idle",
            RemoveCause::Broken => "returned broken",
            RemoveCause::ServerFailed => "returned with a failure the server answered",
            RemoveCause::Interrupted => "returned in the middle of an exchange",
            RemoveCause::ServerRemoved => "its server was removed",
            RemoveCause::ServerClosing => "its server closed another connection under a request",
            RemoveCause::ClientClosed => "the client was closed",
            RemoveCause::Surplus => "more than the client's demand needs",
            RemoveCause::MaxLifetime => "it had lived its max_lifetime",
            RemoveCause::IdleTimeout => "it was idle for its idle_timeout",
        })
    }
}

/// The bounded queue in which an adapter keeps events until its user reads them: when it is
/// full the oldest event goes, and is counted, so a user who never reads costs bounded memory.
///
/// ```
/// use callosum_proto::client::{ClientEvent, EventQueue};
///
/// let mut queue = EventQueue::new(1);
/// queue.push(ClientEvent::NoServers);
/// queue.push(ClientEvent::NoServers);
/// assert_eq!(queue.dropped(), 1);
/// assert_eq!(queue.pop(), Some(ClientEvent::NoServers));
/// assert_eq!(queue.pop(), None);
/// ```
#[derive(Clone, Debug)]
pub struct EventQueue {
    events: VecDeque<ClientEvent>,
    capacity: usize,
    dropped: u64,
}

impl EventQueue {
    /// An empty queue that keeps at most `capacity` events.
    pub fn new(capacity: usize) -> EventQueue {
        EventQueue {
            events: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Adds an event, dropping the oldest when full.
    pub fn push(&mut self, event: ClientEvent) {
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.events.len() >= self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    /// The oldest event kept, if any.
    pub fn pop(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

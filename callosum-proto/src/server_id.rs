//! Names for the servers a client knows.

use core::fmt;

/// The identity of one back-end server, chosen by the caller.
///
/// The core never sees addresses: the rover picks a `ServerId`, the pool records which server
/// each connection came from, and the adapter maps ids to socket addresses.
///
/// ```
/// use callosum_proto::ServerId;
///
/// let id = ServerId(3);
/// assert_eq!(id.to_string(), "server 3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub u32);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server {}", self.0)
    }
}

//! Servers by name: a host name and port that the adapter resolves, and re-resolves every
//! [`ClientConfig::resolve_interval`](super::ClientConfig::resolve_interval), each address it
//! resolves to a server of the set (PROTOCOL.md section 6).
//!
//! The core decides when to resolve and what a result means (addresses added and gone, a
//! failure that keeps the last known ones); the adapter only looks the name up. A DNS name
//! with many A/AAAA records, such as a Kubernetes headless service, is a set of servers that
//! changes over time.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;
use core::str::FromStr;

use crate::Instant;

/// Where a server is: a socket address, or a host name and port to resolve.
///
/// ```
/// use callosum_proto::client::ServerSpec;
///
/// let addr: ServerSpec = "127.0.0.1:7000".parse().unwrap();
/// assert!(matches!(addr, ServerSpec::Addr(_)));
/// let name: ServerSpec = "localhost:7000".parse().unwrap();
/// assert_eq!(name, ServerSpec::Name { host: "localhost".into(), port: 7000 });
/// let v6: ServerSpec = "[::1]:7000".parse().unwrap();
/// assert!(matches!(v6, ServerSpec::Addr(_)));
/// assert_eq!(
///     "localhost".parse::<ServerSpec>().unwrap_err().to_string(),
///     "`localhost`: expected HOST:PORT or a socket address (no port)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerSpec {
    /// One server at this address.
    Addr(SocketAddr),
    /// Every address `host` resolves to, on `port`.
    Name {
        /// The host name.
        host: String,
        /// The port of every address.
        port: u16,
    },
}

impl From<SocketAddr> for ServerSpec {
    fn from(addr: SocketAddr) -> ServerSpec {
        ServerSpec::Addr(addr)
    }
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSpec::Addr(addr) => addr.fmt(f),
            ServerSpec::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A string that is neither a socket address nor `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadServerSpec {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for BadServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`: expected HOST:PORT or a socket address ({})",
            self.given, self.reason
        )
    }
}

impl core::error::Error for BadServerSpec {}

impl FromStr for ServerSpec {
    type Err = BadServerSpec;

    fn from_str(given: &str) -> Result<ServerSpec, BadServerSpec> {
        if let Ok(addr) = given.parse::<SocketAddr>() {
            return Ok(ServerSpec::Addr(addr));
        }
        let bad = |reason| BadServerSpec {
            given: given.to_string(),
            reason,
        };
        let (host, port) = given.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port is not 0-65535"))?;
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
        if host.is_empty() || !host.chars().all(valid) {
            return Err(bad("the host is not a name"));
        }
        Ok(ServerSpec::Name {
            host: host.to_string(),
            port,
        })
    }
}

/// Names one host name the client resolves; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameId(pub(super) u32);

impl fmt::Display for NameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name {}", self.0)
    }
}

/// A host name the client resolves, in [`ClientStatus::names`](super::ClientStatus::names):
/// what a [`ClientEvent::ResolveFailed`](super::ClientEvent::ResolveFailed) names.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameStatus {
    /// Its id, as events give it.
    pub name: NameId,
    /// The host name.
    pub host: String,
    /// The port of every address.
    pub port: u16,
    /// The addresses it resolved to last: servers of the client.
    pub servers: Vec<SocketAddr>,
}

/// Why a resolution gave no address, as the adapter saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolveFailure {
    /// The lookup succeeded with no address.
    NoAddresses,
    /// The lookup failed (no such name, no answer, a resolver error).
    LookupFailed,
}

impl fmt::Display for ResolveFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResolveFailure::NoAddresses => "resolved to no address",
            ResolveFailure::LookupFailed => "lookup failed",
        })
    }
}

/// A name whose resolution the adapter reports that the client does not know (removed, or
/// never added).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// The name given.
    pub name: NameId,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a name of this client", self.name)
    }
}

impl core::error::Error for UnknownName {}

#[derive(Clone, Debug)]
struct Entry {
    host: String,
    port: u16,
    /// What it resolved to last.
    addrs: BTreeSet<SocketAddr>,
    /// When to resolve it next; `None` while a lookup is out.
    due: Option<Instant>,
}

/// The names the client resolves.
#[derive(Clone, Debug, Default)]
pub(super) struct NameTable {
    entries: Vec<Option<Entry>>,
    by_host: BTreeMap<(String, u16), NameId>,
}

impl NameTable {
    /// A new name, due at `now`; `None` if known already.
    pub(super) fn insert(&mut self, host: &str, port: u16, now: Instant) -> Option<NameId> {
        let key = (host.to_string(), port);
        if self.by_host.contains_key(&key) {
            return None;
        }
        let id = NameId(u32::try_from(self.entries.len()).ok()?);
        self.entries.push(Some(Entry {
            host: key.0.clone(),
            port,
            addrs: BTreeSet::new(),
            due: Some(now),
        }));
        self.by_host.insert(key, id);
        Some(id)
    }

    /// Removes a name; the addresses it had resolved to.
    pub(super) fn remove(&mut self, id: NameId) -> Option<BTreeSet<SocketAddr>> {
        let entry = self.entries.get_mut(id.0 as usize)?.take()?;
        self.by_host.remove(&(entry.host, entry.port));
        Some(entry.addrs)
    }

    /// The id of `host` and `port`, if known.
    pub(super) fn id(&self, host: &str, port: u16) -> Option<NameId> {
        self.by_host.get(&(host.to_string(), port)).copied()
    }

    /// The host and port of `id`.
    pub(super) fn host(&self, id: NameId) -> Option<(&str, u16)> {
        let entry = self.entry(id)?;
        Some((entry.host.as_str(), entry.port))
    }

    /// Every name due at `now`, marked as being looked up: what to resolve.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<(NameId, String, u16)> {
        let mut due = Vec::new();
        for (index, entry) in (0u32..).zip(&mut self.entries) {
            if let Some(entry) = entry
                && entry.due.is_some_and(|at| at <= now)
            {
                entry.due = None;
                due.push((NameId(index), entry.host.clone(), entry.port));
            }
        }
        due
    }

    /// The earliest lookup due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.entries.iter().flatten().filter_map(|e| e.due).min()
    }

    /// A lookup of `id` ended; the next one is due at `next`. With `addrs`, the name now
    /// stands for them: returns the addresses added and those gone.
    pub(super) fn resolved(
        &mut self,
        id: NameId,
        addrs: Option<BTreeSet<SocketAddr>>,
        next: Instant,
    ) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), UnknownName> {
        let entry = self
            .entries
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(UnknownName { name: id })?;
        entry.due = Some(next);
        let Some(addrs) = addrs else {
            return Ok((Vec::new(), Vec::new()));
        };
        let added = addrs.difference(&entry.addrs).copied().collect();
        let gone = entry.addrs.difference(&addrs).copied().collect();
        entry.addrs = addrs;
        Ok((added, gone))
    }

    /// Whether any name (other than `except`, if given) stands for `addr`.
    pub(super) fn provides(&self, addr: SocketAddr, except: Option<NameId>) -> bool {
        (0u32..).zip(&self.entries).any(|(index, entry)| {
            except.is_none_or(|except| index != except.0)
                && entry.as_ref().is_some_and(|e| e.addrs.contains(&addr))
        })
    }

    /// Every name with its host, port and what it resolved to last, in the order added.
    pub(super) fn iter(&self) -> impl Iterator<Item = NameStatus> + '_ {
        (0u32..).zip(&self.entries).filter_map(|(index, entry)| {
            let entry = entry.as_ref()?;
            Some(NameStatus {
                name: NameId(index),
                host: entry.host.clone(),
                port: entry.port,
                servers: entry.addrs.iter().copied().collect(),
            })
        })
    }

    fn entry(&self, id: NameId) -> Option<&Entry> {
        self.entries.get(id.0 as usize)?.as_ref()
    }
}

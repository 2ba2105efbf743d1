//! Looking host names up: the core says when ([`Output::Resolve`]), a [`Resolve`] says what
//! they stand for, in a task of its own so that a slow lookup holds nothing else up.
//!
//! [`Output::Resolve`]: callosum_proto::client::Output::Resolve

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Weak;

use callosum_proto::client::{NameId, ResolveFailure};

use super::state::Shared;

/// A lookup under way: the addresses, or why there are none.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Looks host names up, for [`Client::with_resolver`](super::Client::with_resolver): the
/// system's resolver by default ([`SystemResolver`]), a fixed table in tests, or a service
/// registry.
///
/// ```
/// use callosum_tokio::{Lookup, Resolve};
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

/// The operating system's resolver, through [`tokio::net::lookup_host`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> Lookup {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// One lookup of `name`, reported to the core when it ends (if the client still exists).
pub(crate) async fn run(shared: Weak<Shared>, lookup: Lookup, name: NameId) {
    let result = lookup.await;
    let Some(shared) = shared.upgrade() else {
        return;
    };
    shared.input(|state, now| {
        // A name removed meanwhile is unknown: nothing to do.
        let _ = match result {
            Ok(addrs) => state.core.handle_resolved(name, &addrs, now),
            Err(error) => {
                log::warn!("callosum client: lookup failed: {error}");
                state
                    .core
                    .handle_resolve_failed(name, ResolveFailure::LookupFailed, now)
            }
        };
    });
}

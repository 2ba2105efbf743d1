//! Looking host names up: the core says when ([`Output::Resolve`]), a [`Resolve`] says what
//! they stand for, in a task of its own so that a slow lookup holds nothing else up.
//!
//! [`Output::Resolve`]: callosum_proto::client::Output::Resolve

use std::sync::Weak;

use callosum_proto::adapter::{self, Lookup, Resolve};
use callosum_proto::client::NameId;

use super::state::Shared;

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
    if let Err(error) = &result {
        log::warn!("callosum client: lookup failed: {error}");
    }
    let Some(shared) = shared.upgrade() else {
        return;
    };
    // A name removed meanwhile is unknown: nothing to do.
    let _ = shared.input(|state, now| adapter::report_lookup(&mut state.core, name, &result, now));
}

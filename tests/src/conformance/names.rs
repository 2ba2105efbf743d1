//! A resolver for tests: host names stand for whatever the test says, at once, the same for
//! every adapter, so that name checks are deterministic (no DNS).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// What each host name resolves to, changed by the test while the client runs. A name not
/// in the table fails to resolve. The port asked for is ignored: the test gives whole
/// addresses, so that servers on one loopback address with different ports can stand for
/// one name.
#[derive(Clone, Debug, Default)]
pub struct FakeResolver {
    table: Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>,
}

impl FakeResolver {
    /// From now on `host` resolves to `addrs`.
    pub fn set(&self, host: &str, addrs: &[SocketAddr]) {
        self.lock().insert(host.to_owned(), addrs.to_vec());
    }

    /// From now on `host` fails to resolve.
    pub fn fail(&self, host: &str) {
        self.lock().remove(host);
    }

    fn answer(&self, host: &str) -> io::Result<Vec<SocketAddr>> {
        self.lock()
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such name")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SocketAddr>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The smol and tokio adapters share the core's async trait.
impl callosum_proto::adapter::Resolve for FakeResolver {
    fn lookup(&self, host: &str, _port: u16) -> callosum_proto::adapter::Lookup {
        let answer = self.answer(host);
        Box::pin(async move { answer })
    }
}

impl callosum_mio::Resolve for FakeResolver {
    fn lookup(&self, host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        self.answer(host)
    }
}

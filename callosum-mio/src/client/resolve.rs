//! Looking host names up for a client on a `mio` loop: the core says when
//! ([`Output::Resolve`]); a [`Resolve`] says what a name stands for, on a thread of its own
//! (a lookup blocks, and the loop must not). The answer waits in a queue that the client
//! empties at its next call; while a lookup is under way the client asks to be woken every
//! few milliseconds rather than take a `mio::Waker` (a `Poll` has room for one, the user's).
//!
//! [`Output::Resolve`]: callosum_proto::client::Output::Resolve

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use callosum_proto::client::NameId;

/// Looks host names up, for [`Client::with_resolver`](super::Client::with_resolver): the
/// system's resolver by default ([`SystemResolver`]), a fixed table in tests, or a service
/// registry. Each lookup runs on a thread of its own, so it may block.
///
/// ```
/// use callosum_mio::Resolve;
/// use std::net::SocketAddr;
///
/// /// Every name is the same server.
/// struct Fixed(SocketAddr);
///
/// impl Resolve for Fixed {
///     fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
///         Ok(vec![SocketAddr::new(self.0.ip(), port)])
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, each with `port`.
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// A finished lookup, waiting for the loop.
pub(crate) type Answer = (NameId, io::Result<Vec<SocketAddr>>);

/// The lookups under way and the answers the loop has not taken yet.
pub(crate) struct Lookups {
    resolver: Arc<dyn Resolve>,
    answers: Arc<Mutex<Vec<Answer>>>,
    /// Lookups started and not yet answered.
    pending: Arc<AtomicUsize>,
}

impl Lookups {
    pub(crate) fn new(resolver: Arc<dyn Resolve>) -> Lookups {
        Lookups {
            resolver,
            answers: Arc::default(),
            pending: Arc::default(),
        }
    }

    /// Whether a lookup is under way.
    pub(crate) fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// Whether an answer waits to be taken.
    pub(crate) fn answered(&self) -> bool {
        !self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Looks `host` up on a thread of its own; the answer waits in the queue. A thread that
    /// cannot be started is an answer at once.
    pub(crate) fn start(&self, name: NameId, host: String, port: u16) {
        let resolver = Arc::clone(&self.resolver);
        let answers = Arc::clone(&self.answers);
        let pending = Arc::clone(&self.pending);
        pending.fetch_add(1, Ordering::AcqRel);
        let spawned = thread::Builder::new()
            .name("callosum-lookup".into())
            .spawn(move || {
                let answer = resolver.lookup(&host, port);
                // Queued before it stops counting as pending: never neither.
                push(&answers, (name, answer));
                pending.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(error) = spawned {
            push(&self.answers, (name, Err(error)));
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The answers that came since the last call.
    pub(crate) fn take_answers(&self) -> Vec<Answer> {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *answers)
    }
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("pending", &self.pending.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

fn push(answers: &Mutex<Vec<Answer>>, answer: Answer) {
    answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(answer);
}

//! The client's background work: the core's timer, the attempts, and the idle watcher.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Timer;
use callosum_proto::adapter::{Read, read_outcome};
use callosum_proto::client::IdleSignal;
use futures_lite::future;

use super::state::{DriverState, PooledStream, Shared};

/// The future that does a [`Client`](super::Client)'s background work: spawn it on any
/// executor (or `block_on` it). It runs the core's timer and the connection attempts, and
/// watches the idle connections so that one the server closes, or that receives bytes nobody
/// asked for, leaves the pool at once. It finishes when the last `Client` handle is dropped.
///
/// Without it running, no connection is ever made: [`Client::get`](super::Client::get) fails
/// with [`GetError::NotRunning`](crate::GetError::NotRunning), at once if the driver was
/// dropped or finished, at its timeout if the driver was never polled.
///
/// ```no_run
/// use callosum_smol::{Client, ClientConfig};
///
/// let (client, driver) = Client::new(ClientConfig::default()).unwrap();
/// smol::spawn(driver).detach();
/// # drop(client);
/// ```
#[must_use = "a client does nothing unless its driver runs"]
pub struct Driver {
    shared: Arc<Shared>,
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Whether the client was told that the driver runs.
    polled: bool,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver {
        Driver {
            shared: Arc::clone(&shared),
            polled: false,
            future: Box::pin(async move {
                let work = future::or(run_timer(&shared), watch_idle(&shared));
                shared.executor.run(work).await;
                // The client is closed and its attempts cancelled: run the executor once
                // more so that their sockets are dropped now, not when the last reference
                // to the client goes.
                while shared.executor.try_tick() {}
            }),
        }
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Driver")
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.polled {
            self.polled = true;
            self.shared.set_driver(DriverState::Running);
        }
        let done = self.future.as_mut().poll(cx);
        if done.is_ready() {
            self.shared.set_driver(DriverState::Ended);
        }
        done
    }
}

/// A driver dropped (finished or not) makes every waiting and later `get` fail as
/// [`GetError::NotRunning`](crate::GetError::NotRunning) (unless the client is closed).
impl Drop for Driver {
    fn drop(&mut self) {
        self.shared.set_driver(DriverState::Ended);
    }
}

/// Calls the core's `handle_timeout` at each of its timeouts, until the client is closed.
async fn run_timer(shared: &Arc<Shared>) {
    loop {
        let changed = shared.timer.listen();
        let deadline = {
            let mut state = shared.lock();
            if state.core.is_closed() {
                return;
            }
            let now = state.clock.now();
            if state.timeout.is_some_and(|due| due <= now) {
                state.core.handle_timeout(now);
                shared.drain(&mut state);
            }
            // Beyond the system clock's reach: no deadline.
            state.timeout.and_then(|due| state.clock.to_std(due))
        };
        match deadline {
            Some(deadline) => {
                future::or(
                    async {
                        Timer::at(deadline).await;
                    },
                    changed,
                )
                .await
            }
            None => changed.await,
        }
    }
}

/// Tells the core about idle connections that their server closed, sent bytes on, or that
/// failed, as soon as the socket says so, until the client is closed.
async fn watch_idle(shared: &Arc<Shared>) {
    future::poll_fn(|cx| {
        let mut state = shared.lock();
        if state.core.is_closed() {
            return Poll::Ready(());
        }
        state.watcher = Some(cx.waker().clone());
        let signals: Vec<_> = state
            .core
            .idle_mut()
            .filter_map(|(id, stream)| idle_signal(stream, cx).map(|signal| (id, signal)))
            .collect();
        if !signals.is_empty() {
            let now = state.clock.now();
            for (id, signal) in signals {
                if let Err(error) = state.core.handle_idle_signal(id, signal, now) {
                    // Unreachable: the ids were idle a moment ago, under the same lock.
                    log::error!("callosum client: {error}");
                }
            }
            shared.drain(&mut state);
        }
        Poll::Pending
    })
    .await
}

/// What an idle connection has to say, which on an idle connection is always trouble: the
/// end of the stream, bytes nobody asked for, or an error.
fn idle_signal(stream: &PooledStream, cx: &mut Context<'_>) -> Option<IdleSignal> {
    // Twice at most: a readiness the peek does not confirm is re-armed by the second poll.
    for _ in 0..2 {
        match stream.poll_readable(cx) {
            Poll::Pending => return None,
            Poll::Ready(Err(_)) => return Some(IdleSignal::Failed),
            Poll::Ready(Ok(())) => match read_outcome(&stream.get_ref().peek(&mut [0u8; 1])) {
                Read::End => return Some(IdleSignal::Closed),
                Read::Bytes(_) => return Some(IdleSignal::Bytes),
                Read::Pending | Read::Retry => continue,
                Read::Failed => return Some(IdleSignal::Failed),
            },
        }
    }
    None
}

//! The client's background work: the core's timer, the attempts, and the idle connections
//! whose sockets became readable.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Timer;
use futures_lite::future;

use super::state::{DriverState, Shared};

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
                shared.executor.run(run(&shared)).await;
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

/// Until the client is closed: the fired idle connections, the core's timeouts, and a sleep
/// until the next of them or the next wake.
async fn run(shared: &Arc<Shared>) {
    loop {
        // Listening first: a wake from now on ends the sleep below.
        let woken = shared.signals.driver.listen();
        let deadline = {
            let mut state = shared.lock();
            if state.core.is_closed() {
                return;
            }
            let now = state.clock.now();
            shared.check_fired(&mut state, now);
            if state.timeout.is_some_and(|due| due <= now) {
                state.core.handle_timeout(now);
            }
            shared.drain(&mut state);
            // Beyond the system clock's reach: no deadline.
            state.timeout.and_then(|due| state.clock.to_std(due))
        };
        match deadline {
            // Either way, the next turn sees what is due.
            Some(deadline) => {
                future::or(
                    async {
                        Timer::at(deadline).await;
                    },
                    woken,
                )
                .await
            }
            None => woken.await,
        }
    }
}

//! The client's background work: the core's timer, the attempts, and the idle connections
//! whose sockets became readable.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

use super::state::{DriverState, Shared};

/// The future that does a [`Client`](super::Client)'s background work: spawn it on a tokio
/// runtime (current-thread or multi-thread) with `tokio::spawn`, or `.await` it.
///
/// It runs the core's timer, spawns one short task per connection attempt on the runtime
/// it runs on (each aborted, closing its socket, when the core gives up on the attempt), and
/// tells the core about idle connections that the server closed or sent bytes on, so that
/// they leave the pool at once. It finishes when the last `Client` handle is dropped.
///
/// Without it, no connection is ever made: [`Client::get`](super::Client::get) fails with
/// [`GetError::NotRunning`](crate::GetError::NotRunning) at its timeout if the driver was
/// never polled, and at once once the driver has finished or was dropped.
///
/// # Panics
///
/// When polled outside a tokio runtime.
///
/// ```
/// use callosum_tokio::{Client, ClientConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (client, driver) = Client::new(ClientConfig::default()).unwrap();
/// let driver = tokio::spawn(driver);
/// drop(client); // the last handle: the driver finishes
/// driver.await.unwrap();
/// # });
/// ```
#[must_use = "a client does nothing unless its driver runs"]
pub struct Driver {
    shared: Arc<Shared>,
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
    started: bool,
    ended: bool,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver {
        Driver {
            future: Box::pin(run(Arc::clone(&shared))),
            shared,
            started: false,
            ended: false,
        }
    }

    /// The driver runs from now on `runtime`: the attempts that waited for it start.
    fn start(&mut self, runtime: Handle) {
        self.started = true;
        let mut state = self.shared.lock();
        if let DriverState::NotStarted = state.driver {
            state.driver = DriverState::Running(runtime);
            state.start_queued(&self.shared);
        }
    }

    /// The driver finished or was dropped: its attempts stop, and waiting `get` calls learn
    /// that nothing more will come.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.shared.lock().end_driver();
        self.shared.idle.notify_waiters();
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("started", &self.started)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ended {
            return Poll::Ready(());
        }
        if !self.started {
            let runtime = Handle::try_current().unwrap_or_else(|error| {
                panic!("callosum_tokio::Driver needs a tokio runtime: {error}")
            });
            self.start(runtime);
        }
        let done = self.future.as_mut().poll(cx);
        if done.is_ready() {
            self.end();
        }
        done
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.end();
    }
}

/// Until the client is closed: the fired idle connections, the core's timeouts, and a sleep
/// until the next of them or the next wake.
async fn run(shared: Arc<Shared>) {
    loop {
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
        // A wake since the lock was released left a permit: this returns at once then.
        let woken = shared.signals.driver.notified();
        match deadline {
            Some(deadline) => {
                // Either way, the next turn sees what is due.
                let _ = tokio::time::timeout_at(deadline.into(), woken).await;
            }
            None => woken.await,
        }
    }
}

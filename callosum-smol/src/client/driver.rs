//! The client's background work: the rover's timer, its attempts, and the idle watcher.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Timer;
use callosum_proto::pool::{PooledId as ConnId, Removed};
use futures_lite::future;

use super::state::Shared;
use super::{ClientEvent, RemoveCause};

/// The future that does a [`Client`](super::Client)'s background work: spawn it on any
/// executor (or `block_on` it). It runs the rover's timer and connection attempts, and
/// watches the idle connections so that one the server closes, or that receives bytes nobody
/// asked for, leaves the pool at once. It finishes when the last `Client` handle is dropped.
///
/// Without it running, no connection is ever made and [`Client::get`](super::Client::get)
/// waits until its timeout.
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
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver {
        Driver {
            future: Box::pin(async move {
                let work = future::or(run_rover(&shared), watch_idle(&shared));
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
        self.future.as_mut().poll(cx)
    }
}

/// Wakes the rover at each of its timeouts, until the client is closed.
async fn run_rover(shared: &Arc<Shared>) {
    loop {
        let woken = shared.driver_wake.listen();
        let deadline = {
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            let now = state.clock.now();
            if state.rover.poll_timeout().is_some_and(|due| due <= now) {
                state.rover.handle_timeout(now);
                shared.settle(&mut state, None);
            }
            let clock = state.clock;
            state.rover.poll_timeout().map(|due| clock.to_std(due))
        };
        match deadline {
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

/// Removes idle connections that their server closed or sent bytes on, as soon as the
/// socket says so, until the client is closed.
async fn watch_idle(shared: &Arc<Shared>) {
    future::poll_fn(|cx| {
        let mut state = shared.lock();
        if state.closed {
            return Poll::Ready(());
        }
        state.watcher = Some(cx.waker().clone());
        let mut broken: Vec<(ConnId, RemoveCause)> = Vec::new();
        for (id, conn) in state.pool.idle_mut() {
            if let Some(cause) = idle_trouble(conn, cx) {
                broken.push((id, cause));
            }
        }
        if !broken.is_empty() {
            let capacity = shared.events_capacity;
            for (id, cause) in broken {
                let slot = state
                    .pool
                    .connections()
                    .find(|info| info.id == id)
                    .map(|info| info.slot);
                if let (Some(slot), Ok(Removed::Idle { conn, .. })) = (slot, state.pool.remove(id))
                {
                    let event = ClientEvent::Removed {
                        server: conn.server,
                        slot,
                        cause,
                    };
                    log::info!("callosum client: {event}");
                    state.push_event(event, capacity);
                    // `conn` is dropped here: the socket closes.
                }
            }
            shared.event_queued.notify(usize::MAX);
            shared.settle(&mut state, None);
        }
        Poll::Pending
    })
    .await
}

/// Whether an idle connection has something to say, which on an idle connection is always
/// trouble: the end of the stream, bytes nobody asked for, or an error.
fn idle_trouble(conn: &super::state::PooledStream, cx: &mut Context<'_>) -> Option<RemoveCause> {
    // Twice at most: a readiness the peek does not confirm is re-armed by the second poll.
    for _ in 0..2 {
        match conn.stream.poll_readable(cx) {
            Poll::Pending => return None,
            Poll::Ready(Err(_)) => return Some(RemoveCause::Error),
            Poll::Ready(Ok(())) => match conn.stream.get_ref().peek(&mut [0u8; 1]) {
                Ok(0) => return Some(RemoveCause::ClosedByServer),
                Ok(_) => return Some(RemoveCause::UnsolicitedData),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Some(RemoveCause::Error),
            },
        }
    }
    None
}

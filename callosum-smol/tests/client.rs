//! The smol client's own behaviour over loopback sockets: its guards, its waiting gets, its
//! attempt tasks, its idle watcher, and what dropping it does. What every adapter's client
//! must do (PROTOCOL.md sections 3 and 4) is checked once for all of them by the conformance
//! suite in `callosum-tests`.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::Timer;
use callosum_smol::{
    Client, ClientConfig, ClientEvent, ConnectFailure, Failure, GetError, RemoveCause, RoverConfig,
    ServerConfig,
};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use smol::net::{TcpListener, TcpStream};
use support::{DEADLINE, live_reaches, raw_slot, read_to_close, reading_server, until, within};

/// How long a `get` that fails "at once" may take on a busy machine: far less than the
/// [`DEADLINE`] it is given.
const AT_ONCE: Duration = Duration::from_secs(2);

/// Runs `step`, failing the test unless it is done within `bound`: an upper bound on steps
/// that must end well before [`DEADLINE`].
async fn before<T>(bound: Duration, what: &str, step: impl Future<Output = T>) -> T {
    future::or(step, async {
        Timer::after(bound).await;
        panic!("{what}: not done within {bound:?}")
    })
    .await
}

/// An address on loopback where nothing listens (connections are refused).
fn refusing_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A client's settings: the original's pool of `max_slots` (fixed size, lowest slot first),
/// `rover`, a fixed seed.
fn config(max_slots: usize, rover: RoverConfig) -> ClientConfig {
    let mut config = ClientConfig::original();
    config.pool.max_slots = max_slots;
    config.rover = rover;
    config.seed = Some(11);
    config
}

/// A client with its driver running.
fn client(max_slots: usize, rover: RoverConfig) -> Client {
    let (client, driver) = Client::new(config(max_slots, rover)).unwrap();
    smol::spawn(driver).detach();
    client
}

/// A rover that tries every 20 ms and gives up on a silent server after 300 ms.
fn quick_rover() -> RoverConfig {
    RoverConfig {
        interval: Duration::from_millis(20),
        jitter: Duration::ZERO,
        connect_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..RoverConfig::default()
    }
}

/// Waits for the first event that `wanted` accepts, returning it and the events before it.
async fn events_until(
    client: &Client,
    what: &str,
    wanted: impl Fn(&ClientEvent) -> bool,
) -> (ClientEvent, Vec<ClientEvent>) {
    within(what, async {
        let mut before = Vec::new();
        loop {
            let event = client.next_event().await;
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    })
    .await
}

/// Waits for the first event that `wanted` accepts, returning it.
async fn event_where(
    client: &Client,
    what: &str,
    wanted: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    events_until(client, what, wanted).await.0
}

fn kept(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Kept { .. })
}

fn removed(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Removed { .. })
}

/// A listener whose connections the test handles by hand.
async fn raw_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A client (pool of one, quick rover) of a raw server, and the server's side of the first
/// connection, on which the test writes what it wants the client to see.
async fn client_of_a_raw_server() -> (Client, SocketAddr, TcpStream) {
    let (listener, addr) = raw_listener().await;
    let client = client(1, quick_rover());
    client.add_server(addr);
    let (accepted, _) = within("accept", listener.accept()).await.unwrap();
    (client, addr, accepted)
}

/// Waits for the client to report its slot-0 connection to `server` removed, for `cause`.
async fn assert_removed(client: &Client, server: SocketAddr, cause: RemoveCause) {
    let event = event_where(client, "removed", removed).await;
    assert_eq!(
        event,
        ClientEvent::Removed {
            server,
            slot: 0,
            cause
        }
    );
}

#[test]
fn an_evicted_idle_connection_is_closed_at_once() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        // Raw connections hold slots 0, 1 and 2, so the client's first slot is 3.
        let (low, _) = raw_slot(addr).await;
        let (_one, _) = raw_slot(addr).await;
        let (_two, _) = raw_slot(addr).await;
        let client = client(1, quick_rover());
        client.add_server(addr);
        let first = event_where(&client, "first connection kept", kept).await;
        assert_eq!(
            first,
            ClientEvent::Kept {
                server: addr,
                slot: 3
            }
        );

        drop(low); // slot 0 frees on the server
        let evicted = event_where(&client, "slot 3 evicted", |event| {
            matches!(event, ClientEvent::Evicted { .. })
        })
        .await;
        assert_eq!(
            evicted,
            ClientEvent::Evicted {
                server: addr,
                slot: 3
            }
        );
        assert_eq!(client.status().servers[0].slots, [0]);
        // Slots 1, 2 and the client's 0: the evicted socket was closed.
        live_reaches(&server, 3, "slot 3 closed").await;
    });
}

#[test]
fn an_aborted_attempt_closes_its_socket_and_is_never_delivered() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        assert!(client.remove_server(addr));
        // The line comes too late: the attempt was aborted and its socket closed.
        let _ = accepted.write_all(b"0\r\n").await;
        within("client closes", read_to_close(&mut accepted)).await;
        assert_eq!(client.status().pool.held, 0);
        while let Some(event) = client.try_next_event() {
            assert!(!kept(&event), "{event}");
        }
    });
}

#[test]
fn bytes_after_the_slot_line_remove_the_connection_before_it_is_lent() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        let mut waiting = {
            let client = client.clone();
            smol::spawn(async move { client.get().await.map(|conn| conn.slot()) })
        };
        until("the get is waiting", || client.status().waiting_gets == 1).await;
        // One write, so one read brings the line and the bytes after it.
        accepted.write_all(b"0\r\nhello\n").await.unwrap();
        let (event, before) = events_until(&client, "removed", removed).await;
        assert_eq!(
            event,
            ClientEvent::Removed {
                server: addr,
                slot: 0,
                cause: RemoveCause::UnsolicitedData
            }
        );
        assert!(!before.iter().any(kept), "never kept: {before:?}");
        assert_eq!(
            within("client closes", read_to_close(&mut accepted)).await,
            b""
        );
        assert_eq!(future::poll_once(&mut waiting).await, None, "never lent");
        let status = client.status();
        assert_eq!((status.pool.held, status.waiting_gets), (0, 1));
        assert_eq!(status.stats.removed.unsolicited_data, 1);
        waiting.cancel().await;
        assert_eq!(client.status().waiting_gets, 0);
    });
}

#[test]
fn an_idle_connection_the_server_closes_is_removed_at_once() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\n").await.unwrap();
        event_where(&client, "kept", kept).await;
        drop(accepted);
        assert_removed(&client, addr, RemoveCause::ClosedByServer).await;
        assert_eq!(client.status().stats.removed.closed_by_server, 1);
    });
}

#[test]
fn an_idle_connection_that_receives_bytes_is_removed_and_closed() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\n").await.unwrap();
        event_where(&client, "kept", kept).await;
        // A checkout and return first, so the connection is idle under a renewed id.
        drop(within("get", client.get()).await.unwrap());
        accepted.write_all(b"unsolicited").await.unwrap();
        assert_removed(&client, addr, RemoveCause::UnsolicitedData).await;
        within("client closes", read_to_close(&mut accepted)).await;
    });
}

#[test]
fn a_failed_read_marks_the_lease_broken_and_it_is_not_returned() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_of_a_raw_server().await;
        accepted.write_all(b"0\r\n").await.unwrap();
        let mut conn = within("get", client.get()).await.unwrap();
        drop(accepted);
        let mut buf = [0u8; 8];
        // The end before any reply byte: the distinct, retryable error, not Ok(0).
        let error = within("read the end", conn.read(&mut buf))
            .await
            .unwrap_err();
        assert!(callosum_smol::is_closed_before_reply(&error), "{error}");
        assert!(conn.is_broken());
        drop(conn);
        assert_removed(&client, addr, RemoveCause::Broken).await;
        let status = client.status();
        assert_eq!((status.pool.held, status.stats.removed.broken), (0, 1));
    });
}

#[test]
fn get_with_a_timeout_never_waits_past_it_says_why_and_leaves_the_line() {
    smol::block_on(async {
        let client = client(1, quick_rover());
        // Nothing listens there.
        let server = refusing_addr();
        client.add_server(server);
        // The cause the timeout will carry is in before the wait starts.
        event_where(&client, "refused", |event| {
            matches!(event, ClientEvent::Unreachable { .. })
        })
        .await;
        let started = Instant::now();
        let waited = Duration::from_millis(200);
        let error = before(waited * 25, "get times out", client.get_timeout(waited))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= waited);
        assert_eq!(
            error,
            GetError::TimedOut {
                waited,
                last_failure: Some(Failure::Unreachable {
                    server,
                    reason: ConnectFailure::Refused
                })
            }
        );
        assert_eq!(
            error.to_string(),
            format!(
                "no pooled connection became idle within 200ms (last failure: {server} unreachable: connection refused)"
            )
        );
        assert_eq!(client.status().waiting_gets, 0);
    });
}

#[test]
fn a_get_that_times_out_while_every_connection_is_busy_says_so() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let client = client(1, quick_rover());
        client.add_server(addr);
        let _held = within("get", client.get()).await.unwrap();
        let waited = Duration::from_millis(50);
        let error = before(waited * 100, "get times out", client.get_timeout(waited))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            GetError::TimedOut {
                waited,
                last_failure: None
            }
        );
        assert_eq!(
            error.to_string(),
            "no pooled connection became idle within 50ms (every one was busy)"
        );
    });
}

#[test]
fn a_get_without_servers_fails_at_once() {
    smol::block_on(async {
        let client = client(1, quick_rover());
        let error = before(AT_ONCE, "get fails", client.get_timeout(DEADLINE))
            .await
            .unwrap_err();
        assert_eq!(error, GetError::NoServers);
        assert_eq!(error.to_string(), "no servers: add one with add_server");
        // Removing the last server is the same.
        let (_server, addr) = reading_server(ServerConfig::default());
        client.add_server(addr);
        client.remove_server(addr);
        let error = before(AT_ONCE, "get fails", client.get_timeout(DEADLINE)).await;
        assert_eq!(error.unwrap_err(), GetError::NoServers);
    });
}

#[test]
fn a_get_of_a_closed_client_fails_at_once_and_a_waiting_one_is_woken() {
    smol::block_on(async {
        let client = client(1, quick_rover());
        client.add_server(refusing_addr());
        let waiting = {
            let client = client.clone();
            smol::spawn(async move { client.get_timeout(DEADLINE).await.map(|conn| conn.slot()) })
        };
        until("the get is waiting", || client.status().waiting_gets == 1).await;
        client.close();
        let error = before(AT_ONCE, "the waiting get fails", waiting)
            .await
            .unwrap_err();
        assert_eq!(error, GetError::Closed);
        assert_eq!(error.to_string(), "the client was closed");
        let error = before(AT_ONCE, "get fails", client.get_timeout(DEADLINE)).await;
        assert_eq!(error.unwrap_err(), GetError::Closed);
        assert!(client.status().closed);
    });
}

#[test]
fn a_get_whose_driver_was_never_polled_says_it_is_not_running() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let (client, _driver) = Client::new(config(1, quick_rover())).unwrap();
        client.add_server(addr);
        let waited = Duration::from_millis(50);
        let error = before(waited * 100, "get times out", client.get_timeout(waited))
            .await
            .unwrap_err();
        assert_eq!(error, GetError::NotRunning);
        assert_eq!(
            error.to_string(),
            "the client's driver is not running, so no connection can arrive: spawn it"
        );
    });
}

#[test]
fn a_get_whose_driver_was_dropped_fails_at_once_and_a_waiting_one_is_woken() {
    smol::block_on(async {
        let (client, driver) = Client::new(config(1, quick_rover())).unwrap();
        let driver = smol::spawn(driver);
        client.add_server(refusing_addr());
        let waiting = {
            let client = client.clone();
            smol::spawn(async move { client.get_timeout(DEADLINE).await.map(|conn| conn.slot()) })
        };
        until("the get is waiting", || client.status().waiting_gets == 1).await;
        assert_eq!(
            driver.cancel().await,
            None,
            "the driver never ends by itself"
        );
        let error = before(AT_ONCE, "the waiting get fails", waiting).await;
        assert_eq!(error.unwrap_err(), GetError::NotRunning);
        let error = before(AT_ONCE, "get fails", client.get_timeout(DEADLINE)).await;
        assert_eq!(error.unwrap_err(), GetError::NotRunning);

        // A driver dropped without ever running: the same, at once.
        let (client, driver) = Client::new(config(1, quick_rover())).unwrap();
        client.add_server(refusing_addr());
        drop(driver);
        let error = before(AT_ONCE, "get fails", client.get_timeout(DEADLINE)).await;
        assert_eq!(error.unwrap_err(), GetError::NotRunning);
    });
}

#[test]
fn a_cancelled_get_gives_up_its_place_in_line() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let client = client(1, quick_rover());
        client.add_server(addr);
        let held = within("get", client.get()).await.unwrap();
        let waiting = {
            let client = client.clone();
            smol::spawn(async move { client.get().await.is_ok() })
        };
        until("the get is waiting", || client.status().waiting_gets == 1).await;
        assert_eq!(waiting.cancel().await, None);
        assert_eq!(client.status().waiting_gets, 0);
        drop(held);
        assert!(client.try_get().is_some(), "nobody is in line any more");
    });
}

#[test]
fn a_removed_server_gives_up_its_connections_even_if_it_is_added_again() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let client = client(2, quick_rover());
        client.add_server(addr);
        event_where(&client, "first kept", kept).await;
        event_where(&client, "second kept", kept).await;
        let leased = within("get", client.get()).await.unwrap();
        assert!(client.remove_server(addr));
        let status = client.status();
        assert_eq!(status.pool.held, 0, "both places freed at once");
        assert_eq!(status.pool.evicted_awaiting_return, 1);
        assert!(client.add_server(addr));
        drop(leased); // closed on return, not pooled under the re-added server
        until("every old connection closed", || {
            let status = client.status();
            server.status().live as usize == status.pool.held
                && status.pool.evicted_awaiting_return == 0
                && status.servers[0].slots.len() == status.pool.held
        })
        .await;
        assert_eq!(client.status().stats.removed.server_removed, 2);
    });
}

#[test]
fn dropping_the_client_aborts_its_attempts_and_ends_the_driver() {
    smol::block_on(async {
        let (listener, addr) = raw_listener().await;
        let (client, driver) = Client::new(config(1, quick_rover())).unwrap();
        let driver = smol::spawn(driver);
        client.add_server(addr);
        let (mut accepted, _) = within("accept", listener.accept()).await.unwrap();
        drop(client);
        within("the driver ends", driver).await;
        assert_eq!(
            within("the attempt's socket closes", read_to_close(&mut accepted)).await,
            b""
        );
    });
}

#[test]
fn a_connection_returned_after_the_client_is_dropped_is_closed() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let client = client(2, quick_rover());
        client.add_server(addr);
        event_where(&client, "first kept", kept).await;
        event_where(&client, "second kept", kept).await;
        let kept_out = within("get", client.get()).await.unwrap();
        let returned = within("get", client.get()).await.unwrap();
        drop(client);
        drop(returned); // `kept_out` still holds the client's state alive
        live_reaches(&server, 1, "the returned one closed").await;
        drop(kept_out);
        live_reaches(&server, 0, "the last one closed").await;
    });
}

#[test]
fn an_evicted_lease_is_closed_on_return_and_detach_frees_its_place() {
    smol::block_on(async {
        let (server, addr) = reading_server(ServerConfig::default());
        let (low, _) = raw_slot(addr).await;
        let client = client(1, quick_rover());
        client.add_server(addr);
        event_where(&client, "slot 1 kept", kept).await;
        let leased = within("get", client.get()).await.unwrap();
        assert_eq!(leased.slot(), 1);
        drop(low);
        event_where(&client, "slot 1 evicted", |event| {
            matches!(event, ClientEvent::Evicted { slot: 1, .. })
        })
        .await;
        drop(leased);
        live_reaches(&server, 1, "slot 1 closed").await;
        let conn = within("get slot 0", client.get()).await.unwrap();
        assert_eq!(conn.slot(), 0);
        let mut stream = conn.detach();
        // Its place is free (the rover may already have filled it, with a higher slot:
        // slot 0 stays with the detached stream, which is still open and still works).
        assert!(!client.status().servers[0].slots.contains(&0));
        stream.write_all(b"still mine\n").await.unwrap();
        assert!(server.status().live >= 1);
        drop(stream);
    });
}

#[test]
fn events_capacity_zero_keeps_no_event() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let mut config = config(1, quick_rover());
        config.events_capacity = 0;
        let (client, driver) = Client::new(config).unwrap();
        smol::spawn(driver).detach();
        client.add_server(addr);
        drop(within("get", client.get()).await.unwrap());
        assert_eq!(client.try_next_event(), None);
        assert!(client.events_dropped() > 0);
    });
}

#[test]
fn waiting_gets_are_served_first_and_in_order() {
    smol::block_on(async {
        let (_server, addr) = reading_server(ServerConfig::default());
        let client = client(1, quick_rover());
        client.add_server(addr);
        event_where(&client, "kept", kept).await;
        let held = within("get", client.get()).await.unwrap();
        // Who got the one connection, in order; each keeps it until the test releases it.
        let served: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mut waiters = Vec::new();
        for waiter in 0..3 {
            let (release, released) = smol::channel::bounded::<()>(1);
            let task = {
                let (client, served) = (client.clone(), Arc::clone(&served));
                smol::spawn(async move {
                    let conn = client.get_timeout(DEADLINE).await.unwrap();
                    served.lock().unwrap().push(waiter);
                    let _ = released.recv().await;
                    drop(conn); // untouched: back to idle, for the next in line
                })
            };
            // Each joins the line before the next one is started: the order is known.
            until("the get is waiting", || {
                client.status().waiting_gets == waiter + 1
            })
            .await;
            waiters.push((release, task));
        }
        drop(held);
        // The caller that just returned the connection does not get it back ahead of them.
        assert!(client.try_get().is_none());
        for (waiter, (release, task)) in waiters.into_iter().enumerate() {
            let expected: Vec<usize> = (0..=waiter).collect();
            until("the next in line is served", || {
                *served.lock().unwrap() == expected
            })
            .await;
            assert_eq!(client.status().waiting_gets, 2 - waiter);
            release.send(()).await.unwrap();
            within("the waiter ends", task).await;
        }
        assert_eq!(*served.lock().unwrap(), [0, 1, 2]);
        assert_eq!(client.status().waiting_gets, 0);
        assert!(client.try_get().is_some());
    });
}

/// A raw server's side of a pooled connection (pool of one) whose line was sent, and the
/// client, which holds it idle.
async fn client_with_an_idle_raw_connection() -> (Client, SocketAddr, TcpStream) {
    let (client, addr, mut accepted) = client_of_a_raw_server().await;
    accepted.write_all(b"0\r\n").await.unwrap();
    event_where(&client, "kept", kept).await;
    (client, addr, accepted)
}

#[test]
fn a_finished_exchange_returns_the_connection_to_idle() {
    smol::block_on(async {
        let (client, _addr, mut accepted) = client_with_an_idle_raw_connection().await;
        let mut conn = within("get", client.get()).await.unwrap();
        conn.write_all(b"ping\n").await.unwrap();
        let mut request = [0u8; 5];
        within("request", accepted.read_exact(&mut request))
            .await
            .unwrap();
        accepted.write_all(b"pong\n").await.unwrap();
        let mut reply = [0u8; 5];
        within("reply", conn.read_exact(&mut reply)).await.unwrap();
        assert_eq!(&reply, b"pong\n");
        conn.finish();
        let status = client.status();
        assert_eq!((status.pool.idle, status.stats.removed.interrupted), (1, 0));
        // The same connection serves the next caller.
        let conn = within("get again", client.get()).await.unwrap();
        assert_eq!(conn.slot(), 0);
    });
}

#[test]
fn a_guard_dropped_untouched_returns_the_connection_to_idle() {
    smol::block_on(async {
        let (client, _addr, _accepted) = client_with_an_idle_raw_connection().await;
        let conn = within("get", client.get()).await.unwrap();
        assert_eq!((conn.slot(), conn.is_broken()), (0, false));
        drop(conn);
        assert_eq!(client.status().pool.idle, 1);
        while let Some(event) = client.try_next_event() {
            assert!(!removed(&event), "{event}");
        }
    });
}

#[test]
fn a_guard_dropped_mid_exchange_is_closed_and_removed_as_interrupted() {
    smol::block_on(async {
        let (client, addr, mut accepted) = client_with_an_idle_raw_connection().await;
        let mut conn = within("get", client.get()).await.unwrap();
        conn.write_all(b"ping\n").await.unwrap();
        // A timeout drops the guard while its read waits for the reply.
        let mut reply = [0u8; 5];
        let read = future::or(async { Some(conn.read_exact(&mut reply).await) }, async {
            future::yield_now().await;
            None
        });
        assert!(read.await.is_none(), "no reply was sent");
        drop(conn);
        assert_removed(&client, addr, RemoveCause::Interrupted).await;
        // The late reply can reach nobody: the socket is closed.
        let _ = accepted.write_all(b"pong\n").await;
        assert_eq!(
            within("client closes", read_to_close(&mut accepted)).await,
            b"ping\n"
        );
        let status = client.status();
        assert_eq!((status.pool.held, status.stats.removed.interrupted), (0, 1));
    });
}

#[test]
fn reaching_the_stream_through_deref_counts_as_use() {
    smol::block_on(async {
        let (client, addr, _accepted) = client_with_an_idle_raw_connection().await;
        let conn = within("get", client.get()).await.unwrap();
        // Whatever is done through the stream itself, the guard cannot see.
        conn.get_ref().local_addr().unwrap();
        drop(conn);
        assert_removed(&client, addr, RemoveCause::Interrupted).await;
    });
}

#[test]
fn finish_on_a_broken_connection_closes_it() {
    smol::block_on(async {
        let (client, addr, _accepted) = client_with_an_idle_raw_connection().await;
        let mut conn = within("get", client.get()).await.unwrap();
        conn.mark_broken();
        conn.finish();
        assert_removed(&client, addr, RemoveCause::Broken).await;
        assert_eq!(client.status().pool.held, 0);
    });
}

//! The tokio client's own behaviour, on both runtime flavours: cancellation never hands a
//! reply to the wrong caller, how a guard's lease ends, why `get` fails, and the driver's
//! life. What every adapter shares is in the conformance suite of `callosum-tests`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callosum_tokio::{
    Client, ClientConfig, ClientEvent, ConnectFailure, Failure, GetError, PooledConn, RemoveCause,
    RoverConfig, Server, ServerConfig, ServerConn,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use support::DEADLINE;

on_both_runtimes!(
    cancelled_requests_never_hand_their_reply_to_the_next_caller,
    a_finished_or_untouched_guard_goes_back_and_a_touched_one_is_closed,
    get_fails_at_once_when_no_connection_can_come,
    get_times_out_with_the_last_failure,
    waiting_gets_are_served_in_order,
    an_idle_connection_the_server_closes_leaves_the_pool,
    dropping_the_last_client_ends_the_driver,
);

/// One request: a line out, a line back, then `finish`.
async fn request(client: &Client, line: &str) -> Result<String, String> {
    let conn = client.get().await.map_err(|error| error.to_string())?;
    exchange(conn, line).await
}

/// The exchange of one request on `conn`, then `finish`.
async fn exchange(mut conn: PooledConn, line: &str) -> Result<String, String> {
    let failed = |error: std::io::Error| error.to_string();
    conn.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(failed)?;
    let mut reply = String::new();
    BufReader::new(&mut conn)
        .read_line(&mut reply)
        .await
        .map_err(failed)?;
    conn.finish();
    Ok(reply.trim_end().to_owned())
}

/// Waits until the pool holds `held` connections.
async fn until_held(client: &Client, held: usize) {
    tokio::time::timeout(DEADLINE, async {
        while client.status().pool.held != held {
            client.next_event().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{held} held: {:?}", client.status()));
}

/// 1,200 requests from four tasks sharing a pool of four, a third of them abandoned by
/// `tokio::time::timeout` after the request went out and before its (slow) reply came: every
/// reply that arrives is the caller's own, and every abandoned connection was closed.
async fn cancelled_requests_never_hand_their_reply_to_the_next_caller() {
    const TASKS: usize = 4;
    const PER_TASK: usize = 300;
    let (_server, addr) = line_server(Duration::from_millis(30));
    let (client, driver) = Client::new(config(TASKS)).unwrap();
    tokio::spawn(driver);
    client.add_server(addr);
    until_held(&client, TASKS).await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut answered, mut abandoned) = (0, 0);
            for n in 0..PER_TASK {
                if n % 3 == 0 {
                    let line = format!("slow {task} {n}");
                    let conn = client.get().await.unwrap();
                    let cancelled =
                        tokio::time::timeout(Duration::from_millis(2), exchange(conn, &line));
                    match cancelled.await {
                        Err(_elapsed) => abandoned += 1,
                        Ok(reply) => panic!("a 30 ms reply within 2 ms: {reply:?}"),
                    }
                } else {
                    let line = format!("fast {task} {n}");
                    assert_eq!(request(&client, &line).await.as_deref(), Ok(&line[..]));
                    answered += 1;
                }
            }
            (answered, abandoned)
        }));
    }
    let (mut answered, mut abandoned) = (0, 0);
    for task in tasks {
        let (a, b) = task.await.unwrap();
        answered += a;
        abandoned += b;
    }
    assert_eq!((answered, abandoned), (800, 400));
    let status = client.status();
    // Each abandoned request had written its line: its connection was taken out of the pool
    // and closed, never reused (no idle connection was removed here, so the pool's count of
    // removals is theirs) ...
    assert_eq!(status.stats.pool.removed_broken, 400, "{status:?}");
    // ... reported as interrupted, unless it had been evicted while leased (reported then).
    let interrupted = status.stats.removed.interrupted;
    assert!(
        interrupted <= 400 && interrupted + status.stats.pool.replaced >= 400,
        "{status:?}"
    );
}

async fn a_finished_or_untouched_guard_goes_back_and_a_touched_one_is_closed() {
    let (_server, addr) = line_server(Duration::ZERO);
    let (client, driver) = Client::new(config(1)).unwrap();
    tokio::spawn(driver);
    client.add_server(addr);
    until_held(&client, 1).await;

    // Untouched: back to idle.
    let conn = client.get().await.unwrap();
    assert_eq!((conn.server(), conn.slot()), (addr, 0));
    drop(conn);
    assert_eq!(client.status().pool.idle, 1);

    // Reached through `Deref` and finished: back to idle.
    let conn = client.get().await.unwrap();
    assert_eq!(conn.peer_addr().unwrap(), addr, "derefs to the TcpStream");
    conn.finish();
    assert_eq!(client.status().pool.idle, 1);

    // Finished: back to idle, and the same connection serves the next caller.
    assert_eq!(request(&client, "one").await.as_deref(), Ok("one"));
    assert_eq!(client.status().pool.idle, 1);
    assert_eq!(client.status().stats.removed.interrupted, 0);

    // Touched and dropped: closed as interrupted, and the rover replaces it.
    let mut conn = client.get().await.unwrap();
    conn.write_all(b"two\n").await.unwrap();
    drop(conn);
    let removed = tokio::time::timeout(DEADLINE, async {
        loop {
            if let ClientEvent::Removed { cause, .. } = client.next_event().await {
                return cause;
            }
        }
    });
    assert_eq!(removed.await.unwrap(), RemoveCause::Interrupted);

    // Marked broken and finished: closed all the same.
    let mut conn = client.get().await.unwrap();
    conn.mark_broken();
    assert!(conn.is_broken());
    conn.finish();
    assert_eq!(client.status().stats.removed.broken, 1);
    assert_eq!(request(&client, "three").await.as_deref(), Ok("three"));
}

async fn get_fails_at_once_when_no_connection_can_come() {
    let long = Duration::from_secs(60);
    let started = Instant::now();

    let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    tokio::spawn(driver);
    let error = client.get_timeout(long).await.unwrap_err();
    assert_eq!(error, GetError::NoServers);
    assert_eq!(error.to_string(), "no servers: add one with add_server");

    // The driver dropped: nothing can arrive.
    let (client, driver) = Client::new(ClientConfig::default()).unwrap();
    client.add_server("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
    drop(driver);
    let error = client.get_timeout(long).await.unwrap_err();
    assert_eq!(error, GetError::NotRunning);
    assert_eq!(
        error.to_string(),
        "the client's driver is not running, so no connection can arrive: spawn it"
    );
    assert!(client.try_get().is_none());

    // The driver aborted under a waiting get, idle connections or not: told at once.
    let (_server, addr) = line_server(Duration::ZERO);
    let (client, driver) = Client::new(config(2)).unwrap();
    let driver = tokio::spawn(driver);
    client.add_server(addr);
    until_held(&client, 2).await;
    let (first, second) = (client.get().await.unwrap(), client.get().await.unwrap());
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get_timeout(long).await.err() })
    };
    tokio::time::timeout(DEADLINE, async {
        while client.status().waiting_gets == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    driver.abort();
    assert_eq!(waiting.await.unwrap(), Some(GetError::NotRunning));
    first.finish();
    drop(second);
    assert_eq!(client.status().pool.idle, 2);
    assert_eq!(client.get().await.unwrap_err(), GetError::NotRunning);

    assert!(started.elapsed() < DEADLINE, "all at once");

    // Never polled: at the timeout, since it may yet be.
    let (client, _driver) = Client::new(ClientConfig::default()).unwrap();
    client.add_server("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
    let waited = Duration::from_millis(50);
    let error = client.get_timeout(waited).await.unwrap_err();
    assert_eq!(error, GetError::NotRunning);
}

async fn get_times_out_with_the_last_failure() {
    // Nothing listens there: bound, then released.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (client, driver) = Client::new(config(1)).unwrap();
    tokio::spawn(driver);
    client.add_server(refused);
    tokio::time::timeout(DEADLINE, async {
        while !matches!(client.next_event().await, ClientEvent::Unreachable { .. }) {}
    })
    .await
    .unwrap();
    let waited = Duration::from_millis(30);
    let error = client.get_timeout(waited).await.unwrap_err();
    let last_failure = Some(Failure::Unreachable {
        server: refused,
        reason: ConnectFailure::Refused,
    });
    assert_eq!(
        error,
        GetError::TimedOut {
            waited,
            last_failure
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "no pooled connection became idle within 30ms (last failure: {refused} unreachable: connection refused)"
        )
    );

    // Every connection busy, none failed: said so.
    let (_server, addr) = line_server(Duration::ZERO);
    let (client, driver) = Client::new(config(1)).unwrap();
    tokio::spawn(driver);
    client.add_server(addr);
    until_held(&client, 1).await;
    let held = client.get().await.unwrap();
    let error = client.get_timeout(waited).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "no pooled connection became idle within 30ms (every one was busy)"
    );
    drop(held);

    // Closed: a waiting get is told at once, and so is every later one.
    let held = client.get().await.unwrap();
    let closing = client.clone();
    let waiting = tokio::spawn(async move { closing.get_timeout(DEADLINE).await.err() });
    tokio::time::timeout(DEADLINE, async {
        while client.status().waiting_gets == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    client.close();
    assert_eq!(waiting.await.unwrap(), Some(GetError::Closed));
    let error = client.get().await.unwrap_err();
    assert_eq!(error, GetError::Closed);
    assert_eq!(error.to_string(), "the client was closed");
    // A guard outliving the close is closed when it goes.
    drop(held);
    assert_eq!(client.status().stats.removed.client_closed, 1);
}

/// Callers that wait are served in the order they came, ahead of a `try_get` that comes later.
async fn waiting_gets_are_served_in_order() {
    let (_server, addr) = line_server(Duration::ZERO);
    let (client, driver) = Client::new(config(1)).unwrap();
    tokio::spawn(driver);
    client.add_server(addr);
    until_held(&client, 1).await;
    let held = client.get().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for caller in 0..3 {
        let (caller_client, order) = (client.clone(), Arc::clone(&order));
        waiting.push(tokio::spawn(async move {
            let conn = caller_client.get().await.unwrap();
            order.lock().unwrap().push(caller);
            drop(conn);
        }));
        // Each one in line before the next comes.
        tokio::time::timeout(DEADLINE, async {
            while client.status().waiting_gets != caller + 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }
    assert!(client.try_get().is_none(), "not ahead of the line");
    drop(held);
    for task in waiting {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
}

async fn an_idle_connection_the_server_closes_leaves_the_pool() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = config(1);
    config.rover.fill = false;
    config.rover.interval = Duration::from_secs(600);
    let (client, driver) = Client::new(config).unwrap();
    tokio::spawn(driver);
    client.add_server(addr);
    let (mut accepted, _) = listener.accept().await.unwrap();
    accepted.write_all(b"0\r\n").await.unwrap();
    until_held(&client, 1).await;
    // Used once, then idle again: watched again from its return.
    let conn = client.get().await.unwrap();
    conn.finish();
    drop(accepted);
    let removed = tokio::time::timeout(DEADLINE, async {
        loop {
            if let ClientEvent::Removed { cause, .. } = client.next_event().await {
                return cause;
            }
        }
    });
    assert_eq!(removed.await.unwrap(), RemoveCause::ClosedByServer);
    assert_eq!(client.status().pool.held, 0);
}

async fn dropping_the_last_client_ends_the_driver() {
    let (_server, addr) = line_server(Duration::ZERO);
    let (client, driver) = Client::new(config(2)).unwrap();
    let driver = tokio::spawn(driver);
    client.add_server(addr);
    until_held(&client, 2).await;
    let held = client.get().await.unwrap();
    let other = client.clone();
    drop(client);
    assert!(!driver.is_finished(), "a clone still holds the client");
    drop(other);
    tokio::time::timeout(DEADLINE, driver)
        .await
        .unwrap()
        .unwrap();
    // A guard outliving its client is closed when it goes.
    drop(held);
}

/// A server on 127.0.0.1 that answers each line with the same line; a line starting with
/// `slow` is answered after `slow`. Runs until the test's runtime ends.
fn line_server(slow: Duration) -> (Arc<Server>, SocketAddr) {
    let server =
        Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap());
    let addr = server.local_addr();
    let accepting = Arc::clone(&server);
    tokio::spawn(async move {
        while let Ok(conn) = accepting.accept().await {
            tokio::spawn(answer_lines(conn, slow));
        }
    });
    (server, addr)
}

async fn answer_lines(conn: ServerConn, slow: Duration) {
    let mut conn = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match conn.read_line(&mut line).await {
            Ok(1..) => {}
            _ => return,
        }
        if line.starts_with("slow") {
            tokio::time::sleep(slow).await;
        }
        if conn.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A client config: the original's pool of `max_slots` (fixed size, lowest slot first), a
/// rover that tries every 20 ms and backs off little, a fixed seed.
fn config(max_slots: usize) -> ClientConfig {
    let mut config = ClientConfig::original();
    config.pool.max_slots = max_slots;
    config.rover = RoverConfig {
        interval: Duration::from_millis(20),
        jitter: Duration::ZERO,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..RoverConfig::default()
    };
    config.get_timeout = DEADLINE;
    config.seed = Some(3);
    config
}

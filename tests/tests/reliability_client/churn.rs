//! Many tasks share one client for a few seconds while the rover keeps roving and one of the
//! two servers stops and comes back on the same port: a smol client with smol servers, and a
//! tokio client (its tasks on a multi-thread runtime) with tokio servers.
//!
//! Each task gets a connection, writes a line no other request writes, reads the echo and
//! returns the connection. A reply that is not the task's own line, or a socket found in two
//! tasks' hands at once, would mean a connection was shared. Every request succeeds, or
//! fails cleanly within its timeout; failures are allowed only on the stopped server's
//! connections, between its stop and shortly after its return.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use callosum_smol::{Client, Server, ServerConfig, ServerConn};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::{Executor, LocalExecutor, Timer, future};

use callosum_tests::conformance::{
    Adapter, Background, DEADLINE, ServerUnderTest, client_config, quick_rover,
};

const TASKS: usize = 32;
const MAX_SLOTS: usize = 8;
/// How long a task waits for an idle connection.
const GET_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one request and its echo may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// What a timer may fire late by on a busy machine.
const SLACK: Duration = Duration::from_secs(1);
/// The phases: everyone up, then one server down, then back.
const BEFORE_STOP: Duration = Duration::from_millis(1000);
const STOPPED_FOR: Duration = Duration::from_millis(500);
const AFTER_RETURN: Duration = Duration::from_millis(1500);

/// A smol server that echoes, bound to a given address so that it can come back on it.
/// Stopped on drop: its listener and every connection close.
fn echo_server_at(addr: SocketAddr) -> Background {
    let server = Arc::new(Server::bind(addr, ServerConfig::default()).unwrap());
    let stopping = Arc::clone(&server);
    let body = move || {
        let executor = LocalExecutor::new();
        smol::block_on(executor.run(async {
            while let Ok(conn) = server.accept().await {
                executor.spawn(echo(conn)).detach();
            }
        }));
    };
    Background::spawn(move || stopping.shutdown(), body)
}

async fn echo(mut conn: ServerConn) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = conn.read(&mut buf).await {
        if conn.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A request that failed, on which server and when.
struct Failure {
    server: SocketAddr,
    at: Instant,
    what: String,
}

/// What one task did.
#[derive(Default)]
struct Tally {
    answered: usize,
    timed_out_waiting: usize,
    failures: Vec<Failure>,
}

/// One task: requests until `end`, each with a line of its own.
async fn requests(
    task: usize,
    client: Client,
    in_hand: Arc<Mutex<HashSet<SocketAddr>>>,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut request = 0;
    while Instant::now() < end {
        request += 1;
        let started = Instant::now();
        let Ok(mut conn) = client.get_timeout(GET_TIMEOUT).await else {
            let waited = started.elapsed();
            assert!(waited < GET_TIMEOUT + SLACK, "get_timeout took {waited:?}");
            tally.timed_out_waiting += 1;
            continue;
        };
        let server = conn.server();
        let socket = conn.get_ref().local_addr().unwrap();
        assert!(
            in_hand.lock().unwrap().insert(socket),
            "{socket} lent to two tasks at once"
        );
        let line = format!("task {task} request {request}\n");
        let exchange = async {
            conn.write_all(line.as_bytes()).await?;
            let mut echo = String::new();
            BufReader::new(&mut conn).read_line(&mut echo).await?;
            Ok::<_, std::io::Error>(echo)
        };
        let hung = async {
            Timer::after(REQUEST_TIMEOUT + SLACK).await;
            panic!("a request to {server} hung")
        };
        match future::or(exchange, hung).await {
            Ok(echo) if echo == line => tally.answered += 1,
            // The end of the stream mid-request: the server went away.
            Ok(echo) if line.starts_with(&echo) => tally.failures.push(Failure {
                server,
                at: Instant::now(),
                what: format!("cut short after {echo:?}"),
            }),
            Ok(echo) => panic!("task {task} sent {line:?} and read {echo:?}"),
            Err(error) => tally.failures.push(Failure {
                server,
                at: Instant::now(),
                what: error.to_string(),
            }),
        }
        assert!(in_hand.lock().unwrap().remove(&socket));
        // A failed exchange marked it broken: dropping it removes it from the pool.
        drop(conn);
    }
    tally
}

#[test]
fn smol_tasks_share_a_pool_while_a_server_restarts() {
    let steady = ServerUnderTest::start(Adapter::Smol, None);
    let restarting = ServerUnderTest::start(Adapter::Smol, None);
    let addr = restarting.addr;
    // The harness's server stands in for the first life; later lives are bound to its port.
    let mut restarting = Some(restarting);
    let (client, driver) = Client::new(client_config(MAX_SLOTS, quick_rover())).unwrap();
    client.add_server(steady.addr);
    client.add_server(addr);
    let executor = Executor::new();
    executor.spawn(driver).detach();
    let in_hand = Arc::new(Mutex::new(HashSet::new()));
    let started = Instant::now();
    let end = started + BEFORE_STOP + STOPPED_FOR + AFTER_RETURN;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| executor.spawn(requests(task, client.clone(), Arc::clone(&in_hand), end)))
        .collect();
    // Whatever the client reports, the pool never holds more than its maximum. After each
    // event the watcher also says whether the restarting server has connections held.
    let watched = client.clone();
    let (held_there, held_news) = smol::channel::unbounded();
    let watch = executor.spawn(async move {
        loop {
            watched.next_event().await;
            let status = watched.status();
            let pool = status.pool;
            assert!(pool.held <= MAX_SLOTS, "{pool:?}");
            assert_eq!(pool.held, pool.idle + pool.leased, "{pool:?}");
            let there = status
                .servers
                .iter()
                .any(|held| held.server == addr && !held.slots.is_empty());
            let _ = held_there.send(there).await;
        }
    });
    let (stopped_at, returned_at, tallies) = thread::scope(|scope| {
        // A second thread runs tasks too, so that they also race on the client's locks.
        // It stops when `stop_runner` goes, which it does even if this thread panics.
        let (stop_runner, stopped) = smol::channel::bounded::<()>(1);
        let runner = &executor;
        scope.spawn(move || smol::block_on(runner.run(stopped.recv())));
        smol::block_on(executor.run(async {
            Timer::at(started + BEFORE_STOP).await;
            // Its connections may fail as soon as it starts shutting down.
            let stopped_at = Instant::now();
            drop(restarting.take());
            Timer::at(stopped_at + STOPPED_FOR).await;
            let _second_life = echo_server_at(addr);
            let returned_at = Instant::now();
            // The rover finds it again: the pool holds its connections once more.
            while held_news.try_recv().is_ok() {}
            let deadline = returned_at + DEADLINE;
            let gave_up = || async {
                Timer::at(deadline).await;
                panic!("the server's return unnoticed within {DEADLINE:?}")
            };
            while !future::or(async { held_news.recv().await.unwrap() }, gave_up()).await {}
            let mut tallies = Vec::new();
            for task in tasks {
                tallies.push(task.await);
            }
            watch.cancel().await;
            drop(stop_runner);
            (stopped_at, returned_at, tallies)
        }))
    });
    let answered: usize = tallies.iter().map(|tally| tally.answered).sum();
    let waited: usize = tallies.iter().map(|tally| tally.timed_out_waiting).sum();
    let failures: Vec<_> = tallies.iter().flat_map(|tally| &tally.failures).collect();
    eprintln!(
        "churn: {answered} answered, {waited} gets timed out, {} failed, in {:?}",
        failures.len(),
        started.elapsed()
    );
    assert!(answered > TASKS, "the tasks got through");
    for failure in failures {
        assert_eq!(failure.server, addr, "{}", failure.what);
        assert!(
            failure.at >= stopped_at && failure.at < returned_at + SLACK,
            "{} at {:?} (stopped at {:?}, back at {:?})",
            failure.what,
            failure.at - started,
            stopped_at - started,
            returned_at - started
        );
    }
    let status = client.status();
    assert!(in_hand.lock().unwrap().is_empty());
    assert_eq!(status.pool.leased, 0, "{status:?}");
    assert_eq!(status.pool.evicted_awaiting_return, 0, "{status:?}");
    assert!(status.pool.held <= MAX_SLOTS, "{status:?}");
}

/// The tokio echo server bound to `addr`, for the restarting server's second life. Stopped
/// on drop: its listener and every connection close.
fn tokio_echo_server_at(addr: SocketAddr) -> Background {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = {
        let _entered = runtime.enter();
        Arc::new(
            callosum_tokio::Server::bind(addr, callosum_tokio::ServerConfig::default()).unwrap(),
        )
    };
    let stopping = Arc::clone(&server);
    let body = move || {
        runtime.block_on(async {
            while let Ok(mut conn) = server.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 256];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    };
    Background::spawn(move || stopping.shutdown(), body)
}

/// One task of the tokio story: requests until `end`, each with a line of its own, each
/// finished when its echo is read.
async fn tokio_requests(
    task: usize,
    client: callosum_tokio::Client,
    in_hand: Arc<Mutex<HashSet<SocketAddr>>>,
    end: Instant,
) -> Tally {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let mut tally = Tally::default();
    let mut request = 0;
    while Instant::now() < end {
        request += 1;
        let started = Instant::now();
        let Ok(mut conn) = client.get_timeout(GET_TIMEOUT).await else {
            let waited = started.elapsed();
            assert!(waited < GET_TIMEOUT + SLACK, "get_timeout took {waited:?}");
            tally.timed_out_waiting += 1;
            continue;
        };
        let server = conn.server();
        let socket = conn.local_addr().unwrap();
        assert!(
            in_hand.lock().unwrap().insert(socket),
            "{socket} lent to two tasks at once"
        );
        let line = format!("task {task} request {request}\n");
        let exchange = async {
            conn.write_all(line.as_bytes()).await?;
            let mut echo = String::new();
            BufReader::new(&mut conn).read_line(&mut echo).await?;
            Ok::<_, std::io::Error>(echo)
        };
        let Ok(echoed) = tokio::time::timeout(REQUEST_TIMEOUT + SLACK, exchange).await else {
            panic!("a request to {server} hung")
        };
        let finished = match echoed {
            Ok(echo) if echo == line => {
                tally.answered += 1;
                true
            }
            // The end of the stream mid-request: the server went away.
            Ok(echo) if line.starts_with(&echo) => {
                tally.failures.push(Failure {
                    server,
                    at: Instant::now(),
                    what: format!("cut short after {echo:?}"),
                });
                false
            }
            Ok(echo) => panic!("task {task} sent {line:?} and read {echo:?}"),
            Err(error) => {
                tally.failures.push(Failure {
                    server,
                    at: Instant::now(),
                    what: error.to_string(),
                });
                false
            }
        };
        assert!(in_hand.lock().unwrap().remove(&socket));
        // A failed exchange marked it broken: it leaves the pool either way.
        if finished {
            conn.finish();
        }
    }
    tally
}

/// The same story on the tokio client, its tasks on a multi-thread runtime (so they race on
/// the client's locks), and tokio servers.
#[test]
fn tokio_tasks_share_a_pool_while_a_server_restarts() {
    let steady = ServerUnderTest::start(Adapter::Tokio, None);
    let restarting = ServerUnderTest::start(Adapter::Tokio, None);
    let addr = restarting.addr;
    // The harness's server stands in for the first life; later lives are bound to its port.
    let mut restarting = Some(restarting);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (client, driver) =
        callosum_tokio::Client::new(client_config(MAX_SLOTS, quick_rover())).unwrap();
    client.add_server(steady.addr);
    client.add_server(addr);
    let in_hand = Arc::new(Mutex::new(HashSet::new()));
    let started = Instant::now();
    let end = started + BEFORE_STOP + STOPPED_FOR + AFTER_RETURN;
    let (stopped_at, returned_at, tallies) = runtime.block_on(async {
        tokio::spawn(driver);
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                tokio::spawn(tokio_requests(
                    task,
                    client.clone(),
                    Arc::clone(&in_hand),
                    end,
                ))
            })
            .collect();
        // Whatever the client reports, the pool never holds more than its maximum. After each
        // event the watcher also says whether the restarting server has connections held.
        let watched = client.clone();
        let (held_there, mut held_news) = tokio::sync::mpsc::unbounded_channel();
        let watch = tokio::spawn(async move {
            loop {
                watched.next_event().await;
                let status = watched.status();
                let pool = status.pool;
                assert!(pool.held <= MAX_SLOTS, "{pool:?}");
                assert_eq!(pool.held, pool.idle + pool.leased, "{pool:?}");
                let there = status
                    .servers
                    .iter()
                    .any(|held| held.server == addr && !held.slots.is_empty());
                let _ = held_there.send(there);
            }
        });
        tokio::time::sleep_until((started + BEFORE_STOP).into()).await;
        // Its connections may fail as soon as it starts shutting down.
        let stopped_at = Instant::now();
        drop(restarting.take());
        tokio::time::sleep_until((stopped_at + STOPPED_FOR).into()).await;
        let _second_life = tokio_echo_server_at(addr);
        let returned_at = Instant::now();
        // The rover finds it again: the pool holds its connections once more.
        while held_news.try_recv().is_ok() {}
        let back = tokio::time::timeout(DEADLINE, async {
            while !held_news.recv().await.unwrap() {}
        });
        back.await
            .unwrap_or_else(|_| panic!("the server's return unnoticed within {DEADLINE:?}"));
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await.unwrap());
        }
        watch.abort();
        (stopped_at, returned_at, tallies)
    });
    let answered: usize = tallies.iter().map(|tally| tally.answered).sum();
    let waited: usize = tallies.iter().map(|tally| tally.timed_out_waiting).sum();
    let failures: Vec<_> = tallies.iter().flat_map(|tally| &tally.failures).collect();
    eprintln!(
        "churn (tokio): {answered} answered, {waited} gets timed out, {} failed, in {:?}",
        failures.len(),
        started.elapsed()
    );
    assert!(answered > TASKS, "the tasks got through");
    for failure in failures {
        assert_eq!(failure.server, addr, "{}", failure.what);
        assert!(
            failure.at >= stopped_at && failure.at < returned_at + SLACK,
            "{} at {:?} (stopped at {:?}, back at {:?})",
            failure.what,
            failure.at - started,
            stopped_at - started,
            returned_at - started
        );
    }
    let status = client.status();
    assert!(in_hand.lock().unwrap().is_empty());
    assert_eq!(status.pool.leased, 0, "{status:?}");
    assert_eq!(status.pool.evicted_awaiting_return, 0, "{status:?}");
    assert!(status.pool.held <= MAX_SLOTS, "{status:?}");
    assert_eq!(
        status.stats.removed.interrupted, 0,
        "every exchange was finished or failed"
    );
}

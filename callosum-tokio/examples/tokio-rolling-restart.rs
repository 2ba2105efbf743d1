//! A rolling restart on tokio: three servers on loopback, each drained in turn and replaced by
//! a new server on the same port, under 32 request tasks sharing one Callosum pool; once
//! without a retry and once with the documented one.
//!
//! `cargo run --release -p callosum-tokio --example tokio-rolling-restart`
//!
//! A draining server closes each connection between two requests. A connection the client
//! held idle is removed with no failed request; but a request written into a connection an
//! instant after its server closed it meets a connection closed before any byte of its
//! reply. The guard reports that as its own error (`is_closed_before_reply`), and the server
//! never answered, so an idempotent request can be sent again on another connection: with
//! that retry no request fails. The servers answer lines as `tokio-server` does
//! (`examples/shared/lines.rs`), drain included.

#[path = "shared/lines.rs"]
mod lines;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callosum_tokio::{Client, ClientConfig, Server, ServerConfig, is_closed_before_reply};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

const SERVERS: usize = 3;
const REQUEST_TASKS: usize = 32;
const POOL_SIZE: usize = 12;
/// How long each server takes over a request.
const SERVICE: Duration = Duration::from_millis(1);
/// How long the fleet runs between two restarts, and before the first.
const BETWEEN_RESTARTS: Duration = Duration::from_millis(500);
/// How long a drain gives the requests in hand.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{SERVERS} servers on loopback restarted in turn (drained, then replaced on the same port); \
         one client, pool of {POOL_SIZE}, {REQUEST_TASKS} request tasks"
    );
    for retry in [false, true] {
        let how = if retry {
            "with the retry"
        } else {
            "without the retry"
        };
        println!("{how}:");
        let counts = rolling_restart(retry).await?;
        println!(
            "{how}: {} requests, {} failed ({} met a connection closed before any reply byte, {} sent again)",
            counts.requests.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            counts.closed_before_reply.load(Ordering::Relaxed),
            counts.retried.load(Ordering::Relaxed),
        );
    }
    Ok(())
}

/// What the request tasks counted.
#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    failed: AtomicUsize,
    closed_before_reply: AtomicUsize,
    retried: AtomicUsize,
}

/// A server and the task that accepts its connections.
struct Running {
    server: Arc<Server>,
    accepting: JoinHandle<()>,
}

impl Running {
    fn start(addr: SocketAddr) -> Result<Running, Box<dyn std::error::Error>> {
        let server = Arc::new(Server::bind(addr, ServerConfig::default())?);
        let accepted = Arc::clone(&server);
        let accepting = tokio::spawn(async move {
            while let Ok(conn) = accepted.accept().await {
                tokio::spawn(lines::serve_lines(conn, SERVICE));
            }
        });
        Ok(Running { server, accepting })
    }
}

async fn rolling_restart(retry: bool) -> Result<Counts, Box<dyn std::error::Error>> {
    let mut fleet = Vec::new();
    for _ in 0..SERVERS {
        fleet.push(Running::start("127.0.0.1:0".parse()?)?);
    }
    let mut config = ClientConfig::default();
    config.pool.max_slots = POOL_SIZE;
    // Looks for connections often, so that a restarted server is back in the pool soon.
    config.rover.interval = Duration::from_millis(20);
    config.rover.jitter = Duration::from_millis(5);
    let (client, driver) = Client::new(config)?;
    tokio::spawn(driver);
    for running in &fleet {
        client.add_server(running.server.local_addr());
    }

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..REQUEST_TASKS)
        .map(|task| {
            let (client, counts, stop) = (client.clone(), Arc::clone(&counts), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut number = 0;
                while !stop.load(Ordering::Relaxed) {
                    let request = format!("task {task} request {number}\n");
                    request_once_more(&client, &request, retry, &counts).await;
                    number += 1;
                }
            })
        })
        .collect();

    tokio::time::sleep(BETWEEN_RESTARTS).await;
    for running in &mut fleet {
        let addr = running.server.local_addr();
        let draining = Arc::clone(&running.server);
        let drain =
            tokio::spawn(async move { draining.drain(Instant::now() + DRAIN_DEADLINE).await });
        // The accept loop ends as the drain starts, and lets go of the listener: the port
        // is free for the new server at once.
        (&mut running.accepting).await?;
        let old = std::mem::replace(running, Running::start(addr)?);
        let report = drain.await?;
        println!(
            "  restarted {addr}: {} connections closed between requests, {} at the deadline",
            report.drained, report.closed_at_deadline
        );
        drop(old);
        tokio::time::sleep(BETWEEN_RESTARTS).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    Arc::try_unwrap(counts).map_err(|_| "every request task has ended".into())
}

/// Sends `request` and counts how it ended; with `retry`, a request whose connection closed
/// before any byte of its reply is sent once more (the next `get` lends another connection:
/// the one it met was closed, with every other of its server).
async fn request_once_more(client: &Client, request: &str, retry: bool, counts: &Counts) {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let mut outcome = exchange(client, request).await;
    if let Err(error) = &outcome
        && is_closed_before_reply(error)
    {
        counts.closed_before_reply.fetch_add(1, Ordering::Relaxed);
        if retry {
            counts.retried.fetch_add(1, Ordering::Relaxed);
            outcome = exchange(client, request).await;
        }
    }
    match outcome {
        Ok(reply) if reply == request => {}
        Ok(reply) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("wrong answer {reply:?} to {request:?}");
        }
        Err(error) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("failed: {error}");
        }
    }
}

/// One request on a pooled connection: a line written, a line read back.
async fn exchange(client: &Client, request: &str) -> std::io::Result<String> {
    let mut conn = client.get().await.map_err(std::io::Error::other)?;
    conn.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(&mut conn).read_line(&mut reply).await?;
    conn.finish();
    Ok(reply)
}

//! The demo on tokio: four servers on loopback, one of them five times slower, and one
//! client whose request tasks all go through one Callosum pool.
//!
//! `cargo run --release -p callosum-tokio --example tokio-cluster`
//!
//! Every second it prints, per server, its share of the requests and the connections the
//! pool holds there; at the end, a summary. The pool holds about as many connections on the
//! slow server as on the others (slots are spread evenly), but the slow server's connections
//! are busy for longer, so the client finds them idle less often and sends it a much smaller
//! share of the requests. Nothing measured the servers: it falls out of "use the lowest idle
//! slot".
//!
//! The same run as `smol-cluster`, on a multi-thread tokio runtime. The servers answer lines
//! as `tokio-server` does (`examples/shared/lines.rs`: `LinesCodec` with a cap on line length,
//! one reply at a time); each request task calls `finish()` on its connection once the reply
//! is read, so that the connection goes back to the pool.

#[path = "shared/lines.rs"]
mod lines;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callosum_tokio::{Client, ClientConfig, Server, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SERVICE_TIMES_MS: [u64; 4] = [2, 2, 2, 10];
const REQUEST_TASKS: usize = 24;
const POOL_SIZE: usize = 16;
const RUN_FOR: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut servers = Vec::new();
    for service_ms in SERVICE_TIMES_MS {
        let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?;
        servers.push((server.local_addr(), service_ms));
        let service = Duration::from_millis(service_ms);
        tokio::spawn(async move {
            while let Ok(conn) = server.accept().await {
                tokio::spawn(lines::serve_lines(conn, service));
            }
        });
    }
    println!(
        "{} servers on loopback, service times {:?} ms; one client, pool of {POOL_SIZE}, {REQUEST_TASKS} request tasks, {}s",
        servers.len(),
        SERVICE_TIMES_MS,
        RUN_FOR.as_secs()
    );

    let mut config = ClientConfig::default();
    config.pool.max_slots = POOL_SIZE;
    config.rover.interval = Duration::from_millis(200);
    let (client, driver) = Client::new(config)?;
    tokio::spawn(driver);
    for &(addr, _) in &servers {
        client.add_server(addr);
    }

    let served: Arc<Mutex<HashMap<SocketAddr, u64>>> = Arc::default();
    let deadline = Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..REQUEST_TASKS)
        .map(|_| tokio::spawn(request_loop(client.clone(), Arc::clone(&served), deadline)))
        .collect();

    let mut total: HashMap<SocketAddr, u64> = HashMap::new();
    for second in 1..=RUN_FOR.as_secs() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let this_second = std::mem::take(&mut *served.lock().expect("counter lock"));
        for (addr, count) in &this_second {
            *total.entry(*addr).or_default() += count;
        }
        println!("t={second:>2}s {}", report(&client, &servers, &this_second));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await?;
    }

    println!("\nsummary over {}s:", RUN_FOR.as_secs());
    println!("{}", report(&client, &servers, &total));
    let (slow, _) = servers[servers.len() - 1];
    let requests: u64 = total.values().sum();
    let slow_requests = share(total.get(&slow).copied().unwrap_or(0), requests);
    let held = held_per_server(&client);
    let slow_held = share(
        held.get(&slow).copied().unwrap_or(0) as u64,
        held.values().sum::<usize>() as u64,
    );
    println!(
        "slow server {slow}: {slow_held:.0}% of the connections, {slow_requests:.0}% of the {requests} requests ({failed} failed)",
    );
    if slow_requests < slow_held {
        println!(
            "the slow server's share of requests fell below its share of connections: load shed by itself"
        );
    } else {
        println!("the slow server's share of requests did NOT fall below its share of connections");
    }
    Ok(())
}

/// Sends requests until `deadline`, one at a time, each on the lowest idle connection;
/// returns how many failed.
async fn request_loop(
    client: Client,
    served: Arc<Mutex<HashMap<SocketAddr, u64>>>,
    deadline: Instant,
) -> u64 {
    let mut failed = 0;
    while Instant::now() < deadline {
        let Ok(mut conn) = client.get().await else {
            failed += 1;
            continue;
        };
        let mut reply = String::new();
        let answered = match conn.write_all(b"ping\n").await {
            Ok(()) => BufReader::new(&mut conn).read_line(&mut reply).await,
            Err(error) => Err(error),
        };
        match answered {
            Ok(_) if reply.ends_with('\n') => {
                *served
                    .lock()
                    .expect("counter lock")
                    .entry(conn.server())
                    .or_default() += 1;
                // The whole reply was read: the connection may serve the next request.
                conn.finish();
            }
            _ => {
                conn.mark_broken();
                failed += 1;
            }
        }
    }
    failed
}

fn held_per_server(client: &Client) -> HashMap<SocketAddr, usize> {
    client
        .status()
        .servers
        .into_iter()
        .map(|held| (held.server, held.slots.len()))
        .collect()
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// One line: per server, its share of `counts` and the connections held there.
fn report(
    client: &Client,
    servers: &[(SocketAddr, u64)],
    counts: &HashMap<SocketAddr, u64>,
) -> String {
    let held = held_per_server(client);
    let requests: u64 = counts.values().sum();
    servers
        .iter()
        .map(|(addr, service_ms)| {
            format!(
                "| {addr} ({service_ms:>2}ms): {:>5.1}% req, {:>2} conns ",
                share(counts.get(addr).copied().unwrap_or(0), requests),
                held.get(addr).copied().unwrap_or(0)
            )
        })
        .collect()
}

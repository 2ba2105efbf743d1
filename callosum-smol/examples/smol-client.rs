//! A Callosum client that reports what its rover finds.
//!
//! `cargo run -p callosum-smol --example smol-client -- --servers ADDR[,ADDR...] [--max-slots N] [--connections K] [--interval-ms MS]`
//!
//! Prints each client event on a line of its own, as the event displays itself (`kept slot S
//! from ADDR`, `rejected slot S from ADDR`, `evicted slot S from ADDR`, `unreachable ADDR:
//! REASON`, `handshake failed ADDR: REASON`, `removed slot S from ADDR: CAUSE`, ...), the same
//! lines in every adapter; after K rover outcomes (kept, rejected, unreachable, handshake
//! failed; default 10), `pool: ADDR=[slots] ...` with the slots held per server. Exits 0 if it
//! kept any connection, 1 otherwise.

#[path = "shared/flags.rs"]
mod flags;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use callosum_smol::{Client, ClientConfig, ClientEvent};

fn main() -> ExitCode {
    match smol::block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("client: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether any connection was kept.
async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let flags = flags::flags(&["servers", "max-slots", "connections", "interval-ms"])?;
    let servers: Vec<SocketAddr> = flags
        .get("servers")
        .ok_or("--servers ADDR[,ADDR...] is required")?
        .split(',')
        .map(|addr| {
            addr.parse()
                .map_err(|error| format!("--servers {addr:?}: {error}"))
        })
        .collect::<Result<_, _>>()?;
    let interval = Duration::from_millis(flags::parsed(&flags, "interval-ms", 1000)?);
    let mut config = ClientConfig::default();
    config.pool.max_slots = flags::parsed(&flags, "max-slots", 100)?;
    config.rover.interval = interval;
    // Jitter may not exceed the interval: a tenth of it, at most the default.
    config.rover.jitter = config.rover.jitter.min(interval / 10);
    let outcomes_wanted: usize = flags::parsed(&flags, "connections", 10)?;

    let (client, driver) = Client::new(config)?;
    let _driver = smol::spawn(driver);
    for &server in &servers {
        client.add_server(server);
    }
    let mut outcomes = 0;
    let mut kept_any = false;
    while outcomes < outcomes_wanted {
        let event = client.next_event().await;
        println!("{event}");
        match event {
            ClientEvent::Kept { .. } => {
                kept_any = true;
                outcomes += 1;
            }
            ClientEvent::Rejected { .. }
            | ClientEvent::Unreachable { .. }
            | ClientEvent::HandshakeFailed { .. } => outcomes += 1,
            _ => {}
        }
    }
    let held: Vec<String> = client
        .status()
        .servers
        .iter()
        .map(|held| {
            let slots: Vec<String> = held.slots.iter().map(u32::to_string).collect();
            format!("{}=[{}]", held.server, slots.join(","))
        })
        .collect();
    println!("pool: {}", held.join(" "));
    Ok(kept_any)
}

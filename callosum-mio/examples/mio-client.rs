//! A Callosum client on `mio`: runs a rover and a pool and reports each outcome.
//!
//! ```text
//! cargo run -p callosum-mio --example mio-client -- --servers ADDR[,ADDR...] [--max-slots N] [--connections K] [--interval-ms MS]
//! ```
//!
//! Prints one line per rover outcome (`kept slot S from ADDR`, `rejected slot S from ADDR`,
//! `evicted slot S from ADDR`, `unreachable ADDR: REASON`, `handshake failed ADDR: REASON`);
//! after K outcomes (default 10), `pool: ADDR=[slots] ...` in the order given, and exits 0
//! if it kept any connection, 1 otherwise.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use callosum_mio::{
    Client, ClientConfig, ClientEvent, Happened, PoolConfig, RoverConfig, TokenRange, run,
};
use mio::Poll;

struct Options {
    servers: Vec<SocketAddr>,
    max_slots: usize,
    connections: usize,
    interval: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut servers = Vec::new();
    let mut max_slots = PoolConfig::default().max_slots;
    let mut connections = 10;
    let mut interval = RoverConfig::default().interval;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--servers" => {
                for addr in value.split(',') {
                    servers.push(addr.parse().map_err(|e| format!("--servers {addr}: {e}"))?);
                }
            }
            "--max-slots" => {
                max_slots = value.parse().map_err(|e| format!("--max-slots: {e}"))?;
            }
            "--connections" => {
                connections = value.parse().map_err(|e| format!("--connections: {e}"))?;
            }
            "--interval-ms" => {
                let ms = value.parse().map_err(|e| format!("--interval-ms: {e}"))?;
                interval = Duration::from_millis(ms);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if servers.is_empty() {
        return Err("--servers ADDR[,ADDR...] is required".into());
    }
    Ok(Options {
        servers,
        max_slots,
        connections,
        interval,
    })
}

/// The line for one outcome of the rover; `None` for other events.
fn outcome(event: &ClientEvent) -> Option<String> {
    Some(match event {
        ClientEvent::Kept { slot, addr, .. } => format!("kept slot {slot} from {addr}"),
        ClientEvent::Rejected { slot, addr, .. } => format!("rejected slot {slot} from {addr}"),
        ClientEvent::Evicted { slot, addr, .. } => format!("evicted slot {slot} from {addr}"),
        ClientEvent::Unreachable { addr, reason, .. } => format!("unreachable {addr}: {reason}"),
        ClientEvent::HandshakeFailed { addr, reason, .. } => {
            format!("handshake failed {addr}: {reason}")
        }
        _ => return None,
    })
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("client: {message}");
            eprintln!(
                "usage: client --servers ADDR[,ADDR...] [--max-slots N] [--connections K] [--interval-ms MS]"
            );
            return ExitCode::from(2);
        }
    };
    match rove(options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("client: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs until the outcomes are counted; `true` if any connection was kept.
fn rove(options: Options) -> io::Result<bool> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let rover = RoverConfig {
        interval: options.interval,
        // Jitter may not exceed the interval.
        jitter: RoverConfig::default().jitter.min(options.interval / 10),
        ..RoverConfig::default()
    };
    let config = ClientConfig {
        pool: PoolConfig {
            max_slots: options.max_slots,
        },
        rover,
    };
    let seed = RandomState::new().hash_one(std::process::id());
    let mut client = Client::new(config, seed).map_err(|e| invalid(&e))?;
    for &addr in &options.servers {
        client.add_server(addr);
    }
    let mut poll = Poll::new()?;
    let tokens = options.max_slots.saturating_mul(2).saturating_add(64);
    client.register(poll.registry(), TokenRange::new(0..tokens))?;
    client.start();

    let mut stdout = io::stdout().lock();
    let mut counted = 0;
    let mut kept_any = false;
    let mut failure = None;
    if options.connections > 0 {
        run(&mut poll, None, Some(&mut client), |_, happened| {
            let Happened::Client(event) = happened else {
                return ControlFlow::Continue(());
            };
            let Some(line) = outcome(&event) else {
                return ControlFlow::Continue(());
            };
            kept_any |= matches!(event, ClientEvent::Kept { .. });
            // An eviction is the other half of the `Kept` just before it, not an outcome.
            if !matches!(event, ClientEvent::Evicted { .. }) {
                counted += 1;
            }
            if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                failure = Some(error);
                return ControlFlow::Break(());
            }
            if counted >= options.connections {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let status = client.status();
    let mut line = String::from("pool:");
    for addr in &options.servers {
        let slots = status
            .servers
            .iter()
            .find(|held| held.addr == *addr)
            .map(|held| held.slots.clone())
            .unwrap_or_default();
        let slots: Vec<String> = slots.iter().map(u32::to_string).collect();
        line.push_str(&format!(" {addr}=[{}]", slots.join(",")));
    }
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(kept_any)
}

//! A Callosum client on `mio`: runs a rover and a pool and reports what happens.
//!
//! ```text
//! cargo run -p callosum-mio --example mio-client -- --servers ADDR[,ADDR...] [--max-slots N] [--connections K] [--interval-ms MS]
//! ```
//!
//! Each ADDR is a socket address or `HOST:PORT` (`localhost:7000`): a host name stands for
//! every address it resolves to, looked up again every 10 s.
//!
//! Prints one line per client event, as the event displays itself, the same lines in every
//! adapter's example (`kept slot S from ADDR`, `rejected slot S from ADDR`, `evicted slot S
//! from ADDR`, `unreachable ADDR: REASON`, `handshake failed ADDR: REASON`, `removed slot S
//! from ADDR: CAUSE`, `no servers to try`). The same line again within a second is only
//! counted, and the count printed as `LINE (repeated N times)` when a different line comes or
//! at exit (`shared/repeats.rs`). After K rover outcomes (kept, rejected, unreachable,
//! handshake failed; default 10), prints `pool: ADDR=[slots] ...` for each server in the
//! order given (a server given twice is one), and exits 0 if it kept any connection, 1
//! otherwise. A closed stdout (`| head -1`) ends it quietly with 0.

#[path = "shared/repeats.rs"]
mod repeats;

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use repeats::Repeats;

use callosum_mio::{
    Client, ClientConfig, ClientEvent, Happened, RoverConfig, ServerSpec, TokenRange, run,
};
use mio::Poll;

struct Options {
    servers: Vec<ServerSpec>,
    max_slots: usize,
    connections: usize,
    interval: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let defaults = ClientConfig::default();
    let mut servers = Vec::new();
    let mut max_slots = defaults.pool.max_slots;
    let mut connections = 10;
    let mut interval = defaults.rover.interval;
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

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("client: {message}");
            eprintln!(
                "usage: mio-client --servers ADDR[,ADDR...] [--max-slots N] [--connections K] [--interval-ms MS]"
            );
            return ExitCode::from(2);
        }
    };
    match rove(options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // Whoever reads the output stopped reading (`| head`): nothing is wrong.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(io::stderr(), "client: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs until the outcomes are counted; `true` if any connection was kept. A failed write to
/// stdout ends it with that error.
fn rove(options: Options) -> io::Result<bool> {
    let mut config = ClientConfig::default();
    config.pool.max_slots = options.max_slots;
    config.rover.interval = options.interval;
    // Jitter may not exceed the interval: a tenth of it, at most the default.
    config.rover.jitter = RoverConfig::default().jitter.min(options.interval / 10);
    let mut client = Client::new(config).map_err(io::Error::other)?;
    let mut poll = Poll::new()?;
    let tokens = TokenRange::new(0..client.tokens_needed());
    client.register(poll.registry(), tokens)?;
    for server in &options.servers {
        client.add_server(server.clone());
    }

    let mut stdout = io::stdout().lock();
    let mut repeats = Repeats::default();
    let mut outcomes = 0;
    let mut kept_any = false;
    let mut failure = None;
    if options.connections > 0 {
        run(&mut poll, None, Some(&mut client), |_, happened| {
            let Happened::Client(event) = happened else {
                return ControlFlow::Continue(());
            };
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
            let printed = repeats
                .line(&event.to_string(), Instant::now(), &mut stdout)
                .and_then(|()| stdout.flush());
            if let Err(error) = printed {
                failure = Some(error);
                return ControlFlow::Break(());
            }
            if outcomes >= options.connections {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    repeats.finish(&mut stdout)?;
    let held: Vec<String> = client
        .status()
        .servers
        .iter()
        .map(|held| {
            let slots: Vec<String> = held.slots.iter().map(u32::to_string).collect();
            format!("{}=[{}]", held.server, slots.join(","))
        })
        .collect();
    writeln!(stdout, "pool: {}", held.join(" "))?;
    stdout.flush()?;
    Ok(kept_any)
}

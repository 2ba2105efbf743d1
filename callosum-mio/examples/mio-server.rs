//! A Callosum line-echo server on `mio`.
//!
//! ```text
//! cargo run -p callosum-mio --example mio-server -- --listen 127.0.0.1:0 [--max-slots N] [--service-ms MS] [--drain-ms MS]
//! ```
//!
//! Prints `listening on ADDR` first, then for each line a client sends waits MS milliseconds
//! (default 0) and echoes it, one request at a time per connection. Logs `slot S assigned to
//! PEER` and `slot S freed` to stderr. SIGTERM or SIGINT drains it for a rolling restart: it
//! stops accepting, closes each connection once the lines it sent are answered (an idle one
//! at once), closes the rest after `--drain-ms` (default 10000), prints how many of each,
//! and exits. A second signal exits at once.
//!
//! Safe to copy (the service is `shared/echo.rs`): work per event only for the connection it
//! is about, lines of at most 64 KiB (a longer one is answered `error: line too long` and the
//! connection closed), no reading from a connection that owes more than 16 KiB of replies, and
//! no allocation for an idle connection.

#[path = "shared/echo.rs"]
mod echo;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callosum_mio::{Happened, Server, ServerConfig, ServerEvent, TokenRange, run};
use echo::Echo;
use mio::{Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

const SIGNALS: Token = Token(0);

struct Options {
    listen: SocketAddr,
    max_slots: Option<u32>,
    service: Duration,
    grace: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut listen = None;
    let mut max_slots = None;
    let mut service = Duration::ZERO;
    let mut grace = Duration::from_secs(10);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| format!("--listen: {e}"))?),
            "--max-slots" => {
                max_slots = Some(value.parse().map_err(|e| format!("--max-slots: {e}"))?);
            }
            "--service-ms" => {
                let ms = value.parse().map_err(|e| format!("--service-ms: {e}"))?;
                service = Duration::from_millis(ms);
            }
            "--drain-ms" => {
                let ms = value.parse().map_err(|e| format!("--drain-ms: {e}"))?;
                grace = Duration::from_millis(ms);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Options {
        listen: listen.ok_or("--listen ADDR is required")?,
        max_slots,
        service,
        grace,
    })
}

/// Logs what the operator reads on stderr; a closed stderr is no reason to stop serving.
fn log(event: &ServerEvent) {
    let line = match event {
        ServerEvent::Accepted { slot, peer, .. } => format!("slot {slot} assigned to {peer}"),
        ServerEvent::Closed { slot, .. } => format!("slot {slot} freed"),
        ServerEvent::AcceptFailed { kind, .. } => format!("accept failed: {kind}"),
        ServerEvent::Drained { report } => format!(
            "server: drained: {} closed between requests, {} at the deadline",
            report.drained, report.closed_at_deadline
        ),
        _ => return,
    };
    let _ = writeln!(io::stderr(), "{line}");
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("server: {message}");
            eprintln!(
                "usage: server --listen ADDR [--max-slots N] [--service-ms MS] [--drain-ms MS]"
            );
            return ExitCode::from(2);
        }
    };
    match serve(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(options: Options) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let mut config = ServerConfig::default();
    config.max_slots = options.max_slots;
    let mut server = Server::bind(options.listen, config)?;
    server.register(poll.registry(), TokenRange::new(1..usize::MAX))?;
    let mut stdout = io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr())?;
    stdout.flush()?;
    let mut echo = Echo::new(options.service);
    run(&mut poll, Some(&mut server), None, |parts, happened| {
        let Some(server) = parts.server.as_deref_mut() else {
            return ControlFlow::Break(());
        };
        match happened {
            Happened::Server(event) => {
                log(&event);
                if let ServerEvent::Drained { .. } = event {
                    return ControlFlow::Break(());
                }
                echo.handle(server, event, Instant::now());
            }
            Happened::Woke => {
                if let Some(next) = echo.wake(server, Instant::now()) {
                    parts.wake_at(next);
                }
            }
            // SIGTERM or SIGINT: the first drains, a second stops at once.
            Happened::Foreign(_) => {
                for signal in signals.pending() {
                    if server.is_draining() {
                        return ControlFlow::Break(());
                    }
                    let name = if signal == SIGTERM { "Term" } else { "Int" };
                    let _ = writeln!(io::stderr(), "server: {name}, draining");
                    server.drain(Instant::now() + options.grace);
                }
            }
            Happened::Client(_) | Happened::Lease(_) => {}
        }
        ControlFlow::Continue(())
    })
}

//! A Callosum server for the line protocol, on tokio.
//!
//! `cargo run -p callosum-tokio --example tokio-server -- --listen 127.0.0.1:0 [--max-slots N] [--service-ms MS] [--drain-ms MS]`
//!
//! Prints `listening on ADDR` first, then answers each line a client sends with the same line
//! after MS milliseconds. Logs every slot assigned and freed to stderr. SIGINT or SIGTERM
//! drains it for a rolling restart: it stops accepting, closes each connection once the
//! line in hand is answered (an idle one at once), closes the rest after `--drain-ms`
//! (default 10000), prints how many of each, and exits. A second signal exits at once.
//!
//! The line handling (`examples/shared/lines.rs`) is `tokio_util::codec::LinesCodec` with a
//! cap on line length: a line longer than 64 KiB (its newline included) gets `error: line too
//! long` and the connection is closed. One reply at a time, and nothing is read while a reply
//! waits for its service time or for the socket to take it, so a client that never reads its
//! replies stalls itself, not the server's memory. An idle connection holds little: the
//! codec's read buffer starts empty and is let go of once a line longer than 1 KiB is
//! answered, and replies are written straight to the socket. Each connection is its own
//! task, woken only by its own socket and timer.

#[path = "shared/flags.rs"]
mod flags;
#[path = "shared/lines.rs"]
mod lines;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callosum_tokio::{Server, ServerConfig};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let flags = flags::flags(&["listen", "max-slots", "service-ms", "drain-ms"])?;
    let listen: SocketAddr = flags::parsed(&flags, "listen", "127.0.0.1:0".parse()?)?;
    let max_slots: Option<u32> = flags
        .get("max-slots")
        .map(|_| flags::parsed(&flags, "max-slots", 0))
        .transpose()?;
    let service = Duration::from_millis(flags::parsed(&flags, "service-ms", 0)?);
    let grace = Duration::from_millis(flags::parsed(&flags, "drain-ms", 10_000)?);
    let mut stop = Stop::new()?;

    let mut config = ServerConfig::default();
    config.max_slots = max_slots;
    let server = Arc::new(Server::bind(listen, config)?);
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush()?;

    let accepting = {
        let server = Arc::clone(&server);
        async move {
            while let Ok(conn) = server.accept().await {
                let (slot, peer) = (conn.slot(), conn.peer_addr());
                eprintln!("slot {slot} assigned to {peer}");
                tokio::spawn(async move {
                    lines::serve_lines(conn, service).await;
                    eprintln!("slot {slot} freed");
                });
            }
        }
    };
    tokio::select! {
        () = accepting => {}
        signal = stop.next() => eprintln!("server: {}, draining", signal?),
    }
    // Each connection closes between requests; a second signal stops at once.
    tokio::select! {
        report = server.drain(Instant::now() + grace) => eprintln!(
            "server: drained: {} closed between requests, {} at the deadline",
            report.drained, report.closed_at_deadline
        ),
        _ = stop.next() => {}
    }
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere than Unix).
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Stop {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Stop {})
    }

    /// The next signal, named as smol-server names it.
    async fn next(&mut self) -> std::io::Result<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Ok("Term"),
                _ = self.int.recv() => Ok("Int"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map(|()| "Int")
        }
    }
}

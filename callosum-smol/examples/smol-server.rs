//! A Callosum server for the line protocol.
//!
//! `cargo run -p callosum-smol --example smol-server -- --listen 127.0.0.1:0 [--max-slots N] [--service-ms MS] [--drain-ms MS]`
//!
//! Prints `listening on ADDR` first, then answers each line a client sends with the same line
//! after MS milliseconds. Logs every slot assigned and freed to stderr. SIGINT or SIGTERM
//! drains it for a rolling restart: it stops accepting, closes each connection once the
//! line in hand is answered (an idle one at once), closes the rest after `--drain-ms`
//! (default 10000), prints how many of each, and exits. A second signal exits at once.
//!
//! Safe to copy into a server that faces untrusted clients (the line handling is in
//! `examples/shared/lines.rs`): a line longer than 64 KiB gets `error: line too long` and the
//! connection is closed; one reply at a time, and nothing is read while a reply cannot be
//! written, so a client that never reads its replies stalls itself, not the server's memory;
//! an idle connection holds no buffer; each connection is its own task, woken only by its own
//! socket.

#[path = "shared/flags.rs"]
mod flags;
#[path = "shared/lines.rs"]
mod lines;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use callosum_smol::{Server, ServerConfig};
use futures_lite::{StreamExt, future};

fn main() -> ExitCode {
    match smol::block_on(run()) {
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
    let mut signals = Signals::new([Signal::Term, Signal::Int])?;

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
                smol::spawn(async move {
                    lines::serve_lines(conn, service).await;
                    eprintln!("slot {slot} freed");
                })
                .detach();
            }
        }
    };
    let signalled = async {
        if let Some(signal) = signals.next().await {
            eprintln!("server: {:?}, draining", signal?);
        }
        Ok::<_, std::io::Error>(())
    };
    future::or(
        async {
            accepting.await;
            Ok(())
        },
        signalled,
    )
    .await?;
    // Each connection closes between requests; a second signal stops at once.
    let drained = async {
        let report = server.drain(Instant::now() + grace).await;
        eprintln!(
            "server: drained: {} closed between requests, {} at the deadline",
            report.drained, report.closed_at_deadline
        );
    };
    future::or(drained, async {
        signals.next().await;
    })
    .await;
    Ok(())
}

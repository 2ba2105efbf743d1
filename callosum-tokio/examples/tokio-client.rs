//! A Callosum client that reports what its rover finds, on tokio.
//!
//! `cargo run -p callosum-tokio --example tokio-client -- --servers ADDR[,ADDR...] [--max-slots N] [--connections K] [--interval-ms MS]`
//!
//! Each ADDR is a socket address or `HOST:PORT` (`localhost:7000`): a host name stands for
//! every address it resolves to, looked up again every 10 s.
//!
//! Prints each client event on a line of its own, as the event displays itself (`kept slot S
//! from ADDR`, `rejected slot S from ADDR`, `evicted slot S from ADDR`, `unreachable ADDR:
//! REASON`, `handshake failed ADDR: REASON`, `removed slot S from ADDR: CAUSE`, `no servers
//! to try`), the same lines in every adapter; after K rover outcomes (kept, rejected,
//! unreachable, handshake failed; default 10), `pool: ADDR=[slots] ...` with the slots held
//! per server. Exits 0 if it kept any connection, 1 otherwise.
//!
//! A line identical to the one before is printed at most once a second: the repeats in
//! between are counted, and printed as one line, `LINE (repeated N times)`, when the second
//! is over or a different line comes (so a server backing off does not flood the terminal).
//! Every event still counts towards K. When stdout is closed (`tokio-client ... | head -3`),
//! it stops at the first line it cannot write and exits 0.

#[path = "shared/flags.rs"]
mod flags;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callosum_tokio::{Client, ClientConfig, ClientEvent, ServerSpec};

/// How often a line identical to the one before may be printed.
const REPEAT_EVERY: Duration = Duration::from_secs(1);

/// How a run ended.
enum Ended {
    /// The outcomes were counted; whether any connection was kept.
    Counted(bool),
    /// Stdout was closed: nobody reads any more.
    StdoutClosed,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(Ended::Counted(true) | Ended::StdoutClosed) => ExitCode::SUCCESS,
        Ok(Ended::Counted(false)) => ExitCode::from(1),
        Err(error) => {
            eprintln!("client: {error}");
            ExitCode::from(2)
        }
    }
}

/// Prints lines, holding back those identical to the one before for [`REPEAT_EVERY`].
struct Printer<W> {
    out: W,
    /// The last line printed.
    last: String,
    /// When it (or its last count of repeats) was printed.
    printed_at: Instant,
    /// Repeats of `last` since then, not printed yet.
    repeats: u64,
}

impl<W: Write> Printer<W> {
    fn new(out: W) -> Printer<W> {
        Printer {
            out,
            last: String::new(),
            printed_at: Instant::now(),
            repeats: 0,
        }
    }

    /// Prints `line`, or counts it as a repeat of the line before.
    fn line(&mut self, line: String, now: Instant) -> io::Result<()> {
        if line == self.last {
            self.repeats += 1;
            return match self.due() {
                Some(due) if due <= now => self.flush_repeats(now),
                _ => Ok(()),
            };
        }
        self.flush_repeats(now)?;
        self.write(&line)?;
        self.last = line;
        self.printed_at = now;
        Ok(())
    }

    /// When the repeats held back are due to be printed, if any are.
    fn due(&self) -> Option<Instant> {
        (self.repeats > 0).then(|| self.printed_at + REPEAT_EVERY)
    }

    /// Prints the repeats held back, if any.
    fn flush_repeats(&mut self, now: Instant) -> io::Result<()> {
        if self.repeats > 0 {
            let line = format!("{} (repeated {} times)", self.last, self.repeats);
            self.write(&line)?;
            self.repeats = 0;
            self.printed_at = now;
        }
        Ok(())
    }

    fn write(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }
}

/// Whether stdout failed because nobody reads it any more.
fn stdout_closed(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

/// Counts the outcomes, or stops early when stdout is closed.
async fn run() -> Result<Ended, Box<dyn std::error::Error>> {
    match rove().await {
        Err(error) if error.downcast_ref().is_some_and(stdout_closed) => Ok(Ended::StdoutClosed),
        other => other.map(Ended::Counted),
    }
}

/// Whether any connection was kept.
async fn rove() -> Result<bool, Box<dyn std::error::Error>> {
    let flags = flags::flags(&["servers", "max-slots", "connections", "interval-ms"])?;
    let servers: Vec<ServerSpec> = flags
        .get("servers")
        .ok_or("--servers ADDR[,ADDR...] is required (ADDR: IP:PORT or HOST:PORT)")?
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
    tokio::spawn(driver);
    for server in &servers {
        client.add_server(server.clone());
    }
    let mut printer = Printer::new(io::stdout().lock());
    let mut outcomes = 0;
    let mut kept_any = false;
    while outcomes < outcomes_wanted {
        let event = match printer.due() {
            None => client.next_event().await,
            Some(due) => {
                let next = tokio::time::timeout_at(due.into(), client.next_event());
                match next.await {
                    Ok(event) => event,
                    Err(_elapsed) => {
                        printer.flush_repeats(Instant::now())?;
                        continue;
                    }
                }
            }
        };
        printer.line(event.to_string(), Instant::now())?;
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
    printer.flush_repeats(Instant::now())?;
    printer.write(&format!("pool: {}", held.join(" ")))?;
    Ok(kept_any)
}

//! A Callosum line-echo server on `mio`.
//!
//! ```text
//! cargo run -p callosum-mio --example mio-server -- --listen 127.0.0.1:0 [--max-slots N] [--service-ms MS]
//! ```
//!
//! Prints `listening on ADDR` first, then for each line a client sends waits MS milliseconds
//! (default 0) and echoes it. Logs `slot S assigned to PEER` and `slot S freed` to stderr.
//! Runs until SIGTERM or SIGINT, then exits cleanly.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callosum_mio::{
    Happened, Parts, Server, ServerConfig, ServerConnId, ServerEvent, TokenRange, run,
};
use mio::{Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

const SIGNALS: Token = Token(0);

struct Options {
    listen: SocketAddr,
    max_slots: Option<u32>,
    service: Duration,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut listen = None;
    let mut max_slots = None;
    let mut service = Duration::ZERO;
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
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Options {
        listen: listen.ok_or("--listen ADDR is required")?,
        max_slots,
        service,
    })
}

/// One connection's lines in, replies out.
#[derive(Default)]
struct Session {
    /// Bytes of a line not yet complete.
    partial: Vec<u8>,
    /// Complete lines with the time their reply is due, in order.
    due: VecDeque<(Instant, Vec<u8>)>,
    /// Reply bytes the socket has not taken yet.
    out: Vec<u8>,
}

struct App {
    service: Duration,
    sessions: HashMap<ServerConnId, Session>,
}

impl App {
    fn on(&mut self, parts: &mut Parts<'_>, happened: Happened<'_>) -> ControlFlow<()> {
        let Some(server) = parts.server.as_deref_mut() else {
            return ControlFlow::Break(());
        };
        match happened {
            Happened::Server(ServerEvent::Accepted { conn, slot, peer }) => {
                eprintln!("slot {slot} assigned to {peer}");
                self.sessions.insert(conn, Session::default());
            }
            Happened::Server(ServerEvent::Closed { conn, slot, .. }) => {
                eprintln!("slot {slot} freed");
                self.sessions.remove(&conn);
            }
            Happened::Server(ServerEvent::Readable { conn }) => self.read(server, conn),
            Happened::Server(ServerEvent::Writable { conn }) => self.flush(server, conn),
            Happened::Server(ServerEvent::AcceptFailed { kind, .. }) => {
                eprintln!("accept failed: {kind}");
            }
            Happened::Server(_) | Happened::Client(_) | Happened::Lease(_) => {}
            // SIGTERM or SIGINT.
            Happened::Foreign(_) => return ControlFlow::Break(()),
            Happened::Woke => {
                let now = Instant::now();
                let conns: Vec<ServerConnId> = self.sessions.keys().copied().collect();
                for conn in conns {
                    if let Some(session) = self.sessions.get_mut(&conn) {
                        while session.due.front().is_some_and(|(at, _)| *at <= now) {
                            if let Some((_, line)) = session.due.pop_front() {
                                session.out.extend_from_slice(&line);
                            }
                        }
                    }
                    self.flush(server, conn);
                }
                let next = self
                    .sessions
                    .values()
                    .filter_map(|session| session.due.front().map(|(at, _)| *at))
                    .min();
                if let Some(next) = next {
                    parts.wake_at(next);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn read(&mut self, server: &mut Server, conn: ServerConnId) {
        let mut buf = [0u8; 4096];
        loop {
            match server.read(conn, &mut buf) {
                Ok(0) | Err(_) => return, // would block, or ended (a Closed event follows)
                Ok(n) => {
                    let Some(session) = self.sessions.get_mut(&conn) else {
                        return;
                    };
                    for &byte in &buf[..n] {
                        session.partial.push(byte);
                        if byte == b'\n' {
                            // One request at a time: each reply waits for the one before.
                            let start = session
                                .due
                                .back()
                                .map_or_else(Instant::now, |(at, _)| *at)
                                .max(Instant::now());
                            let line = std::mem::take(&mut session.partial);
                            session.due.push_back((start + self.service, line));
                        }
                    }
                }
            }
        }
    }

    fn flush(&mut self, server: &mut Server, conn: ServerConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        while !session.out.is_empty() {
            match server.write(conn, &session.out) {
                Ok(n) => {
                    session.out.drain(..n);
                }
                Err(_) => return, // would block (Writable follows), or ended
            }
        }
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("server: {message}");
            eprintln!("usage: server --listen ADDR [--max-slots N] [--service-ms MS]");
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
    let mut app = App {
        service: options.service,
        sessions: HashMap::new(),
    };
    run(&mut poll, Some(&mut server), None, |parts, happened| {
        app.on(parts, happened)
    })
}

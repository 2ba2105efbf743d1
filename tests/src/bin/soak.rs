//! Soak: servers and clients of both adapters on loopback, with random faults, for a bounded
//! time; then a check that nothing leaked. Not run in CI.
//!
//! `cargo run --release -p callosum-tests --bin soak -- [--seconds N] [--seed N]`
//!
//! Runs four servers on 127.0.0.1 (two `callosum-smol`, two `callosum-mio`, each on a thread
//! of its own, echoing each line after a service time of a few milliseconds) and two
//! clients: a smol one with many request tasks and a mio one whose loop keeps a few requests
//! going. For N seconds (default 60) a controller injects faults drawn from a generator
//! seeded with `--seed` (default 1): it restarts a server (shuts it down, closes its
//! connections and starts it again on the same port), makes a server slow for a while,
//! opens raw connections that reset, leave before the slot line, send garbage or sit idle,
//! asks a client to drop a working connection as broken, and removes a server from a
//! client for a while. The seed fixes the faults' order and parameters; the timing of
//! everything else is the machine's.
//!
//! At the end it stops the clients, waits (at most a few seconds) for every server to hold
//! no connection, compares the process's open descriptors with their count before the
//! first server started, and prints a summary. Exit status 1 if a slot or a descriptor
//! leaked, 2 for a bad command line or a failed start.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use callosum_mio::{Happened, LeaseReady, ServerEvent, TokenRange};
use callosum_proto::Rng;
use callosum_proto::client::{ClientConfig, ClientEvent};
use callosum_smol::PooledConn;
use mio::{Poll, Token, Waker};
use smol::channel;
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{LocalExecutor, Timer};

/// The longest line a server buffers; a peer sending more without a newline is closed.
const MAX_LINE: usize = 1024;
/// Extra service time while a server is slow.
const SLOW: Duration = Duration::from_millis(60);
/// How long a client waits for a reply before it gives the connection up as broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a smol request task waits for a connection before it tries again.
const CHECKOUT_WAIT: Duration = Duration::from_millis(500);
/// Request tasks of the smol client.
const SMOL_TASKS: usize = 12;
/// Requests the mio client keeps going at once.
const MIO_OUTSTANDING: usize = 6;
/// Tokens of a mio component; the waker takes the next one.
const TOKENS: usize = 1024;
/// How long the end waits for servers to hold nothing and descriptors to close.
const SETTLE: Duration = Duration::from_secs(5);
/// Idle raw peers held at once, at most.
const MAX_IDLE_PEERS: usize = 32;

fn main() -> ExitCode {
    let settings = match parse(std::env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("soak: {message}");
            eprintln!("usage: soak [--seconds N] [--seed N]");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(summary) => {
            summary.print(&settings);
            if summary.leaked() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::from(2)
        }
    }
}

/// What the command line asks for.
struct Settings {
    seconds: u64,
    seed: u64,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut settings = Settings {
        seconds: 60,
        seed: 1,
    };
    while let Some(flag) = args.next() {
        let target = match flag.as_str() {
            "--seconds" => &mut settings.seconds,
            "--seed" => &mut settings.seed,
            _ => return Err(format!("unknown argument {flag}")),
        };
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        *target = value
            .parse()
            .map_err(|_| format!("bad value for {flag}: {value}"))?;
    }
    if !(1..=86_400).contains(&settings.seconds) {
        return Err("--seconds must be in 1..=86400".into());
    }
    Ok(settings)
}

// ---------------------------------------------------------------------------------------
// Servers

/// The adapter a server or client runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adapter {
    Smol,
    Mio,
}

impl Adapter {
    fn name(self) -> &'static str {
        match self {
            Adapter::Smol => "smol",
            Adapter::Mio => "mio",
        }
    }
}

/// What a server's thread shares with the controller; it outlives restarts.
struct ServerShared {
    epoch: Instant,
    service: Duration,
    /// Slow until this many milliseconds after `epoch`.
    slow_until: AtomicU64,
    /// The mio servers' live connections and accepted total, published at every turn of
    /// their loop (the smol servers are asked directly).
    live: AtomicU32,
    accepted: AtomicU64,
    /// Tells a mio server to stop (with its waker).
    stop: AtomicBool,
}

impl ServerShared {
    fn service_time(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.slow_until.load(Ordering::Relaxed) {
            self.service + SLOW
        } else {
            self.service
        }
    }
}

/// How the controller reaches one running server.
enum Control {
    Smol {
        server: Arc<callosum_smol::Server>,
        /// Closed to stop it: its accept loop and every connection task end.
        stop: channel::Sender<()>,
    },
    Mio {
        waker: Arc<Waker>,
    },
}

/// One run of a server, from its start to its stop or restart.
struct Instance {
    control: Control,
    /// Returns the live connections left after the stop closed them all.
    thread: JoinHandle<u32>,
}

/// (live connections, accepted) of one run.
fn run_status(control: &Control, shared: &ServerShared) -> (u32, u64) {
    match control {
        Control::Smol { server, .. } => {
            let status = server.status();
            (status.live, status.stats.accepted)
        }
        Control::Mio { .. } => (
            shared.live.load(Ordering::Relaxed),
            shared.accepted.load(Ordering::Relaxed),
        ),
    }
}

/// A server under soak: its address and current run, and what the earlier runs left.
struct SoakServer {
    adapter: Adapter,
    addr: SocketAddr,
    shared: Arc<ServerShared>,
    instance: Option<Instance>,
    /// Accepted by runs that have ended.
    accepted_before: u64,
    /// Slots still live after a run closed its connections and stopped (must be 0).
    leaked_at_stop: u64,
}

impl SoakServer {
    fn start(adapter: Adapter, shared: Arc<ServerShared>) -> io::Result<SoakServer> {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let (instance, addr) = start_instance(adapter, any_port, &shared)?;
        Ok(SoakServer {
            adapter,
            addr,
            shared,
            instance: Some(instance),
            accepted_before: 0,
            leaked_at_stop: 0,
        })
    }

    /// (live connections, accepted in all runs).
    fn status(&self) -> (u32, u64) {
        let (live, accepted) = self
            .instance
            .as_ref()
            .map_or((0, 0), |run| run_status(&run.control, &self.shared));
        (live, self.accepted_before + accepted)
    }

    /// Stops the current run: it closes its listener and every connection.
    fn stop(&mut self) {
        let Some(Instance { control, thread }) = self.instance.take() else {
            return;
        };
        match &control {
            Control::Smol { stop, .. } => {
                stop.close();
            }
            Control::Mio { waker } => {
                self.shared.stop.store(true, Ordering::Relaxed);
                // An eventfd write, which does not fail while the thread and its poll live.
                let _ = waker.wake();
            }
        }
        let left = thread.join().unwrap_or(u32::MAX);
        self.accepted_before += run_status(&control, &self.shared).1;
        self.leaked_at_stop += u64::from(left);
    }

    /// Stops and starts again on the same port, after `down`.
    fn restart(&mut self, down: Duration) -> io::Result<()> {
        self.stop();
        thread::sleep(down);
        // The port was ours a moment ago; a bind may still race with the kernel.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match start_instance(self.adapter, self.addr, &self.shared) {
                Ok((instance, _)) => {
                    self.instance = Some(instance);
                    return Ok(());
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

fn start_instance(
    adapter: Adapter,
    addr: SocketAddr,
    shared: &Arc<ServerShared>,
) -> io::Result<(Instance, SocketAddr)> {
    shared.stop.store(false, Ordering::Relaxed);
    shared.live.store(0, Ordering::Relaxed);
    shared.accepted.store(0, Ordering::Relaxed);
    let name = format!("{}-server", adapter.name());
    match adapter {
        Adapter::Smol => {
            let server = callosum_smol::Server::bind(addr, callosum_smol::ServerConfig::default())
                .map_err(io::Error::other)?;
            let addr = server.local_addr();
            let server = Arc::new(server);
            let (stop, stopped) = channel::bounded(1);
            let thread = thread::Builder::new().name(name).spawn({
                let server = Arc::clone(&server);
                let shared = Arc::clone(shared);
                move || serve_smol(&server, &shared, &stopped)
            })?;
            let control = Control::Smol { server, stop };
            Ok((Instance { control, thread }, addr))
        }
        Adapter::Mio => {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), Token(TOKENS))?);
            let mut server =
                callosum_mio::Server::bind(addr, callosum_mio::ServerConfig::default())?;
            server.register(poll.registry(), TokenRange::new(0..TOKENS))?;
            let addr = server.local_addr();
            let thread = thread::Builder::new().name(name).spawn({
                let shared = Arc::clone(shared);
                move || serve_mio(poll, server, &shared)
            })?;
            let control = Control::Mio { waker };
            Ok((Instance { control, thread }, addr))
        }
    }
}

/// Serves until `stopped` closes, then closes every connection and returns the live count.
fn serve_smol(
    server: &callosum_smol::Server,
    shared: &ServerShared,
    stopped: &channel::Receiver<()>,
) -> u32 {
    let executor = LocalExecutor::new();
    smol::block_on(executor.run(async {
        let accepting = async {
            while let Ok(conn) = server.accept().await {
                let stopped = stopped.clone();
                let serve = echo_smol(conn, shared);
                let task = async move {
                    future::or(serve, async {
                        let _ = stopped.recv().await;
                    })
                    .await;
                };
                executor.spawn(task).detach();
            }
        };
        future::or(accepting, async {
            let _ = stopped.recv().await;
        })
        .await;
        server.shutdown();
        // The connection tasks saw the stop too and drop their connections.
        future::or(server.wait_idle(), async {
            Timer::after(SETTLE).await;
        })
        .await;
    }));
    server.status().live
}

/// Echoes each line after the service time, until the peer leaves or misbehaves.
async fn echo_smol(mut conn: callosum_smol::ServerConn, shared: &ServerShared) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            Timer::after(shared.service_time()).await;
            if conn.write_all(&line).await.is_err() {
                return;
            }
        }
        if pending.len() > MAX_LINE {
            return;
        }
    }
}

/// Serves until told to stop, then closes every connection and returns the live count.
fn serve_mio(mut poll: Poll, mut server: callosum_mio::Server, shared: &ServerShared) -> u32 {
    let mut lines: HashMap<callosum_mio::ServerConnId, Vec<u8>> = HashMap::new();
    // Replies waiting for their service time to pass.
    let mut replies: Vec<(Instant, callosum_mio::ServerConnId, Vec<u8>)> = Vec::new();
    let ran = callosum_mio::run(&mut poll, Some(&mut server), None, |parts, happened| {
        let Some(server) = parts.server.as_deref_mut() else {
            return ControlFlow::Break(());
        };
        match happened {
            Happened::Server(ServerEvent::Accepted { conn, .. }) => {
                lines.insert(conn, Vec::new());
            }
            Happened::Server(ServerEvent::Closed { conn, .. }) => {
                lines.remove(&conn);
            }
            Happened::Server(ServerEvent::Readable { conn }) => {
                let mut chunk = [0u8; 256];
                while let Ok(n @ 1..) = server.read(conn, &mut chunk) {
                    let pending = lines.entry(conn).or_default();
                    pending.extend_from_slice(&chunk[..n]);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line = pending.drain(..=end).collect();
                        replies.push((Instant::now() + shared.service_time(), conn, line));
                    }
                    if pending.len() > MAX_LINE {
                        server.close(conn);
                        break;
                    }
                }
            }
            Happened::Woke => {
                if shared.stop.load(Ordering::Relaxed) {
                    for conn in lines.keys() {
                        server.close(*conn);
                    }
                    shared.live.store(server.status().live, Ordering::Relaxed);
                    shared
                        .accepted
                        .store(server.status().stats.accepted, Ordering::Relaxed);
                    return ControlFlow::Break(());
                }
                let now = Instant::now();
                replies.retain(|(due, conn, line)| {
                    if *due > now {
                        return true;
                    }
                    // A reply the socket does not take at once is a broken connection here.
                    if !matches!(server.write(*conn, line), Ok(n) if n == line.len()) {
                        server.close(*conn);
                    }
                    false
                });
                shared.live.store(server.status().live, Ordering::Relaxed);
                shared
                    .accepted
                    .store(server.status().stats.accepted, Ordering::Relaxed);
                if let Some(next) = replies.iter().map(|(due, ..)| *due).min() {
                    parts.wake_at(next);
                }
            }
            // The waker: the next `Woke` looks at the stop flag.
            _ => {}
        }
        ControlFlow::Continue(())
    });
    if ran.is_err() {
        return u32::MAX;
    }
    server.status().live
}

// ---------------------------------------------------------------------------------------
// Clients

/// What a client did, counted by its thread.
#[derive(Default)]
struct ClientTally {
    kept: AtomicU64,
    rejected: AtomicU64,
    evicted: AtomicU64,
    removed: AtomicU64,
    unreachable: AtomicU64,
    handshake_failed: AtomicU64,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    checkouts_timed_out: AtomicU64,
    /// Good connections dropped as broken on the controller's request.
    dropped_as_broken: AtomicU64,
    /// Requests from the controller to drop a good connection as broken, not yet done.
    break_requests: AtomicU32,
}

impl ClientTally {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one request to drop a connection as broken, if there is one.
    fn take_break(&self) -> bool {
        let taken = self
            .break_requests
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            ClientTally::add(&self.dropped_as_broken);
        }
        taken
    }
}

/// What the controller asks of a client.
enum Command {
    Add(SocketAddr),
    Remove(SocketAddr),
}

/// A client of `max_slots` connections that roves every 50 ms (± 25), for either adapter.
fn client_config(max_slots: usize, seed: u64) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.pool.max_slots = max_slots;
    config.rover.interval = Duration::from_millis(50);
    config.rover.jitter = Duration::from_millis(25);
    config.seed = Some(seed);
    config
}

/// How the controller reaches a client.
struct SoakClient {
    adapter: Adapter,
    tally: Arc<ClientTally>,
    commands: ClientCommands,
    thread: JoinHandle<()>,
}

enum ClientCommands {
    Smol(channel::Sender<Command>),
    Mio {
        commands: mpsc::Sender<Command>,
        waker: Arc<Waker>,
        stop: Arc<AtomicBool>,
    },
}

impl SoakClient {
    fn send(&self, command: Command) {
        // A client that ended early has nothing to tell; its summary shows it.
        match &self.commands {
            ClientCommands::Smol(commands) => {
                let _ = commands.try_send(command);
            }
            ClientCommands::Mio {
                commands, waker, ..
            } => {
                let _ = commands.send(command);
                let _ = waker.wake();
            }
        }
    }

    fn stop(self) {
        match self.commands {
            ClientCommands::Smol(commands) => drop(commands),
            ClientCommands::Mio { waker, stop, .. } => {
                stop.store(true, Ordering::Relaxed);
                let _ = waker.wake();
            }
        }
        if self.thread.join().is_err() {
            eprintln!("soak: the {} client panicked", self.adapter.name());
        }
    }
}

fn start_smol_client(servers: &[SocketAddr], seed: u64) -> io::Result<SoakClient> {
    let tally = Arc::new(ClientTally::default());
    let (commands, received) = channel::unbounded();
    let config = client_config(16, seed);
    let (client, driver) = callosum_smol::Client::new(config).map_err(io::Error::other)?;
    for &addr in servers {
        client.add_server(addr);
    }
    let thread = thread::Builder::new().name("smol-client".into()).spawn({
        let tally = Arc::clone(&tally);
        move || smol_client(client, driver, &tally, &received)
    })?;
    Ok(SoakClient {
        adapter: Adapter::Smol,
        tally,
        commands: ClientCommands::Smol(commands),
        thread,
    })
}

/// Runs the smol client until its command channel closes.
fn smol_client(
    client: callosum_smol::Client,
    driver: callosum_smol::Driver,
    tally: &ClientTally,
    commands: &channel::Receiver<Command>,
) {
    let executor = LocalExecutor::new();
    smol::block_on(executor.run(async {
        let driver = executor.spawn(driver);
        let workers: Vec<_> = (0..SMOL_TASKS)
            .map(|task| executor.spawn(smol_requests(client.clone(), tally, task)))
            .collect();
        let events = executor.spawn({
            let client = client.clone();
            async move {
                loop {
                    count_event(tally, &client.next_event().await);
                }
            }
        });
        while let Ok(command) = commands.recv().await {
            match command {
                Command::Add(addr) => client.add_server(addr),
                Command::Remove(addr) => client.remove_server(addr),
            };
        }
        // Cancelling a task drops its lease, which goes back to the pool.
        for worker in workers {
            worker.cancel().await;
        }
        events.cancel().await;
        while let Some(event) = client.try_next_event() {
            count_event(tally, &event);
        }
        // The last handle: the client closes and its driver ends.
        drop(client);
        driver.await;
    }));
}

/// Counts a client event, the same for every adapter.
fn count_event(tally: &ClientTally, event: &ClientEvent) {
    let counter = match event {
        ClientEvent::Kept { .. } => &tally.kept,
        ClientEvent::Rejected { .. } => &tally.rejected,
        ClientEvent::Evicted { .. } => &tally.evicted,
        ClientEvent::Removed { .. } => &tally.removed,
        ClientEvent::Unreachable { .. } => &tally.unreachable,
        ClientEvent::HandshakeFailed { .. } => &tally.handshake_failed,
        _ => return,
    };
    ClientTally::add(counter);
}

/// One request task: a request on the lowest idle connection, again and again.
async fn smol_requests(client: callosum_smol::Client, tally: &ClientTally, task: usize) {
    for number in 0u64.. {
        let Ok(mut conn) = client.get_timeout(CHECKOUT_WAIT).await else {
            ClientTally::add(&tally.checkouts_timed_out);
            continue;
        };
        let request = format!("smol {task} {number}\n");
        let answered = future::or(exchange_smol(&mut conn, request.as_bytes()), async {
            Timer::after(REQUEST_TIMEOUT).await;
            false
        })
        .await;
        if answered {
            ClientTally::add(&tally.requests_ok);
            if tally.take_break() {
                conn.mark_broken();
            }
        } else {
            ClientTally::add(&tally.requests_failed);
            conn.mark_broken();
        }
    }
}

/// Writes `request` and reads the reply line; whether it is the echo.
async fn exchange_smol(conn: &mut PooledConn, request: &[u8]) -> bool {
    if conn.write_all(request).await.is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    while !reply.ends_with(b"\n") && reply.len() <= request.len() {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
    }
    reply == request
}

fn start_mio_client(servers: &[SocketAddr], seed: u64) -> io::Result<SoakClient> {
    let tally = Arc::new(ClientTally::default());
    let (commands, received) = mpsc::channel();
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), Token(TOKENS))?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut client = callosum_mio::Client::new(client_config(8, seed)).map_err(io::Error::other)?;
    client.register(poll.registry(), TokenRange::new(0..TOKENS))?;
    for &addr in servers {
        client.add_server(addr);
    }
    let thread = thread::Builder::new().name("mio-client".into()).spawn({
        let tally = Arc::clone(&tally);
        let stop = Arc::clone(&stop);
        move || mio_client(poll, client, &tally, &received, &stop)
    })?;
    Ok(SoakClient {
        adapter: Adapter::Mio,
        tally,
        commands: ClientCommands::Mio {
            commands,
            waker,
            stop,
        },
        thread,
    })
}

/// A request in flight on the mio client.
struct Outstanding {
    lease: callosum_mio::Lease,
    request: Vec<u8>,
    reply: Vec<u8>,
    deadline: Instant,
}

/// Runs the mio client's loop until `stop`.
fn mio_client(
    mut poll: Poll,
    mut client: callosum_mio::Client,
    tally: &ClientTally,
    commands: &mpsc::Receiver<Command>,
    stop: &AtomicBool,
) {
    let mut outstanding: Vec<Outstanding> = Vec::new();
    let mut number = 0u64;
    let ran = callosum_mio::run(&mut poll, None, Some(&mut client), |parts, happened| {
        let Some(client) = parts.client.as_deref_mut() else {
            return ControlFlow::Break(());
        };
        match happened {
            Happened::Lease(LeaseReady {
                lease,
                readable: true,
                ..
            }) => {
                let Some(at) = outstanding.iter().position(|o| o.lease.id() == lease) else {
                    return ControlFlow::Continue(());
                };
                let done = read_reply(client, &mut outstanding[at]);
                if let Some(answered) = done {
                    let request = outstanding.swap_remove(at);
                    finish_mio(client, tally, request.lease, answered);
                }
            }
            Happened::Client(event) => count_event(tally, &event),
            Happened::Woke => {
                if stop.load(Ordering::Relaxed) {
                    for request in outstanding.drain(..) {
                        client.checkin_broken(request.lease);
                    }
                    client.close();
                    return ControlFlow::Break(());
                }
                while let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Add(addr) => {
                            client.add_server(addr);
                        }
                        Command::Remove(addr) => {
                            client.remove_server(addr);
                        }
                    }
                }
                let now = Instant::now();
                let (late, going): (Vec<_>, Vec<_>) =
                    outstanding.drain(..).partition(|o| o.deadline <= now);
                outstanding = going;
                for request in late {
                    finish_mio(client, tally, request.lease, false);
                }
                while outstanding.len() < MIO_OUTSTANDING {
                    let Some(lease) = client.checkout() else {
                        break;
                    };
                    number += 1;
                    let request = format!("mio {number}\n").into_bytes();
                    let sent = client.conn_mut(&lease).map(|conn| conn.write(&request));
                    if matches!(sent, Some(Ok(n)) if n == request.len()) {
                        outstanding.push(Outstanding {
                            lease,
                            request,
                            reply: Vec::new(),
                            deadline: now + REQUEST_TIMEOUT,
                        });
                    } else {
                        finish_mio(client, tally, lease, false);
                    }
                }
                let next = outstanding.iter().map(|o| o.deadline).min();
                // Without a connection to use, look again soon.
                parts.wake_at(next.unwrap_or(now + Duration::from_millis(20)));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    if let Err(error) = ran {
        eprintln!("soak: the mio client's loop failed: {error}");
    }
    while let Some(event) = client.poll_event() {
        count_event(tally, &event);
    }
}

/// Reads what arrived for `request`: `Some(whether it is the echo)` once it is complete or
/// the connection failed, `None` while more is to come.
fn read_reply(client: &mut callosum_mio::Client, request: &mut Outstanding) -> Option<bool> {
    let conn = client.conn_mut(&request.lease)?;
    let mut chunk = [0u8; 256];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return Some(false),
            Ok(n) => request.reply.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(false),
        }
    }
    if request.reply.ends_with(b"\n") || request.reply.len() > request.request.len() {
        Some(request.reply == request.request)
    } else {
        None
    }
}

/// Counts a finished request and returns its connection: as broken if it failed, or if
/// the controller asked for one to be dropped.
fn finish_mio(
    client: &mut callosum_mio::Client,
    tally: &ClientTally,
    lease: callosum_mio::Lease,
    answered: bool,
) {
    if answered {
        ClientTally::add(&tally.requests_ok);
        if tally.take_break() {
            client.checkin_broken(lease);
        } else {
            client.checkin(lease);
        }
    } else {
        ClientTally::add(&tally.requests_failed);
        client.checkin_broken(lease);
    }
}

// ---------------------------------------------------------------------------------------
// Faults

/// The faults the controller injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Restart,
    Slow,
    PeerReset,
    PeerLeavesEarly,
    PeerGarbage,
    PeerIdle,
    DropAsBroken,
    RemoveServer,
}

impl Fault {
    /// Every fault with its weight in the draw.
    const WEIGHTED: [(Fault, u64); 8] = [
        (Fault::Restart, 1),
        (Fault::Slow, 2),
        (Fault::PeerReset, 3),
        (Fault::PeerLeavesEarly, 3),
        (Fault::PeerGarbage, 2),
        (Fault::PeerIdle, 3),
        (Fault::DropAsBroken, 3),
        (Fault::RemoveServer, 1),
    ];

    fn draw(rng: &mut Rng) -> Fault {
        let total: u64 = Fault::WEIGHTED.iter().map(|&(_, weight)| weight).sum();
        let mut pick = rng.below(total);
        for (fault, weight) in Fault::WEIGHTED {
            if pick < weight {
                return fault;
            }
            pick -= weight;
        }
        unreachable!("the pick is below the total weight")
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Restart => "server restarted",
            Fault::Slow => "server made slow",
            Fault::PeerReset => "raw peer reset (RST)",
            Fault::PeerLeavesEarly => "raw peer left before the line",
            Fault::PeerGarbage => "raw peer sent garbage and left",
            Fault::PeerIdle => "raw peer held idle",
            Fault::DropAsBroken => "client dropped a connection as broken",
            Fault::RemoveServer => "client removed a server for a while",
        }
    }
}

/// A random duration in `low..high` milliseconds.
fn millis(rng: &mut Rng, low: u64, high: u64) -> Duration {
    Duration::from_millis(low + rng.below(high - low))
}

/// What the controller keeps between faults.
struct Controller {
    rng: Rng,
    servers: Vec<SoakServer>,
    clients: Vec<SoakClient>,
    /// Raw peers held idle, with when to close them.
    idle_peers: Vec<(Instant, TcpStream)>,
    /// Servers removed from a client: (when to add it back, client, server).
    removed: Vec<(Instant, usize, usize)>,
    faults: Vec<(Fault, u64)>,
    restart_errors: u64,
}

impl Controller {
    fn inject(&mut self, fault: Fault) {
        let server = self.rng.below(self.servers.len() as u64) as usize;
        let addr = self.servers[server].addr;
        match fault {
            Fault::Restart => {
                let down = millis(&mut self.rng, 1, 300);
                if let Err(error) = self.servers[server].restart(down) {
                    eprintln!("soak: restarting the server on {addr} failed: {error}");
                    self.restart_errors += 1;
                }
            }
            Fault::Slow => {
                let shared = &self.servers[server].shared;
                let until = shared.epoch.elapsed() + millis(&mut self.rng, 200, 3000);
                shared
                    .slow_until
                    .store(until.as_millis() as u64, Ordering::Relaxed);
            }
            Fault::PeerReset => {
                if let Some(stream) = connect(addr) {
                    // Linger 0: the close is a reset, perhaps before the line went out.
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
            }
            Fault::PeerLeavesEarly => drop(connect(addr)),
            Fault::PeerGarbage => {
                if let Some(mut stream) = connect(addr) {
                    let garbage: Vec<u8> = (0..self.rng.below(2048))
                        .map(|_| self.rng.next_u64() as u8)
                        .collect();
                    let _ = stream.write_all(&garbage);
                }
            }
            Fault::PeerIdle => {
                if self.idle_peers.len() < MAX_IDLE_PEERS
                    && let Some(mut stream) = connect(addr)
                {
                    // Reads the line, or part of it, then sits there.
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                    let _ = stream.read(&mut [0u8; 16]);
                    let until = Instant::now() + millis(&mut self.rng, 100, 3000);
                    self.idle_peers.push((until, stream));
                }
            }
            Fault::DropAsBroken => {
                let client = self.rng.below(self.clients.len() as u64) as usize;
                self.clients[client]
                    .tally
                    .break_requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            Fault::RemoveServer => {
                let client = self.rng.below(self.clients.len() as u64) as usize;
                if self
                    .removed
                    .iter()
                    .any(|&(_, c, s)| (c, s) == (client, server))
                {
                    return; // already out of that client: not injected
                }
                self.clients[client].send(Command::Remove(addr));
                let back = Instant::now() + millis(&mut self.rng, 200, 3000);
                self.removed.push((back, client, server));
            }
        }
        if let Some(count) = self.faults.iter_mut().find(|(f, _)| *f == fault) {
            count.1 += 1;
        }
    }

    /// Closes the idle peers and adds back the removed servers that are due.
    fn tidy(&mut self, now: Instant) {
        self.idle_peers.retain(|(until, _)| *until > now);
        let (due, later): (Vec<_>, Vec<_>) =
            self.removed.drain(..).partition(|(back, ..)| *back <= now);
        self.removed = later;
        for (_, client, server) in due {
            self.clients[client].send(Command::Add(self.servers[server].addr));
        }
    }
}

/// A raw connection to `addr`, if it can be made quickly.
fn connect(addr: SocketAddr) -> Option<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
}

// ---------------------------------------------------------------------------------------
// The run and its summary

/// What the run found.
struct Summary {
    seconds: f64,
    servers: Vec<(Adapter, SocketAddr, u64)>,
    clients: Vec<(Adapter, Arc<ClientTally>)>,
    faults: Vec<(Fault, u64)>,
    restart_errors: u64,
    slots_leaked_at_end: u64,
    slots_leaked_at_restart: u64,
    fds_before: usize,
    fds_after: usize,
    peak_kib: u64,
}

impl Summary {
    fn leaked(&self) -> bool {
        self.slots_leaked_at_end != 0
            || self.slots_leaked_at_restart != 0
            || self.fds_after != self.fds_before
    }

    fn print(&self, settings: &Settings) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        println!(
            "soak: {:.1} s, seed {}, {} cores",
            self.seconds,
            settings.seed,
            thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("\n| server | address | connections accepted |");
        println!("|---|---|---:|");
        for (adapter, addr, accepted) in &self.servers {
            println!("| {} | {addr} | {accepted} |", adapter.name());
        }
        println!(
            "\n| client | kept | rejected | evicted | removed | unreachable | handshake failed | requests ok | requests failed | checkouts timed out | dropped as broken |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (adapter, tally) in &self.clients {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                adapter.name(),
                load(&tally.kept),
                load(&tally.rejected),
                load(&tally.evicted),
                load(&tally.removed),
                load(&tally.unreachable),
                load(&tally.handshake_failed),
                load(&tally.requests_ok),
                load(&tally.requests_failed),
                load(&tally.checkouts_timed_out),
                load(&tally.dropped_as_broken),
            );
        }
        println!("\n| fault | injected |");
        println!("|---|---:|");
        for (fault, count) in &self.faults {
            println!("| {} | {count} |", fault.name());
        }
        let total: u64 = self.faults.iter().map(|(_, count)| count).sum();
        println!("| total | {total} |");
        let accepted: u64 = self.servers.iter().map(|s| s.2).sum();
        let sum = |get: fn(&ClientTally) -> &AtomicU64| -> u64 {
            self.clients.iter().map(|(_, tally)| load(get(tally))).sum()
        };
        println!("\n| total | |");
        println!("|---|---:|");
        println!("| handshakes accepted by servers | {accepted} |");
        println!("| connections kept by clients | {} |", sum(|t| &t.kept));
        println!(
            "| connections rejected by clients | {} |",
            sum(|t| &t.rejected)
        );
        println!("| requests ok | {} |", sum(|t| &t.requests_ok));
        println!("| requests failed | {} |", sum(|t| &t.requests_failed));
        println!("| restarts that failed to bind | {} |", self.restart_errors);
        println!(
            "| slots leaked (live after the clients left) | {} |",
            self.slots_leaked_at_end
        );
        println!(
            "| slots leaked (live after a stop closed everything) | {} |",
            self.slots_leaked_at_restart
        );
        println!(
            "| descriptors leaked ({} before, {} after) | {} |",
            self.fds_before,
            self.fds_after,
            self.fds_after as i64 - self.fds_before as i64
        );
        println!("| peak memory (VmHWM) | {} KiB |", self.peak_kib);
        println!("\n{}", if self.leaked() { "LEAKED" } else { "no leaks" });
    }
}

fn run(settings: &Settings) -> io::Result<Summary> {
    // The smol reactor opens its descriptors on first use and keeps them: start it first.
    smol::block_on(Timer::after(Duration::from_millis(1)));
    let fds_before = open_fds()?;
    let started = Instant::now();
    let mut rng = Rng::new(settings.seed);
    let mut servers = Vec::new();
    for (index, adapter) in [Adapter::Smol, Adapter::Smol, Adapter::Mio, Adapter::Mio]
        .into_iter()
        .enumerate()
    {
        let shared = Arc::new(ServerShared {
            epoch: started,
            service: Duration::from_millis(2 + index as u64),
            slow_until: AtomicU64::new(0),
            live: AtomicU32::new(0),
            accepted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        servers.push(SoakServer::start(adapter, shared)?);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
    let clients = vec![
        start_smol_client(&addrs, rng.next_u64())?,
        start_mio_client(&addrs, rng.next_u64())?,
    ];
    let mut controller = Controller {
        rng,
        servers,
        clients,
        idle_peers: Vec::new(),
        removed: Vec::new(),
        faults: Fault::WEIGHTED.iter().map(|&(f, _)| (f, 0)).collect(),
        restart_errors: 0,
    };
    let deadline = started + Duration::from_secs(settings.seconds);
    loop {
        let pause = millis(&mut controller.rng, 20, 200);
        let now = Instant::now();
        if now + pause >= deadline {
            thread::sleep(deadline.saturating_duration_since(now));
            break;
        }
        thread::sleep(pause);
        controller.tidy(Instant::now());
        let fault = Fault::draw(&mut controller.rng);
        controller.inject(fault);
    }
    let seconds = started.elapsed().as_secs_f64();
    let Controller {
        mut servers,
        clients,
        idle_peers,
        faults,
        restart_errors,
        ..
    } = controller;
    drop(idle_peers);
    let mut tallies = Vec::new();
    for client in clients {
        tallies.push((client.adapter, Arc::clone(&client.tally)));
        client.stop();
    }
    // Every client is gone: each server's connections end as their peers' closes arrive.
    let settle = Instant::now() + SETTLE;
    let live =
        |servers: &[SoakServer]| -> u64 { servers.iter().map(|s| u64::from(s.status().0)).sum() };
    while live(&servers) != 0 && Instant::now() < settle {
        thread::sleep(Duration::from_millis(10));
    }
    let slots_leaked_at_end = live(&servers);
    let accepted: Vec<_> = servers
        .iter_mut()
        .map(|server| {
            let total = server.status().1;
            server.stop();
            (server.adapter, server.addr, total)
        })
        .collect();
    let slots_leaked_at_restart = servers.iter().map(|s| s.leaked_at_stop).sum();
    let mut fds_after = open_fds()?;
    while fds_after != fds_before && Instant::now() < settle {
        thread::sleep(Duration::from_millis(10));
        fds_after = open_fds()?;
    }
    Ok(Summary {
        seconds,
        servers: accepted,
        clients: tallies,
        faults,
        restart_errors,
        slots_leaked_at_end,
        slots_leaked_at_restart,
        fds_before,
        fds_after,
        peak_kib: peak_kib()?,
    })
}

/// The process's open descriptors.
fn open_fds() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// `VmHWM` of this process, in KiB.
fn peak_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM"))
}

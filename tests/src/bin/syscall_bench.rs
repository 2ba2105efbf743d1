//! System calls per request at concurrency 1: each adapter's client pool against a hand-held
//! connection on the same runtime, in one run.
//!
//! `cargo run --release -p callosum-tests --bin syscall-bench -- [--rounds R] [--requests N]`
//!
//! Needs `perf` (Linux), allowed to read the `raw_syscalls` and `syscalls` tracepoints (root,
//! or `kernel.perf_event_paranoid` at most 1). Not part of CI: run by hand, see BENCHMARKS.md.
//!
//! An echo server (a `callosum_tokio::Server` on a current-thread runtime, answering each
//! request after 50 µs of work) runs in a child process of its own, so that the process
//! counted holds nothing but one client. Each case is
//! a child process too, run under `perf stat`, which counts every system call of the process
//! and all its threads:
//!
//! - `smol / hand-held`: one `Async<TcpStream>`, requests in `smol::block_on`;
//! - `smol / pool`: a `callosum_smol::Client`, its driver on an executor run by the same
//!   `smol::block_on` as the requests, so that all is on one thread as in the hand-held case;
//! - `smol-spawn / pool`: the same client with its driver on smol's global executor
//!   (`smol::spawn`, as the crate's documentation shows), whose thread then shares the
//!   reactor with the requests' `block_on`: a wake of the driver costs system calls here;
//!   `smol-spawn / hand-held` is the hand-held connection with that thread running too;
//! - `tokio / hand-held` and `tokio / pool`: a `tokio::net::TcpStream`, and a
//!   `callosum_tokio::Client` with its driver spawned, on one current-thread runtime;
//! - `mio / hand-held` and `mio / pool`: a `mio::net::TcpStream`, and a `callosum_mio::Client`,
//!   each on a `mio::Poll` loop of its own.
//!
//! A request writes 16 bytes and reads their echo; through a pool it is get, request, finish.
//! The pools use the default configuration (sized to demand, at least two connections, a
//! random idle one lent) but for the rover, which waits an hour between attempts so that no
//! connect lands in the figures. What the process costs apart from its requests (start-up,
//! connecting, filling the pool, 200 warm-up requests, exit) is the same whatever the number
//! of requests, so every case runs twice in a round, with N and with 2N requests, and the
//! difference of the two counts divided by N is the cost of one request. Every round runs
//! each case in turn, the order rotating from round to round. Prints the median per request
//! over R rounds (default 5, N default 5,000), with the calls that make it up, and each
//! pool's median difference to its hand-held connection of the same round.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioTcpStream;
use mio::{Events, Interest, Poll, Token};
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Error = Box<dyn std::error::Error>;

/// The request: 16 bytes, echoed.
const REQUEST: &[u8; 16] = b"0123456789abcde\n";

/// How long the server works on a request before it answers: longer than a client takes
/// from its write to its first read, so that every request waits for its reply in the
/// reactor, the path of a real request. An immediate echo on loopback sometimes arrives
/// before that first read, and the counts would depend on that race.
const THINK: Duration = Duration::from_micros(50);

/// Requests made before the counted ones, in both runs of a case.
const WARM_UP: usize = 200;

/// The system calls shown one by one; the rest are counted in the total only.
const SHOWN: [&str; 12] = [
    "read",
    "recvfrom",
    "write",
    "sendto",
    "writev",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "futex",
    "poll",
    "connect",
];

/// The cases, in the order of the first round: (adapter, hand-held or pool).
const CASES: [(&str, Holder); 8] = [
    ("smol", Holder::HandHeld),
    ("smol", Holder::Pool),
    ("smol-spawn", Holder::HandHeld),
    ("smol-spawn", Holder::Pool),
    ("tokio", Holder::HandHeld),
    ("tokio", Holder::Pool),
    ("mio", Holder::HandHeld),
    ("mio", Holder::Pool),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    HandHeld,
    Pool,
}

impl Holder {
    fn name(self) -> &'static str {
        match self {
            Holder::HandHeld => "hand-held",
            Holder::Pool => "pool",
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("case") => run_case(&args[1..]),
        _ => parse(&args).and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("syscall-bench: {error}");
            ExitCode::from(2)
        }
    }
}

/// What the command line asks for.
struct Settings {
    rounds: usize,
    requests: usize,
}

fn parse(args: &[String]) -> Result<Settings, Error> {
    let mut settings = Settings {
        rounds: 5,
        requests: 5_000,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--rounds" => settings.rounds = value.parse().map_err(|_| bad())?,
            "--requests" => settings.requests = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag {flag} (--rounds, --requests)").into()),
        }
    }
    if !(1..=100).contains(&settings.rounds) || !(100..=10_000_000).contains(&settings.requests) {
        return Err("--rounds in 1..=100, --requests in 100..=10000000".into());
    }
    Ok(settings)
}

/// System calls counted in one run of a case: the total, then each of [`SHOWN`].
#[derive(Clone, Copy, Default)]
struct Counts {
    total: f64,
    shown: [f64; SHOWN.len()],
}

impl Counts {
    /// Per request: the difference of a run of `2n` requests and one of `n`, over `n`.
    fn per_request(long: Counts, short: Counts, n: usize) -> Counts {
        let n = n as f64;
        Counts {
            total: (long.total - short.total) / n,
            shown: std::array::from_fn(|i| (long.shown[i] - short.shown[i]) / n),
        }
    }
}

/// The echo server's child process; killed when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(settings: Settings) -> Result<(), Error> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout from the server")?;
    let server = ServerProcess(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().parse()?;
    let n = settings.requests;
    eprintln!(
        "{} rounds of {} cases, {n} and {} requests each, against {addr}",
        settings.rounds,
        CASES.len(),
        2 * n
    );
    // Per case, per round.
    let mut per_round: Vec<Vec<Counts>> = vec![Vec::new(); CASES.len()];
    for round in 0..settings.rounds {
        for turn in 0..CASES.len() {
            let index = (turn + round) % CASES.len();
            let (adapter, holder) = CASES[index];
            let short = count(&exe, adapter, holder, addr, n)?;
            let long = count(&exe, adapter, holder, addr, 2 * n)?;
            per_round[index].push(Counts::per_request(long, short, n));
        }
        eprintln!("round {} done", round + 1);
    }
    drop(server);
    print_table(&per_round);
    Ok(())
}

/// Runs one case with `requests` requests under `perf stat`, and reads its counts.
fn count(
    exe: &std::path::Path,
    adapter: &str,
    holder: Holder,
    addr: SocketAddr,
    requests: usize,
) -> Result<Counts, Error> {
    let output = std::env::temp_dir().join(format!("syscall-bench-{}.csv", std::process::id()));
    let mut events = String::from("raw_syscalls:sys_enter");
    for name in SHOWN {
        events.push_str(",syscalls:sys_enter_");
        events.push_str(name);
    }
    let status = Command::new("perf")
        .args(["stat", "-x", ",", "-e", &events, "-o"])
        .arg(&output)
        .arg("--")
        .arg(exe)
        .args(["case", adapter, holder.name(), &addr.to_string()])
        .arg(requests.to_string())
        .status()
        .map_err(|error| format!("could not run perf ({error}); it is in linux-perf"))?;
    if !status.success() {
        return Err(format!(
            "perf stat of {adapter} / {} failed: {status}",
            holder.name()
        )
        .into());
    }
    let text = std::fs::read_to_string(&output)?;
    std::fs::remove_file(&output)?;
    let mut counts = Counts::default();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(value), Some(event)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let value: f64 = value
            .parse()
            .map_err(|_| format!("perf could not count {event}: {line}"))?;
        if *event == "raw_syscalls:sys_enter" {
            counts.total = value;
        } else if let Some(i) = SHOWN
            .iter()
            .position(|name| event.strip_prefix("syscalls:sys_enter_") == Some(name))
        {
            counts.shown[i] = value;
        }
    }
    Ok(counts)
}

fn print_table(per_round: &[Vec<Counts>]) {
    let medians: Vec<Counts> = per_round
        .iter()
        .map(|rounds| Counts {
            total: median(rounds.iter().map(|counts| counts.total).collect()),
            shown: std::array::from_fn(|i| {
                median(rounds.iter().map(|counts| counts.shown[i]).collect())
            }),
        })
        .collect();
    println!(
        "| case | syscalls per request (median) | min | max | of which | pool minus hand-held |"
    );
    println!("|---|---:|---:|---:|---|---:|");
    for (index, (adapter, holder)) in CASES.iter().enumerate() {
        let totals: Vec<f64> = per_round[index].iter().map(|counts| counts.total).collect();
        let (min, max) = totals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        let parts: Vec<String> = SHOWN
            .iter()
            .zip(medians[index].shown)
            .filter(|&(_, per)| per >= 0.05)
            .map(|(name, per)| format!("{name} {per:.2}"))
            .collect();
        let difference = match holder {
            Holder::HandHeld => String::new(),
            // The hand-held case of the same adapter is the row before.
            Holder::Pool => {
                let differences = per_round[index]
                    .iter()
                    .zip(&per_round[index - 1])
                    .map(|(pool, held)| pool.total - held.total)
                    .collect();
                format!("**{:+.2}**", median(differences))
            }
        };
        println!(
            "| {adapter} / {} | {:.2} | {min:.2} | {max:.2} | {} | {difference} |",
            holder.name(),
            medians[index].total,
            parts.join(", ")
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The echo server's process: prints its address, then serves until killed.
fn serve() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = callosum_tokio::Server::bind(
            "127.0.0.1:0".parse()?,
            callosum_tokio::ServerConfig::default(),
        )?;
        println!("{}", server.local_addr());
        io::stdout().flush()?;
        while let Ok(mut conn) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    think();
                    if conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok(())
    })
}

/// The server's work on a request: a busy wait of [`THINK`] (a sleep would take a timer
/// tick, about a millisecond).
fn think() {
    let started = Instant::now();
    while started.elapsed() < THINK {
        std::hint::spin_loop();
    }
}

/// One case's process: `case ADAPTER HOLDER ADDR REQUESTS`.
fn run_case(args: &[String]) -> Result<(), Error> {
    let [adapter, holder, addr, requests] = args else {
        return Err("case ADAPTER HOLDER ADDR REQUESTS".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let requests = WARM_UP + requests.parse::<usize>()?;
    match (adapter.as_str(), holder.as_str()) {
        ("smol", "hand-held") => smol::block_on(smol_hand_held(addr, requests)),
        ("smol", "pool") => smol::block_on(smol_pool(addr, requests)),
        ("smol-spawn", "hand-held") => smol::block_on(async {
            // The global executor's thread runs, as it would with a driver on it.
            smol::spawn(std::future::pending::<()>()).detach();
            smol_hand_held(addr, requests).await
        }),
        ("smol-spawn", "pool") => smol::block_on(async {
            let (client, driver) = callosum_smol::Client::new(client_config())?;
            smol::spawn(driver).detach();
            client.add_server(addr);
            smol_requests(&client, requests).await
        }),
        ("tokio", holder) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(match holder {
                "pool" => Box::pin(tokio_pool(addr, requests))
                    as std::pin::Pin<Box<dyn Future<Output = Result<(), Error>>>>,
                _ => Box::pin(tokio_hand_held(addr, requests)),
            }),
        ("mio", "hand-held") => mio_hand_held(addr, requests),
        ("mio", "pool") => mio_pool(addr, requests),
        _ => Err(format!("no case {adapter} / {holder}").into()),
    }
}

/// The pools' configuration: the default, with a rover that stays quiet once the pool is full.
fn client_config() -> callosum_proto::client::ClientConfig {
    let mut config = callosum_proto::client::ClientConfig::default();
    config.rover.interval = Duration::from_secs(3600);
    config.rover.jitter = Duration::ZERO;
    config
}

/// A blocking connection to the echo server whose slot line was read.
fn connect_std(addr: SocketAddr) -> io::Result<StdTcpStream> {
    let mut stream = StdTcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        line.push(byte[0]);
    }
    Ok(stream)
}

/// Fails if a reply is not the request's echo.
fn check(reply: &[u8]) -> Result<(), Error> {
    if reply == REQUEST {
        Ok(())
    } else {
        Err(format!("the echo was {reply:?}").into())
    }
}

/// How long a pool may take to fill before the case gives up.
fn fill_deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

async fn smol_hand_held(addr: SocketAddr, requests: usize) -> Result<(), Error> {
    let mut stream = smol::Async::new(connect_std(addr)?)?;
    let mut reply = [0u8; 16];
    for _ in 0..requests {
        stream.write_all(REQUEST).await?;
        stream.read_exact(&mut reply).await?;
        check(&reply)?;
    }
    Ok(())
}

/// The smol client, its driver on an executor that the requests' own `block_on` runs, so
/// that everything happens on one thread as in the hand-held case (and as in the tokio cases,
/// on a current-thread runtime).
async fn smol_pool(addr: SocketAddr, requests: usize) -> Result<(), Error> {
    let (client, driver) = callosum_smol::Client::new(client_config())?;
    let executor = smol::Executor::new();
    executor.spawn(driver).detach();
    client.add_server(addr);
    executor.run(smol_requests(&client, requests)).await
}

async fn smol_requests(client: &callosum_smol::Client, requests: usize) -> Result<(), Error> {
    let deadline = fill_deadline();
    while !filled(&client.status()) {
        if Instant::now() > deadline {
            return Err("the smol pool did not fill".into());
        }
        let _ = smol::future::or(async { Some(client.next_event().await) }, async {
            smol::Timer::after(Duration::from_millis(50)).await;
            None
        })
        .await;
    }
    let mut reply = [0u8; 16];
    for _ in 0..requests {
        let mut conn = client.get().await?;
        conn.write_all(REQUEST).await?;
        conn.read_exact(&mut reply).await?;
        check(&reply)?;
        conn.finish();
    }
    Ok(())
}

async fn tokio_hand_held(addr: SocketAddr, requests: usize) -> Result<(), Error> {
    let stream = connect_std(addr)?;
    stream.set_nonblocking(true)?;
    let mut stream = tokio::net::TcpStream::from_std(stream)?;
    let mut reply = [0u8; 16];
    for _ in 0..requests {
        stream.write_all(REQUEST).await?;
        stream.read_exact(&mut reply).await?;
        check(&reply)?;
    }
    Ok(())
}

async fn tokio_pool(addr: SocketAddr, requests: usize) -> Result<(), Error> {
    let (client, driver) = callosum_tokio::Client::new(client_config())?;
    tokio::spawn(driver);
    client.add_server(addr);
    let deadline = fill_deadline();
    while !filled(&client.status()) {
        if Instant::now() > deadline {
            return Err("the tokio pool did not fill".into());
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), client.next_event()).await;
    }
    let mut reply = [0u8; 16];
    for _ in 0..requests {
        let mut conn = client.get().await?;
        conn.write_all(REQUEST).await?;
        conn.read_exact(&mut reply).await?;
        check(&reply)?;
        conn.finish();
    }
    Ok(())
}

/// Whether the pool holds as many idle connections as it aims at (and at least one).
fn filled(status: &callosum_proto::client::ClientStatus) -> bool {
    status.pool.idle >= status.target.max(1)
}

fn mio_hand_held(addr: SocketAddr, requests: usize) -> Result<(), Error> {
    let stream = connect_std(addr)?;
    stream.set_nonblocking(true)?;
    let mut stream = MioTcpStream::from_std(stream);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut stream, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let mut reply = [0u8; 16];
    for _ in 0..requests {
        stream.write_all(REQUEST)?;
        let mut got = 0;
        while got < reply.len() {
            match stream.read(&mut reply[got..]) {
                Ok(0) => return Err("the echo server closed".into()),
                Ok(n) => got += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    poll.poll(&mut events, None)?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        check(&reply)?;
    }
    Ok(())
}

/// A `callosum_mio::Client` on a loop of its own: every wait is one `poll`, whose events and
/// due timeout the client is given before the request goes on.
struct MioLoop {
    poll: Poll,
    events: Events,
    client: callosum_mio::Client,
}

impl MioLoop {
    fn turn(&mut self) -> Result<(), Error> {
        let timeout = callosum_mio::timeout_until([self.client.poll_timeout()]);
        self.poll.poll(&mut self.events, timeout)?;
        for event in &self.events {
            self.client.handle_event(event);
        }
        self.client.handle_timeout();
        while self.client.poll_event().is_some() {}
        while self.client.poll_lease_ready().is_some() {}
        Ok(())
    }
}

fn mio_pool(addr: SocketAddr, requests: usize) -> Result<(), Error> {
    let mut client = callosum_mio::Client::new(client_config())?;
    let poll = Poll::new()?;
    let tokens = callosum_mio::TokenRange::new(0..client.tokens_needed());
    client.register(poll.registry(), tokens)?;
    client.add_server(addr);
    let mut looped = MioLoop {
        poll,
        events: Events::with_capacity(64),
        client,
    };
    let deadline = fill_deadline();
    while !filled(&looped.client.status()) {
        if Instant::now() > deadline {
            return Err("the mio pool did not fill".into());
        }
        looped.turn()?;
    }
    let mut reply = [0u8; 16];
    for _ in 0..requests {
        let lease = looped.client.checkout().ok_or("no idle mio connection")?;
        let conn = looped.client.conn_mut(&lease).ok_or("a stale lease")?;
        conn.write_all(REQUEST)?;
        let mut got = 0;
        while got < reply.len() {
            let conn = looped.client.conn_mut(&lease).ok_or("a stale lease")?;
            match conn.read(&mut reply[got..]) {
                Ok(0) => return Err("the echo server closed".into()),
                Ok(n) => got += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => looped.turn()?,
                Err(error) => return Err(error.into()),
            }
        }
        check(&reply)?;
        looped.client.checkin(lease);
    }
    Ok(())
}

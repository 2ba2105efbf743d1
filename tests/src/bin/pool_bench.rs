//! The request path of the tokio client against a plain tokio pool and a hand-held
//! connection, in one run.
//!
//! `cargo run --release -p callosum-tests --bin pool-bench -- [--rounds R] [--ops N]`
//!
//! One `callosum_tokio::Server` echoes on 127.0.0.1. It and the callers run on one
//! current-thread runtime, one request at a time (concurrency 1), so that an exchange is
//! the CPU cost of both ends and the loopback, never a wake-up of another core:
//!
//! - `callosum`: a `callosum_tokio::Client`; get+return is `get().await` then `finish()`;
//! - `deadpool`: a `deadpool` managed pool of plain `tokio::net::TcpStream`s to the same
//!   server (each reads its slot line when made); get+return is `get().await` then drop;
//! - `hand-held`: one `TcpStream` kept by the caller, no pool at all.
//!
//! Each pool is measured with 1 idle connection and with 1,000 (the pool holds that many,
//! all idle between requests). The cases: get+return alone, and get + request + return,
//! where the request writes 16 bytes and reads their echo. Every round runs each case for N
//! operations (default 20,000 for get+return, a tenth of that with a request), the order of
//! the cases rotating from round to round, after a warm-up round that is not counted; R
//! rounds (default 5). Prints the median time per operation over the rounds, and the median of
//! the per-round ratios to the case's baseline (deadpool for get+return, the hand-held
//! connection for a request), as a markdown table.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use callosum_proto::Instant;
use callosum_proto::adapter::Clock;
use callosum_proto::client::{ClientCore, Handshake, LeaseEnd, Output};
use callosum_tokio::{Client, ClientConfig, RoverConfig, Server, ServerConfig, ServerConn};
use deadpool::managed::{self, Metrics, RecycleResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::{Builder, Runtime};

/// What the command line asks for.
struct Settings {
    rounds: usize,
    ops: usize,
}

/// The request: 16 bytes, echoed.
const REQUEST: &[u8; 16] = b"0123456789abcde\n";

/// The idle connections of the large pools.
const MANY: usize = 1_000;

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pool-bench: {error}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Settings, Error> {
    let mut settings = Settings {
        rounds: 5,
        ops: 20_000,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--rounds" => settings.rounds = value.parse().map_err(|_| bad())?,
            "--ops" => settings.ops = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag {flag} (--rounds, --ops)").into()),
        }
    }
    if !(1..=100).contains(&settings.rounds) || !(10..=10_000_000).contains(&settings.ops) {
        return Err("--rounds in 1..=100, --ops in 10..=10000000".into());
    }
    Ok(settings)
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// The echo server, as a task of the runtime the callers run on: every exchange stays on one
/// thread, so no wake-up of another core (which costs tens of microseconds, and varies by as
/// much, on a virtual machine) lands in the figures.
fn echo_server() -> Result<SocketAddr, Error> {
    let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?;
    let addr = server.local_addr();
    tokio::spawn(async move {
        while let Ok(conn) = server.accept().await {
            tokio::spawn(echo(conn));
        }
    });
    Ok(addr)
}

async fn echo(mut conn: ServerConn) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = conn.read(&mut buf).await {
        if conn.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A connection to the echo server whose slot line was read.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        line.push(byte[0]);
    }
    Ok(stream)
}

/// Makes plain connections to the echo server for deadpool.
struct Plain(SocketAddr);

impl managed::Manager for Plain {
    type Type = TcpStream;
    type Error = std::io::Error;

    async fn create(&self) -> std::io::Result<TcpStream> {
        connect(self.0).await
    }

    async fn recycle(&self, _: &mut TcpStream, _: &Metrics) -> RecycleResult<std::io::Error> {
        Ok(())
    }
}

type Deadpool = managed::Pool<Plain>;

/// A deadpool of `size` connections, all made and idle.
async fn deadpool(addr: SocketAddr, size: usize) -> Result<Deadpool, Error> {
    let pool = Deadpool::builder(Plain(addr)).max_size(size).build()?;
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(pool.get().await.map_err(|error| error.to_string())?);
    }
    drop(held);
    Ok(pool)
}

/// A callosum client of `size` connections, all held and idle: the original's fixed pool
/// (the default one is sized to demand, two connections at concurrency 1). The rover fills
/// the pool at once (fill mode) and then waits an hour between attempts, so it is quiet
/// while measured.
async fn callosum(addr: SocketAddr, size: usize) -> Result<Client, Error> {
    let mut config = ClientConfig::original();
    config.pool.max_slots = size;
    config.rover = RoverConfig {
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        ..RoverConfig::default()
    };
    let (client, driver) = Client::new(config)?;
    tokio::spawn(driver);
    client.add_server(addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.status().pool.idle < size {
        if std::time::Instant::now() > deadline {
            return Err(format!("the pool holds {:?}, not {size}", client.status().pool).into());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), client.next_event()).await;
    }
    Ok(client)
}

/// A client core holding `size` idle connections (keys 0..size, slots 0..size) of one
/// server, roving no more (a fixed pool, as in [`callosum`]).
fn core(size: usize) -> RefCell<ClientCore<u32>> {
    let mut config = ClientConfig::original();
    config.pool.max_slots = size;
    config.rover.interval = Duration::from_secs(3600);
    config.rover.jitter = Duration::ZERO;
    let mut core = ClientCore::new(config, 1).unwrap();
    let now = Instant::ZERO;
    core.add_server("127.0.0.1:1".parse().unwrap(), now);
    core.handle_timeout(now);
    let mut next = 0;
    while core.status().pool.idle < size {
        let mut attempts = Vec::new();
        loop {
            match core.poll_output() {
                Output::Connect { attempt, .. } => attempts.push(attempt),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        for attempt in attempts {
            core.handle_connected(attempt, now).unwrap();
            let line = format!("{next}\r\n");
            if let Ok(Handshake::Complete(ready)) =
                core.handle_received(attempt, line.as_bytes(), now)
            {
                let _ = core.deliver(ready, next, now);
                next += 1;
            }
        }
    }
    while !matches!(core.poll_output(), Output::Timeout(_)) {}
    RefCell::new(core)
}

async fn request(stream: &mut TcpStream) {
    stream.write_all(REQUEST).await.unwrap();
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, REQUEST);
}

/// What a case does, once per operation.
#[derive(Clone, Copy)]
enum Work<'a> {
    GetReturnDeadpool(&'a Deadpool),
    GetReturnCallosum(&'a Client),
    RequestHandHeld,
    RequestDeadpool(&'a Deadpool),
    RequestCallosum(&'a Client),
    /// The client core alone, on keys instead of sockets: what of the callosum rows is the
    /// core's decisions.
    Core(&'a RefCell<ClientCore<u32>>),
}

/// One row of the table.
struct Case<'a> {
    name: &'static str,
    /// The row whose time per op is this one's baseline.
    baseline: usize,
    /// Operations per round.
    ops: usize,
    work: Work<'a>,
    /// Nanoseconds per operation, per round.
    per_round: Vec<f64>,
}

/// Runs `ops` operations of `work`; nanoseconds per operation.
async fn measure(work: Work<'_>, ops: usize, held: &mut TcpStream) -> f64 {
    let started = std::time::Instant::now();
    match work {
        Work::GetReturnDeadpool(pool) => {
            for _ in 0..ops {
                drop(pool.get().await.unwrap());
            }
        }
        Work::GetReturnCallosum(client) => {
            for _ in 0..ops {
                client.get().await.unwrap().finish();
            }
        }
        Work::RequestHandHeld => {
            for _ in 0..ops {
                request(held).await;
            }
        }
        Work::RequestDeadpool(pool) => {
            for _ in 0..ops {
                request(&mut pool.get().await.unwrap()).await;
            }
        }
        Work::Core(core) => {
            let mut core = core.borrow_mut();
            let clock = Clock::new();
            for _ in 0..ops {
                let lease = core.checkout(clock.now()).unwrap();
                let _ = core.checkin(lease.id, lease.conn, LeaseEnd::Finished, clock.now());
                while !matches!(core.poll_output(), Output::Timeout(_)) {}
            }
        }
        Work::RequestCallosum(client) => {
            for _ in 0..ops {
                let mut conn = client.get().await.unwrap();
                conn.write_all(REQUEST).await.unwrap();
                let mut reply = [0u8; 16];
                conn.read_exact(&mut reply).await.unwrap();
                assert_eq!(&reply, REQUEST);
                conn.finish();
            }
        }
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

fn run(settings: Settings) -> Result<(), Error> {
    let runtime = current_thread();
    runtime.block_on(async {
        let addr = echo_server()?;
        let callosum_1 = callosum(addr, 1).await?;
        let callosum_many = callosum(addr, MANY).await?;
        let deadpool_1 = deadpool(addr, 1).await?;
        let deadpool_many = deadpool(addr, MANY).await?;
        let mut held = connect(addr).await?;
        let (core_1, core_many) = (core(1), core(MANY));
        let (get, with_request) = (settings.ops, (settings.ops / 10).max(1));
        let case = |name, baseline, ops, work| Case {
            name,
            baseline,
            ops,
            work,
            per_round: Vec::new(),
        };
        let mut cases = vec![
            case(
                "get+return / deadpool / 1 idle",
                0,
                get,
                Work::GetReturnDeadpool(&deadpool_1),
            ),
            case(
                "get+return / callosum / 1 idle",
                0,
                get,
                Work::GetReturnCallosum(&callosum_1),
            ),
            case(
                "get+return / deadpool / 1,000 idle",
                2,
                get,
                Work::GetReturnDeadpool(&deadpool_many),
            ),
            case(
                "get+return / callosum / 1,000 idle",
                2,
                get,
                Work::GetReturnCallosum(&callosum_many),
            ),
            case(
                "get+request+return / hand-held",
                4,
                with_request,
                Work::RequestHandHeld,
            ),
            case(
                "get+request+return / deadpool / 1 idle",
                4,
                with_request,
                Work::RequestDeadpool(&deadpool_1),
            ),
            case(
                "get+request+return / callosum / 1 idle",
                4,
                with_request,
                Work::RequestCallosum(&callosum_1),
            ),
            case(
                "get+request+return / callosum / 1,000 idle",
                4,
                with_request,
                Work::RequestCallosum(&callosum_many),
            ),
            case(
                "checkout+checkin / ClientCore alone / 1 idle",
                8,
                get,
                Work::Core(&core_1),
            ),
            case(
                "checkout+checkin / ClientCore alone / 1,000 idle",
                8,
                get,
                Work::Core(&core_many),
            ),
        ];
        println!(
            "{} rounds of {get} get+return and {with_request} requests per case, concurrency 1, {} cores",
            settings.rounds,
            thread::available_parallelism().map_or(0, |n| n.get())
        );
        let count = cases.len();
        for round in 0..=settings.rounds {
            for offset in 0..count {
                let case = &mut cases[(round + offset) % count];
                let per_op = measure(case.work, case.ops, &mut held).await;
                // Round 0 warms up.
                if round > 0 {
                    case.per_round.push(per_op);
                }
            }
        }
        println!("\n| case | per op (median) | min | max | baseline | ratio to it |");
        println!("|---|---:|---:|---:|---|---:|");
        for case in &cases {
            let base = &cases[case.baseline];
            let ratios = case
                .per_round
                .iter()
                .zip(&base.per_round)
                .map(|(time, base)| time / base)
                .collect();
            let times = sorted(case.per_round.clone());
            println!(
                "| {} | {} | {} | {} | {} | {:.2} |",
                case.name,
                micros(median(times.clone())),
                micros(times[0]),
                micros(times[times.len() - 1]),
                base.name,
                median(ratios),
            );
        }
        let stats = callosum_many.status().stats;
        println!(
            "\ncallosum, 1,000 idle: {} checkouts, {} removed, {} connections offered",
            stats.pool.checkouts, stats.pool.removed_broken, stats.pool.offered
        );
        Ok(())
    })
}

/// Nanoseconds as microseconds with two decimals.
fn micros(nanos: f64) -> String {
    format!("{:.2} µs", nanos / 1_000.0)
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// The median of a non-empty list (the mean of the middle two for an even length).
fn median(values: Vec<f64>) -> f64 {
    let values = sorted(values);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

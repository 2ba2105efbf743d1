//! Memory: bytes per idle connection held by each server, and the pool's footprint.
//!
//! `cargo run --release -p callosum-tests --bin memory -- [--connections N]`
//!
//! Each measurement runs in a child process of its own (this program again, with `--serve` or
//! `--footprint`), so that nothing else in the process moves its resident set.
//!
//! - Servers: the child starts one server on 127.0.0.1 (see `callosum_tests::loopback`);
//!   this process reads the child's resident set (`VmRSS` in `/proc/PID/status`), opens N
//!   connections (default 10,000) and reads each one's slot line, and reads it again. The
//!   difference over N is the user-space memory the server spends per idle connection
//!   (socket buffers live in the kernel and are not counted). The ratio is to the server's
//!   bare counterpart, keeping the same connections without slots, measured in the same run:
//!   `bare-hold` (a `mio` loop) for mio, `bare-smol` and `bare-tokio` (a task per connection)
//!   for smol and tokio.
//! - Pool: the child reads its own resident set, fills `1,000,000 / max_slots` pools (of
//!   `u64` connections, ten servers) to `max_slots`, and reads it again; the difference over
//!   the count is one full pool. The ratio is to a plain `Vec<(ServerId, u32, u64)>` of
//!   `max_slots` records (who holds which slot), measured the same way.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::Duration;

use callosum_proto::ServerId;
use callosum_proto::pool::{Offer, Pool, PoolConfig};
use callosum_tests::loopback::{self, Kind};

/// Slots filled in all the pools of one footprint measurement.
const FOOTPRINT_SLOTS: usize = 1_000_000;

/// The pool sizes of the issue.
const POOL_SIZES: [usize; 2] = [100, 10_000];

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args[..] {
        [] => measure(10_000),
        ["--connections", n] => n
            .parse()
            .map_err(|_| Error::from(format!("bad connection count {n}")))
            .and_then(measure),
        ["--serve", kind] => serve(kind),
        ["--footprint", what, max_slots] => footprint(what, max_slots),
        _ => Err("usage: memory [--connections N]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("memory: {error}");
            ExitCode::from(2)
        }
    }
}

fn measure(connections: usize) -> Result<(), Error> {
    if !(1..=15_000).contains(&connections) {
        return Err("--connections must be in 1..=15000 (one descriptor each here)".into());
    }
    println!("bytes per idle connection, over {connections} connections\n");
    println!(
        "| server | RSS with none (KiB) | RSS with {connections} (KiB) | bytes per connection | bare counterpart | ratio to it |"
    );
    println!("|---|---:|---:|---:|---|---:|");
    let mut per_conn = Vec::new();
    // Each bare server before the adapter compared with it.
    let kinds = [
        Kind::BareHold,
        Kind::BareSmol,
        Kind::BareTokio,
        Kind::Mio,
        Kind::Smol,
        Kind::Tokio,
    ];
    for kind in kinds {
        let (none, held) = server_rss(kind, connections)?;
        let bytes = held.saturating_sub(none) as f64 / connections as f64;
        per_conn.push((kind, bytes));
        let base = per_conn
            .iter()
            .find(|&&(k, _)| k == kind.bare())
            .map_or(bytes, |&(_, base)| base);
        println!(
            "| {} | {} | {} | {bytes:.0} | {} | {:.2} |",
            kind.name(),
            none / 1024,
            held / 1024,
            kind.bare().name(),
            bytes / base
        );
    }
    println!("\npool footprint, full, connections of type u64\n");
    println!("| max_slots | pool bytes | bytes per slot | plain Vec bytes | ratio to plain Vec |");
    println!("|---:|---:|---:|---:|---:|");
    for max_slots in POOL_SIZES {
        let pool = child_footprint("pool", max_slots)?;
        let plain = child_footprint("records", max_slots)?;
        println!(
            "| {max_slots} | {pool:.0} | {:.1} | {plain:.0} | {:.2} |",
            pool / max_slots as f64,
            pool / plain
        );
    }
    Ok(())
}

/// The resident set of a child serving `kind`, with no connection and with `connections`.
fn server_rss(kind: Kind, connections: usize) -> Result<(u64, u64), Error> {
    let mut child = spawn_self(&["--serve", kind.name()])?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let addr: SocketAddr = read_line(&mut stdout)?.parse()?;
    let none = settled_rss(child.id())?;
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = TcpStream::connect(addr)?;
        let mut line = [0u8; 16];
        let mut len = 0;
        while !line[..len].ends_with(b"\r\n") {
            match stream.read(&mut line[len..])? {
                0 => return Err(format!("{}: closed before its line", kind.name()).into()),
                n => len += n,
            }
        }
        streams.push(stream);
    }
    let held = settled_rss(child.id())?;
    for stream in &streams {
        // A reset: no TIME_WAIT left for the next server's connections.
        socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))?;
    }
    drop(streams);
    finish(child)?;
    Ok((none, held))
}

/// One full structure's bytes, measured by a child.
fn child_footprint(what: &str, max_slots: usize) -> Result<f64, Error> {
    let mut child = spawn_self(&["--footprint", what, &max_slots.to_string()])?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let bytes = read_line(&mut stdout)?.parse()?;
    finish(child)?;
    Ok(bytes)
}

fn spawn_self(args: &[&str]) -> io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
}

fn read_line(stdout: &mut BufReader<ChildStdout>) -> Result<String, Error> {
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Closes the child's stdin, which ends it, and waits for it.
fn finish(mut child: Child) -> Result<(), Error> {
    drop(child.stdin.take());
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    Ok(())
}

/// `--serve KIND`: prints the server's address, then serves until stdin closes.
fn serve(kind: &str) -> Result<(), Error> {
    let kind = Kind::parse(kind).ok_or(format!("unknown server {kind}"))?;
    let addr = loopback::spawn(kind)?;
    println!("{addr}");
    io::stdout().flush()?;
    io::copy(&mut io::stdin(), &mut io::sink())?;
    Ok(())
}

/// `--footprint pool|records MAX`: prints the bytes of one full structure of `MAX` slots.
fn footprint(what: &str, max_slots: &str) -> Result<(), Error> {
    let max_slots: usize = max_slots.parse()?;
    let count = FOOTPRINT_SLOTS / max_slots;
    let before = rss(std::process::id())?;
    let bytes = match what {
        "pool" => {
            let pools: Vec<Pool<u64>> = (0..count).map(|_| full_pool(max_slots)).collect();
            let after = rss(std::process::id())?;
            drop(pools);
            after
        }
        "records" => {
            let records: Vec<Vec<(ServerId, u32, u64)>> = (0..count)
                .map(|_| {
                    let mut held = Vec::with_capacity(max_slots);
                    held.extend((0..max_slots as u32).map(|i| (ServerId(i % 10), i / 10, 0)));
                    held
                })
                .collect();
            let after = rss(std::process::id())?;
            drop(records);
            after
        }
        _ => return Err(format!("unknown structure {what}").into()),
    };
    println!("{}", bytes.saturating_sub(before) as f64 / count as f64);
    Ok(())
}

fn full_pool(max_slots: usize) -> Pool<u64> {
    let mut pool = Pool::new(PoolConfig { max_slots }, 1).expect("valid size");
    for index in 0..max_slots as u32 {
        let offer = pool.offer(ServerId(index % 10), index / 10, u64::from(index));
        assert!(matches!(offer, Offer::Kept(_)), "the pool has room");
    }
    pool
}

/// The resident set of `pid` once it stops moving: two equal readings 50 ms apart.
fn settled_rss(pid: u32) -> io::Result<u64> {
    let mut last = rss(pid)?;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let now = rss(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// `VmRSS` of `pid`, in bytes.
fn rss(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS"))
}

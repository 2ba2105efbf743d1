//! Loopback handshake rate of the adapters' servers against bare servers, in one run.
//!
//! `cargo run --release -p callosum-tests --bin handshake-bench -- [--seconds S] [--rounds R] [--clients C]`
//!
//! Starts the smol, mio and tokio servers and four bare servers on 127.0.0.1 (see
//! `callosum_tests::loopback::Kind`), each on a thread of its own. Then, for R rounds
//! (default 5), it points C client threads (default 2) at each server in turn for S seconds
//! (default 2), each adapter just before or after its bare counterpart; the order rotates
//! from round to round.
//! A client connects, reads the slot line and closes, as fast as it can. It closes with
//! `SO_LINGER` 0, so the close is a reset and no socket is left in `TIME_WAIT` to use up the
//! ephemeral ports. A short warm-up round comes first and is not counted.
//!
//! Prints, for each server, the median handshakes per second over the rounds and the median
//! of its per-round ratios, each against a server measured in the same round: to
//! `bare-close` (a `mio` loop that accepts, writes and closes), and to its bare counterpart,
//! which does the same socket work without slots on the same runtime (`bare-smol` for smol,
//! `bare-hold` for mio, `bare-tokio` for tokio: each keeps the connection until the client
//! closes it).
//!
//! Then the same per server CPU time: the CPU time the server side spent per handshake (every
//! thread of this process but the clients', from Linux's `/proc/self/task/*/sched`), and the
//! median per-round ratio of handshakes per CPU second to the bare counterpart's. On a machine
//! that other work shares, the rate moves with what the scheduler gives the server, the CPU
//! time per handshake much less.

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use callosum_tests::loopback::{self, Kind};

/// What the command line asks for.
struct Settings {
    seconds: f64,
    rounds: usize,
    clients: usize,
}

/// What the clients of one server did in one round.
#[derive(Default)]
struct Tally {
    handshakes: u64,
    errors: u64,
}

/// The name of the client threads, whose CPU time is not the servers'.
const CLIENT: &str = "client";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handshake-bench: {error}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut settings = Settings {
        seconds: 2.0,
        rounds: 5,
        clients: 2,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--seconds" => settings.seconds = value.parse().map_err(|_| bad())?,
            "--rounds" => settings.rounds = value.parse().map_err(|_| bad())?,
            "--clients" => settings.clients = value.parse().map_err(|_| bad())?,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--seconds, --rounds, --clients)"
                ));
            }
        }
    }
    let in_range = settings.seconds > 0.0 && settings.seconds <= 60.0;
    if !in_range || !(1..=100).contains(&settings.rounds) || !(1..=64).contains(&settings.clients) {
        return Err("--seconds in (0, 60], --rounds in 1..=100, --clients in 1..=64".into());
    }
    Ok(settings)
}

fn run(settings: Settings) -> Result<(), String> {
    // Each adapter beside its bare counterpart, so that the two are measured a round's
    // length apart: on a shared machine the rate drifts by more than the difference between
    // them within the time it takes to go round all the servers.
    let order = [
        Kind::Smol,
        Kind::BareSmol,
        Kind::Mio,
        Kind::BareHold,
        Kind::Tokio,
        Kind::BareTokio,
        Kind::BareClose,
    ];
    let mut servers = Vec::new();
    for kind in order {
        let addr = loopback::spawn(kind).map_err(|e| format!("{}: {e}", kind.name()))?;
        servers.push((kind, addr));
    }
    let round = Duration::from_secs_f64(settings.seconds);
    println!(
        "{} rounds of {:?} per server, {} client threads, {} cores",
        settings.rounds,
        round,
        settings.clients,
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    for &(_, addr) in &servers {
        load(
            addr,
            settings.clients,
            round.min(Duration::from_millis(500)),
        );
    }
    // rates[server][round], handshakes per second; cpu[server][round], the servers' CPU
    // seconds per handshake (empty where the kernel does not say).
    let mut rates = vec![Vec::new(); servers.len()];
    let mut cpu = vec![Vec::new(); servers.len()];
    let mut errors = vec![0; servers.len()];
    for number in 0..settings.rounds {
        for offset in 0..servers.len() {
            let which = (number + offset) % servers.len();
            let before = servers_cpu();
            let tally = load(servers[which].1, settings.clients, round);
            let after = servers_cpu();
            rates[which].push(tally.handshakes as f64 / round.as_secs_f64());
            if let (Some(before), Some(after)) = (before, after) {
                cpu[which].push((after - before) / tally.handshakes.max(1) as f64);
            }
            errors[which] += tally.errors;
        }
    }
    let position = |kind: Kind| {
        servers
            .iter()
            .position(|&(k, _)| k == kind)
            .expect("every kind runs")
    };
    println!(
        "\n| server | handshakes/s (median) | min | max | ratio to bare-close | bare counterpart | ratio to it | errors |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|");
    for (index, &(kind, _)) in servers.iter().enumerate() {
        let ratio_to = |base: usize| median(per_round_ratios(&rates[index], &rates[base]));
        let sorted = sorted(rates[index].clone());
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {:.2} | {} |",
            kind.name(),
            median(sorted.clone()),
            sorted[0],
            sorted[sorted.len() - 1],
            ratio_to(position(Kind::BareClose)),
            kind.bare().name(),
            ratio_to(position(kind.bare())),
            errors[index],
        );
    }
    if cpu.iter().any(Vec::is_empty) {
        println!("\n(no CPU times: /proc/self/task/*/sched is not there)");
        return Ok(());
    }
    println!(
        "\n| server | server CPU per handshake (median) | bare counterpart | its CPU per handshake | handshakes per CPU second, ratio to it |"
    );
    println!("|---|---:|---|---:|---:|");
    for (index, &(kind, _)) in servers.iter().enumerate() {
        let base = position(kind.bare());
        // Handshakes per CPU second over the bare one's: its CPU per handshake over ours.
        let ratio = median(per_round_ratios(&cpu[base], &cpu[index]));
        println!(
            "| {} | {:.2} us | {} | {:.2} us | {ratio:.2} |",
            kind.name(),
            median(cpu[index].clone()) * 1e6,
            kind.bare().name(),
            median(cpu[base].clone()) * 1e6,
        );
    }
    Ok(())
}

/// `ours[round] / theirs[round]`, round by round.
fn per_round_ratios(ours: &[f64], theirs: &[f64]) -> Vec<f64> {
    ours.iter().zip(theirs).map(|(a, b)| a / b).collect()
}

/// The CPU time, in seconds, of every thread of this process but the clients': the servers'
/// (one under load, the others idle), with the kernel's work for their system calls. From
/// `se.sum_exec_runtime` (milliseconds) in `/proc/self/task/*/sched`; `None` if that is not
/// there (not Linux, or a kernel without scheduler debugging).
fn servers_cpu() -> Option<f64> {
    let mut total_ms = 0.0;
    for task in fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread that ended meanwhile (a client of the last round) is passed over.
        let Ok(comm) = fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if comm.trim_end() == CLIENT {
            continue;
        }
        let Ok(sched) = fs::read_to_string(task.path().join("sched")) else {
            continue;
        };
        let runtime = sched
            .lines()
            .find_map(|line| line.strip_prefix("se.sum_exec_runtime"))
            .and_then(|rest| {
                rest.trim_start_matches([' ', ':'])
                    .trim()
                    .parse::<f64>()
                    .ok()
            })?;
        total_ms += runtime;
    }
    Some(total_ms / 1e3)
}

/// Runs `clients` threads of handshakes against `addr` for `span`.
fn load(addr: SocketAddr, clients: usize, span: Duration) -> Tally {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                thread::Builder::new()
                    .name(CLIENT.to_owned())
                    .spawn_scoped(scope, || client(addr, &stop))
                    .expect("a client thread")
            })
            .collect();
        thread::sleep(span);
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|worker| worker.join().expect("client thread"))
            .fold(Tally::default(), |sum, one| Tally {
                handshakes: sum.handshakes + one.handshakes,
                errors: sum.errors + one.errors,
            })
    })
}

/// Handshakes against `addr` until `stop`.
fn client(addr: SocketAddr, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        match handshake(addr) {
            Ok(()) => tally.handshakes += 1,
            Err(_) => tally.errors += 1,
        }
    }
    tally
}

/// Connects, reads one slot line, and resets the connection.
fn handshake(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    // Closing with a reset leaves no TIME_WAIT socket behind on either side.
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    let mut line = [0u8; 16];
    let mut len = 0;
    while !line[..len].ends_with(b"\r\n") {
        let Some(rest) = line.get_mut(len..).filter(|rest| !rest.is_empty()) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        };
        match stream.read(rest)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => len += n,
        }
    }
    Ok(())
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

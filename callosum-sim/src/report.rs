//! From runs to what a reader sees: the table and the chart.

use std::fmt::Write as _;

use crate::scenario::{Params, Scenario, Size, Strategy};
use crate::sim::{RunResult, SAMPLE_US, run};

/// The settle window: the odd server's load is averaged over this many samples (1 s).
const WINDOW: usize = (1_000_000 / SAMPLE_US) as usize;
/// Settled means within this fraction of the server's final level...
const SETTLE_TOLERANCE: f64 = 0.25;
/// ...for this many consecutive windows.
const SETTLE_WINDOWS: usize = 3;

/// Every strategy run on one scenario with one seed.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed every run used.
    pub seed: u64,
    /// The scenario's parameters.
    pub params: Params,
    /// One row per strategy, in the order of [`Strategy::ALL`].
    pub rows: Vec<Row>,
    /// The runs behind the rows, for the chart.
    pub runs: Vec<RunResult>,
}

/// The summary of one strategy's run.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The strategy.
    pub strategy: Strategy,
    /// Latency percentiles of successful requests, in milliseconds: p50, p99, p99.9.
    pub latency_ms: [f64; 3],
    /// Requests that got an error.
    pub errors: u64,
    /// Outstanding requests per server, averaged over servers and time after the warm-up.
    pub mean_outstanding: f64,
    /// The highest time-averaged outstanding requests of any one server.
    pub max_outstanding: f64,
    /// The odd server's share of the requests sent.
    pub odd_share: Option<f64>,
    /// Callosum only: the odd server's share of the live connections at the end of traffic.
    pub odd_connection_share: Option<f64>,
    /// Connections opened per virtual second, from the end of the warm-up to the end of the
    /// arrivals.
    pub connections_per_second: f64,
    /// Seconds after the restart or addition until the load settled; `Some(None)`: never.
    pub settle_seconds: Option<Option<f64>>,
}

/// Runs every strategy on `scenario` with the same workload and seed.
///
/// ```
/// use callosum_sim::{Scenario, Size, simulate};
///
/// let report = simulate(Scenario::SlowServer, Size { servers: 4, clients: 8, seconds: 2, pool: 4 }, 1);
/// assert_eq!(report.rows.len(), 6);
/// assert!(report.table().contains("two-choices"));
/// ```
pub fn simulate(scenario: Scenario, size: Size, seed: u64) -> Report {
    let params = scenario.params(size);
    let runs: Vec<RunResult> = Strategy::ALL
        .iter()
        .map(|&strategy| run(&params, strategy, seed))
        .collect();
    let rows = runs
        .iter()
        .map(|result| summarise(&params, result))
        .collect();
    Report {
        scenario,
        seed,
        params,
        rows,
        runs,
    }
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = (sorted_us.len() as f64 * q).ceil() as usize;
    f64::from(sorted_us[rank.clamp(1, sorted_us.len()) - 1]) / 1_000.0
}

/// The samples (rows of per-server load) whose window lies after the warm-up and within
/// the traffic.
fn measured<'a>(params: &'a Params, result: &'a RunResult) -> impl Iterator<Item = &'a Vec<f32>> {
    result
        .samples
        .iter()
        .enumerate()
        .filter_map(move |(k, row)| {
            let end = (k as u64 + 1) * SAMPLE_US;
            (end > params.warmup_us && end <= params.duration_us).then_some(row)
        })
}

fn summarise(params: &Params, result: &RunResult) -> Row {
    let mut per_server = vec![0.0f64; params.servers];
    let mut windows = 0usize;
    for row in measured(params, result) {
        windows += 1;
        for (total, &load) in per_server.iter_mut().zip(row) {
            *total += f64::from(load);
        }
    }
    let windows = windows.max(1) as f64;
    let mean_outstanding = per_server.iter().sum::<f64>() / windows / params.servers as f64;
    let max_outstanding = per_server.iter().fold(0.0f64, |a, &b| a.max(b)) / windows;
    let sent: u64 = result.sent_per_server.iter().sum();
    let odd_share = params
        .odd_server
        .map(|odd| result.sent_per_server[odd] as f64 / sent.max(1) as f64);
    let odd_connection_share = params.odd_server.and_then(|odd| {
        let live = result.live_connections.as_ref()?;
        let total: u32 = live.iter().sum();
        Some(f64::from(live[odd]) / f64::from(total.max(1)))
    });
    Row {
        strategy: result.strategy,
        latency_ms: [0.5, 0.99, 0.999].map(|q| percentile_ms(&result.latencies_us, q)),
        errors: result.errors,
        mean_outstanding,
        max_outstanding,
        odd_share,
        odd_connection_share,
        connections_per_second: result.connections_opened as f64 * 1e6
            / (params.duration_us - params.warmup_us) as f64,
        settle_seconds: params
            .settle_from_us()
            .map(|from| settle_seconds(params, result, from)),
    }
}

/// The mean load of `server` over the last [`WINDOW`] samples ending at sample `k`.
fn window_mean(samples: &[Vec<f32>], k: usize, server: usize) -> f64 {
    let rows = &samples[k + 1 - WINDOW..=k];
    rows.iter().map(|row| f64::from(row[server])).sum::<f64>() / WINDOW as f64
}

/// Seconds from `from_us` (a restart or an addition) to the end of the first 1 s window,
/// begun at or after it, in which the odd server's average load is within
/// [`SETTLE_TOLERANCE`] of its final level, and stays so for [`SETTLE_WINDOWS`] consecutive
/// windows. The final level is its average over the last quarter of the traffic. `None`:
/// never within the run.
fn settle_seconds(params: &Params, result: &RunResult, from_us: u64) -> Option<f64> {
    let odd = params.odd_server?;
    let samples = &result.samples;
    let last_quarter = (params.duration_us * 3 / 4 / SAMPLE_US) as usize;
    let tail = samples.get(last_quarter..)?;
    if tail.is_empty() {
        return None;
    }
    let target = tail.iter().map(|row| f64::from(row[odd])).sum::<f64>() / tail.len() as f64;
    let within =
        |k: usize| (window_mean(samples, k, odd) - target).abs() <= SETTLE_TOLERANCE * target;
    let first = (from_us / SAMPLE_US) as usize + WINDOW - 1;
    let span = (SETTLE_WINDOWS - 1) * WINDOW;
    (first..samples.len().saturating_sub(span))
        .find(|&k| (0..SETTLE_WINDOWS).all(|w| within(k + w * WINDOW)))
        .map(|k| ((k as u64 + 1) * SAMPLE_US - from_us) as f64 / 1e6)
}

/// The footnote of the strategies marked `*`.
const GLOBAL_NOTE: &str = "*: global-information bounds, not clients: two-choices reads the true \
outstanding count of every server (from all clients), jsq also skips servers that are down";

/// The strategy's name in a table, marked `*` if it is a global-information bound.
fn label(strategy: Strategy) -> String {
    if strategy.global_information() {
        format!("{strategy}*")
    } else {
        strategy.name().to_owned()
    }
}

fn cell(value: Option<f64>, scale: f64, decimals: usize) -> String {
    match value {
        Some(v) => format!("{:.*}", decimals, v * scale),
        None => "-".to_owned(),
    }
}

impl Report {
    /// The table: a header naming the scenario and its parameters, a row per strategy, and
    /// notes on what the columns mean. The same seed always gives the same text.
    pub fn table(&self) -> String {
        let p = &self.params;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {}: {} servers x {} workers, {} clients (pool {}), {} s, load {:.0}%, \
             exponential service mean {} ms, {} ms per hop, seed {}",
            self.scenario,
            p.servers,
            p.workers,
            p.clients,
            p.pool_size,
            p.duration_us / 1_000_000,
            p.load * 100.0,
            p.mean_service_us as f64 / 1e3,
            p.one_way_us as f64 / 1e3,
            self.seed
        );
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
            "strategy",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "out mean",
            "out max",
            "odd share",
            "conns/s",
            "settle s"
        );
        for row in &self.rows {
            let [p50, p99, p999] = row.latency_ms;
            let settle = match row.settle_seconds {
                None => "-".to_owned(),
                Some(None) => "never".to_owned(),
                Some(Some(s)) => format!("{s:.2}"),
            };
            let _ = writeln!(
                out,
                "{:<18} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>8.2} {:>8.2} {:>8}% {:>9.0} {:>8}",
                label(row.strategy),
                p50,
                p99,
                p999,
                row.errors,
                row.mean_outstanding,
                row.max_outstanding,
                cell(row.odd_share, 100.0, 2),
                row.connections_per_second,
                settle
            );
        }
        let _ = writeln!(out, "{GLOBAL_NOTE}");
        let _ = writeln!(
            out,
            "latency: successful requests sent after the {} s warm-up, from arrival at the \
             client (waiting for a connection included) to the response",
            p.warmup_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "out mean / out max: requests sent and not yet answered, per server, averaged over \
             time: the mean over servers and the highest server"
        );
        if let (Some(note), Some(odd)) = (self.scenario.odd_server_note(), p.odd_server) {
            let _ = writeln!(
                out,
                "odd share: share of requests sent to server {odd}, {note} (1/{} = {:.2}%)",
                p.servers,
                100.0 / p.servers as f64
            );
            if let Some(share) = self.rows.iter().find_map(|row| row.odd_connection_share) {
                let _ = writeln!(
                    out,
                    "callosum: server {odd} held {:.2}% of the pooled connections when traffic \
                     stopped",
                    share * 100.0
                );
            }
        }
        let _ = writeln!(
            out,
            "conns/s: connections opened per second from the end of the warm-up to the end of \
             the arrivals (not the drain); callosum counts the rover's, the others are \
             modelled with one connection per request"
        );
        if p.settle_from_us().is_some() {
            let _ = writeln!(
                out,
                "settle s: from the {} to the end of the first 1 s window whose average load on \
                 server {} is within {:.0}% of its final level (its average over the last quarter \
                 of the run), and stays so for {} windows",
                if p.crash.is_some() {
                    "restart"
                } else {
                    "addition"
                },
                p.odd_server.unwrap_or(0),
                SETTLE_TOLERANCE * 100.0,
                SETTLE_WINDOWS
            );
        }
        out
    }
}

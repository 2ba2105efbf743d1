//! From the runs of one seed to what a reader sees: a row of figures per strategy, the table
//! and (in `svg.rs`) the chart.

use crate::scenario::{Params, Scenario, Size, Strategy};
use crate::seeds::simulate_seeds;
use crate::sim::{RunResult, SAMPLE_US};
use crate::table;

/// The settle window: the odd server's load is averaged over this many samples (1 s).
const WINDOW: usize = (1_000_000 / SAMPLE_US) as usize;
/// Settled means within this fraction of the server's final level...
pub(crate) const SETTLE_TOLERANCE: f64 = 0.25;
/// ...for this many consecutive windows.
pub(crate) const SETTLE_WINDOWS: usize = 3;

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
    /// The p99 of the successful requests sent to any server but the odd one, in
    /// milliseconds: the odd server's queue, unbounded under some strategies, cannot set it.
    pub healthy_p99_ms: f64,
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
    /// Callosum only: clients whose pool sits entirely on one server at the end of traffic,
    /// among those pooling at least 2 connections (a pool of one always does).
    pub pools_on_one_server: Option<u64>,
    /// Callosum only: the largest deviation of a server's live connections from their mean,
    /// as a fraction of the mean, each server's averaged over the last 10 s of the traffic,
    /// over the servers in the cluster, up and answering at its end.
    pub connection_spread: Option<f64>,
}

/// Runs every strategy on `scenario` with the same workload and seed (on as many threads as
/// the machine has cores; the result does not depend on them).
///
/// ```
/// use callosum_sim::{Scenario, Size, simulate};
///
/// let report = simulate(Scenario::SlowServer, Size { servers: 4, clients: 8, seconds: 2, pool: 4 }, 1);
/// assert_eq!(report.rows.len(), 6);
/// assert!(report.table().contains("two-choices"));
/// ```
pub fn simulate(scenario: Scenario, size: Size, seed: u64) -> Report {
    simulate_seeds(scenario, size, [seed]).first
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

/// Clients whose pool sits entirely on one server, among those pooling at least 2
/// connections; `pooled[client]` lists `(server, slot)`.
fn pools_on_one_server(pooled: &[Vec<(usize, u32)>]) -> u64 {
    let captured = pooled
        .iter()
        .filter(|pool| pool.len() >= 2 && pool.iter().all(|&(server, _)| server == pool[0].0));
    captured.count() as u64
}

/// The largest |live - mean| / mean over the servers marked serving; 0 if none is.
fn connection_spread(live: &[f64], serving: &[bool]) -> f64 {
    let counts: Vec<f64> = live
        .iter()
        .zip(serving)
        .filter(|&(_, &serving)| serving)
        .map(|(&live, _)| live)
        .collect();
    let mean = counts.iter().sum::<f64>() / counts.len().max(1) as f64;
    if mean == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .map(|&count| (count - mean).abs() / mean)
        .fold(0.0, f64::max)
}

/// The row of one run.
pub(crate) fn summarise(params: &Params, result: &RunResult) -> Row {
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
        healthy_p99_ms: percentile_ms(&result.healthy_latencies_us, 0.99),
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
        pools_on_one_server: result.pooled.as_deref().map(pools_on_one_server),
        connection_spread: result
            .mean_live_connections
            .as_deref()
            .zip(result.serving_at_end.as_deref())
            .map(|(live, serving)| connection_spread(live, serving)),
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

impl Report {
    /// The table: a header naming the scenario and its parameters, a row per strategy, and
    /// notes on what the columns mean. The same seed always gives the same text.
    pub fn table(&self) -> String {
        let mut out = table::header(self.scenario, &self.params, &format!("seed {}", self.seed));
        out.push_str(&table::grid(&Strategy::ALL, |strategy, figure| {
            let row = self.row(strategy);
            row.figure(figure)
                .map_or_else(|| "-".to_owned(), |value| figure.format(value))
        }));
        out.push_str(&table::notes(self.scenario, &self.params));
        out
    }

    /// The row of `strategy`.
    pub fn row(&self, strategy: Strategy) -> &Row {
        self.rows
            .iter()
            .find(|row| row.strategy == strategy)
            .expect("a row per strategy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_on_one_server_counts_from_two_connections() {
        let pooled = vec![
            vec![(0, 1), (0, 2)],
            vec![(0, 3), (1, 1)],
            vec![(2, 1)],
            vec![],
            vec![(3, 1), (3, 2), (3, 3)],
        ];
        assert_eq!(pools_on_one_server(&pooled), 2);
    }

    #[test]
    fn the_spread_counts_only_the_servers_serving() {
        // Mean 10 over the three serving servers; the crashed one's 0 is left out.
        let spread = connection_spread(&[9.0, 10.0, 11.0, 0.0], &[true, true, true, false]);
        assert!((spread - 0.1).abs() < 1e-12, "{spread}");
        assert_eq!(connection_spread(&[0.0, 0.0], &[true, true]), 0.0);
    }
}

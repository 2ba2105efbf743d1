//! The text tables: the header line naming the scenario, a row of cells per strategy in
//! columns as wide as their widest cell, and the notes on what the columns mean.

use std::fmt::Write as _;

use crate::figure::Figure;
use crate::report::{SETTLE_TOLERANCE, SETTLE_WINDOWS};
use crate::scenario::{Params, Scenario, Strategy};
use crate::sim::SPREAD_WINDOW_US;

/// The line naming the scenario, its parameters and the seeds (`seeds`: "seed 1" or
/// "seeds 1-5").
pub(crate) fn header(scenario: Scenario, params: &Params, seeds: &str) -> String {
    format!(
        "scenario {scenario}: {} servers x {} workers, {} clients (pool {}), {} s, load {:.0}%, \
         exponential service mean {} ms, {} ms per hop, {seeds}\n",
        params.servers,
        params.workers,
        params.clients,
        params.pool_size,
        params.duration_us / 1_000_000,
        params.load * 100.0,
        params.mean_service_us as f64 / 1e3,
        params.one_way_us as f64 / 1e3,
    )
}

/// The strategy's name in a table, marked `*` if it is a global-information bound.
fn label(strategy: Strategy) -> String {
    if strategy.global_information() {
        format!("{strategy}*")
    } else {
        strategy.name().to_owned()
    }
}

/// A row per strategy under the columns of [`Figure::ALL`]; `cell` writes one figure of one
/// strategy (`-` where it does not apply). Columns are as wide as their widest cell.
pub(crate) fn grid(
    strategies: &[Strategy],
    mut cell: impl FnMut(Strategy, Figure) -> String,
) -> String {
    let mut rows = vec![
        std::iter::once("strategy".to_owned())
            .chain(Figure::ALL.iter().map(|f| f.header().to_owned()))
            .collect::<Vec<_>>(),
    ];
    for &strategy in strategies {
        let cells = Figure::ALL.iter().map(|&figure| cell(strategy, figure));
        rows.push(std::iter::once(label(strategy)).chain(cells).collect());
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = format!("{:<1$}", row[0], widths[0]);
        for (text, &width) in row.iter().zip(&widths).skip(1) {
            let _ = write!(line, "  {text:>width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What the columns mean, for the scenario's parameters.
pub(crate) fn notes(scenario: Scenario, params: &Params) -> String {
    let mut out = String::new();
    let mut note = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    note(
        "*: global-information bounds, not clients: two-choices reads the true outstanding \
         count of every server (from all clients), jsq also skips servers that are down"
            .to_owned(),
    );
    note(format!(
        "latency: successful requests sent after the {} s warm-up, from arrival at the client \
         (waiting for a connection included) to the response",
        params.warmup_us as f64 / 1e6
    ));
    let odd = scenario.odd_server_note().zip(params.odd_server);
    note(match odd {
        Some((_, odd)) => {
            format!("p99 healthy: the p99 of the requests sent to every server but server {odd}")
        }
        None => "p99 healthy: the same as p99 here (no server is odd)".to_owned(),
    });
    note(
        "out mean / out max: requests sent and not yet answered, per server, averaged over \
         time: the mean over servers and the highest server"
            .to_owned(),
    );
    if let Some((what, odd)) = odd {
        note(format!(
            "odd share: share of requests sent to server {odd}, {what} (1/{} = {:.2}%); \
             odd conns (callosum): its share of the live connections when traffic stopped",
            params.servers,
            100.0 / params.servers as f64
        ));
    }
    note(
        "conns/s: connections opened per second from the end of the warm-up to the end of the \
         arrivals (not the drain); callosum counts the rover's, the others are modelled with \
         one connection per request"
            .to_owned(),
    );
    if params.settle_from_us().is_some() {
        note(format!(
            "settle s: from the {} to the end of the first 1 s window whose average load on \
             server {} is within {:.0}% of its final level (its average over the last quarter \
             of the run), and stays so for {} windows",
            if params.crash.is_some() {
                "restart"
            } else {
                "addition"
            },
            params.odd_server.unwrap_or(0),
            SETTLE_TOLERANCE * 100.0,
            SETTLE_WINDOWS
        ));
    }
    note(format!(
        "1-server pools (callosum): clients whose pool sits entirely on one server when traffic \
         stopped, among those pooling at least 2 connections; conn spread (callosum): the \
         largest |live connections of a server - mean| / mean, each server's averaged over the \
         last {} s of traffic, over the servers in the cluster, up and answering",
        SPREAD_WINDOW_US / 1_000_000
    ));
    out
}

//! The figures a run is summarised by: what each is, its column header, how it is written.
//!
//! One list serves the one-seed table, the multi-seed tables and the programmatic access to
//! medians, so a figure cannot mean one thing in a table and another in a test.

use crate::report::Row;

/// One figure of a [`Row`], a column of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Figure {
    /// Median latency of the successful requests, ms.
    P50,
    /// 99th percentile latency, ms.
    P99,
    /// 99th percentile latency of the requests sent to any server but the odd one, ms.
    HealthyP99,
    /// 99.9th percentile latency, ms.
    P999,
    /// Requests that got an error.
    Errors,
    /// Outstanding requests per server, the mean over servers and time.
    OutMean,
    /// The highest time-averaged outstanding requests of any one server.
    OutMax,
    /// The odd server's share of the requests sent (a fraction).
    OddShare,
    /// Callosum only: the odd server's share of the live connections at the end of traffic.
    OddConnections,
    /// Connections opened per second over the traffic window.
    ConnsPerSecond,
    /// Seconds after the restart or the addition until the load settled (infinite: never).
    Settle,
    /// Callosum only: clients whose pool of at least 2 connections sits on one server.
    OneServerPools,
    /// Callosum only: the largest deviation of a server's live connections from the mean,
    /// as a fraction of the mean.
    ConnectionSpread,
}

impl Figure {
    /// Every figure, in the order of the tables' columns.
    pub const ALL: [Figure; 13] = [
        Figure::P50,
        Figure::P99,
        Figure::HealthyP99,
        Figure::P999,
        Figure::Errors,
        Figure::OutMean,
        Figure::OutMax,
        Figure::OddShare,
        Figure::OddConnections,
        Figure::ConnsPerSecond,
        Figure::Settle,
        Figure::OneServerPools,
        Figure::ConnectionSpread,
    ];

    /// The column header.
    pub fn header(self) -> &'static str {
        match self {
            Figure::P50 => "p50 ms",
            Figure::P99 => "p99 ms",
            Figure::HealthyP99 => "p99 healthy",
            Figure::P999 => "p99.9 ms",
            Figure::Errors => "errors",
            Figure::OutMean => "out mean",
            Figure::OutMax => "out max",
            Figure::OddShare => "odd share",
            Figure::OddConnections => "odd conns",
            Figure::ConnsPerSecond => "conns/s",
            Figure::Settle => "settle s",
            Figure::OneServerPools => "1-server pools",
            Figure::ConnectionSpread => "conn spread",
        }
    }

    /// `value` as a table cell writes it.
    ///
    /// ```
    /// use callosum_sim::Figure;
    ///
    /// assert_eq!(Figure::P99.format(49.137), "49.14");
    /// assert_eq!(Figure::OddShare.format(0.0028), "0.28%");
    /// assert_eq!(Figure::Settle.format(f64::INFINITY), "never");
    /// ```
    pub fn format(self, value: f64) -> String {
        if value == f64::INFINITY {
            return "never".to_owned();
        }
        match self {
            Figure::OddShare | Figure::OddConnections => format!("{:.2}%", value * 100.0),
            Figure::ConnectionSpread => format!("{:.1}%", value * 100.0),
            Figure::Errors | Figure::ConnsPerSecond | Figure::OneServerPools => {
                format!("{value:.0}")
            }
            _ => format!("{value:.2}"),
        }
    }
}

impl Row {
    /// The value of `figure` in this row; `None` where it does not apply (a scenario without
    /// an odd server, or a callosum-only figure of another strategy). A load that never
    /// settled is infinite, so that it sorts after every time that did.
    ///
    /// ```
    /// use callosum_sim::{Figure, Scenario, Size, simulate};
    ///
    /// let report = simulate(Scenario::SlowServer, Size { servers: 4, clients: 8, seconds: 2, pool: 4 }, 1);
    /// let callosum = &report.rows[0];
    /// assert_eq!(callosum.figure(Figure::P99), Some(callosum.latency_ms[1]));
    /// assert_eq!(report.rows[1].figure(Figure::OneServerPools), None, "random has no pools");
    /// ```
    pub fn figure(&self, figure: Figure) -> Option<f64> {
        let [p50, p99, p999] = self.latency_ms;
        match figure {
            Figure::P50 => Some(p50),
            Figure::P99 => Some(p99),
            Figure::HealthyP99 => Some(self.healthy_p99_ms),
            Figure::P999 => Some(p999),
            Figure::Errors => Some(self.errors as f64),
            Figure::OutMean => Some(self.mean_outstanding),
            Figure::OutMax => Some(self.max_outstanding),
            Figure::OddShare => self.odd_share,
            Figure::OddConnections => self.odd_connection_share,
            Figure::ConnsPerSecond => Some(self.connections_per_second),
            Figure::Settle => self.settle_seconds.map(|s| s.unwrap_or(f64::INFINITY)),
            Figure::OneServerPools => self.pools_on_one_server.map(|n| n as f64),
            Figure::ConnectionSpread => self.connection_spread,
        }
    }
}

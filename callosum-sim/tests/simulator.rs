//! The simulator's promises, on small clusters so that they run quickly in debug builds.

use std::process::Command;

use callosum_sim::cli::{CliError, parse};
use callosum_sim::{Figure, Scenario, Size, Strategy, run, simulate, simulate_seeds};

const SMALL: Size = Size {
    servers: 10,
    clients: 50,
    seconds: 6,
    pool: 4,
};

#[test]
fn the_same_seed_gives_the_same_table_and_chart() {
    let first = simulate(Scenario::CrashRestart, SMALL, 11);
    let second = simulate(Scenario::CrashRestart, SMALL, 11);
    assert_eq!(first.table(), second.table());
    assert_eq!(first.svg(), second.svg());
    let other = simulate(Scenario::CrashRestart, SMALL, 12);
    assert_ne!(first.table(), other.table(), "the seed changes the run");
}

#[test]
fn callosum_sends_the_slow_server_less_than_its_share_of_connections() {
    let report = simulate(Scenario::SlowServer, SMALL, 3);
    let callosum = &report.rows[0];
    assert_eq!(callosum.strategy, Strategy::Callosum);
    let requests = callosum.odd_share.unwrap();
    let connections = callosum.odd_connection_share.unwrap();
    assert!(
        requests < connections,
        "requests {requests:.4}, connections {connections:.4}"
    );
    // The slow server has a fair share of connections but serves at a fifth of the speed.
    assert!(requests < 0.6 / SMALL.servers as f64, "{requests}");
}

#[test]
fn every_strategy_serves_the_workload() {
    let params = Scenario::Homogeneous50.params(SMALL);
    let expected = params.request_rate() * (SMALL.seconds as f64 - params.warmup_us as f64 / 1e6);
    for strategy in Strategy::ALL {
        let result = run(&params, strategy, 5);
        assert_eq!(result.errors, 0, "{strategy}");
        let served = result.latencies_us.len() as f64;
        assert!(
            (served - expected).abs() < 0.1 * expected,
            "{strategy}: {served} served, about {expected} expected"
        );
        assert!(result.latencies_us.is_sorted());
        // Two hops of 1 ms at least.
        assert!(result.latencies_us[0] >= 2_000, "{strategy}");
    }
}

#[test]
fn a_crash_breaks_callosum_connections_and_the_others_send_into_it() {
    let report = simulate(Scenario::CrashRestart, SMALL, 8);
    let errors = |strategy: Strategy| {
        report
            .rows
            .iter()
            .find(|row| row.strategy == strategy)
            .unwrap()
            .errors
    };
    // Callosum loses what was in flight; random keeps choosing the dead server for 5 s.
    assert!(errors(Strategy::Callosum) < errors(Strategy::Random));
    assert!(errors(Strategy::Random) > 0);
    assert!(report.rows.iter().all(|row| row.settle_seconds.is_some()));
}

#[test]
fn every_scenario_runs_every_strategy() {
    let tiny = Size {
        servers: 4,
        clients: 12,
        seconds: 4,
        pool: 2,
    };
    for scenario in Scenario::ALL {
        let report = simulate(scenario, tiny, 1);
        let table = report.table();
        for strategy in Strategy::ALL {
            assert!(table.contains(strategy.name()), "{scenario}: {table}");
        }
        assert!(report.svg().starts_with("<svg"));
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn bad_arguments_are_errors_with_a_message() {
    let cases: [(&[&str], &str); 9] = [
        (&[], "--scenario NAME is required"),
        (&["--scenario"], "--scenario needs a value"),
        (&["--scenario", "slow"], "unknown scenario `slow`"),
        (
            &["--scenario", "slow-server", "--seed", "-1"],
            "--seed `-1`",
        ),
        (
            &["--scenario", "slow-server", "--servers", "1"],
            "at least 2",
        ),
        (&["--scenario", "slow-server", "--pool", "0"], "at least 1"),
        (&["--scenario", "slow-server", "--seeds", "0"], "at least 1"),
        (
            &[
                "--scenario",
                "slow-server",
                "--seed",
                "18446744073709551615",
                "--seeds",
                "2",
            ],
            "within 64 bits",
        ),
        (&["--frobnicate"], "unknown option `--frobnicate`"),
    ];
    for (list, message) in cases {
        let error = parse(args(list)).unwrap_err();
        assert!(
            error.to_string().contains(message),
            "{list:?}: `{error}` lacks `{message}`"
        );
    }
    assert_eq!(parse(args(&["--help"])), Err(CliError::Help));
    let ok = parse(args(&[
        "--svg",
        "a.svg",
        "--scenario",
        "add-server",
        "--seconds",
        "3",
        "--seeds",
        "5",
    ]));
    let ok = ok.unwrap();
    assert_eq!(ok.scenario, Scenario::AddServer);
    assert_eq!((ok.svg.as_deref(), ok.size.seconds), (Some("a.svg"), 3));
    assert_eq!((ok.seed, ok.seeds), (1, 5));
}

#[test]
fn the_binary_reports_bad_arguments_without_panicking() {
    let output = Command::new(env!("CARGO_BIN_EXE_callosum-sim"))
        .args(["--scenario", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("error: unknown scenario `nope`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn two_choices_local_knows_only_its_own_requests() {
    let share = |size: Size, strategy: Strategy| {
        let params = Scenario::SlowServer.params(size);
        let result = run(&params, strategy, 4);
        let sent: u64 = result.sent_per_server.iter().sum();
        result.sent_per_server[0] as f64 / sent as f64
    };
    // Two clients with about 17 requests in flight each: a client's own requests pile up at
    // the slow server, so its own counts steer it away as well as the true counts do.
    let few = Size {
        clients: 2,
        ..SMALL
    };
    let (local, random) = (
        share(few, Strategy::TwoChoicesLocal),
        share(few, Strategy::Random),
    );
    assert!(local < random / 2.0, "local {local:.4}, random {random:.4}");
    // 500 clients with about a third of a request in flight each: a client has nothing
    // outstanding almost everywhere, so it learns less, where the true counts still show the
    // slow server's queue.
    let many = Size {
        clients: 500,
        ..SMALL
    };
    let (local, global) = (
        share(many, Strategy::TwoChoicesLocal),
        share(many, Strategy::TwoChoices),
    );
    assert!(local > global * 1.3, "local {local:.4}, global {global:.4}");
}

#[test]
fn few_clients_keep_many_requests_in_flight_each() {
    let params = Scenario::FewClients.params(Size::default());
    assert_eq!((params.clients, params.pool_size), (20, 64));
    let report = simulate(Scenario::FewClients, SMALL, 2);
    assert_eq!(report.params.clients, 2);
    for row in &report.rows {
        // Little's law: outstanding requests over the cluster, shared by two clients.
        let per_client = row.mean_outstanding * SMALL.servers as f64 / 2.0;
        assert!(
            (12.0..25.0).contains(&per_client),
            "{}: {per_client:.1} requests in flight per client",
            row.strategy
        );
    }
}

#[test]
fn connections_count_over_the_traffic_window_only() {
    // Pools of one cannot carry the heavy clients: their requests wait in the client, and
    // the run drains for long after the arrivals stop, while the rovers go on roving.
    let size = Size { pool: 1, ..SMALL };
    let params = Scenario::SkewedClients.params(size);
    let callosum = run(&params, Strategy::Callosum, 6);
    let window_s = (params.duration_us - params.warmup_us) as f64 / 1e6;
    let per_client_second = callosum.connections_opened as f64 / window_s / SMALL.clients as f64;
    // One rover attempt per client per second, whatever the drain.
    assert!(per_client_second <= 1.2, "{per_client_second:.2}");
    // The others open one per request sent in the window.
    let random = run(&params, Strategy::Random, 6);
    assert_eq!(
        random.connections_opened,
        random.sent_per_server.iter().sum::<u64>()
    );
}

#[test]
fn the_healthy_p99_leaves_out_the_odd_servers_queue() {
    let report = simulate(Scenario::SlowServer, SMALL, 5);
    for row in &report.rows {
        assert!(
            row.healthy_p99_ms <= row.latency_ms[1],
            "{}: healthy {} over all {}",
            row.strategy,
            row.healthy_p99_ms,
            row.latency_ms[1]
        );
    }
    // Random sends the slow server its full share, five times what it can serve: the queue
    // sets the overall tail, not the healthy one.
    let random = report.row(Strategy::Random);
    assert!(
        random.latency_ms[1] > 2.0 * random.healthy_p99_ms,
        "{random:?}"
    );
    // Without an odd server, every request is a healthy one.
    let even = simulate(Scenario::Homogeneous50, SMALL, 5);
    assert!(
        even.rows
            .iter()
            .all(|row| row.healthy_p99_ms == row.latency_ms[1])
    );
}

#[test]
fn seeds_report_medians_and_ranges_deterministically() {
    let multi = simulate_seeds(Scenario::SlowServer, SMALL, 3..=5);
    assert_eq!(multi.seeds, [3, 4, 5]);
    assert_eq!(multi.rows.len(), 3);
    // The first seed's report is the one-seed report.
    assert_eq!(
        multi.first.table(),
        simulate(Scenario::SlowServer, SMALL, 3).table()
    );
    for (k, seed) in (3..=5).enumerate() {
        let one = simulate(Scenario::SlowServer, SMALL, seed);
        assert_eq!(multi.rows[k], one.rows, "seed {seed}");
    }
    for strategy in Strategy::ALL {
        let values = multi.values(strategy, Figure::P99);
        assert_eq!(values.len(), 3);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(multi.median(strategy, Figure::P99), Some(sorted[1]));
        assert_eq!(
            multi.range(strategy, Figure::P99),
            Some((sorted[0], sorted[2]))
        );
    }
    assert_eq!(multi.median(Strategy::Random, Figure::OneServerPools), None);
    let table = multi.table();
    assert!(table.contains("median over seeds 3-5"), "{table}");
    assert!(
        table.contains("range (least-greatest) over seeds 3-5"),
        "{table}"
    );
    assert_eq!(
        table,
        simulate_seeds(Scenario::SlowServer, SMALL, 3..=5).table()
    );
}

#[test]
fn callosum_reports_its_pools_and_connection_spread() {
    let report = simulate(Scenario::Homogeneous50, SMALL, 9);
    for row in &report.rows {
        let callosum = row.strategy == Strategy::Callosum;
        assert_eq!(row.pools_on_one_server.is_some(), callosum);
        assert_eq!(row.connection_spread.is_some(), callosum);
    }
    let callosum = report.row(Strategy::Callosum);
    // 50 pools of 4 over 10 servers, spread by roving to lower slots.
    assert!(callosum.connection_spread.unwrap() < 0.2, "{callosum:?}");
    // Pools of one are never counted as sitting on one server.
    let single = simulate(Scenario::Homogeneous50, Size { pool: 1, ..SMALL }, 9);
    assert_eq!(single.row(Strategy::Callosum).pools_on_one_server, Some(0));
}

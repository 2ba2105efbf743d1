//! Property tests of the rover (PROTOCOL.md section 4) through the shared checking code,
//! plus statistical and scheduling checks over long runs.

use std::time::Duration;

use callosum_proto::rover::{Action, AttemptId, ConnectFailure, Rover, RoverConfig};
use callosum_proto::{Instant, ServerId};
use callosum_tests::rover_check::{
    RoverOp, check_rover_ops, config_from_bytes, connects, drain, ops_from_bytes,
};
use proptest::prelude::*;

fn connect_failure() -> impl Strategy<Value = ConnectFailure> {
    prop_oneof![
        Just(ConnectFailure::Refused),
        Just(ConnectFailure::Reset),
        Just(ConnectFailure::TimedOut),
        Just(ConnectFailure::Other),
    ]
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u32..1000).prop_map(|slot| format!("{slot}\r\n").into_bytes()),
        (0u32..1000).prop_map(|slot| format!("{slot}\r\nrest").into_bytes()),
        Just(b"1".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"-1\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"00000000001".to_vec()),
        Just(b"4294967296\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
    ]
}

fn advance() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1u64..2_000,
        1_000u64..3_000_000,
        Just(3_600_000_000u64),
        Just(u64::MAX),
    ]
}

fn op() -> impl Strategy<Value = RoverOp> {
    prop_oneof![
        3 => (0u8..6).prop_map(RoverOp::AddServer),
        1 => (0u8..6).prop_map(RoverOp::RemoveServer),
        2 => Just(RoverOp::Start),
        1 => Just(RoverOp::Stop),
        1 => (0u8..12).prop_map(RoverOp::SetDemand),
        3 => advance().prop_map(RoverOp::Advance),
        3 => Just(RoverOp::AdvanceToTimeout),
        3 => any::<usize>().prop_map(RoverOp::Connected),
        2 => (any::<usize>(), connect_failure()).prop_map(|(i, r)| RoverOp::ConnectFailed(i, r)),
        4 => (any::<usize>(), line()).prop_map(|(i, l)| RoverOp::Received(i, l)),
        1 => any::<usize>().prop_map(RoverOp::Closed),
        1 => any::<usize>().prop_map(RoverOp::ReadFailed),
        1 => any::<usize>().prop_map(RoverOp::StaleInput),
        1 => (0u8..6).prop_map(RoverOp::ConnLost),
        1 => (0u8..6, 0u8..3).prop_map(|(n, held)| RoverOp::SetHeld(n, held)),
        1 => Just(RoverOp::NearMiss),
        1 => Just(RoverOp::Kept),
    ]
}

fn config() -> impl Strategy<Value = RoverConfig> {
    (
        1u64..3_000,
        0u64..100,
        1u64..3_000,
        1u64..3_000,
        1usize..6,
        any::<[bool; 4]>(),
        0u64..1_000,
        0u64..5_000,
    )
        .prop_map(
            |(interval, jitter_pct, connect, handshake, max_in_flight, flags, base, extra)| {
                let [fill, spread, probes, near_miss] = flags;
                let interval = Duration::from_millis(interval);
                RoverConfig {
                    interval,
                    jitter: interval * (jitter_pct as u32) / 100,
                    connect_timeout: Duration::from_millis(connect),
                    handshake_timeout: Duration::from_millis(handshake),
                    max_in_flight,
                    fill,
                    backoff_base: Duration::from_millis(base),
                    backoff_max: Duration::from_millis(base + extra),
                    spread,
                    probes,
                    near_miss_interval: near_miss.then(|| interval / 4),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_op_sequence_keeps_the_rover_rules(
        config in config(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 0..100),
    ) {
        check_rover_ops(config, seed, &ops);
    }

    #[test]
    fn fuzzer_bytes_decode_to_ops_that_keep_the_rules(
        config in any::<[u8; 8]>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        seed in any::<u64>(),
    ) {
        check_rover_ops(config_from_bytes(config), seed, &ops_from_bytes(&bytes));
    }
}

#[test]
fn servers_are_picked_uniformly_chi_square() {
    let config = RoverConfig {
        fill: false,
        ..RoverConfig::default()
    };
    let mut rover = Rover::new(config, 20_240_601).unwrap();
    for id in 0..4 {
        rover.add_server(ServerId(id));
    }
    let mut counts = [0u64; 4];
    let mut now = Instant::ZERO;
    rover.start(now);
    let attempts = 4_000;
    let mut seen = 0;
    while seen < attempts {
        for (attempt, server) in connects(&drain(&mut rover).0) {
            counts[server.0 as usize] += 1;
            seen += 1;
            // Every attempt succeeds, so no server ever backs off.
            rover.handle_received(attempt, b"0\r\n", now).unwrap();
        }
        drain(&mut rover);
        now = rover.poll_timeout().unwrap();
        rover.handle_timeout(now);
    }
    let expected = f64::from(attempts) / 4.0;
    let statistic: f64 = counts
        .iter()
        .map(|&count| {
            let diff = count as f64 - expected;
            diff * diff / expected
        })
        .sum();
    // Critical value of chi-square with 3 degrees of freedom at p = 0.001.
    assert!(statistic < 16.27, "chi-square {statistic} for {counts:?}");
}

#[test]
fn no_attempt_outlives_its_deadline() {
    // Servers that accept and never write, or never answer at all.
    let mut rover = Rover::new(RoverConfig::default(), 5).unwrap();
    for id in 0..3 {
        rover.add_server(ServerId(id));
    }
    rover.set_demand(50, Instant::ZERO);
    rover.start(Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut deadlines = std::collections::HashMap::new();
    for round in 0..2_000 {
        let (actions, _) = drain(&mut rover);
        for (attempt, _) in connects(&actions) {
            if round % 2 == 0 {
                rover.handle_connected(attempt, now).unwrap();
            }
        }
        for info in rover.attempts() {
            deadlines.insert(info.attempt, info.deadline);
        }
        for action in &actions {
            if let Action::Close { attempt } = action {
                let deadline = deadlines.remove(attempt).expect("closed a known attempt");
                assert!(deadline <= now, "closed before its deadline");
            }
        }
        // Every attempt still in flight is before its deadline.
        assert!(rover.attempts().all(|info| info.deadline > now));
        now = rover
            .poll_timeout()
            .expect("a running rover always has a timeout");
        rover.handle_timeout(now);
        assert!(rover.attempts().all(|info| info.deadline > now));
        assert!(rover.poll_timeout().is_none_or(|due| due > now));
    }
}

#[test]
fn a_dropped_server_is_never_connected_to_afterwards() {
    let mut rover = Rover::new(RoverConfig::default(), 11).unwrap();
    for id in 0..5 {
        rover.add_server(ServerId(id));
    }
    rover.set_demand(20, Instant::ZERO);
    rover.start(Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut dropped = Vec::new();
    for round in 0..500u32 {
        if round % 100 == 50 {
            let id = ServerId(round / 100);
            assert!(rover.remove_server(id));
            dropped.push(id);
        }
        let (actions, _) = drain(&mut rover);
        let closed: Vec<AttemptId> = actions
            .iter()
            .filter_map(|action| match *action {
                Action::Close { attempt } => Some(attempt),
                Action::Connect { .. } => None,
            })
            .collect();
        for (attempt, server) in connects(&actions) {
            assert!(!dropped.contains(&server), "Connect to dropped {server}");
            if closed.contains(&attempt) {
                continue;
            }
            match round % 3 {
                0 => rover
                    .handle_connect_failed(attempt, ConnectFailure::Refused, now)
                    .unwrap(),
                1 => {
                    rover.handle_received(attempt, b"1\r\n", now).unwrap();
                }
                // Left hanging: removing its server must abort it.
                _ => {}
            }
        }
        assert!(rover.attempts().all(|info| !dropped.contains(&info.server)));
        if rover.in_flight() == 0 {
            rover.set_demand(20, now);
        }
        if let Some(due) = rover.poll_timeout() {
            now = due;
        }
        rover.handle_timeout(now);
    }
    assert_eq!(dropped.len(), 5);
    assert_eq!(rover.servers().count(), 0);
}

#[test]
fn in_flight_never_exceeds_max_in_flight() {
    for max_in_flight in 1..=6 {
        let config = RoverConfig {
            max_in_flight,
            ..RoverConfig::default()
        };
        let mut rover = Rover::new(config, max_in_flight as u64).unwrap();
        for id in 0..10 {
            rover.add_server(ServerId(id));
        }
        rover.set_demand(1_000, Instant::ZERO);
        rover.start(Instant::ZERO);
        for _ in 0..300 {
            // Leave every attempt hanging: only timeouts end them.
            drain(&mut rover);
            assert!(rover.in_flight() <= max_in_flight);
            let now = rover.poll_timeout().unwrap();
            rover.handle_timeout(now);
            assert!(rover.in_flight() <= max_in_flight);
            assert!(rover.attempts().count() <= max_in_flight);
        }
    }
}

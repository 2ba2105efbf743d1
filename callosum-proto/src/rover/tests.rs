//! Unit tests of the rover, one per rule of PROTOCOL.md section 4 and of the API contract.

extern crate std;

use alloc::vec::Vec;
use std::string::ToString;

use super::*;

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn config() -> RoverConfig {
    RoverConfig {
        fill: false,
        ..RoverConfig::default()
    }
}

fn rover_with(config: RoverConfig, servers: u32) -> Rover {
    let mut rover = Rover::new(config, 0x5EED).unwrap();
    for id in 0..servers {
        rover.add_server(ServerId(id));
    }
    rover
}

fn drain(rover: &mut Rover) -> (Vec<Action>, Vec<Event>) {
    let actions = core::iter::from_fn(|| rover.poll_action()).collect();
    let events = core::iter::from_fn(|| rover.poll_event()).collect();
    (actions, events)
}

fn connects(actions: &[Action]) -> Vec<(AttemptId, ServerId)> {
    actions
        .iter()
        .filter_map(|action| match *action {
            Action::Connect { attempt, server } => Some((attempt, server)),
            Action::Close { .. } => None,
        })
        .collect()
}

/// Starts a rover and returns its first attempt.
fn first_attempt(rover: &mut Rover, now: Instant) -> (AttemptId, ServerId) {
    rover.start(now);
    let (actions, _) = drain(rover);
    connects(&actions)[0]
}

#[test]
fn first_attempt_at_once_then_one_per_interval_with_jitter_in_bounds() {
    let mut rover = rover_with(config(), 3);
    rover.start(ms(0));
    let (actions, events) = drain(&mut rover);
    let launched = connects(&actions);
    assert_eq!(launched.len(), 1, "the first attempt is at once");
    assert!(events.is_empty());
    rover
        .handle_received(launched[0].0, b"0\r\n", ms(0))
        .unwrap();
    drain(&mut rover);
    let mut now = ms(0);
    let mut waits = Vec::new();
    for _ in 0..200 {
        // Only the schedule is pending: every attempt is answered at once.
        let due = rover.poll_timeout().unwrap();
        waits.push(due.saturating_duration_since(now));
        // Just before it is due nothing happens.
        rover.handle_timeout(Instant::from_micros(due.as_micros() - 1));
        assert!(drain(&mut rover).0.is_empty());
        now = due;
        rover.handle_timeout(now);
        let (actions, _) = drain(&mut rover);
        let launched = connects(&actions);
        assert_eq!(launched.len(), 1, "one attempt per interval");
        let (attempt, _) = launched[0];
        rover.handle_connected(attempt, now).unwrap();
        rover.handle_received(attempt, b"1\r\n", now).unwrap();
        drain(&mut rover);
    }
    for wait in &waits {
        assert!(
            (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(wait),
            "{wait:?}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
    assert!(distinct.len() > 100, "waits are jittered, not fixed");
}

#[test]
fn zero_jitter_gives_the_exact_interval() {
    let config = RoverConfig {
        jitter: Duration::ZERO,
        ..config()
    };
    let mut rover = rover_with(config, 1);
    rover.start(ms(5));
    assert_eq!(rover.poll_timeout(), Some(ms(1005)));
}

#[test]
fn jitter_equal_to_the_interval_never_schedules_at_now() {
    let config = RoverConfig {
        interval: Duration::from_micros(1),
        jitter: Duration::from_micros(1),
        ..config()
    };
    let mut rover = rover_with(config, 0);
    let mut now = ms(0);
    rover.start(now);
    for _ in 0..100 {
        let due = rover.poll_timeout().unwrap();
        assert!(due > now);
        now = due;
        rover.handle_timeout(now);
        drain(&mut rover);
    }
}

#[test]
fn connect_timeout_closes_and_reports_unreachable() {
    let slow = RoverConfig {
        interval: Duration::from_secs(10),
        ..config()
    };
    let mut rover = rover_with(slow, 1);
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover.handle_timeout(ms(999));
    assert_eq!(drain(&mut rover), (Vec::new(), Vec::new()));
    rover.handle_timeout(ms(1000));
    let (actions, events) = drain(&mut rover);
    assert!(actions.contains(&Action::Close { attempt }));
    assert_eq!(
        events,
        [Event::Unreachable {
            attempt,
            server,
            reason: ConnectFailure::TimedOut
        }]
    );
    assert_eq!(
        rover.handle_connected(attempt, ms(1000)),
        Err(StaleAttempt { attempt })
    );
}

#[test]
fn handshake_timeout_closes_and_reports_handshake_failed() {
    let slow = RoverConfig {
        interval: Duration::from_secs(10),
        ..config()
    };
    let mut rover = rover_with(slow, 1);
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover.handle_connected(attempt, ms(300)).unwrap();
    rover.handle_received(attempt, b"12", ms(400)).unwrap();
    rover.handle_timeout(ms(1299));
    assert_eq!(drain(&mut rover), (Vec::new(), Vec::new()));
    rover.handle_timeout(ms(1300));
    let (actions, events) = drain(&mut rover);
    assert!(actions.contains(&Action::Close { attempt }));
    assert!(events.contains(&Event::HandshakeFailed {
        attempt,
        server,
        reason: HandshakeFailure::TimedOut
    }));
}

#[test]
fn a_second_connected_does_not_extend_the_deadline() {
    let mut rover = rover_with(config(), 1);
    let (attempt, _) = first_attempt(&mut rover, ms(0));
    rover.handle_connected(attempt, ms(100)).unwrap();
    rover.handle_connected(attempt, ms(900)).unwrap();
    assert_eq!(rover.attempts().next().unwrap().deadline, ms(1100));
}

#[test]
fn bytes_after_the_line_are_not_consumed() {
    let mut rover = rover_with(config(), 1);
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover.handle_connected(attempt, ms(1)).unwrap();
    assert_eq!(rover.handle_received(attempt, b"4", ms(2)), Ok(1));
    assert_eq!(rover.handle_received(attempt, b"", ms(2)), Ok(0));
    assert_eq!(rover.handle_received(attempt, b"2\r", ms(2)), Ok(2));
    assert_eq!(rover.handle_received(attempt, b"\nHELLO\r\n", ms(3)), Ok(1));
    let (actions, events) = drain(&mut rover);
    assert!(actions.is_empty(), "a delivered connection is not closed");
    assert_eq!(
        events,
        [Event::Connection {
            attempt,
            server,
            slot: 42
        }]
    );
    assert_eq!(rover.in_flight(), 0);
    assert_eq!(
        rover.handle_received(attempt, b"more", ms(4)),
        Err(StaleAttempt { attempt })
    );
}

#[test]
fn bad_line_reports_the_decoder_error_and_closes() {
    let cases: [(&[u8], DecodeError); 4] = [
        (
            b"-1\r\n",
            DecodeError::InvalidByte {
                byte: b'-',
                offset: 0,
            },
        ),
        (b"\r\n", DecodeError::Empty),
        (b"7\n", DecodeError::LfWithoutCr { offset: 1 }),
        (b"00000000001", DecodeError::TooLong),
    ];
    for (line, error) in cases {
        let mut rover = rover_with(config(), 1);
        let (attempt, server) = first_attempt(&mut rover, ms(0));
        rover.handle_connected(attempt, ms(1)).unwrap();
        assert_eq!(rover.handle_received(attempt, line, ms(2)), Ok(line.len()));
        let (actions, events) = drain(&mut rover);
        assert_eq!(actions, [Action::Close { attempt }], "{line:?}");
        assert_eq!(
            events,
            [Event::HandshakeFailed {
                attempt,
                server,
                reason: HandshakeFailure::Decode(error)
            }],
            "{line:?}"
        );
    }
}

#[test]
fn eof_before_the_line_is_unexpected_eof() {
    let mut rover = rover_with(config(), 1);
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover.handle_connected(attempt, ms(1)).unwrap();
    rover.handle_received(attempt, b"12\r", ms(2)).unwrap();
    rover.handle_closed(attempt, ms(3)).unwrap();
    let (actions, events) = drain(&mut rover);
    assert_eq!(actions, [Action::Close { attempt }]);
    assert_eq!(
        events,
        [Event::HandshakeFailed {
            attempt,
            server,
            reason: HandshakeFailure::Decode(DecodeError::UnexpectedEof { received: 3 })
        }]
    );
}

#[test]
fn connect_and_read_failures_are_reported_with_their_reason() {
    let mut rover = rover_with(config(), 1);
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover
        .handle_connect_failed(attempt, ConnectFailure::Refused, ms(1))
        .unwrap();
    let (actions, events) = drain(&mut rover);
    assert_eq!(actions, [Action::Close { attempt }]);
    assert_eq!(
        events,
        [Event::Unreachable {
            attempt,
            server,
            reason: ConnectFailure::Refused
        }]
    );

    rover.handle_timeout(ms(2000));
    let (attempt, server) = connects(&drain(&mut rover).0)[0];
    rover.handle_connected(attempt, ms(2001)).unwrap();
    rover.handle_read_failed(attempt, ms(2002)).unwrap();
    let (actions, events) = drain(&mut rover);
    assert_eq!(actions, [Action::Close { attempt }]);
    assert_eq!(
        events,
        [Event::HandshakeFailed {
            attempt,
            server,
            reason: HandshakeFailure::ReadFailed
        }]
    );
}

#[test]
fn no_servers_on_an_empty_set_once_per_tick() {
    let mut rover = rover_with(RoverConfig::default(), 0);
    rover.set_demand(100, ms(0));
    rover.start(ms(0));
    assert_eq!(
        drain(&mut rover),
        (Vec::new(), alloc::vec![Event::NoServers])
    );
    // Inputs between ticks, and time standing still, report nothing more.
    rover.set_demand(50, ms(0));
    rover.handle_timeout(ms(0));
    rover.handle_timeout(ms(0));
    assert_eq!(drain(&mut rover), (Vec::new(), Vec::new()));
    let due = rover.poll_timeout().unwrap();
    assert!(due >= ms(900));
    // A jump of hours runs one tick, not a backlog.
    rover.handle_timeout(ms(10 * 3_600_000));
    assert_eq!(drain(&mut rover).1, [Event::NoServers]);
    assert!(rover.poll_timeout().unwrap() > ms(10 * 3_600_000));
}

#[test]
fn when_every_server_backs_off_no_servers_and_wake_at_the_backoff_end() {
    let mut rover = rover_with(config(), 1);
    let (attempt, _) = first_attempt(&mut rover, ms(0));
    rover
        .handle_connect_failed(attempt, ConnectFailure::Refused, ms(0))
        .unwrap();
    drain(&mut rover);
    // Backing off for 500 ms, then 1 s, 2 s, 4 s...: the tick at ~1 s finds it back.
    let tick = rover.poll_timeout().unwrap();
    rover.handle_timeout(tick);
    let (attempt, _) = connects(&drain(&mut rover).0)[0];
    rover
        .handle_connect_failed(attempt, ConnectFailure::Refused, tick)
        .unwrap();
    drain(&mut rover);
    // Second failure: 1 s of backoff, and with this seed the next tick comes first.
    let backoff_end = tick + Duration::from_secs(1);
    let next = rover.poll_timeout().unwrap();
    assert!(next < backoff_end);
    rover.handle_timeout(next);
    assert_eq!(
        drain(&mut rover),
        (Vec::new(), alloc::vec![Event::NoServers])
    );
    // The tick after a NoServers comes at the backoff end, not a whole interval later.
    assert_eq!(rover.poll_timeout(), Some(backoff_end));
    rover.handle_timeout(backoff_end);
    let (actions, events) = drain(&mut rover);
    assert_eq!(connects(&actions).len(), 1);
    assert!(events.is_empty());
}

#[test]
fn backoff_grows_caps_and_resets_on_success() {
    let config = RoverConfig {
        interval: Duration::from_millis(10),
        jitter: Duration::ZERO,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
        ..config()
    };
    let mut rover = rover_with(config, 1);
    let server = ServerId(0);
    rover.start(ms(0));
    let mut now = ms(0);
    let mut attempt = connects(&drain(&mut rover).0)[0].0;
    let mut failed_at = Vec::new();
    // Every connect is refused at once; record when the server gets tried.
    while failed_at.len() < 7 {
        rover
            .handle_connect_failed(attempt, ConnectFailure::Refused, now)
            .unwrap();
        failed_at.push(now.as_micros() / 1_000);
        (now, attempt) = next_connect(&mut rover);
    }
    assert_eq!(rover.servers.failures(server), Some(7));
    let gaps: Vec<u64> = failed_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Tried again as soon as each backoff ends: 100, 200, 400, then capped at 800.
    assert_eq!(gaps, [100, 200, 400, 800, 800, 800]);

    // A slot line alone forgives nothing; a connection that proved itself does: the next
    // failure backs off for the base again.
    rover.handle_received(attempt, b"3\r\n", now).unwrap();
    assert_eq!(rover.servers.failures(server), Some(7));
    rover.handle_server_ok(server);
    assert_eq!(rover.servers.failures(server), Some(0));
    let (retry, attempt) = next_connect(&mut rover);
    assert_eq!(retry, now + Duration::from_millis(10));
    rover
        .handle_connect_failed(attempt, ConnectFailure::Other, retry)
        .unwrap();
    assert_eq!(rover.servers.failures(server), Some(1));
    let (again, _) = next_connect(&mut rover);
    assert_eq!(
        again.saturating_duration_since(retry),
        Duration::from_millis(100)
    );
}

/// Sleeps from timeout to timeout until the rover launches an attempt.
fn next_connect(rover: &mut Rover) -> (Instant, AttemptId) {
    for _ in 0..10_000 {
        let now = rover.poll_timeout().unwrap();
        rover.handle_timeout(now);
        if let Some(&(attempt, _)) = connects(&drain(rover).0).first() {
            return (now, attempt);
        }
    }
    panic!("no attempt launched");
}

#[test]
fn a_backed_off_server_is_skipped_while_others_are_tried() {
    let mut rover = rover_with(config(), 2);
    rover.start(ms(0));
    let mut now = ms(0);
    let mut bad = None;
    for _ in 0..50 {
        for (attempt, server) in connects(&drain(&mut rover).0) {
            let bad_server = *bad.get_or_insert(server);
            if server == bad_server {
                rover
                    .handle_connect_failed(attempt, ConnectFailure::Refused, now)
                    .unwrap();
            } else {
                rover.handle_received(attempt, b"0\r\n", now).unwrap();
            }
        }
        drain(&mut rover);
        now = rover.poll_timeout().unwrap();
        rover.handle_timeout(now);
    }
    // Failing 1 + n times it backs off 0.5, 1, 2, 4, 8, 16 s: ~6 tries in ~50 s, not ~25.
    let failures = rover.servers.failures(bad.unwrap()).unwrap();
    assert!((4..=9).contains(&failures), "{failures}");
}

#[test]
fn fill_mode_fills_a_hundred_connections_without_waiting() {
    let config = RoverConfig::default();
    let mut rover = rover_with(config, 10);
    rover.set_demand(100, ms(0));
    rover.start(ms(0));
    let mut delivered = 0;
    let mut rounds = 0;
    loop {
        let (actions, events) = drain(&mut rover);
        delivered += events
            .iter()
            .filter(|event| matches!(event, Event::Connection { .. }))
            .count();
        let launched = connects(&actions);
        if launched.is_empty() {
            break;
        }
        assert!(rover.in_flight() <= 4);
        for (attempt, _) in launched {
            rover.handle_connected(attempt, ms(1)).unwrap();
            rover.handle_received(attempt, b"5\r\n", ms(1)).unwrap();
        }
        rounds += 1;
        assert!(rounds < 1_000);
    }
    assert_eq!(delivered, 100);
    assert_eq!(rover.in_flight(), 0);
    // Only the scheduled attempt remains, about one interval after the start.
    assert!(rover.poll_timeout().unwrap() >= ms(900));
}

#[test]
fn fill_is_bounded_by_max_in_flight_and_off_means_one_per_tick() {
    let mut rover = rover_with(RoverConfig::default(), 3);
    rover.start(ms(0));
    rover.set_demand(10, ms(0));
    assert_eq!(rover.in_flight(), 4);
    let mut rover = rover_with(config(), 3);
    rover.start(ms(0));
    rover.set_demand(10, ms(0));
    assert_eq!(rover.in_flight(), 1);
}

#[test]
fn fill_wakes_at_once_when_a_server_is_added_and_at_a_backoff_end() {
    let no_probes = RoverConfig {
        probes: false,
        ..RoverConfig::default()
    };
    let mut rover = rover_with(no_probes, 0);
    rover.set_demand(1, ms(0));
    rover.start(ms(0));
    drain(&mut rover);
    rover.handle_timeout(ms(50));
    assert!(rover.add_server(ServerId(1)));
    assert_eq!(rover.poll_timeout(), Some(ms(50)));
    rover.handle_timeout(ms(60));
    let launched = connects(&drain(&mut rover).0);
    assert_eq!(launched.len(), 1);
    rover
        .handle_connect_failed(launched[0].0, ConnectFailure::Refused, ms(70))
        .unwrap();
    drain(&mut rover);
    // Backing off for 500 ms: fill waits for that, not for the tick at ~1 s.
    assert_eq!(rover.poll_timeout(), Some(ms(570)));
    rover.handle_timeout(ms(570));
    assert_eq!(connects(&drain(&mut rover).0).len(), 1);
}

#[test]
fn stop_cancels_everything() {
    let mut rover = rover_with(RoverConfig::default(), 2);
    rover.set_demand(10, ms(0));
    rover.start(ms(0));
    let launched = connects(&drain(&mut rover).0);
    assert_eq!(launched.len(), 4);
    rover.handle_connected(launched[0].0, ms(1)).unwrap();
    rover.stop();
    let (actions, events) = drain(&mut rover);
    let closed: Vec<Action> = launched
        .iter()
        .map(|&(attempt, _)| Action::Close { attempt })
        .collect();
    assert_eq!(actions, closed);
    assert!(events.is_empty());
    assert!(!rover.is_running());
    assert_eq!(rover.in_flight(), 0);
    assert_eq!(rover.poll_timeout(), None);
    rover.handle_timeout(ms(1_000_000));
    rover.set_demand(10, ms(1_000_000));
    assert_eq!(drain(&mut rover), (Vec::new(), Vec::new()));
    for (attempt, _) in launched {
        assert_eq!(
            rover.handle_received(attempt, b"0\r\n", ms(1_000_001)),
            Err(StaleAttempt { attempt })
        );
    }
    // Starting again works.
    rover.start(ms(2_000_000));
    assert_eq!(rover.in_flight(), 4);
}

#[test]
fn removing_a_server_aborts_its_attempts_and_withdraws_its_connections() {
    let mut rover = rover_with(RoverConfig::default(), 1);
    rover.set_demand(2, ms(0));
    rover.start(ms(0));
    let launched = connects(&drain(&mut rover).0);
    assert_eq!(launched.len(), 2);
    // The first succeeds, but its event is not drained before the server is dropped.
    rover
        .handle_received(launched[0].0, b"0\r\n", ms(1))
        .unwrap();
    assert!(rover.remove_server(ServerId(0)));
    assert!(!rover.remove_server(ServerId(0)));
    let (actions, events) = drain(&mut rover);
    assert!(
        events.is_empty(),
        "nothing of a dropped server is delivered"
    );
    assert_eq!(actions.len(), 2);
    for (attempt, _) in &launched {
        assert!(actions.contains(&Action::Close { attempt: *attempt }));
    }
    assert_eq!(rover.servers().count(), 0);
}

/// Only a connection that was established can be reset (a reset during the TCP handshake is
/// refused), so a reset is a handshake failure whether the adapter saw it when the connect
/// completed or at its first read: the outcome does not depend on timing.
#[test]
fn a_reset_is_a_handshake_failure_however_early_the_adapter_sees_it() {
    let mut rover = rover_with(config(), 1);
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover
        .handle_connect_failed(attempt, ConnectFailure::Reset, ms(1))
        .unwrap();
    let at_connect = drain(&mut rover).1;

    rover.handle_timeout(ms(2000));
    let (attempt_b, _) = connects(&drain(&mut rover).0)[0];
    rover.handle_connected(attempt_b, ms(2001)).unwrap();
    rover.handle_read_failed(attempt_b, ms(2002)).unwrap();
    let at_read = drain(&mut rover).1;

    let failed = |attempt| Event::HandshakeFailed {
        attempt,
        server,
        reason: HandshakeFailure::ReadFailed,
    };
    assert_eq!(at_connect, [failed(attempt)]);
    assert_eq!(at_read, [failed(attempt_b)]);
}

#[test]
fn stale_ids_are_errors_and_change_nothing() {
    let mut rover = rover_with(RoverConfig::default(), 1);
    let (attempt, _) = first_attempt(&mut rover, ms(0));
    rover
        .handle_connect_failed(attempt, ConnectFailure::Refused, ms(1))
        .unwrap();
    drain(&mut rover);
    let stale = Err(StaleAttempt { attempt });
    assert_eq!(rover.handle_connected(attempt, ms(2)), stale);
    assert_eq!(
        rover.handle_connect_failed(attempt, ConnectFailure::Reset, ms(2)),
        stale
    );
    assert_eq!(
        rover.handle_received(attempt, b"1\r\n", ms(2)),
        Err(StaleAttempt { attempt })
    );
    assert_eq!(rover.handle_closed(attempt, ms(2)), stale);
    assert_eq!(rover.handle_read_failed(attempt, ms(2)), stale);
    assert_eq!(drain(&mut rover), (Vec::new(), Vec::new()));
    // The slot is reused with a new generation: the old id does not reach the new attempt.
    rover.handle_timeout(ms(5000));
    let (next, _) = connects(&drain(&mut rover).0)[0];
    assert_eq!(next.index(), attempt.index());
    assert_ne!(next, attempt);
    assert_eq!(rover.handle_closed(attempt, ms(5001)), stale);
    assert_eq!(rover.in_flight(), 1);
    assert_eq!(
        StaleAttempt { attempt }.to_string(),
        "attempt 0#0 is no longer in flight"
    );
}

#[test]
fn the_end_of_the_clock_neither_panics_nor_schedules_at_now() {
    let mut rover = rover_with(RoverConfig::default(), 2);
    rover.set_demand(3, Instant::MAX);
    rover.start(Instant::from_micros(u64::MAX - 10));
    drain(&mut rover);
    for now in [
        Instant::from_micros(u64::MAX - 1),
        Instant::MAX,
        Instant::MAX,
    ] {
        rover.handle_timeout(now);
        drain(&mut rover);
        assert!(rover.attempts().all(|info| info.deadline > now));
        assert!(rover.poll_timeout().is_none_or(|due| due > now));
    }
}

#[test]
fn a_near_miss_hastens_the_next_attempt_and_never_delays_it() {
    let mut rover = rover_with(config(), 10);
    first_attempt(&mut rover, ms(0));
    let scheduled = rover.poll_timeout().unwrap();
    assert!(scheduled >= ms(900), "{scheduled:?}");
    rover.handle_near_miss(ms(100));
    assert_eq!(rover.poll_timeout(), Some(ms(140)));
    rover.handle_near_miss(ms(120));
    assert_eq!(
        rover.poll_timeout(),
        Some(ms(140)),
        "a later near miss does not delay it"
    );
    rover.handle_timeout(ms(140));
    assert_eq!(connects(&drain(&mut rover).0).len(), 1);
    let next = loop {
        let due = rover.poll_timeout().unwrap();
        rover.handle_timeout(due);
        if !connects(&drain(&mut rover).0).is_empty() {
            break due;
        }
    };
    assert!(next >= ms(1_040), "then the interval again: {next:?}");

    let original = RoverConfig {
        near_miss_interval: None,
        ..config()
    };
    let mut rover = rover_with(original, 10);
    first_attempt(&mut rover, ms(0));
    let scheduled = rover.poll_timeout();
    rover.handle_near_miss(ms(100));
    assert_eq!(rover.poll_timeout(), scheduled, "off: the original's pace");

    let mut stopped = rover_with(config(), 10);
    stopped.handle_near_miss(ms(100));
    assert_eq!(
        stopped.poll_timeout(),
        None,
        "a rover not started stays still"
    );
}

#[test]
fn near_misses_hasten_a_bounded_number_of_attempts_until_a_connection_is_kept() {
    let mut rover = rover_with(config(), 2);
    first_attempt(&mut rover, ms(0));
    let hastened_by = |rover: &mut Rover, at: u64| {
        rover.handle_near_miss(ms(at));
        rover.poll_timeout() == Some(ms(at + 40))
    };
    let budget = 2 * NEAR_MISS_ROUNDS as u64;
    for round in 0..budget {
        let at = 10 + 40 * round;
        assert!(hastened_by(&mut rover, at), "near miss {round} hastens");
        rover.handle_timeout(ms(at + 40));
        drain(&mut rover);
    }
    let at = 10 + 40 * budget;
    assert!(!hastened_by(&mut rover, at), "the budget is spent");
    rover.handle_kept();
    assert!(
        hastened_by(&mut rover, at + 1),
        "a connection kept renews it"
    );
}

#[test]
fn config_errors_name_the_setting() {
    let micro = Duration::from_micros(1);
    let cases = [
        (
            RoverConfig {
                interval: Duration::from_nanos(999),
                jitter: Duration::ZERO,
                ..config()
            },
            RoverConfigError::ZeroInterval,
        ),
        (
            RoverConfig {
                jitter: Duration::from_secs(2),
                ..config()
            },
            RoverConfigError::JitterExceedsInterval {
                jitter: Duration::from_secs(2),
                interval: Duration::from_secs(1),
            },
        ),
        (
            RoverConfig {
                connect_timeout: Duration::ZERO,
                ..config()
            },
            RoverConfigError::ZeroConnectTimeout,
        ),
        (
            RoverConfig {
                handshake_timeout: Duration::ZERO,
                ..config()
            },
            RoverConfigError::ZeroHandshakeTimeout,
        ),
        (
            RoverConfig {
                max_in_flight: 0,
                ..config()
            },
            RoverConfigError::ZeroMaxInFlight,
        ),
        (
            RoverConfig {
                max_in_flight: usize::MAX,
                ..config()
            },
            RoverConfigError::MaxInFlightTooLarge {
                max_in_flight: usize::MAX,
            },
        ),
        (
            RoverConfig {
                backoff_base: Duration::from_secs(60),
                ..config()
            },
            RoverConfigError::BackoffMaxBelowBase {
                base: Duration::from_secs(60),
                max: Duration::from_secs(30),
            },
        ),
        (
            RoverConfig {
                near_miss_interval: Some(Duration::from_nanos(999)),
                ..config()
            },
            RoverConfigError::ZeroNearMissInterval,
        ),
    ];
    for (config, error) in cases {
        assert_eq!(Rover::new(config, 0).unwrap_err(), error);
        assert!(!error.to_string().is_empty());
    }
    let smallest = RoverConfig {
        interval: micro,
        jitter: micro,
        connect_timeout: micro,
        handshake_timeout: micro,
        max_in_flight: MAX_IN_FLIGHT_LIMIT,
        fill: true,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        spread: false,
        probes: false,
        near_miss_interval: Some(micro),
    };
    assert!(Rover::new(smallest, 0).is_ok());
    assert_eq!(
        RoverConfigError::ZeroMaxInFlight.to_string(),
        "rover max_in_flight must be at least 1"
    );
}

#[test]
fn handshake_failure_names_its_source() {
    use core::error::Error;
    let error = HandshakeFailure::Decode(DecodeError::Empty);
    assert!(error.source().is_some());
    assert!(HandshakeFailure::TimedOut.source().is_none());
    assert_eq!(ConnectFailure::TimedOut.to_string(), "connect timed out");
}

#[test]
fn set_demand_discounts_connections_not_yet_drained() {
    let fill = RoverConfig {
        fill: true,
        ..RoverConfig::default()
    };
    let mut rover = rover_with(fill, 1);
    rover.set_demand(1, ms(0));
    let (attempt, _) = first_attempt(&mut rover, ms(0));
    assert_eq!(rover.in_flight(), 1);
    rover.handle_connected(attempt, ms(1)).unwrap();
    assert_eq!(rover.handle_received(attempt, b"0\r\n", ms(2)), Ok(3));
    // The adapter tells the rover what the pool wants before it drains the events: the
    // pool has not seen the queued connection, so it still wants 1.
    rover.set_demand(1, ms(2));
    let (actions, events) = drain(&mut rover);
    assert!(
        connects(&actions).is_empty(),
        "a queued connection already answers the demand: {actions:?}"
    );
    assert!(matches!(events[..], [Event::Connection { .. }]));
    assert_eq!(rover.in_flight(), 0);
    // Offered and kept: the pool wants nothing more, and nothing is launched.
    rover.set_demand(0, ms(2));
    assert!(connects(&drain(&mut rover).0).is_empty());
    // Once drained, the pool's count is the whole truth again.
    rover.set_demand(1, ms(3));
    assert_eq!(connects(&drain(&mut rover).0).len(), 1);
}

#[test]
fn a_withdrawn_connection_counts_for_the_demand_again() {
    let fill = RoverConfig {
        fill: true,
        ..RoverConfig::default()
    };
    let mut rover = rover_with(fill, 2);
    rover.set_demand(1, ms(0));
    let (attempt, server) = first_attempt(&mut rover, ms(0));
    rover.handle_received(attempt, b"4\r\n", ms(1)).unwrap();
    rover.set_demand(1, ms(1));
    assert!(connects(&rover.actions.iter().copied().collect::<Vec<_>>()).is_empty());
    // Its server is dropped before the event is drained: withdrawn and closed.
    assert!(rover.remove_server(server));
    rover.set_demand(1, ms(2));
    let (actions, events) = drain(&mut rover);
    assert!(events.is_empty(), "{events:?}");
    assert!(actions.contains(&Action::Close { attempt }));
    assert_eq!(
        connects(&actions).len(),
        1,
        "the demand is open again: {actions:?}"
    );
}

#[test]
fn bytes_before_connected_start_the_handshake_deadline() {
    let config = RoverConfig {
        connect_timeout: Duration::from_millis(100),
        handshake_timeout: Duration::from_millis(1_000),
        ..config()
    };
    let mut rover = rover_with(config, 1);
    let (attempt, _) = first_attempt(&mut rover, ms(0));
    assert_eq!(rover.attempts().next().unwrap().deadline, ms(100));
    // The first bytes arrive before the adapter reported the connect.
    assert_eq!(rover.handle_received(attempt, b"1", ms(50)), Ok(1));
    let info = rover.attempts().next().unwrap();
    assert_eq!(info.phase, AttemptPhase::Handshaking);
    assert_eq!(
        info.deadline,
        ms(1_050),
        "handshake_timeout from the first bytes"
    );
    // A late handle_connected does not push it back, and the connect timeout is gone.
    rover.handle_connected(attempt, ms(60)).unwrap();
    assert_eq!(rover.attempts().next().unwrap().deadline, ms(1_050));
    rover.handle_timeout(ms(100));
    assert_eq!(rover.in_flight(), 1);
    assert_eq!(rover.handle_received(attempt, b"7\r\n", ms(900)), Ok(3));
    assert!(matches!(
        rover.poll_event(),
        Some(Event::Connection { slot: 17, .. })
    ));
}

#[test]
fn a_server_added_while_running_is_probed_within_one_interval() {
    // 1,000 servers: the random tick would find the new one once in 1,000 s.
    let mut rover = rover_with(config(), 1_000);
    rover.start(ms(0));
    drain(&mut rover);
    rover.handle_timeout(ms(10));
    assert!(rover.add_server(ServerId(5_000)));
    let mut now;
    let probed = loop {
        let due = rover.poll_timeout().unwrap();
        assert!(due <= ms(1_010), "the probe is due within one interval");
        now = due.as_micros() / 1_000;
        rover.handle_timeout(due);
        let launched = connects(&drain(&mut rover).0);
        if let Some(&(_, server)) = launched.iter().find(|(_, s)| *s == ServerId(5_000)) {
            break server;
        }
    };
    assert_eq!(probed, ServerId(5_000));
    assert!(now <= 1_010);
}

#[test]
fn a_lost_connection_is_probed_on_a_backoff_capped_at_two_seconds() {
    let mut rover = rover_with(config(), 1_000);
    rover.start(ms(0));
    drain(&mut rover);
    let lost = ServerId(7);
    rover.handle_conn_lost(lost, ms(0));
    let mut probes_at = Vec::new();
    let mut now = ms(0);
    while probes_at.len() < 10 && now < ms(60_000) {
        let Some(due) = rover.poll_timeout() else {
            break;
        };
        now = due;
        rover.handle_timeout(now);
        for (attempt, server) in connects(&drain(&mut rover).0) {
            let _ = rover.handle_connect_failed(attempt, ConnectFailure::Refused, now);
            if server == lost {
                probes_at.push(now.as_micros() / 1_000);
            }
        }
        drain(&mut rover);
    }
    // 8 probes in a row, then the server is left to the random draw (and its backoff).
    assert_eq!(probes_at.len(), 8, "{probes_at:?}");
    let gaps: Vec<u64> = probes_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        (250..=500).contains(&probes_at[0]),
        "first after half to all of backoff_base: {probes_at:?}"
    );
    assert!(gaps.iter().all(|&gap| gap <= 2_000), "capped: {gaps:?}");
    assert!(
        gaps[gaps.len() - 1] >= 1_000,
        "the cap is reached: {gaps:?}"
    );
}

#[test]
fn a_probe_ends_when_the_server_answers() {
    let mut rover = rover_with(config(), 1_000);
    rover.start(ms(0));
    drain(&mut rover);
    rover.handle_conn_lost(ServerId(3), ms(0));
    let due = rover.poll_timeout().unwrap();
    rover.handle_timeout(due);
    let launched = connects(&drain(&mut rover).0);
    let &(attempt, _) = launched.iter().find(|(_, s)| *s == ServerId(3)).unwrap();
    assert_eq!(rover.handle_received(attempt, b"0\r\n", due), Ok(3));
    drain(&mut rover);
    assert!(!rover.probes.is_owed(ServerId(3)));
    assert!(
        rover.poll_timeout().unwrap() >= ms(900),
        "only the tick is left"
    );
}

#[test]
fn spreading_prefers_servers_without_connections_or_attempts() {
    let fill = RoverConfig {
        max_in_flight: 3,
        ..RoverConfig::default()
    };
    let mut rover = rover_with(fill, 4);
    rover.set_held(ServerId(0), 2);
    rover.set_demand(3, ms(0));
    rover.start(ms(0));
    let mut servers: Vec<ServerId> = connects(&drain(&mut rover).0)
        .into_iter()
        .map(|(_, server)| server)
        .collect();
    servers.sort_unstable();
    // Three attempts on the three servers that hold nothing, one each.
    assert_eq!(servers, [ServerId(1), ServerId(2), ServerId(3)]);
    // Without spreading, first attempts land on the held server too.
    let unspread = RoverConfig {
        spread: false,
        ..config()
    };
    let mut on_held = 0;
    for seed in 0..40 {
        let mut rover = Rover::new(unspread.clone(), seed).unwrap();
        for id in 0..4 {
            rover.add_server(ServerId(id));
        }
        rover.set_held(ServerId(0), 2);
        on_held += usize::from(first_attempt(&mut rover, ms(0)).1 == ServerId(0));
    }
    assert!(
        on_held > 0,
        "without spreading the held server is drawn too"
    );
}

#[test]
fn a_probe_whose_attempt_is_aborted_is_due_again() {
    let mut rover = rover_with(config(), 1_000);
    rover.start(ms(0));
    drain(&mut rover);
    let lost = ServerId(7);
    rover.handle_conn_lost(lost, ms(0));
    let (probe, now) = loop {
        let due = rover.poll_timeout().unwrap();
        assert!(due <= ms(2_000), "the probe is due within its backoff");
        rover.handle_timeout(due);
        let launched = connects(&drain(&mut rover).0);
        if let Some(&(attempt, _)) = launched.iter().find(|(_, server)| *server == lost) {
            break (attempt, due);
        }
    };
    rover.abort_attempts(lost);
    let (actions, _) = drain(&mut rover);
    assert!(actions.contains(&Action::Close { attempt: probe }));
    // Nothing is left to answer the probe: it is launched again on the server's backoff,
    // neither forgotten nor at once.
    let again = loop {
        let due = rover.poll_timeout().unwrap();
        assert!(
            due <= now + Duration::from_secs(2),
            "due again within the cap"
        );
        rover.handle_timeout(due);
        let launched = connects(&drain(&mut rover).0);
        if launched.iter().any(|(_, server)| *server == lost) {
            break due;
        }
    };
    assert!(again > now, "not at once");
}

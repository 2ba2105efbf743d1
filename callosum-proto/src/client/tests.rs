use alloc::string::ToString;
use alloc::vec::Vec;

use super::*;
use crate::SlotLine;
use crate::rover::HandshakeFailure;

const NOW: Instant = Instant::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The original's pool (always `max_slots`, lowest idle first), which most tests here are
/// about; the sizing and lease policy tests make their own.
fn original_config(max_slots: usize) -> ClientConfig {
    let mut config = ClientConfig::original();
    config.pool.max_slots = max_slots;
    config
}

fn client(max_slots: usize) -> ClientCore<u32> {
    ClientCore::new(original_config(max_slots), 5).unwrap()
}

/// Every output up to the timeout.
fn drain(client: &mut ClientCore<u32>) -> Vec<Output<u32>> {
    let mut outputs = Vec::new();
    loop {
        match client.poll_output() {
            Output::Timeout(_) => return outputs,
            output => outputs.push(output),
        }
    }
}

/// What `pick` takes from each output that it matches.
fn picked<T>(outputs: &[Output<u32>], pick: impl Fn(&Output<u32>) -> Option<T>) -> Vec<T> {
    outputs.iter().filter_map(pick).collect()
}

fn connects(outputs: &[Output<u32>]) -> Vec<(AttemptId, SocketAddr)> {
    picked(outputs, |output| match *output {
        Output::Connect { attempt, server } => Some((attempt, server)),
        _ => None,
    })
}

fn events(outputs: &[Output<u32>]) -> Vec<ClientEvent> {
    picked(outputs, |output| match *output {
        Output::Event(event) => Some(event),
        _ => None,
    })
}

fn closed(outputs: &[Output<u32>]) -> Vec<u32> {
    picked(outputs, |output| match *output {
        Output::Close(conn) => Some(conn),
        _ => None,
    })
}

/// Sleeps from timeout to timeout until the client starts an attempt: when, and which.
fn next_connect(client: &mut ClientCore<u32>) -> (Instant, AttemptId) {
    for _ in 0..100 {
        let Output::Timeout(Some(at)) = client.poll_output() else {
            panic!("a timer to wait for")
        };
        client.handle_timeout(at);
        if let [(attempt, _)] = connects(&drain(client))[..] {
            return (at, attempt);
        }
    }
    panic!("no attempt within 100 timeouts")
}

/// A client with a pool of one and one server, started: its first (and only) attempt.
fn one_server_one_attempt() -> (ClientCore<u32>, AttemptId) {
    let mut client = client(1);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let [(attempt, _)] = connects(&drain(&mut client))[..] else {
        panic!("one attempt for a pool of one")
    };
    (client, attempt)
}

/// Completes `attempt` with `line` and delivers `conn`.
fn connect(client: &mut ClientCore<u32>, attempt: AttemptId, line: &[u8], conn: u32) {
    connect_at(client, attempt, line, conn, NOW);
}

/// [`connect`] at `now`.
fn connect_at(
    client: &mut ClientCore<u32>,
    attempt: AttemptId,
    line: &[u8],
    conn: u32,
    now: Instant,
) {
    client.handle_connected(attempt, now).unwrap();
    let Ok(Handshake::Complete(ready)) = client.handle_received(attempt, line, now) else {
        panic!("{line:?} is a whole line");
    };
    client.deliver(ready, conn, now);
}

/// A client with a pool of two, both on one server: connections 10 (slot 0) and 11 (slot 1),
/// idle, every output drained.
fn two_idle_on_one_server() -> ClientCore<u32> {
    let mut client = client(2);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let attempts = connects(&drain(&mut client));
    connect(&mut client, attempts[0].0, b"0\r\n", 10);
    connect(&mut client, attempts[1].0, b"1\r\n", 11);
    drain(&mut client);
    client
}

#[test]
fn the_first_server_starts_roving_and_a_line_fills_the_pool() {
    let mut client = client(1);
    assert!(
        drain(&mut client).is_empty(),
        "nothing to do without servers"
    );
    assert_eq!(client.poll_output(), Output::Timeout(None));
    assert!(client.add_server(addr(1), NOW));
    assert!(!client.add_server(addr(1), NOW), "an address is one server");
    assert!(
        drain(&mut client).is_empty(),
        "roving starts at the timeout"
    );
    assert_eq!(client.poll_output(), Output::Timeout(Some(NOW)));
    client.handle_timeout(NOW);
    let outputs = drain(&mut client);
    let [(attempt, server)] = connects(&outputs)[..] else {
        panic!("one attempt for one wanted connection: {outputs:?}")
    };
    assert_eq!(server, addr(1));
    client.handle_connected(attempt, NOW).unwrap();
    assert_eq!(
        client.handle_received(attempt, b"1", NOW),
        Ok(Handshake::NeedMore { at_most: 11 })
    );
    let Ok(Handshake::Complete(ready)) = client.handle_received(attempt, b"2\r\n", NOW) else {
        panic!("the line is complete");
    };
    assert_eq!(ready.slot(), 12);
    client.deliver(ready, 40, NOW);
    let outputs = drain(&mut client);
    assert_eq!(
        events(&outputs),
        [ClientEvent::Kept {
            server: addr(1),
            slot: 12
        }]
    );
    assert!(outputs.contains(&Output::Idle));
    assert!(connects(&outputs).is_empty(), "the pool is full");
    assert_eq!(client.status().servers[0].slots, [12]);
}

#[test]
fn only_a_finished_lease_goes_back_to_idle() {
    let mut client = two_idle_on_one_server();

    let lease = client.checkout(NOW).unwrap();
    assert_eq!((lease.slot, lease.conn), (0, 10));
    let returned = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW);
    assert!(matches!(returned, Ok(Returned::Idle(_))));
    assert_eq!(
        client.checkin(lease.id, 10, LeaseEnd::Finished, NOW),
        Err(NotLeased { lease: lease.id }),
        "returned twice"
    );
    assert_eq!(
        closed(&drain(&mut client)),
        [10],
        "a stray return is closed"
    );

    let lease = client.checkout(NOW).unwrap();
    let returned = client.checkin(lease.id, lease.conn, LeaseEnd::Interrupted, NOW);
    assert_eq!(returned, Ok(Returned::Closed));
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [lease.conn]);
    assert_eq!(
        events(&outputs),
        [ClientEvent::Removed {
            server: addr(1),
            slot: lease.slot,
            cause: RemoveCause::Interrupted
        }]
    );
    assert_eq!(connects(&outputs).len(), 1, "the rover replaces it");
    assert_eq!(client.status().stats.removed.interrupted, 1);
}

#[test]
fn bytes_after_the_line_fail_the_attempt_whatever_the_segmentation() {
    let (mut client, attempt) = one_server_one_attempt();
    client.handle_connected(attempt, NOW).unwrap();
    assert_eq!(
        client.handle_received(attempt, b"0\r\nX", NOW),
        Ok(Handshake::Failed)
    );
    let outputs = drain(&mut client);
    assert_eq!(
        events(&outputs),
        [ClientEvent::Removed {
            server: addr(1),
            slot: 0,
            cause: RemoveCause::UnsolicitedData
        }]
    );
    assert!(
        !outputs.contains(&Output::Abort(attempt)),
        "the direct answer said it"
    );
    assert_eq!(client.status().pool.held, 0);
    assert!(
        connects(&outputs).is_empty(),
        "the server backs off: it spoke unasked"
    );
    assert_eq!(client.status().stats.died_young, 1);

    // The same byte in a later read, while idle: the same cause.
    let (later, attempt) = next_connect(&mut client);
    assert!(later >= Instant::from_millis(500), "after the backoff base");
    connect(&mut client, attempt, b"0\r\n", 7);
    drain(&mut client);
    let (id, _) = client.idle_mut().next().unwrap();
    client
        .handle_idle_signal(id, IdleSignal::Bytes, NOW)
        .unwrap();
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [7]);
    assert_eq!(
        events(&outputs),
        [ClientEvent::Removed {
            server: addr(1),
            slot: 0,
            cause: RemoveCause::UnsolicitedData
        }]
    );
    assert_eq!(client.status().stats.removed.unsolicited_data, 2);
}

#[test]
fn removing_a_server_closes_its_idle_connections_and_its_leases_on_return() {
    let mut client = two_idle_on_one_server();
    let lease = client.checkout(NOW).unwrap();

    assert!(client.remove_server(addr(1), NOW));
    assert!(!client.remove_server(addr(1), NOW));
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [11], "the idle one now");
    let removed: Vec<u32> = events(&outputs)
        .iter()
        .filter_map(|event| match *event {
            ClientEvent::Removed {
                slot,
                cause: RemoveCause::ServerRemoved,
                ..
            } => Some(slot),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [0, 1], "both reported at once");
    assert!(connects(&outputs).is_empty(), "no server left to try");
    assert_eq!(client.status().pool.held, 0, "both places are free");

    let returned = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW);
    assert_eq!(returned, Ok(Returned::Closed));
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [10]);
    assert!(events(&outputs).is_empty(), "reported once, at removal");
}

#[test]
fn an_attempt_to_a_removed_server_is_aborted_and_its_line_never_delivered() {
    let (mut client, attempt) = one_server_one_attempt();
    client.remove_server(addr(1), NOW);
    assert!(drain(&mut client).contains(&Output::Abort(attempt)));
    assert_eq!(
        client.handle_received(attempt, b"0\r\n", NOW),
        Err(StaleAttempt { attempt })
    );
}

#[test]
fn servers_added_together_all_take_part_in_the_first_attempts() {
    let mut config = original_config(64);
    config.rover.max_in_flight = 64;
    let mut client: ClientCore<u32> = ClientCore::new(config, 9).unwrap();
    for port in 1..=4 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let outputs = drain(&mut client);
    let mut servers: Vec<SocketAddr> = connects(&outputs).iter().map(|&(_, s)| s).collect();
    assert_eq!(
        servers.len(),
        64,
        "fill mode: one attempt per wanted connection"
    );
    servers.sort_unstable();
    servers.dedup();
    assert_eq!(
        servers.len(),
        4,
        "every server drawn, not only the first added"
    );
}

#[test]
fn callers_in_line_are_served_first_and_in_order() {
    let (mut client, attempt) = one_server_one_attempt();
    let first = client.join_line(NOW);
    let second = client.join_line(NOW);
    connect(&mut client, attempt, b"0\r\n", 10);
    assert!(drain(&mut client).contains(&Output::Idle));
    assert!(client.checkout(NOW).is_none(), "callers in line come first");
    assert!(
        client.checkout_in_line(second, NOW).is_none(),
        "not its turn"
    );
    let lease = client.checkout_in_line(first, NOW).unwrap();
    let _ = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW);
    assert!(
        client.checkout(NOW).is_none(),
        "the second is still waiting"
    );
    let lease = client.checkout_in_line(second, NOW).unwrap();
    assert_eq!(client.status().waiting_gets, 0);
    let _ = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW);
    assert!(client.checkout(NOW).is_some());
}

#[test]
fn a_caller_leaving_the_front_of_the_line_wakes_the_next() {
    let (mut client, attempt) = one_server_one_attempt();
    connect(&mut client, attempt, b"0\r\n", 10);
    let first = client.join_line(NOW);
    let second = client.join_line(NOW);
    drain(&mut client);
    client.leave_line(first, NOW);
    assert_eq!(drain(&mut client), [Output::Idle]);
    assert!(client.checkout_in_line(second, NOW).is_some());
}

#[test]
fn failures_are_events_and_the_last_one_is_kept() {
    let (mut client, attempt) = one_server_one_attempt();
    client
        .handle_connect_failed(attempt, ConnectFailure::Refused, NOW)
        .unwrap();
    let outputs = drain(&mut client);
    assert!(!outputs.contains(&Output::Abort(attempt)));
    assert_eq!(
        events(&outputs),
        [ClientEvent::Unreachable {
            server: addr(1),
            reason: ConnectFailure::Refused
        }]
    );
    assert_eq!(
        client.last_failure(),
        Some(Failure::Unreachable {
            server: addr(1),
            reason: ConnectFailure::Refused
        })
    );
    assert_eq!(client.status().stats.unreachable, 1);
}

#[test]
fn closing_closes_idle_connections_now_and_leases_on_return() {
    let mut client = client(2);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let attempts = connects(&drain(&mut client));
    connect(&mut client, attempts[0].0, b"0\r\n", 10);
    drain(&mut client);
    let lease = client.checkout(NOW).unwrap();
    connect(&mut client, attempts[1].0, b"1\r\n", 11);
    drain(&mut client);

    client.close(NOW);
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [11]);
    assert!(
        outputs.contains(&Output::Idle),
        "waiting callers wake to see it"
    );
    assert!(!client.add_server(addr(2), NOW));
    assert!(client.checkout(NOW).is_none());
    let returned = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW);
    assert_eq!(returned, Ok(Returned::Closed));
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [10]);
    assert_eq!(client.status().stats.removed.client_closed, 2);
}

#[test]
fn a_reset_at_connect_is_a_handshake_failure_as_at_the_first_read() {
    let (mut client, attempt) = one_server_one_attempt();
    client
        .handle_connect_failed(attempt, ConnectFailure::Reset, NOW)
        .unwrap();
    let outputs = drain(&mut client);
    assert_eq!(
        events(&outputs),
        [ClientEvent::HandshakeFailed {
            server: addr(1),
            reason: HandshakeFailure::ReadFailed
        }]
    );
    assert!(!outputs.contains(&Output::Abort(attempt)));
    assert_eq!(client.status().stats.handshake_failed, 1);
}

#[test]
fn a_server_that_closes_every_connection_after_its_line_backs_off_more_each_time() {
    let mut client = client(1);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let [(mut attempt, _)] = connects(&drain(&mut client))[..] else {
        panic!("one attempt")
    };
    let mut tried = Vec::new();
    let mut now = NOW;
    for conn in 0..6 {
        connect(&mut client, attempt, b"0\r\n", conn);
        drain(&mut client);
        let (id, _) = client.idle_mut().next().unwrap();
        client
            .handle_idle_signal(id, IdleSignal::Closed, now)
            .unwrap();
        drain(&mut client);
        (now, attempt) = next_connect(&mut client);
        tried.push(now.as_micros() / 1_000);
    }
    let gaps: Vec<u64> = core::iter::once(tried[0])
        .chain(tried.windows(2).map(|w| w[1] - w[0]))
        .collect();
    // The default backoff: 500 ms doubling; never a reconnect per round trip.
    assert_eq!(gaps, [500, 1_000, 2_000, 4_000, 8_000, 16_000]);
    assert_eq!(client.status().stats.died_young, 6);
}

#[test]
fn a_finished_exchange_forgives_the_servers_failures() {
    let (mut client, attempt) = one_server_one_attempt();
    connect(&mut client, attempt, b"0\r\n", 1);
    let lease = client.checkout(NOW).unwrap();
    let _ = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW);
    // Old and proven: its end is no failure, so the next attempt comes at once.
    let later = Instant::from_millis(5_000);
    let (id, _) = client.idle_mut().next().unwrap();
    client
        .handle_idle_signal(id, IdleSignal::Closed, later)
        .unwrap();
    let outputs = drain(&mut client);
    assert_eq!(connects(&outputs).len(), 1, "fill mode replaces it at once");
    assert_eq!(client.status().stats.died_young, 0);
}

#[test]
fn a_server_that_answers_failures_backs_off_until_an_exchange_finishes() {
    let (mut client, mut attempt) = one_server_one_attempt();
    let mut now = NOW;
    let mut tried = Vec::new();
    // Each connection's first answer is a failure; the exchanges before it finished.
    for conn in 0..5 {
        connect(&mut client, attempt, b"0\r\n", conn);
        drain(&mut client);
        let lease = client.checkout(now).unwrap();
        let returned = client.checkin(lease.id, lease.conn, LeaseEnd::ServerFailed, now);
        assert_eq!(returned, Ok(Returned::Closed));
        let outputs = drain(&mut client);
        assert_eq!(
            removed_by(&outputs, RemoveCause::ServerFailed),
            [0],
            "its slot"
        );
        assert_eq!(closed(&outputs), [conn]);
        (now, attempt) = next_connect(&mut client);
        tried.push(now.as_micros() / 1_000);
    }
    let gaps: Vec<u64> = tried.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [1_000, 2_000, 4_000, 8_000], "from {tried:?}");
    let stats = client.status().stats;
    assert_eq!((stats.removed.server_failed, stats.died_young), (5, 0));

    // A finished exchange on a newer connection forgives: the next failure backs off from
    // the base again.
    connect(&mut client, attempt, b"0\r\n", 9);
    let lease = client.checkout(now).unwrap();
    let _ = client.checkin(lease.id, lease.conn, LeaseEnd::Finished, now);
    let lease = client.checkout(now).unwrap();
    let _ = client.checkin(lease.id, lease.conn, LeaseEnd::ServerFailed, now);
    drain(&mut client);
    let (again, _) = next_connect(&mut client);
    assert_eq!(again.saturating_duration_since(now).as_millis(), 500);
}

#[test]
fn a_caller_without_a_connection_is_told_why() {
    let mut client = client(1);
    let waited = core::time::Duration::from_secs(1);
    assert_eq!(client.get_error(waited), GetError::NoServers);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    assert_eq!(
        client.get_error(waited),
        GetError::TimedOut {
            waited,
            last_failure: None
        }
    );
    let [(attempt, _)] = connects(&drain(&mut client))[..] else {
        panic!("one attempt")
    };
    client
        .handle_connect_failed(attempt, ConnectFailure::Refused, NOW)
        .unwrap();
    let failure = Failure::Unreachable {
        server: addr(1),
        reason: ConnectFailure::Refused,
    };
    assert_eq!(
        client.get_error(waited),
        GetError::TimedOut {
            waited,
            last_failure: Some(failure)
        }
    );
    client.close(NOW);
    assert_eq!(client.get_error(waited), GetError::Closed);
}

/// Answers every `Connect` among `outputs` with the next slot of a counter (each connection
/// `conn` is its slot), at `now`; the servers it connected to.
fn answer(
    client: &mut ClientCore<u32>,
    outputs: &[Output<u32>],
    next_slot: &mut u32,
    now: Instant,
) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for &(attempt, server) in &connects(outputs) {
        let line = SlotLine::new(*next_slot);
        client.handle_connected(attempt, now).unwrap();
        let Ok(Handshake::Complete(ready)) = client.handle_received(attempt, line.as_bytes(), now)
        else {
            panic!("a whole line")
        };
        client.deliver(ready, *next_slot, now);
        *next_slot += 1;
        servers.push(server);
    }
    servers
}

/// Drains and answers connects until the client has nothing more to connect now.
fn settle(client: &mut ClientCore<u32>, next_slot: &mut u32, now: Instant) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    loop {
        let outputs = drain(client);
        let answered = answer(client, &outputs, next_slot, now);
        if answered.is_empty() {
            return servers;
        }
        servers.extend(answered);
    }
}

fn distinct(mut servers: Vec<SocketAddr>) -> usize {
    servers.sort_unstable();
    servers.dedup();
    servers.len()
}

#[test]
fn a_pool_sized_to_demand_grows_with_callers_and_shrinks_from_its_highest_idle_slot() {
    let mut config = ClientConfig::default();
    config.pool.max_slots = 8;
    assert_eq!(config.sizing, PoolSizing::Demand);
    let mut client: ClientCore<u32> = ClientCore::new(config, 11).unwrap();
    for port in 1..=8 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    let first = settle(&mut client, &mut next_slot, NOW);
    assert_eq!(client.status().target, 2, "an idle client keeps two");
    assert_eq!(distinct(first), 2, "spread over two servers");

    // Two callers use both connections, three more wait, for three seconds: an average of
    // three in use, so the pool grows to six.
    let mut leases: Vec<Lease<u32>> = (0..2).map(|_| client.checkout(NOW).unwrap()).collect();
    let tickets: Vec<Ticket> = (0..3).map(|_| client.join_line(NOW)).collect();
    assert!(client.checkout_in_line(tickets[0], NOW).is_none());
    assert_eq!(
        client.status().target,
        2,
        "a moment's callers do not grow it"
    );
    let busy = Instant::from_millis(3_000);
    client.handle_timeout(busy);
    let grown = settle(&mut client, &mut next_slot, busy);
    assert_eq!((client.status().target, client.status().pool.held), (6, 6));
    assert_eq!(grown.len(), 4);
    for ticket in tickets {
        leases.push(client.checkout_in_line(ticket, busy).unwrap());
    }
    leases.push(client.checkout(busy).unwrap());
    let servers: Vec<SocketAddr> = leases.iter().map(|lease| lease.server).collect();
    assert_eq!(
        distinct(servers),
        6,
        "spreading: six servers for six connections"
    );

    // Demand falls: the highest slot (5) is kept out, so nothing is taken from its user...
    let highest = leases.iter().position(|l| l.slot == 5).unwrap();
    let kept_out = leases.swap_remove(highest);
    for lease in leases {
        client
            .checkin(lease.id, lease.conn, LeaseEnd::Finished, busy)
            .unwrap();
    }
    let later = Instant::from_millis(60_000);
    client.handle_timeout(later);
    let outputs = drain(&mut client);
    let surplus = |outputs: &[Output<u32>]| {
        picked(outputs, |output| match *output {
            Output::Event(ClientEvent::Removed {
                slot,
                cause: RemoveCause::Surplus,
                ..
            }) => Some(slot),
            _ => None,
        })
    };
    // ...while it is out: one connection in use for a minute keeps the target at 4 (twice
    // the average, and it only comes down a whole connection below that).
    assert_eq!(client.status().target, 4);
    assert_eq!(surplus(&outputs), [] as [u32; 0], "the highest is leased");
    client
        .checkin(kept_out.id, kept_out.conn, LeaseEnd::Finished, later)
        .unwrap();
    let outputs = drain(&mut client);
    assert_eq!(surplus(&outputs), [5, 4], "highest first, once it is back");
    assert_eq!(closed(&outputs), [5, 4]);
    // Nothing in use for a while: down to the floor of two.
    client.handle_timeout(Instant::from_millis(120_000));
    let outputs = drain(&mut client);
    assert_eq!(surplus(&outputs), [3, 2]);
    assert_eq!((client.status().target, client.status().pool.held), (2, 2));
    assert_eq!(client.status().stats.removed.surplus, 4);
}

#[test]
fn random_leasing_uses_every_idle_connection() {
    let mut config = ClientConfig::default();
    config.pool.max_slots = 4;
    config.sizing = PoolSizing::Fixed;
    assert_eq!(config.lease, LeasePolicy::Random);
    let mut client: ClientCore<u32> = ClientCore::new(config, 3).unwrap();
    for port in 1..=4 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    settle(&mut client, &mut next_slot, NOW);
    let mut used = [0u32; 4];
    for _ in 0..400 {
        let lease = client.checkout(NOW).unwrap();
        used[lease.conn as usize] += 1;
        client
            .checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW)
            .unwrap();
    }
    assert!(used.iter().all(|&n| n > 50), "{used:?}");
    // The original's policy puts every request on the lowest slot.
    let mut client = client_with_lowest_of_four();
    let lease = client.checkout(NOW).unwrap();
    assert_eq!(lease.slot, 0);
    client
        .checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW)
        .unwrap();
}

fn client_with_lowest_of_four() -> ClientCore<u32> {
    let mut client = client(4);
    for port in 1..=4 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    settle(&mut client, &mut next_slot, NOW);
    client
}

#[test]
fn a_proven_connection_closed_by_its_server_has_the_server_probed_soon() {
    let mut client = client(1);
    for port in 1..=100 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    let [server] = settle(&mut client, &mut next_slot, NOW)[..] else {
        panic!("one connection")
    };
    let lease = client.checkout(NOW).unwrap();
    client
        .checkin(lease.id, lease.conn, LeaseEnd::Finished, NOW)
        .unwrap();
    // Long after its line the server closes it: a restart, not a young death.
    let at = Instant::from_millis(5_000);
    client.handle_timeout(at);
    drain(&mut client);
    let (id, _) = client.idle_mut().next().unwrap();
    client
        .handle_idle_signal(id, IdleSignal::Closed, at)
        .unwrap();
    let mut tried = Vec::new();
    let deadline = Instant::from_millis(5_500);
    loop {
        tried.extend(connects(&drain(&mut client)).into_iter().map(|(_, s)| s));
        let Output::Timeout(Some(next)) = client.poll_output() else {
            panic!("a timer")
        };
        if next > deadline {
            break;
        }
        client.handle_timeout(next);
    }
    assert!(
        tried.contains(&server),
        "{server} probed within 500 ms: {tried:?}"
    );
}

fn removed_by(outputs: &[Output<u32>], cause: RemoveCause) -> Vec<u32> {
    picked(outputs, |output| match *output {
        Output::Event(ClientEvent::Removed { slot, cause: c, .. }) if c == cause => Some(slot),
        _ => None,
    })
}

fn secs(secs: u64) -> Instant {
    Instant::from_millis(secs * 1_000)
}

#[test]
fn max_lifetime_closes_a_connection_when_it_is_next_idle_never_under_its_user() {
    let mut config = original_config(1);
    config.max_lifetime = Some(core::time::Duration::from_secs(10));
    let mut client: ClientCore<u32> = ClientCore::new(config, 5).unwrap();
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    settle(&mut client, &mut next_slot, NOW);
    // The timer knows when the connection's life ends.
    let Output::Timeout(Some(due)) = client.poll_output() else {
        panic!("a timer")
    };
    assert!(due <= secs(10));
    // Lent at 9 s and kept past 10 s: its user is not disturbed...
    let lease = client.checkout(secs(9)).unwrap();
    client.handle_timeout(secs(11));
    assert!(removed_by(&drain(&mut client), RemoveCause::MaxLifetime).is_empty());
    // ...and once back, it is never lent again.
    client
        .checkin(lease.id, lease.conn, LeaseEnd::Finished, secs(12))
        .unwrap();
    assert!(client.checkout(secs(12)).is_none());
    let outputs = drain(&mut client);
    assert_eq!(removed_by(&outputs, RemoveCause::MaxLifetime), [0]);
    assert_eq!(closed(&outputs), [0]);
    assert_eq!(client.status().stats.removed.max_lifetime, 1);
}

#[test]
fn idle_timeout_counts_from_the_last_return() {
    let mut config = original_config(1);
    config.idle_timeout = Some(core::time::Duration::from_secs(3));
    config.rover.interval = core::time::Duration::from_secs(100);
    config.rover.jitter = core::time::Duration::ZERO;
    let mut client: ClientCore<u32> = ClientCore::new(config, 5).unwrap();
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    settle(&mut client, &mut next_slot, NOW);
    let lease = client.checkout(secs(1)).unwrap();
    client
        .checkin(lease.id, lease.conn, LeaseEnd::Finished, secs(2))
        .unwrap();
    drain(&mut client);
    client.handle_timeout(secs(4));
    assert!(removed_by(&drain(&mut client), RemoveCause::IdleTimeout).is_empty());
    let Output::Timeout(Some(due)) = client.poll_output() else {
        panic!("a timer")
    };
    assert_eq!(due, secs(5), "three seconds after its return");
    client.handle_timeout(due);
    assert_eq!(
        removed_by(&drain(&mut client), RemoveCause::IdleTimeout),
        [0]
    );
}

#[test]
fn stats_count_gets_waits_wait_time_time_outs_and_leases_per_server() {
    let mut client = client(1);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    settle(&mut client, &mut next_slot, NOW);
    let lease = client.checkout(NOW).unwrap();
    assert!(client.checkout(NOW).is_none());
    let served = client.join_line(NOW);
    let gave_up = client.join_line(NOW);
    client
        .checkin(lease.id, lease.conn, LeaseEnd::Finished, secs(2))
        .unwrap();
    let second = client.checkout_in_line(served, secs(2)).unwrap();
    client.leave_line(gave_up, secs(3));
    let error = client.get_timed_out(core::time::Duration::from_secs(3));
    assert!(matches!(error, GetError::TimedOut { .. }));
    let status = client.status();
    let stats = &status.stats;
    assert_eq!((stats.gets, stats.waits, stats.timed_out_gets), (2, 2, 1));
    assert_eq!(
        stats.wait_time,
        core::time::Duration::from_secs(5),
        "2 s + 3 s"
    );
    assert_eq!(status.servers[0].leases, 2);
    assert_eq!(status.servers[0].leased, 1);
    client
        .checkin(second.id, second.conn, LeaseEnd::Finished, secs(3))
        .unwrap();
    assert_eq!(client.status().servers[0].leased, 0);
}

fn resolves(outputs: &[Output<u32>]) -> Vec<(NameId, String, u16)> {
    picked(outputs, |output| match output {
        Output::Resolve { name, host, port } => Some((*name, host.clone(), *port)),
        _ => None,
    })
}

#[test]
fn a_name_is_the_set_of_its_addresses_re_resolved_every_interval() {
    let mut config = original_config(4);
    config.resolve_interval = core::time::Duration::from_secs(10);
    let mut client: ClientCore<u32> = ClientCore::new(config, 5).unwrap();
    let name = client.add_name("svc.local", 7000, NOW).unwrap();
    assert!(
        client.add_name("svc.local", 7000, NOW).is_none(),
        "a name once"
    );
    assert_eq!(
        resolves(&drain(&mut client)),
        [(name, "svc.local".to_string(), 7000)],
        "looked up at once"
    );
    client
        .handle_resolved(name, &[addr(1), addr(2)], NOW)
        .unwrap();
    assert_eq!(client.servers().collect::<Vec<_>>(), [addr(1), addr(2)]);
    // Nothing more until the interval is over.
    client.handle_timeout(secs(5));
    assert!(resolves(&drain(&mut client)).is_empty());
    client.handle_timeout(secs(10));
    assert_eq!(resolves(&drain(&mut client)).len(), 1);
    // The records changed: 2 is gone, 3 is new.
    client
        .handle_resolved(name, &[addr(1), addr(3)], secs(10))
        .unwrap();
    assert_eq!(client.servers().collect::<Vec<_>>(), [addr(1), addr(3)]);
    // A failure is an event and keeps the last known servers.
    client.handle_timeout(secs(20));
    drain(&mut client);
    client
        .handle_resolve_failed(name, ResolveFailure::LookupFailed, secs(20))
        .unwrap();
    let failed = events(&drain(&mut client));
    assert_eq!(
        failed,
        [ClientEvent::ResolveFailed {
            name,
            failure: ResolveFailure::LookupFailed
        }]
    );
    assert_eq!(client.servers().count(), 2);
    // The status names the host an event's id stands for, and what it resolved to last.
    let names = client.status().names;
    assert_eq!(names.len(), 1);
    assert_eq!(
        (names[0].name, names[0].host.as_str(), names[0].port),
        (name, "svc.local", 7000)
    );
    assert_eq!(names[0].servers, [addr(1), addr(3)]);
    // No address at all counts as a failure too.
    client.handle_timeout(secs(30));
    drain(&mut client);
    client.handle_resolved(name, &[], secs(30)).unwrap();
    assert_eq!(client.servers().count(), 2);
    assert_eq!(client.status().stats.resolve_failed, 2);
}

#[test]
fn an_address_given_directly_or_by_another_name_outlives_a_name() {
    let mut client = client(4);
    let first = client.add_name("a.local", 7000, NOW).unwrap();
    let second = client.add_name("b.local", 7000, NOW).unwrap();
    drain(&mut client);
    client.add_server(addr(9), NOW);
    client
        .handle_resolved(first, &[addr(1), addr(2), addr(9)], NOW)
        .unwrap();
    client.handle_resolved(second, &[addr(2)], NOW).unwrap();
    assert!(client.remove_name(first, NOW));
    assert_eq!(
        client.servers().collect::<Vec<_>>(),
        [addr(9), addr(2)],
        "9 was added directly, 2 is b's too"
    );
    assert_eq!(
        client.handle_resolved(first, &[addr(1)], NOW),
        Err(UnknownName { name: first }),
        "a lookup that comes back after its name was removed"
    );
    assert!(client.remove(
        &ServerSpec::Name {
            host: "b.local".into(),
            port: 7000
        },
        NOW
    ));
    assert_eq!(client.servers().collect::<Vec<_>>(), [addr(9)]);
}

#[test]
fn an_address_removed_directly_stays_while_a_name_lists_it() {
    let mut client = client(4);
    let name = client.add_name("a.local", 7000, NOW).unwrap();
    drain(&mut client);
    client.add_server(addr(1), NOW);
    client
        .handle_resolved(name, &[addr(1), addr(2)], NOW)
        .unwrap();
    assert!(client.remove_server(addr(1), NOW), "it was added directly");
    assert!(!client.remove_server(addr(2), NOW), "only the name's");
    let both = [addr(1), addr(2)];
    assert_eq!(client.servers().collect::<Vec<_>>(), both);
    // The next lookup finds the same records: nothing changes, as nothing was dropped.
    let later = secs(10);
    client.handle_resolved(name, &both, later).unwrap();
    assert_eq!(client.servers().collect::<Vec<_>>(), both);
    // Dropped from the records, and no longer added directly: gone.
    client.handle_resolved(name, &[addr(2)], later).unwrap();
    assert_eq!(client.servers().collect::<Vec<_>>(), [addr(2)]);
}

/// The rover launches its next attempt as soon as a line completes, before the connection
/// reaches the pool: spreading must count it already, or one attempt at a time would put a
/// pool of two on one server.
#[test]
fn spreading_counts_a_connection_on_its_way_to_the_pool() {
    let mut config = original_config(2);
    config.rover.max_in_flight = 1;
    config.rover.interval = core::time::Duration::from_millis(20);
    config.rover.jitter = core::time::Duration::ZERO;
    for seed in 0..20 {
        let mut client: ClientCore<u32> = ClientCore::new(config.clone(), seed).unwrap();
        let name = client.add_name("svc", 1, NOW).unwrap();
        drain(&mut client);
        client
            .handle_resolved(name, &[addr(1), addr(2)], NOW)
            .unwrap();
        client.handle_timeout(NOW);
        let mut next_slot = 0;
        let got = settle(&mut client, &mut next_slot, NOW);
        assert_eq!(distinct(got.clone()), 2, "seed {seed}: {got:?}");
    }
}

/// A mio loop has no line: its exchanges ask again at every turn. Those empty checkouts are
/// demand too, or a pool sized to demand would never grow past what is leased.
#[test]
fn checkouts_that_find_nothing_count_as_demand_without_a_line() {
    let mut config = ClientConfig::default();
    config.pool.max_slots = 16;
    let mut client: ClientCore<u32> = ClientCore::new(config, 3).unwrap();
    for port in 1..=16 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let mut next_slot = 0;
    settle(&mut client, &mut next_slot, NOW);
    let mut leases: Vec<Lease<u32>> = (0..2).map(|_| client.checkout(NOW).unwrap()).collect();
    // Eight exchanges want a connection, each turn for three seconds.
    let mut now = 0;
    while now < 3_000 {
        now += 10;
        for _ in 0..8 {
            if let Some(lease) = client.checkout(Instant::from_millis(now)) {
                leases.push(lease);
            }
        }
        settle(&mut client, &mut next_slot, Instant::from_millis(now));
    }
    assert!(client.status().target >= 8, "{}", client.status().target);
    assert!(leases.len() >= 8, "{} leased", leases.len());
    for lease in leases {
        client
            .checkin(
                lease.id,
                lease.conn,
                LeaseEnd::Finished,
                Instant::from_millis(now),
            )
            .unwrap();
    }
}

#[test]
fn a_connection_closed_before_its_reply_retires_every_other_of_its_server() {
    let mut client = client(4);
    client.add_server(addr(1), NOW);
    client.handle_timeout(NOW);
    let attempts = connects(&drain(&mut client));
    assert!(attempts.len() >= 4, "fill mode: {attempts:?}");
    for (slot, &(attempt, _)) in attempts[..3].iter().enumerate() {
        let line = SlotLine::new(slot as u32);
        connect(&mut client, attempt, line.as_bytes(), 10 + slot as u32);
    }
    let opening = attempts[3].0;
    client.handle_connected(opening, NOW).unwrap();
    drain(&mut client);
    let (first, second) = (client.checkout(NOW).unwrap(), client.checkout(NOW).unwrap());

    // The first request met its connection closed before any byte of the reply.
    let mut used = LeaseUse::default();
    used.record_io();
    assert_eq!(used.record_end(), StreamEnd::BeforeReply);
    let end = used.end(false);
    assert_eq!(end, LeaseEnd::ClosedBeforeReply);
    let returned = client.checkin(first.id, first.conn, end, NOW);
    assert_eq!(returned, Ok(Returned::Closed));
    let outputs = drain(&mut client);
    let mut closed_now = closed(&outputs);
    closed_now.sort_unstable();
    assert_eq!(closed_now, [10, 12], "its own and the idle one");
    assert!(outputs.contains(&Output::Abort(opening)), "{outputs:?}");
    assert_eq!(removed_by(&outputs, RemoveCause::Broken), [0]);
    assert_eq!(removed_by(&outputs, RemoveCause::ServerClosing), [1, 2]);
    assert_eq!(client.status().stats.removed.server_closing, 2);
    assert_eq!(client.status().pool.held, 0);
    // The lease still out finishes its exchange, and its connection is closed all the same.
    let returned = client.checkin(second.id, second.conn, LeaseEnd::Finished, NOW);
    assert_eq!(returned, Ok(Returned::Closed));
    let mut outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [11]);

    // The server stays: the rover connects to it again, and that connection is lent.
    assert_eq!(client.servers().collect::<Vec<_>>(), [addr(1)]);
    while connects(&outputs).is_empty() {
        let Output::Timeout(Some(at)) = client.poll_output() else {
            panic!("a timer to wait for")
        };
        assert!(at < secs(60), "an attempt within a minute");
        client.handle_timeout(at);
        outputs = drain(&mut client);
    }
    let (attempt, server) = connects(&outputs)[0];
    assert_eq!(server, addr(1));
    connect(&mut client, attempt, b"0\r\n", 20);
    assert_eq!(client.checkout(NOW).map(|lease| lease.conn), Some(20));
}

#[test]
fn a_broken_reply_retires_nothing_else() {
    let mut client = two_idle_on_one_server();
    let lease = client.checkout(NOW).unwrap();
    // Some of the reply came, then the end: the reply is broken, the server not closing.
    let mut used = LeaseUse::default();
    used.record_read(3);
    assert_eq!(used.record_end(), StreamEnd::InReply);
    let end = used.end(false);
    assert_eq!(end, LeaseEnd::Broken);
    client.checkin(lease.id, lease.conn, end, NOW).unwrap();
    let outputs = drain(&mut client);
    assert_eq!(closed(&outputs), [10]);
    assert!(removed_by(&outputs, RemoveCause::ServerClosing).is_empty());
    assert_eq!(client.status().pool.idle, 1);
}

/// A line equal to the highest slot held is turned away by a hair: its server holds fewer
/// connections than this client's fullest, so the rover looks again within the near-miss
/// interval; a line above it is an ordinary rejection and the rover keeps its interval.
#[test]
fn a_near_miss_hastens_the_rover_and_a_plain_rejection_does_not() {
    let mut client = client(1);
    for port in 1..=10 {
        client.add_server(addr(port), NOW);
    }
    client.handle_timeout(NOW);
    let [(first, _)] = connects(&drain(&mut client))[..] else {
        panic!("one attempt for a pool of one")
    };
    connect(&mut client, first, b"3\r\n", 10);
    drain(&mut client);
    let (at, tie) = next_connect(&mut client);
    assert!(at >= Instant::from_millis(900), "{at:?}");
    connect_at(&mut client, tie, b"3\r\n", 11, at);
    assert_eq!(closed(&drain(&mut client)), [11]);
    let (hastened, above) = next_connect(&mut client);
    assert_eq!(hastened, at + core::time::Duration::from_millis(40));
    connect_at(&mut client, above, b"4\r\n", 12, hastened);
    assert_eq!(closed(&drain(&mut client)), [12]);
    let (next, _) = next_connect(&mut client);
    assert!(
        next >= hastened + core::time::Duration::from_millis(900),
        "the interval again: {next:?}"
    );
}

/// Where the counts cannot come out even (two servers, three connections), this client's
/// every draw is a near miss: it hastens a few attempts, then keeps the interval's pace.
#[test]
fn near_misses_that_lead_nowhere_do_not_keep_the_rover_fast() {
    let mut client = client(1);
    client.add_server(addr(1), NOW);
    client.add_server(addr(2), NOW);
    client.handle_timeout(NOW);
    let [(first, _)] = connects(&drain(&mut client))[..] else {
        panic!("one attempt for a pool of one")
    };
    connect(&mut client, first, b"1\r\n", 10);
    drain(&mut client);
    let mut attempts = 0;
    let end = Instant::from_millis(20_000);
    loop {
        let (at, tie) = next_connect(&mut client);
        if at > end {
            break;
        }
        attempts += 1;
        connect_at(&mut client, tie, b"1\r\n", 11, at);
        drain(&mut client);
    }
    // 20 scheduled attempts and at most 4 x 2 hastened ones (unbounded: 477, 40 ms apart).
    assert!(
        (20..=20 + 2 * crate::rover::NEAR_MISS_ROUNDS + 2).contains(&attempts),
        "{attempts} attempts in 20 s"
    );
}

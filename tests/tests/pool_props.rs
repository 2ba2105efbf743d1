//! The client pool against PROTOCOL.md section 3: a model-based property test, and one test
//! for each known fault of the original JavaScript pool.

use callosum_proto::ServerId;
use callosum_proto::pool::{
    Checkin, CheckinError, ConnState, Evicted, Offer, Pool, PoolConfig, PoolConfigError, Removed,
    UnknownConn,
};
use callosum_tests::pool_model::{PoolOp, check_pool_ops, ops_from_bytes};
use proptest::prelude::*;

fn pool_op() -> impl Strategy<Value = PoolOp> {
    prop_oneof![
        4 => (0u8..4, 0u32..12).prop_map(|(server, slot)| PoolOp::Offer { server, slot }),
        3 => Just(PoolOp::Checkout),
        3 => any::<usize>().prop_map(|lease| PoolOp::Checkin { lease }),
        1 => any::<usize>().prop_map(|which| PoolOp::CheckinStale { which }),
        1 => any::<usize>().prop_map(|which| PoolOp::Remove { which }),
        1 => any::<usize>().prop_map(|which| PoolOp::RemoveStale { which }),
        1 => (0u8..4).prop_map(|server| PoolOp::RemoveServer { server }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn pool_matches_the_model(
        max_slots in 1usize..=8,
        seed in any::<u64>(),
        ops in proptest::collection::vec(pool_op(), 0..=200),
    ) {
        check_pool_ops(max_slots, seed, &ops);
    }

    #[test]
    fn any_bytes_decode_to_ops_the_pool_handles(
        max_slots in 0usize..=4,
        seed in any::<u64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..=256),
    ) {
        check_pool_ops(max_slots, seed, &ops_from_bytes(&bytes));
    }
}

fn pool(max_slots: usize) -> Pool<&'static str> {
    Pool::new(PoolConfig { max_slots }, 0x5EED).expect("valid config")
}

/// Setup that must hold: the offer was kept (into a pool with room).
fn kept<K: std::fmt::Debug>(offer: Offer<K>) {
    assert!(matches!(offer, Offer::Kept(_)), "setup: {offer:?}");
}

#[test]
fn returned_twice_is_not_handed_to_two_callers() {
    let mut pool = pool(1);
    kept(pool.offer(ServerId(1), 0, "conn"));
    let first = pool.checkout().expect("one idle");
    assert!(matches!(
        pool.checkin(first.id, first.conn),
        Ok(Checkin::Idle(_))
    ));
    // Returned a second time while idle: refused, and nothing is duplicated.
    assert_eq!(
        pool.checkin(first.id, "conn"),
        Err(CheckinError::NotLeased {
            id: first.id,
            conn: "conn"
        })
    );
    assert_eq!(pool.status().idle, 1);
    let second = pool.checkout().expect("one idle");
    assert_ne!(second.id, first.id, "each lease has its own id");
    // The first caller returns it again while the second one uses it: refused.
    assert!(pool.checkin(first.id, "conn").is_err());
    assert!(
        pool.checkout().is_none(),
        "the connection must not go to a third caller"
    );
    assert_eq!(pool.remove(first.id), Err(UnknownConn { id: first.id }));
    assert_eq!(pool.status().leased, 1);
    assert!(matches!(
        pool.checkin(second.id, second.conn),
        Ok(Checkin::Idle(_))
    ));
}

#[test]
fn evicted_while_leased_that_breaks_frees_one_place_only() {
    let mut pool = pool(2);
    kept(pool.offer(ServerId(1), 5, "a5"));
    kept(pool.offer(ServerId(2), 3, "b3"));
    let low = pool.checkout().expect("b3");
    let high = pool.checkout().expect("a5");
    assert_eq!((low.slot, high.slot), (3, 5));
    let Offer::Replaced { evicted, .. } = pool.offer(ServerId(3), 1, "c1") else {
        panic!("slot 1 must replace slot 5");
    };
    assert_eq!(
        evicted,
        Evicted::Leased {
            id: high.id,
            server: ServerId(1),
            slot: 5
        }
    );
    assert_eq!(pool.status().held, 2);
    assert_eq!(pool.status().evicted_awaiting_return, 1);
    // The evicted connection breaks (the peer closes it): removed, but its place was
    // given back at eviction, so no second place opens.
    assert!(matches!(pool.remove(high.id), Ok(Removed::Evicted { .. })));
    assert_eq!(pool.status().held, 2);
    assert_eq!(pool.wanted(), 0);
    assert_eq!(pool.offer(ServerId(4), 4, "d4"), Offer::Rejected("d4"));
    // Reported again (by a second close handler): refused, still no extra place.
    assert_eq!(pool.remove(high.id), Err(UnknownConn { id: high.id }));
    assert!(pool.checkin(high.id, high.conn).is_err());
    assert_eq!(pool.status().held, 2);
    assert!(pool.status().held <= pool.max_slots());
    assert_eq!(pool.status().evicted_awaiting_return, 0);
    assert!(matches!(
        pool.checkin(low.id, low.conn),
        Ok(Checkin::Idle(_))
    ));
}

#[test]
fn lease_return_cycles_do_not_grow_memory() {
    let mut pool = Pool::new(PoolConfig { max_slots: 4 }, 9).expect("valid config");
    for slot in 0..4 {
        kept(pool.offer(ServerId(slot), slot, u64::from(slot)));
    }
    let footprint = pool.footprint();
    assert_eq!(footprint, 4);
    for _ in 0..100_000 {
        let lease = pool.checkout().expect("an idle connection");
        assert!(matches!(
            pool.checkin(lease.id, lease.conn),
            Ok(Checkin::Idle(_))
        ));
    }
    assert_eq!(pool.footprint(), footprint);

    // Cycles that evict a leased connection, return it (closed), and refill: records are
    // reused too.
    for round in 0..100_000u64 {
        let leases: Vec<_> = (0..4).map(|_| pool.checkout().expect("idle")).collect();
        let Offer::Replaced { kept, evicted } = pool.offer(ServerId(9), 0, round + 100) else {
            panic!("slot 0 must replace the highest slot");
        };
        assert!(matches!(evicted, Evicted::Leased { slot: 3, .. }));
        let closed = leases
            .into_iter()
            .filter(|lease| matches!(pool.checkin(lease.id, lease.conn), Ok(Checkin::Close(_))))
            .count();
        assert_eq!(closed, 1);
        assert_eq!(
            pool.remove(kept).map(Removed::into_conn),
            Ok(Some(round + 100))
        );
        assert!(matches!(pool.offer(ServerId(3), 3, round), Offer::Kept(_)));
        assert!(pool.footprint() <= 5, "round {round}: {}", pool.footprint());
    }
    assert_eq!(pool.status().held, 4);
}

#[test]
fn zero_max_slots_is_a_config_error() {
    assert_eq!(
        Pool::<u64>::new(PoolConfig { max_slots: 0 }, 1).err(),
        Some(PoolConfigError::ZeroMaxSlots)
    );
    let error = PoolConfigError::ZeroMaxSlots;
    let _: &dyn std::error::Error = &error;
    assert!(error.to_string().contains("max_slots is 0"));
    // The default is 100, but only when asked for.
    let pool = Pool::<u64>::new(PoolConfig::default(), 1).expect("valid config");
    assert_eq!(pool.max_slots(), 100);
    assert_eq!(pool.wanted(), 100);
}

#[test]
fn idle_connection_with_unsolicited_data_is_removed() {
    let mut pool = pool(3);
    let Offer::Kept(chatty) = pool.offer(ServerId(1), 0, "chatty") else {
        panic!("kept");
    };
    kept(pool.offer(ServerId(2), 1, "quiet"));
    // The adapter sees bytes arrive on the idle connection and reports it broken.
    assert_eq!(
        pool.remove(chatty).map(Removed::into_conn),
        Ok(Some("chatty"))
    );
    assert_eq!(pool.stats().removed_broken, 1);
    assert_eq!(pool.status().held, 1);
    assert_eq!(pool.wanted(), 2);
    assert!(pool.connections().all(|c| c.id != chatty));
    let lease = pool.checkout().expect("quiet");
    assert_eq!(lease.conn, "quiet");
    assert!(
        pool.checkout().is_none(),
        "the removed connection is never lent"
    );
    assert_eq!(pool.remove(chatty), Err(UnknownConn { id: chatty }));
    assert_eq!(pool.stats().removed_broken, 1);
    assert!(matches!(
        pool.checkin(lease.id, lease.conn),
        Ok(Checkin::Idle(_))
    ));

    // "quiet" went through a checkout/checkin cycle and now talks while idle. The adapter
    // finds its current id among the idle connections; the old lease id acts on nothing.
    assert_eq!(pool.remove(lease.id), Err(UnknownConn { id: lease.id }));
    assert_eq!(
        pool.status().idle,
        1,
        "a returned lease id closed the idle connection"
    );
    let talking: Vec<_> = pool
        .idle_mut()
        .filter(|(_, conn)| **conn == "quiet")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(talking.len(), 1);
    assert_ne!(talking[0], lease.id);
    assert_eq!(
        pool.remove(talking[0]).map(Removed::into_conn),
        Ok(Some("quiet"))
    );
    assert_eq!(pool.stats().removed_broken, 2);
    assert_eq!(pool.status().held, 0);
    assert!(pool.checkout().is_none());
}

#[test]
fn ties_between_equal_slots_favour_no_server() {
    for seed in 0..8 {
        let mut pool = Pool::new(PoolConfig { max_slots: 4 }, seed).expect("valid config");
        for server in [1, 2] {
            for slot in [0, 1] {
                kept(pool.offer(ServerId(server), slot, (server, slot)));
            }
        }
        let rounds = 10_000;
        let mut on_server_1 = 0;
        for _ in 0..rounds {
            let lease = pool.checkout().expect("idle");
            assert_eq!(lease.slot, 0, "slot 1 used while a slot 0 was idle");
            on_server_1 += usize::from(lease.server == ServerId(1));
            assert!(matches!(
                pool.checkin(lease.id, lease.conn),
                Ok(Checkin::Idle(_))
            ));
        }
        let share = on_server_1 as f64 / f64::from(rounds);
        assert!(
            (0.4..=0.6).contains(&share),
            "seed {seed}: server 1 got {share:.3} of the slot-0 checkouts"
        );

        // With one slot 0 leased, the other is used, then the slot 1s, at random too.
        let mut slot_1_on_server_1 = 0;
        for _ in 0..rounds {
            let first = pool.checkout().expect("slot 0");
            let second = pool.checkout().expect("the other slot 0");
            assert_eq!((first.slot, second.slot), (0, 0));
            assert_ne!(first.server, second.server);
            let third = pool.checkout().expect("slot 1");
            assert_eq!(third.slot, 1);
            slot_1_on_server_1 += usize::from(third.server == ServerId(1));
            for lease in [first, second, third] {
                assert!(matches!(
                    pool.checkin(lease.id, lease.conn),
                    Ok(Checkin::Idle(_))
                ));
            }
        }
        let share = slot_1_on_server_1 as f64 / f64::from(rounds);
        assert!(
            (0.4..=0.6).contains(&share),
            "seed {seed}: server 1 got {share:.3} of the slot-1 checkouts"
        );
    }
}

#[test]
fn connections_report_per_server_state() {
    let mut pool = pool(2);
    kept(pool.offer(ServerId(1), 4, "a"));
    let lease = pool.checkout().expect("a");
    kept(pool.offer(ServerId(2), 2, "b"));
    let evicting = pool.offer(ServerId(3), 1, "c");
    assert!(
        matches!(evicting, Offer::Replaced { .. }),
        "evicts the leased \"a\""
    );
    let mut infos: Vec<_> = pool
        .connections()
        .map(|c| (c.server, c.slot, c.state))
        .collect();
    infos.sort_by_key(|&(server, ..)| server);
    assert_eq!(
        infos,
        [
            (ServerId(1), 4, ConnState::Evicted),
            (ServerId(2), 2, ConnState::Idle),
            (ServerId(3), 1, ConnState::Idle),
        ]
    );
    assert_eq!(pool.checkin(lease.id, lease.conn), Ok(Checkin::Close("a")));
}

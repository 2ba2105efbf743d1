//! Property tests of the client core (PROTOCOL.md sections 3, 4 and 6) through the shared
//! checking code: random inputs, lines split anywhere, closes, checkouts and check-ins,
//! server changes and time jumps, with the pool's rules after every step and no leak at the
//! end.

use callosum_proto::client::{IdleSignal, LeaseEnd};
use callosum_tests::client_check::{ClientOp, check_client_ops, ops_from_bytes};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"0\r\n".to_vec()),
        Just(b"7\r\n".to_vec()),
        Just(b"12\r\nX".to_vec()),
        Just(b"4294967296\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
        proptest::collection::vec(prop_oneof![Just(b'1'), Just(b'\r'), Just(b'\n')], 1..4),
    ]
}

fn lease_end() -> impl Strategy<Value = LeaseEnd> {
    prop_oneof![
        Just(LeaseEnd::Finished),
        Just(LeaseEnd::Interrupted),
        Just(LeaseEnd::Broken),
        Just(LeaseEnd::ClosedBeforeReply)
    ]
}

fn idle_signal() -> impl Strategy<Value = IdleSignal> {
    prop_oneof![
        Just(IdleSignal::Closed),
        Just(IdleSignal::Bytes),
        Just(IdleSignal::Failed)
    ]
}

fn op() -> impl Strategy<Value = ClientOp> {
    let pick = || any::<usize>();
    prop_oneof![
        1 => any::<u8>().prop_map(ClientOp::AddServer),
        1 => any::<u8>().prop_map(ClientOp::RemoveServer),
        1 => pick().prop_map(ClientOp::Connected),
        1 => pick().prop_map(ClientOp::ConnectFailed),
        4 => (pick(), line()).prop_map(|(at, bytes)| ClientOp::Received(at, bytes)),
        1 => pick().prop_map(ClientOp::Closed),
        1 => pick().prop_map(ClientOp::ReadFailed),
        3 => Just(ClientOp::Checkout),
        1 => Just(ClientOp::JoinLine),
        1 => pick().prop_map(ClientOp::CheckoutInLine),
        1 => pick().prop_map(ClientOp::LeaveLine),
        3 => (pick(), lease_end()).prop_map(|(at, end)| ClientOp::Checkin(at, end)),
        1 => pick().prop_map(ClientOp::StaleCheckin),
        1 => pick().prop_map(ClientOp::Detach),
        1 => (pick(), idle_signal()).prop_map(|(at, signal)| ClientOp::Idle(at, signal)),
        1 => (0u64..5_000_000).prop_map(ClientOp::Advance),
        1 => Just(ClientOp::AdvanceToTimeout),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_input_sequence_keeps_the_client_rules(
        rover in any::<[u8; 8]>(),
        max_slots in any::<u8>(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 0..120),
        close_at in proptest::option::of(0usize..120),
    ) {
        let mut ops = ops;
        if let Some(at) = close_at {
            ops.insert(at.min(ops.len()), ClientOp::Close);
        }
        check_client_ops(rover, max_slots, seed, &ops);
    }

    #[test]
    fn fuzzer_bytes_decode_to_inputs_that_keep_the_rules(
        rover in any::<[u8; 8]>(),
        max_slots in any::<u8>(),
        seed in any::<u64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        check_client_ops(rover, max_slots, seed, &ops_from_bytes(&bytes));
    }
}

/// A line split at every byte boundary gives the same connection as the line in one read.
#[test]
fn a_line_split_anywhere_is_the_same_line() {
    let line = b"4294967295\r\n";
    for split in 0..=line.len() {
        let (head, tail) = line.split_at(split);
        let ops = [
            ClientOp::AddServer(0),
            ClientOp::AdvanceToTimeout,
            ClientOp::Connected(0),
            ClientOp::Received(0, head.to_vec()),
            ClientOp::Received(0, tail.to_vec()),
            ClientOp::Checkout,
            ClientOp::Checkin(0, LeaseEnd::Finished),
        ];
        check_client_ops([0; 8], 0, 1, &ops);
    }
}

//! The adapters against each other and against one conformance suite: the checks are
//! written once, over the harness in `callosum_tests::conformance`, and run for each adapter (`<check>::smol`,
//! `<check>::mio`) or each client x server pair (`<check>::<client>_to_<server>`).
//!
//! Loopback sockets on port 0; every wait is bounded by a deadline; each component runs on a
//! thread of its own that is stopped and joined when the test lets go of it.

mod client_checks;
mod operations;
mod server_checks;

use callosum_proto::client::ClientEvent;
use callosum_tests::conformance::Adapter;

/// What the examples print for a replacement: both report the new connection kept, then the
/// old one evicted. For the same scenario both adapters tell the same story.
#[test]
fn examples_agree_on_a_replacement() {
    let smol = client_checks::keeps_low_slots_and_evicts_the_highest(Adapter::Smol, Adapter::Smol);
    let mio = client_checks::keeps_low_slots_and_evicts_the_highest(Adapter::Mio, Adapter::Smol);
    assert_eq!(story(&smol), story(&mio));
}

/// The events without the servers' addresses, which differ from run to run.
fn story(events: &[ClientEvent]) -> Vec<String> {
    let line = |event: &ClientEvent| match event {
        ClientEvent::Kept { slot, .. } => format!("kept slot {slot}"),
        ClientEvent::Evicted { slot, .. } => format!("evicted slot {slot}"),
        other => panic!("not a pool change: {other:?}"),
    };
    events.iter().map(line).collect()
}

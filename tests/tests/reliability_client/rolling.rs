//! A rolling restart under load, against each adapter's client (`<check>::smol`,
//! `<check>::mio`, `<check>::tokio`): three servers drained in turn, each replaced by a new
//! one on the same port, under 32 concurrent requests (PROTOCOL.md section 6, "Draining, the
//! client's side"). The harness is `callosum_tests::conformance::rolling`.

use callosum_tests::conformance::Adapter;
use callosum_tests::conformance::rolling::{Retry, Tally, rolling_restart};
use callosum_tests::each_adapter;

each_adapter!(a_rolling_restart_fails_no_request_with_the_documented_retry);

/// Requests in flight at once.
const TASKS: usize = 32;

/// With the retry, no request fails: every one that met a connection closed before any
/// byte of its reply was sent again and answered. Without it, those requests fail; how many
/// depends on timing, so it is printed, not asserted.
fn a_rolling_restart_fails_no_request_with_the_documented_retry(adapter: Adapter) {
    let (without, _) = rolling_restart(adapter, TASKS, Retry::Never);
    report(adapter, "without the retry", &without);
    assert_eq!(
        without.failed, without.closed_before_reply,
        "without the retry, only the retryable error fails a request: {without:?}"
    );
    let (with, reports) = rolling_restart(adapter, TASKS, Retry::Once);
    report(adapter, "with the retry", &with);
    assert_eq!(with.failed, 0, "{with:?}");
    assert_eq!(
        with.retried, with.closed_before_reply,
        "each sent again once: {with:?}"
    );
    for report in reports {
        assert_eq!(
            report.closed_at_deadline, 0,
            "every drain ended between requests"
        );
    }
}

fn report(adapter: Adapter, how: &str, tally: &Tally) {
    println!(
        "{adapter:?} client, rolling restart of 3 servers under {TASKS} requests, {how}: \
         {} answered, {} failed, {} met a connection closed before any reply byte, {} sent again",
        tally.answered, tally.failed, tally.closed_before_reply, tally.retried
    );
}

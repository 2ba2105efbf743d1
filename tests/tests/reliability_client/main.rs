//! Reliability of the two adapters' clients (issue 6): hostile servers, servers that die
//! under the client, and many tasks sharing one pool while servers come and go.
//!
//! Built on the cross-adapter harness, unchanged; every wait is bounded by its deadline.

// The harness is the adapters suite's; this binary uses part of it.
#[allow(dead_code)]
#[path = "../adapters/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../adapters/mio_side.rs"]
mod mio_side;
#[allow(dead_code)]
#[path = "../adapters/smol_side.rs"]
mod smol_side;

mod churn;
mod death;
mod hostile;
mod resetting;

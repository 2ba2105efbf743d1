//! Reliability of the two adapters' clients (issue 6): hostile servers, servers that die
//! under the client, and many tasks sharing one pool while servers come and go.
//!
//! Built on the conformance harness of `callosum-tests`; every wait is bounded by its
//! deadline.

mod churn;
mod death;
mod hostile;
mod resetting;
mod rolling;

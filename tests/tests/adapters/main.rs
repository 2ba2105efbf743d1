//! The two adapters against each other and against one conformance suite: the checks are
//! written once, over the harness, and run for each adapter (`<check>::smol`,
//! `<check>::mio`) or each client x server pair (`<check>::<client>_to_<server>`).
//!
//! Loopback sockets on port 0; every wait is bounded by a deadline; each component runs on a
//! thread of its own that is stopped and joined when the test lets go of it.

mod client_checks;
mod harness;
mod mio_side;
mod server_checks;
mod smol_side;

//! A deterministic cluster simulator for callosum, built only on the state machines of
//! `callosum-proto` and virtual time.
//!
//! It runs one workload (Poisson request arrivals on every client, exponential service times
//! on servers with a fixed number of workers and a FIFO queue, a network delay on every hop)
//! under six load-balancing strategies with the same seed, and reports latency percentiles
//! (overall and of the requests to healthy servers), errors, load per server, connections
//! opened, how callosum's connections sit and, after a restart or an added server, how long
//! the load took to settle; [`simulate_seeds`] gives the median and the range of each figure
//! over several seeds. See `README.md` beside this crate for what it shows.
//!
//! - [`Strategy::Callosum`]: every client is a [`callosum_proto::ClientCore`] (the rover, the
//!   pool and the leases of `callosum-proto`, driven as an adapter drives them), every server
//!   a [`GrowableServerCore`](callosum_proto::server::GrowableServerCore); a request takes the
//!   idle pooled connection (by the core's default lease policy) and waits in the client while none is
//!   idle.
//! - The others pick a server per request and send the request straight to it: random,
//!   round robin and the better of two random choices by the client's own outstanding
//!   requests, which a client can do alone; and two bounds with global information no client
//!   has, the better of two by every client's outstanding requests and join the shortest
//!   queue.
//!
//! The same scenario, size and seed always give the same table and chart.
//!
//! ```
//! use callosum_sim::{Scenario, Size, simulate};
//!
//! let size = Size { servers: 4, clients: 10, seconds: 2, pool: 4 };
//! let report = simulate(Scenario::Homogeneous50, size, 42);
//! assert_eq!(report.table(), simulate(Scenario::Homogeneous50, size, 42).table());
//! ```
#![forbid(unsafe_code)]

pub mod cli;
mod figure;
mod parallel;
mod report;
mod scenario;
mod seeds;
mod sim;
mod svg;
mod table;

pub use figure::Figure;
pub use report::{Report, Row, simulate};
pub use scenario::{
    Crash, FEW_CLIENTS_POOL, HeavyClients, Params, Scenario, Size, Strategy, UnknownScenario,
};
pub use seeds::{MultiReport, simulate_seeds};
pub use sim::{RunResult, SAMPLE_US, SPREAD_WINDOW_US, run};

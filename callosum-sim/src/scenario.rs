//! What is simulated: the strategies compared and the scenarios they are compared on.

use core::fmt;
use core::str::FromStr;

use callosum_proto::client::{ClientConfig, LeasePolicy, PoolSizing};

/// How a client chooses the server for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Callosum: the lowest idle pooled connection; the request waits in the client while
    /// none is idle. Every client is a `callosum-proto` client core (its rover and pool).
    Callosum,
    /// A server drawn uniformly at random for each request.
    Random,
    /// Each client cycles through the servers, starting at a random one.
    RoundRobin,
    /// Two distinct servers drawn at random; the one to which this client has fewer requests
    /// outstanding wins. What a real client can do on its own, as Envoy's `least_request`
    /// and Finagle's power of two choices do.
    TwoChoicesLocal,
    /// Two distinct servers drawn at random; the one with fewer outstanding requests from all
    /// clients wins. A global-information bound: it reads every server's true count at the
    /// instant of the choice, which no client knows.
    TwoChoices,
    /// Join the shortest queue with full information: the server with the fewest outstanding
    /// requests cluster-wide (ties broken at random), skipping servers that are down. A
    /// global-information bound, the ideal to approach rather than something a client can do.
    Jsq,
}

impl Strategy {
    /// Every strategy, in the order of the table.
    pub const ALL: [Strategy; 6] = [
        Strategy::Callosum,
        Strategy::Random,
        Strategy::RoundRobin,
        Strategy::TwoChoicesLocal,
        Strategy::TwoChoices,
        Strategy::Jsq,
    ];

    /// The plain name used in tables and charts.
    ///
    /// ```
    /// assert_eq!(callosum_sim::Strategy::TwoChoices.name(), "two-choices");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Callosum => "callosum",
            Strategy::Random => "random",
            Strategy::RoundRobin => "round-robin",
            Strategy::TwoChoicesLocal => "two-choices-local",
            Strategy::TwoChoices => "two-choices",
            Strategy::Jsq => "jsq",
        }
    }

    /// Whether the strategy reads what no client can know (every server's true outstanding
    /// count, which servers are down): a bound to compare with, not a competitor.
    ///
    /// ```
    /// use callosum_sim::Strategy;
    ///
    /// assert!(Strategy::Jsq.global_information());
    /// assert!(!Strategy::TwoChoicesLocal.global_information());
    /// ```
    pub fn global_information(self) -> bool {
        matches!(self, Strategy::TwoChoices | Strategy::Jsq)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A workload and the event that disturbs it, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Identical servers at 50% of their capacity.
    Homogeneous50,
    /// Identical servers at 90% of their capacity.
    Homogeneous90,
    /// One server five times slower than the others, 70% of nominal capacity.
    SlowServer,
    /// One server answers every request with an error at once, 70% load.
    FastFail,
    /// One server crashes at 1/3 of the run (every connection breaks, queued work is lost)
    /// and comes back empty 5 s later, 70% load.
    CrashRestart,
    /// One server joins at 1/3 of the run, 70% load (of the full cluster's capacity).
    AddServer,
    /// 10% of the clients send 80% of the requests, 70% load.
    SkewedClients,
    /// Few clients with many requests in flight each, the regime Boxcar was built for: one
    /// client per five servers (20 at 100 servers, whatever the size's client count), so each
    /// has about 17 requests in flight at 70% load; callosum pools of at least
    /// [`FEW_CLIENTS_POOL`] connections, since a pool must hold a client's peak concurrency.
    FewClients,
}

/// The smallest callosum pool of the few-clients scenario: `max(size.pool, 64)`, room for a
/// client's peak concurrency (about 17 in flight on average). Pools are fixed at this size:
/// every client keeps 64 connections whether it uses them or not.
pub const FEW_CLIENTS_POOL: usize = 64;

/// Servers per client in the few-clients scenario.
const SERVERS_PER_FEW_CLIENT: usize = 5;

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::Homogeneous50,
        Scenario::Homogeneous90,
        Scenario::SlowServer,
        Scenario::FastFail,
        Scenario::CrashRestart,
        Scenario::AddServer,
        Scenario::SkewedClients,
        Scenario::FewClients,
    ];

    /// The name given to `--scenario`.
    ///
    /// ```
    /// assert_eq!(callosum_sim::Scenario::SlowServer.name(), "slow-server");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Homogeneous50 => "homogeneous-50",
            Scenario::Homogeneous90 => "homogeneous-90",
            Scenario::SlowServer => "slow-server",
            Scenario::FastFail => "fast-fail",
            Scenario::CrashRestart => "crash-restart",
            Scenario::AddServer => "add-server",
            Scenario::SkewedClients => "skewed-clients",
            Scenario::FewClients => "few-clients",
        }
    }

    /// The parameters of this scenario for a cluster of the given size and length.
    ///
    /// ```
    /// use callosum_sim::{Scenario, Size};
    ///
    /// let params = Scenario::SlowServer.params(Size { servers: 10, clients: 50, seconds: 5, pool: 4 });
    /// assert_eq!(params.slowdown, 5);
    /// assert_eq!(params.odd_server, Some(0));
    /// ```
    pub fn params(self, size: Size) -> Params {
        let duration_us = size.seconds * 1_000_000;
        let mut params = Params {
            servers: size.servers,
            clients: size.clients,
            duration_us,
            load: 0.7,
            workers: 4,
            mean_service_us: 10_000,
            one_way_us: 1_000,
            pool_size: size.pool,
            lease: ClientConfig::default().lease,
            sizing: ClientConfig::default().sizing,
            warmup_us: 2_000_000.min(duration_us / 4),
            odd_server: None,
            slowdown: 1,
            fast_fail: false,
            crash: None,
            join_at_us: None,
            heavy_clients: None,
        };
        let event_at = duration_us / 3;
        match self {
            Scenario::Homogeneous50 => params.load = 0.5,
            Scenario::Homogeneous90 => params.load = 0.9,
            Scenario::SlowServer => {
                params.odd_server = Some(0);
                params.slowdown = 5;
            }
            Scenario::FastFail => {
                params.odd_server = Some(0);
                params.fast_fail = true;
            }
            Scenario::CrashRestart => {
                params.odd_server = Some(0);
                params.crash = Some(Crash {
                    at_us: event_at,
                    down_us: 5_000_000,
                });
            }
            Scenario::AddServer => {
                params.odd_server = Some(size.servers - 1);
                params.join_at_us = Some(event_at);
            }
            Scenario::SkewedClients => {
                params.heavy_clients = Some(HeavyClients {
                    count: size.clients.div_ceil(10),
                    share: 0.8,
                });
            }
            Scenario::FewClients => {
                params.clients = (size.servers / SERVERS_PER_FEW_CLIENT).max(1);
                params.pool_size = size.pool.max(FEW_CLIENTS_POOL);
            }
        }
        params
    }

    /// What the odd server of this scenario is, for the footnote of the table.
    pub fn odd_server_note(self) -> Option<&'static str> {
        match self {
            Scenario::SlowServer => Some("the server 5x slower than the others"),
            Scenario::FastFail => Some("the server that answers errors at once"),
            Scenario::CrashRestart => Some("the server that crashes and restarts"),
            Scenario::AddServer => Some("the server added during the run"),
            Scenario::Homogeneous50
            | Scenario::Homogeneous90
            | Scenario::SkewedClients
            | Scenario::FewClients => None,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scenario `{}` (expected one of:", self.0)?;
        for scenario in Scenario::ALL {
            write!(f, " {scenario}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(name: &str) -> Result<Scenario, UnknownScenario> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| UnknownScenario(name.to_owned()))
    }
}

/// How big a simulated cluster is and how long it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    /// Servers, at least 2.
    pub servers: usize,
    /// Clients, at least 1.
    pub clients: usize,
    /// Virtual seconds of traffic, at least 1.
    pub seconds: u64,
    /// `max_slots` of every callosum client's pool, at least 1: the ceiling of a pool sized
    /// to demand.
    pub pool: usize,
}

impl Size {
    /// 20 servers, 200 clients, 20 virtual seconds, pools of at most 16: a fifth of the default
    /// cluster with the same 10 clients per server (so the same requests in flight per
    /// client), for tests that assert ratios on medians over a few seeds in about a second
    /// per seed in a debug build.
    ///
    /// ```
    /// let small = callosum_sim::Size::small();
    /// assert_eq!((small.servers, small.clients, small.seconds, small.pool), (20, 200, 20, 16));
    /// ```
    pub const fn small() -> Size {
        Size {
            servers: 20,
            clients: 200,
            seconds: 20,
            pool: 16,
        }
    }
}

impl Default for Size {
    /// 100 servers, 1,000 clients, 60 virtual seconds, pools of at most 16 (a client sizes
    /// its pool to its demand; only the heavy clients of skewed-clients need more than 4).
    fn default() -> Size {
        Size {
            servers: 100,
            clients: 1_000,
            seconds: 60,
            pool: 16,
        }
    }
}

/// A server that crashes and restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// When it crashes, in virtual microseconds.
    pub at_us: u64,
    /// How long it stays down.
    pub down_us: u64,
}

/// A few clients that send most of the requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeavyClients {
    /// How many clients are heavy (the first ones).
    pub count: usize,
    /// Their share of all requests, together.
    pub share: f64,
}

/// Everything one simulation run needs besides the strategy and the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Servers.
    pub servers: usize,
    /// Clients.
    pub clients: usize,
    /// Requests arrive from 0 to this time (virtual microseconds); the run then drains.
    pub duration_us: u64,
    /// Offered load as a fraction of the nominal capacity: every server at normal speed.
    pub load: f64,
    /// Requests a server serves at once; the rest wait in its FIFO queue.
    pub workers: usize,
    /// Mean of the exponential service time at normal speed, in microseconds.
    pub mean_service_us: u64,
    /// Network delay of each hop (request, response, SYN, slot line), in microseconds.
    pub one_way_us: u64,
    /// `max_slots` of every callosum client's pool: its size with [`PoolSizing::Fixed`], its
    /// ceiling with [`PoolSizing::Demand`].
    pub pool_size: usize,
    /// Which idle connection a callosum request gets (the client core's default unless a
    /// test sets the original's, [`LeasePolicy::Lowest`]).
    pub lease: LeasePolicy,
    /// How many connections a callosum client keeps (the client core's default unless a
    /// test sets the original's, [`PoolSizing::Fixed`]).
    pub sizing: PoolSizing,
    /// Requests sent before this time count for nothing in the table (pools filling).
    pub warmup_us: u64,
    /// The server that the scenario treats differently, if any.
    pub odd_server: Option<usize>,
    /// How many times slower the odd server serves (1: not slower).
    pub slowdown: u64,
    /// Whether the odd server answers every request with an error at once.
    pub fast_fail: bool,
    /// Whether the odd server crashes and restarts.
    pub crash: Option<Crash>,
    /// When the odd server joins the cluster, if it is not there from the start.
    pub join_at_us: Option<u64>,
    /// Clients that send most of the requests, if any.
    pub heavy_clients: Option<HeavyClients>,
}

impl Params {
    /// Total requests per second over all clients.
    pub fn request_rate(&self) -> f64 {
        self.load * self.servers as f64 * self.workers as f64 * 1e6 / self.mean_service_us as f64
    }

    /// The mean time between two requests of `client`, in microseconds.
    pub fn mean_gap_us(&self, client: usize) -> f64 {
        let rate = self.request_rate();
        let client_rate = match self.heavy_clients {
            Some(heavy) if heavy.count < self.clients => {
                if client < heavy.count {
                    rate * heavy.share / heavy.count as f64
                } else {
                    rate * (1.0 - heavy.share) / (self.clients - heavy.count) as f64
                }
            }
            _ => rate / self.clients as f64,
        };
        1e6 / client_rate
    }

    /// When the odd server's disturbance ends and the load should settle again: the restart
    /// or the join.
    pub fn settle_from_us(&self) -> Option<u64> {
        self.crash
            .map(|crash| crash.at_us + crash.down_us)
            .or(self.join_at_us)
    }
}

//! The simulation engine: one run of one strategy on one scenario, in virtual time.
//!
//! Everything happens through one event queue ordered by (virtual microsecond, sequence
//! number), so ties resolve in the order events were booked and a run is a pure function of
//! its parameters, strategy and seed. Events are small `Copy` values: nothing is allocated per
//! event; requests and connections live in tables indexed by number.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};

use callosum_proto::client::{
    ClientConfig, ClientCore, Handshake, IdleSignal, LeaseEnd, LeaseId, Output, Ticket,
};
use callosum_proto::pool::PooledId;
use callosum_proto::rover::{AttemptId, ConnectFailure};
use callosum_proto::server::{Accept, AcceptId as ServerConnId, GrowableServerCore};
use callosum_proto::{Instant, Rng, SlotLine};

use crate::scenario::{Params, Strategy};

/// How often the load of every server is sampled for the chart and the settle time.
pub const SAMPLE_US: u64 = 250_000;

/// The connection spread is read from each server's live connections averaged over this
/// last stretch of the traffic (after the warm-up in shorter runs), sampled every
/// [`SAMPLE_US`]: with about 20 connections per
/// server, one connection coming or going is 5% of a server's count, so one instant says
/// more about which handshakes were in flight than about the balance.
pub const SPREAD_WINDOW_US: u64 = 10_000_000;

/// How long the run may go on after the last arrival for the requests in flight to finish;
/// those still unfinished then count as errors.
const DRAIN_LIMIT_US: u64 = 600_000_000;

/// Independent random streams, derived from the run's seed.
#[derive(Clone, Copy)]
enum Stream {
    Workload = 1,
    Choice = 2,
    /// The seed of each callosum client core (which splits it between its pool and rover).
    Client = 3,
    Start = 5,
}

/// A seed for component `index` of `stream`, fixed by the run's seed.
///
/// The run's seed is mixed on its own before the stream and the index join it. Combined raw
/// (`seed ^ index`, as it once was), seeds 1 to 7 gave the same set of client streams, only
/// reassigned to other clients: another seed was nearly the same workload.
fn derive_seed(seed: u64, stream: Stream, index: usize) -> u64 {
    let run = Rng::new(seed).next_u64();
    Rng::new(run ^ ((stream as u64) << 56) ^ index as u64).next_u64()
}

/// The port of every simulated server's address.
const SERVER_PORT: u16 = 7000;

/// The first address of the simulated servers, 127.1.0.0 (loopback): pure data, nothing is
/// ever sent to it.
const FIRST_SERVER: u32 = 0x7f01_0000;

/// The address the client cores know server `index` by: [`FIRST_SERVER`] plus the index.
fn server_addr(index: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(FIRST_SERVER + index), SERVER_PORT))
}

/// The server that [`server_addr`] gave `addr` to.
fn server_index(addr: SocketAddr) -> u32 {
    match addr {
        SocketAddr::V4(v4) if v4.port() == SERVER_PORT => u32::from(*v4.ip()) - FIRST_SERVER,
        _ => unreachable!("{addr} is no simulated server"),
    }
}

/// An exponentially distributed duration with the given mean, in whole microseconds.
fn exponential_us(rng: &mut Rng, mean_us: f64) -> u64 {
    let uniform = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-mean_us * uniform.ln()) as u64
}

/// Two distinct members drawn at random, in random order.
fn two_distinct(rng: &mut Rng, members: &[u32]) -> (u32, u32) {
    let n = members.len() as u64;
    let first = rng.below(n);
    let second = (first + 1 + rng.below(n - 1)) % n;
    (members[first as usize], members[second as usize])
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The strategy that ran.
    pub strategy: Strategy,
    /// Latencies of the successful requests born after the warm-up, in microseconds,
    /// sorted ascending.
    pub latencies_us: Vec<u32>,
    /// The same, of the requests sent to any server but the odd one (all of them when the
    /// scenario has no odd server): a tail that an odd server's unbounded queue cannot set.
    pub healthy_latencies_us: Vec<u32>,
    /// Requests born after the warm-up that got an error (a fast failure, a crash, a refused
    /// connection, or still unfinished when the drain limit passed).
    pub errors: u64,
    /// Requests born after the warm-up, per server they were sent to.
    pub sent_per_server: Vec<u64>,
    /// Connections opened in the traffic window, from the end of the warm-up to the end of
    /// the arrivals (not the boot, when pools fill, nor the drain, which can last minutes):
    /// accepted by a server (callosum), or one per request sent (the other strategies).
    pub connections_opened: u64,
    /// Callosum only: live connections per server at the end of the traffic (the slots the
    /// servers' cores hold, handshakes in flight included).
    pub live_connections: Option<Vec<u32>>,
    /// Callosum only: live connections per server averaged over the last
    /// [`SPREAD_WINDOW_US`] of the traffic.
    pub mean_live_connections: Option<Vec<f64>>,
    /// Callosum only: per server, whether it was in the cluster, up and answering (not the
    /// fast-failing server) at the end of the traffic: the servers over which connections
    /// should be even.
    pub serving_at_end: Option<Vec<bool>>,
    /// Callosum only: at the end of the traffic, per client, the connections its pool held
    /// as `(server, slot)`, as the client core's
    /// [`status`](callosum_proto::client::ClientCore::status) lists them.
    pub pooled: Option<Vec<Vec<(usize, u32)>>>,
    /// Outstanding requests per server (sent, not yet answered), averaged over each
    /// [`SAMPLE_US`] window: `samples[k][server]` for the window ending at `(k + 1) * SAMPLE_US`.
    pub samples: Vec<Vec<f32>>,
}

/// Runs `strategy` on the scenario described by `params`; the same arguments always give the
/// same result.
///
/// ```
/// use callosum_sim::{Scenario, Size, Strategy, run};
///
/// let params = Scenario::Homogeneous50.params(Size { servers: 4, clients: 8, seconds: 2, pool: 4 });
/// let result = run(&params, Strategy::Callosum, 1);
/// assert!(!result.latencies_us.is_empty());
/// let pooled = result.pooled.unwrap();
/// assert_eq!(pooled.len(), 8);
/// // Each pool is sized to its client's demand, within its ceiling of 4: at least two.
/// assert!(pooled.iter().all(|pool| (2..=4).contains(&pool.len())), "{pooled:?}");
/// ```
pub fn run(params: &Params, strategy: Strategy, seed: u64) -> RunResult {
    let mut sim = Sim::new(params, strategy, seed);
    sim.start();
    sim.run();
    sim.finish()
}

#[derive(Clone, Copy)]
enum Ev {
    /// A client's next request arrives.
    Arrival { client: u32 },
    /// A request reaches its server.
    AtServer { req: u32 },
    /// A server finishes a request (ignored if the server crashed since: other epoch; the
    /// request's number may then belong to a newer request on another server).
    Done { server: u32, req: u32, epoch: u32 },
    /// The response (or error) reaches the client.
    Reply { req: u32 },
    /// A callosum client starts: it learns the servers and starts roving.
    Boot { client: u32 },
    /// A client core asked to be woken.
    Wake { client: u32 },
    /// A client core's connection request reaches a server.
    Syn {
        client: u32,
        attempt: AttemptId,
        server: u32,
    },
    /// The server's slot line reaches the client.
    SlotLine {
        client: u32,
        attempt: AttemptId,
        conn: u32,
    },
    /// The refusal of a connection to a server that is down reaches the client.
    Refused { client: u32, attempt: AttemptId },
    /// The odd server crashes.
    Crash,
    /// The odd server comes back, empty.
    Restart,
    /// The odd server joins the cluster.
    Join,
    /// Time to sample the load of every server.
    Sample,
}

struct Booked {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Booked {
    fn eq(&self, other: &Booked) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Booked {}

impl PartialOrd for Booked {
    fn partial_cmp(&self, other: &Booked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Booked {
    /// Reversed, so that the max-heap pops the earliest event first.
    fn cmp(&self, other: &Booked) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Server {
    /// In the cluster (false for the added server before it joins).
    active: bool,
    /// Accepting connections and requests (false while crashed).
    up: bool,
    /// Bumped at each crash, so that work finishing on the dead incarnation is ignored.
    epoch: u32,
    busy: usize,
    queue: VecDeque<u32>,
    core: GrowableServerCore,
    /// Requests sent to this server and not answered yet.
    outstanding: u32,
    /// Integral of `outstanding` over time, in request-microseconds, up to `changed_at`.
    area: u64,
    changed_at: u64,
    area_at_last_sample: u64,
}

/// A callosum client: its core, and the adapter's part (the timer and the requests waiting).
struct CallosumClient {
    /// Connections are numbers into `Sim::conns`.
    core: ClientCore<u32>,
    /// When the core asked to be woken at its last output, if at all.
    timeout: Option<u64>,
    /// The wake-up booked last, so as not to book copies.
    wake_at: Option<u64>,
    /// Requests waiting for an idle connection, oldest first, with their place in the
    /// core's line (which counts them as demand).
    waiting: VecDeque<(u32, Ticket)>,
}

struct Client {
    mean_gap_us: f64,
    workload: Rng,
    choice: Rng,
    round_robin: usize,
    callosum: Option<CallosumClient>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Free,
    /// Waiting in the client for a connection (callosum).
    Waiting,
    /// On its way to the server.
    ToServer,
    /// Queued or being served.
    AtServer,
    /// The response is on its way back.
    Replying,
}

#[derive(Clone, Copy)]
struct Request {
    client: u32,
    server: u32,
    born: u64,
    /// Service time at normal speed, drawn from the client's workload stream.
    demand_us: u64,
    stage: Stage,
    failed: bool,
    /// The lease and connection it uses (callosum).
    lease: Option<(LeaseId, u32)>,
}

/// A simulated TCP connection, from the server's accept to its close by the client.
struct Conn {
    server: u32,
    id: ServerConnId,
    /// The server holds its slot: until the client closes it or the server crashes.
    at_server: bool,
    /// The client has not closed it yet (whether or not the server is still there).
    at_client: bool,
}

struct Sim<'a> {
    params: &'a Params,
    strategy: Strategy,
    seed: u64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Booked>,
    servers: Vec<Server>,
    clients: Vec<Client>,
    requests: Vec<Request>,
    free_requests: Vec<u32>,
    live_requests: usize,
    conns: Vec<Conn>,
    /// The servers in the cluster now, for the random choices and booting clients.
    members: Vec<u32>,
    /// two-choices-local only: requests each client has outstanding at each server,
    /// `[client * servers + server]` (empty under the other strategies).
    own_outstanding: Vec<u32>,
    latencies_us: Vec<u32>,
    healthy_latencies_us: Vec<u32>,
    errors: u64,
    sent_per_server: Vec<u64>,
    connections_opened: u64,
    live_connections: Option<Vec<u32>>,
    mean_live_connections: Option<Vec<f64>>,
    /// Per server, the sum of its live connections over the samples of the spread window.
    live_sums: Vec<u64>,
    live_samples: u32,
    serving_at_end: Option<Vec<bool>>,
    pooled: Option<Vec<Vec<(usize, u32)>>>,
    samples: Vec<Vec<f32>>,
}

impl<'a> Sim<'a> {
    fn new(params: &'a Params, strategy: Strategy, seed: u64) -> Sim<'a> {
        assert!(
            params.servers < 1 << 24,
            "one address per server in 10.0.0.0/8"
        );
        let servers = (0..params.servers)
            .map(|index| Server {
                active: !(params.join_at_us.is_some() && params.odd_server == Some(index)),
                up: true,
                epoch: 0,
                busy: 0,
                queue: VecDeque::new(),
                core: GrowableServerCore::new(None).expect("unlimited slots are valid"),
                outstanding: 0,
                area: 0,
                changed_at: 0,
                area_at_last_sample: 0,
            })
            .collect::<Vec<_>>();
        let members: Vec<u32> = (0..params.servers as u32)
            .filter(|&s| servers[s as usize].active)
            .collect();
        let mut config = ClientConfig::default();
        config.pool.max_slots = params.pool_size;
        config.lease = params.lease;
        config.sizing = params.sizing;
        let clients = (0..params.clients)
            .map(|index| {
                let mut choice = Rng::new(derive_seed(seed, Stream::Choice, index));
                let round_robin = choice.below(params.servers as u64) as usize;
                let callosum = (strategy == Strategy::Callosum).then(|| {
                    let core =
                        ClientCore::new(config.clone(), derive_seed(seed, Stream::Client, index))
                            .expect("the pool size is valid");
                    CallosumClient {
                        core,
                        timeout: None,
                        wake_at: None,
                        waiting: VecDeque::new(),
                    }
                });
                Client {
                    mean_gap_us: params.mean_gap_us(index),
                    workload: Rng::new(derive_seed(seed, Stream::Workload, index)),
                    choice,
                    round_robin,
                    callosum,
                }
            })
            .collect();
        Sim {
            params,
            strategy,
            seed,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            servers,
            clients,
            requests: Vec::new(),
            free_requests: Vec::new(),
            live_requests: 0,
            conns: Vec::new(),
            members,
            own_outstanding: if strategy == Strategy::TwoChoicesLocal {
                vec![0; params.clients * params.servers]
            } else {
                Vec::new()
            },
            latencies_us: Vec::new(),
            healthy_latencies_us: Vec::new(),
            errors: 0,
            sent_per_server: vec![0; params.servers],
            connections_opened: 0,
            live_connections: None,
            mean_live_connections: None,
            live_sums: vec![0; params.servers],
            live_samples: 0,
            serving_at_end: None,
            pooled: None,
            samples: Vec::new(),
        }
    }

    fn book(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Booked {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn start(&mut self) {
        let mut start = Rng::new(derive_seed(self.seed, Stream::Start, 0));
        for client in 0..self.clients.len() as u32 {
            // Clients boot within the first second, as a fleet started together.
            let boot = start.below(1_000_000);
            let c = &mut self.clients[client as usize];
            let first = boot + exponential_us(&mut c.workload, c.mean_gap_us);
            self.book(first, Ev::Arrival { client });
            if self.strategy == Strategy::Callosum {
                self.book(boot, Ev::Boot { client });
            }
        }
        if let Some(crash) = self.params.crash {
            self.book(crash.at_us, Ev::Crash);
            self.book(crash.at_us + crash.down_us, Ev::Restart);
        }
        if let Some(at) = self.params.join_at_us {
            self.book(at, Ev::Join);
        }
        self.book(SAMPLE_US, Ev::Sample);
    }

    fn run(&mut self) {
        let end = self.params.duration_us;
        let limit = end + DRAIN_LIMIT_US;
        let mut counted_connections = false;
        while let Some(booked) = self.queue.pop() {
            if !counted_connections && booked.at > end {
                counted_connections = true;
                self.count_connections();
            }
            if booked.at > limit || (booked.at > end && self.live_requests == 0) {
                break;
            }
            self.now = booked.at;
            self.happen(booked.ev);
        }
        // Requests still unfinished at the drain limit count as errors.
        for request in &self.requests {
            if request.stage != Stage::Free && request.born >= self.params.warmup_us {
                self.errors += 1;
            }
        }
    }

    /// Callosum: the connections of every server and of every pool, as traffic stops.
    fn count_connections(&mut self) {
        if self.strategy != Strategy::Callosum {
            return;
        }
        self.live_connections = Some(self.servers.iter().map(|s| s.core.live()).collect());
        let samples = f64::from(self.live_samples.max(1));
        let means = self.live_sums.iter().map(|&sum| sum as f64 / samples);
        self.mean_live_connections = Some(means.collect());
        let answering = |server| !(self.params.fast_fail && self.params.odd_server == Some(server));
        let serving = self.servers.iter().enumerate();
        let serving = serving.map(|(i, s)| s.active && s.up && answering(i));
        self.serving_at_end = Some(serving.collect());
        let pooled = self.clients.iter().map(|c| {
            let status = c.callosum.as_ref().expect("callosum clients").core.status();
            let servers = status.servers.into_iter();
            servers
                .flat_map(|held| {
                    let server = server_index(held.server) as usize;
                    held.slots.into_iter().map(move |slot| (server, slot))
                })
                .collect()
        });
        self.pooled = Some(pooled.collect());
    }

    fn finish(self) -> RunResult {
        let mut latencies_us = self.latencies_us;
        latencies_us.sort_unstable();
        let mut healthy_latencies_us = self.healthy_latencies_us;
        healthy_latencies_us.sort_unstable();
        RunResult {
            strategy: self.strategy,
            latencies_us,
            healthy_latencies_us,
            errors: self.errors,
            sent_per_server: self.sent_per_server,
            connections_opened: self.connections_opened,
            live_connections: self.live_connections,
            mean_live_connections: self.mean_live_connections,
            serving_at_end: self.serving_at_end,
            pooled: self.pooled,
            samples: self.samples,
        }
    }

    fn happen(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { client } => self.arrival(client),
            Ev::AtServer { req } => self.at_server(req),
            Ev::Done { server, req, epoch } => self.done(server, req, epoch),
            Ev::Reply { req } => self.reply(req),
            Ev::Boot { client } => self.boot(client),
            Ev::Wake { client } => self.wake(client),
            Ev::Syn {
                client,
                attempt,
                server,
            } => self.syn(client, attempt, server),
            Ev::SlotLine {
                client,
                attempt,
                conn,
            } => self.slot_line(client, attempt, conn),
            Ev::Refused { client, attempt } => {
                let now = Instant::from_micros(self.now);
                let core = &mut self.callosum(client).core;
                // Stale if the attempt timed out meanwhile: nothing to do then.
                let _ = core.handle_connect_failed(attempt, ConnectFailure::Refused, now);
                self.drain(client);
            }
            Ev::Crash => self.crash(),
            Ev::Restart => {
                let odd = self.odd_server();
                self.servers[odd].up = true;
            }
            Ev::Join => self.join(),
            Ev::Sample => self.sample(),
        }
    }

    fn odd_server(&self) -> usize {
        self.params
            .odd_server
            .expect("only scenarios with an odd server book its events")
    }

    /// From the end of the warm-up to the end of the arrivals: when connections count.
    fn in_traffic_window(&self) -> bool {
        (self.params.warmup_us..self.params.duration_us).contains(&self.now)
    }

    fn callosum(&mut self, client: u32) -> &mut CallosumClient {
        self.clients[client as usize]
            .callosum
            .as_mut()
            .expect("only callosum clients rove")
    }

    // --- requests -------------------------------------------------------------------------

    fn arrival(&mut self, client: u32) {
        if self.now >= self.params.duration_us {
            return;
        }
        let c = &mut self.clients[client as usize];
        let demand_us = exponential_us(&mut c.workload, self.params.mean_service_us as f64);
        let next = self.now + exponential_us(&mut c.workload, c.mean_gap_us);
        self.book(next, Ev::Arrival { client });
        let request = Request {
            client,
            server: 0,
            born: self.now,
            demand_us,
            stage: Stage::Waiting,
            failed: false,
            lease: None,
        };
        let req = match self.free_requests.pop() {
            Some(req) => {
                self.requests[req as usize] = request;
                req
            }
            None => {
                self.requests.push(request);
                (self.requests.len() - 1) as u32
            }
        };
        self.live_requests += 1;
        if self.strategy == Strategy::Callosum {
            let now = Instant::from_micros(self.now);
            let cc = self.callosum(client);
            let ticket = cc.core.join_line(now);
            cc.waiting.push_back((req, ticket));
            self.dispatch_waiting(client);
            self.drain(client);
        } else {
            let server = self.choose(client);
            if self.in_traffic_window() {
                self.connections_opened += 1;
            }
            self.send(req, server);
        }
    }

    /// The server for a request of `client` under the strategies other than callosum.
    fn choose(&mut self, client: u32) -> u32 {
        let members = &self.members;
        let servers = &self.servers;
        let c = &mut self.clients[client as usize];
        match self.strategy {
            Strategy::Random => members[c.choice.below(members.len() as u64) as usize],
            Strategy::RoundRobin => {
                c.round_robin = (c.round_robin + 1) % members.len();
                members[c.round_robin]
            }
            // The pair is drawn in random order, so keeping the first on a tie breaks ties at
            // random.
            Strategy::TwoChoicesLocal => {
                let (a, b) = two_distinct(&mut c.choice, members);
                let own = &self.own_outstanding[client as usize * servers.len()..];
                if own[b as usize] < own[a as usize] {
                    b
                } else {
                    a
                }
            }
            Strategy::TwoChoices => {
                let (a, b) = two_distinct(&mut c.choice, members);
                if servers[b as usize].outstanding < servers[a as usize].outstanding {
                    b
                } else {
                    a
                }
            }
            Strategy::Jsq => {
                let up = |s: &&u32| servers[**s as usize].up;
                let Some(least) = members
                    .iter()
                    .filter(up)
                    .map(|&s| servers[s as usize].outstanding)
                    .min()
                else {
                    return members[c.choice.below(members.len() as u64) as usize];
                };
                let shortest = |s: &&u32| servers[**s as usize].outstanding == least;
                let ties = members.iter().filter(up).filter(shortest).count();
                let pick = c.choice.below(ties as u64) as usize;
                *members
                    .iter()
                    .filter(up)
                    .filter(shortest)
                    .nth(pick)
                    .expect("pick is below the number of ties")
            }
            Strategy::Callosum => unreachable!("callosum clients use their pool"),
        }
    }

    /// Sends every waiting request of a callosum client that can get an idle connection.
    fn dispatch_waiting(&mut self, client: u32) {
        let now = Instant::from_micros(self.now);
        loop {
            let cc = self.callosum(client);
            let Some(&(req, ticket)) = cc.waiting.front() else {
                return;
            };
            let Some(lease) = cc.core.checkout_in_line(ticket, now) else {
                return;
            };
            cc.waiting.pop_front();
            self.requests[req as usize].lease = Some((lease.id, lease.conn));
            self.send(req, server_index(lease.server));
        }
    }

    /// Counts a request of `client` sent to `server` (`delta` 1) or answered (-1).
    fn set_outstanding(&mut self, client: u32, server: u32, delta: i32) {
        let s = &mut self.servers[server as usize];
        s.area += u64::from(s.outstanding) * (self.now - s.changed_at);
        s.changed_at = self.now;
        s.outstanding = s.outstanding.wrapping_add_signed(delta);
        if !self.own_outstanding.is_empty() {
            let index = client as usize * self.servers.len() + server as usize;
            let own = &mut self.own_outstanding[index];
            *own = own.wrapping_add_signed(delta);
        }
    }

    fn send(&mut self, req: u32, server: u32) {
        let r = &mut self.requests[req as usize];
        r.server = server;
        r.stage = Stage::ToServer;
        if r.born >= self.params.warmup_us {
            self.sent_per_server[server as usize] += 1;
        }
        let client = r.client;
        self.set_outstanding(client, server, 1);
        self.book(self.now + self.params.one_way_us, Ev::AtServer { req });
    }

    fn fail(&mut self, req: u32) {
        let r = &mut self.requests[req as usize];
        r.failed = true;
        r.stage = Stage::Replying;
        self.book(self.now + self.params.one_way_us, Ev::Reply { req });
    }

    fn at_server(&mut self, req: u32) {
        let r = self.requests[req as usize];
        let server = r.server as usize;
        let fast_fail = self.params.fast_fail && self.params.odd_server == Some(server);
        let dead_conn = r
            .lease
            .is_some_and(|(_, conn)| !self.conns[conn as usize].at_server);
        if !self.servers[server].up || fast_fail || dead_conn {
            self.fail(req);
            return;
        }
        self.requests[req as usize].stage = Stage::AtServer;
        let s = &mut self.servers[server];
        if s.busy < self.params.workers {
            self.serve(req);
        } else {
            s.queue.push_back(req);
        }
    }

    fn serve(&mut self, req: u32) {
        let r = self.requests[req as usize];
        let server = r.server as usize;
        let slowdown = if self.params.odd_server == Some(server) {
            self.params.slowdown
        } else {
            1
        };
        let s = &mut self.servers[server];
        s.busy += 1;
        let epoch = s.epoch;
        let server = r.server;
        self.book(
            self.now + r.demand_us * slowdown,
            Ev::Done { server, req, epoch },
        );
    }

    fn done(&mut self, server: u32, req: u32, epoch: u32) {
        let server = server as usize;
        if self.servers[server].epoch != epoch {
            return;
        }
        self.requests[req as usize].stage = Stage::Replying;
        self.book(self.now + self.params.one_way_us, Ev::Reply { req });
        let s = &mut self.servers[server];
        s.busy -= 1;
        if let Some(next) = s.queue.pop_front() {
            self.serve(next);
        }
    }

    fn reply(&mut self, req: u32) {
        let r = self.requests[req as usize];
        self.set_outstanding(r.client, r.server, -1);
        if r.born >= self.params.warmup_us {
            if r.failed {
                self.errors += 1;
            } else {
                let latency = u32::try_from(self.now - r.born).unwrap_or(u32::MAX);
                self.latencies_us.push(latency);
                if self.params.odd_server != Some(r.server as usize) {
                    self.healthy_latencies_us.push(latency);
                }
            }
        }
        self.requests[req as usize].stage = Stage::Free;
        self.free_requests.push(req);
        self.live_requests -= 1;
        if let Some((lease, conn)) = r.lease {
            // A connection whose server crashed meanwhile is broken, whatever the answer; a
            // failure its server answered is told as the application would.
            let end = if !self.conns[conn as usize].at_server {
                LeaseEnd::Broken
            } else if r.failed {
                LeaseEnd::ServerFailed
            } else {
                LeaseEnd::Finished
            };
            let now = Instant::from_micros(self.now);
            let core = &mut self.callosum(r.client).core;
            if let Err(error) = core.checkin(lease, conn, end, now) {
                panic!("checkin of a leased connection refused: {error}");
            }
            self.drain(r.client);
        }
    }

    // --- callosum connections -------------------------------------------------------------

    /// Starts a client core with every server of the cluster. The core starts roving at its
    /// first timeout, due at once, so its first attempts are drawn among all of them.
    fn boot(&mut self, client: u32) {
        let now = Instant::from_micros(self.now);
        let members = std::mem::take(&mut self.members);
        let core = &mut self.callosum(client).core;
        for &server in &members {
            core.add_server(server_addr(server), now);
        }
        self.members = members;
        self.drain(client);
    }

    fn wake(&mut self, client: u32) {
        let now = self.now;
        let cc = self.callosum(client);
        if cc.wake_at == Some(now) {
            cc.wake_at = None;
        }
        if cc.timeout.is_some_and(|t| t <= now) {
            cc.core.handle_timeout(Instant::from_micros(now));
        }
        self.drain(client);
    }

    fn syn(&mut self, client: u32, attempt: AttemptId, server: u32) {
        let arrive = self.now + self.params.one_way_us;
        let s = &mut self.servers[server as usize];
        if !s.up {
            self.book(arrive, Ev::Refused { client, attempt });
            return;
        }
        match s.core.handle_accept() {
            Accept::Assigned { conn: id, .. } => {
                if self.in_traffic_window() {
                    self.connections_opened += 1;
                }
                self.conns.push(Conn {
                    server,
                    id,
                    at_server: true,
                    at_client: true,
                });
                let conn = (self.conns.len() - 1) as u32;
                self.book(
                    arrive,
                    Ev::SlotLine {
                        client,
                        attempt,
                        conn,
                    },
                );
            }
            Accept::Full => unreachable!("servers have no slot limit here"),
        }
    }

    fn slot_line(&mut self, client: u32, attempt: AttemptId, conn: u32) {
        let now = Instant::from_micros(self.now);
        let Conn { id, at_server, .. } = self.conns[conn as usize];
        let core = &mut self.callosum(client).core;
        if !at_server {
            // The server crashed after accepting: the stream ends before the line. (Stale if
            // the attempt ended meanwhile: nothing to tell then.)
            let _ = core.handle_closed(attempt, now);
            self.close(conn);
        } else {
            let line = SlotLine::new(id.slot());
            let handshake = core
                .handle_connected(attempt, now)
                .and_then(|()| core.handle_received(attempt, line.as_bytes(), now));
            match handshake {
                Ok(Handshake::Complete(ready)) => {
                    // Kept, or rejected and given back in an `Output::Close`.
                    let _ = core.deliver(ready, conn, now);
                }
                Ok(Handshake::NeedMore { .. }) => unreachable!("the whole line came at once"),
                // The attempt timed out or was aborted meanwhile (or the line failed, which
                // a server's line never does): hang up.
                Ok(Handshake::Failed) | Err(_) => self.close(conn),
            }
        }
        self.drain(client);
    }

    /// Acts on every output of the client's core until it asks to be woken, and books that
    /// wake-up.
    fn drain(&mut self, client: u32) {
        loop {
            match self.callosum(client).core.poll_output() {
                Output::Connect { attempt, server } => {
                    let server = server_index(server);
                    let syn = Ev::Syn {
                        client,
                        attempt,
                        server,
                    };
                    self.book(self.now + self.params.one_way_us, syn);
                }
                // The SYN or the slot line on its way finds the attempt stale when it arrives
                // and hangs up then.
                Output::Abort(_) => {}
                Output::Close(conn) => self.close(conn),
                // The reports count connections at the servers.
                Output::Event(_) => {}
                Output::Idle => self.dispatch_waiting(client),
                Output::Resolve { .. } => {
                    unreachable!("the simulated clients know their servers by address")
                }
                Output::Timeout(timeout) => {
                    let now = self.now;
                    let cc = self.callosum(client);
                    cc.timeout = timeout.map(Instant::as_micros);
                    if let Some(wake) = cc.timeout {
                        let wake = wake.max(now);
                        if cc.wake_at.is_none_or(|booked| wake < booked) {
                            cc.wake_at = Some(wake);
                            self.book(wake, Ev::Wake { client });
                        }
                    }
                    return;
                }
            }
        }
    }

    /// The client closes a connection; the server frees its slot unless it crashed since.
    fn close(&mut self, conn: u32) {
        let c = &mut self.conns[conn as usize];
        assert!(c.at_client, "connection {conn} closed twice");
        c.at_client = false;
        if c.at_server {
            c.at_server = false;
            self.servers[c.server as usize]
                .core
                .handle_closed(c.id)
                .expect("each connection frees its slot exactly once");
        }
    }

    // --- disturbances ---------------------------------------------------------------------

    fn crash(&mut self) {
        let odd = self.odd_server();
        let s = &mut self.servers[odd];
        s.up = false;
        s.epoch += 1;
        s.busy = 0;
        s.queue.clear();
        // Work at the server is lost. Requests on their way there fail when they arrive, and
        // the answers on their way back still arrive; callosum clients return the leases of
        // all of them as broken.
        for req in 0..self.requests.len() as u32 {
            let r = self.requests[req as usize];
            if r.stage == Stage::AtServer && r.server as usize == odd {
                self.fail(req);
            }
        }
        if self.strategy != Strategy::Callosum {
            return;
        }
        // Every connection of the server ends: its slots are free...
        for c in &mut self.conns {
            if c.at_server && c.server as usize == odd {
                c.at_server = false;
                self.servers[odd]
                    .core
                    .handle_closed(c.id)
                    .expect("each connection frees its slot exactly once");
            }
        }
        // ...and every client sees the end of its idle ones.
        let now = Instant::from_micros(self.now);
        let mut idle: Vec<PooledId> = Vec::new();
        for client in 0..self.clients.len() as u32 {
            let conns = &self.conns;
            let core = &mut self.clients[client as usize]
                .callosum
                .as_mut()
                .expect("callosum clients")
                .core;
            idle.extend(
                core.idle_mut()
                    .filter(|(_, conn)| !conns[**conn as usize].at_server)
                    .map(|(id, _)| id),
            );
            for id in idle.drain(..) {
                core.handle_idle_signal(id, IdleSignal::Closed, now)
                    .expect("an idle connection");
            }
            self.drain(client);
        }
    }

    fn join(&mut self) {
        let odd = self.odd_server();
        self.servers[odd].active = true;
        self.members.push(odd as u32);
        if self.strategy == Strategy::Callosum {
            let now = Instant::from_micros(self.now);
            for client in 0..self.clients.len() as u32 {
                let core = &mut self.callosum(client).core;
                // A client not booted yet learns every member when it boots.
                if core.servers().next().is_some() {
                    core.add_server(server_addr(odd as u32), now);
                    self.drain(client);
                }
            }
        }
    }

    fn sample(&mut self) {
        if self.now > self.params.duration_us {
            return;
        }
        let now = self.now;
        let row = self
            .servers
            .iter_mut()
            .map(|s| {
                s.area += u64::from(s.outstanding) * (now - s.changed_at);
                s.changed_at = now;
                let window = s.area - s.area_at_last_sample;
                s.area_at_last_sample = s.area;
                (window as f64 / SAMPLE_US as f64) as f32
            })
            .collect();
        self.samples.push(row);
        let spread_from = self.params.duration_us.saturating_sub(SPREAD_WINDOW_US);
        if self.strategy == Strategy::Callosum && now > spread_from.max(self.params.warmup_us) {
            self.live_samples += 1;
            for (sum, server) in self.live_sums.iter_mut().zip(&self.servers) {
                *sum += u64::from(server.core.live());
            }
        }
        self.book(now + SAMPLE_US, Ev::Sample);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The workload streams of 1,024 clients under one seed.
    fn workload_seeds(seed: u64) -> BTreeSet<u64> {
        (0..1_024)
            .map(|client| derive_seed(seed, Stream::Workload, client))
            .collect()
    }

    #[test]
    fn seeds_give_independent_client_streams() {
        let sets: Vec<BTreeSet<u64>> = (1..=7).map(workload_seeds).collect();
        for (a, first) in sets.iter().enumerate() {
            assert_eq!(first.len(), 1_024, "seed {}: streams repeat", a + 1);
            for (b, second) in sets.iter().enumerate().skip(a + 1) {
                assert!(
                    first.is_disjoint(second),
                    "seeds {} and {} share client streams",
                    a + 1,
                    b + 1
                );
            }
        }
        let choice: BTreeSet<u64> = (0..1_024)
            .map(|client| derive_seed(1, Stream::Choice, client))
            .collect();
        assert!(choice.is_disjoint(&sets[0]), "streams of one seed overlap");
    }
}

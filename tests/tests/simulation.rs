//! A deterministic simulation of a cluster, built only on `callosum-proto`.
//!
//! Ten servers (server cores), fifty clients (each a pool of 20 and a rover), a network with a
//! fixed one-way delay, and request traffic, all in virtual time driven by one event queue.
//! It checks the protocol's promise: with nothing but lowest-free slots on the servers,
//! lowest-slot pools and random roving on the clients, the connections spread evenly over the
//! servers, and no server ever gives one slot to two live connections.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use callosum_proto::pool::{Checkin, Evicted, Offer};
use callosum_proto::rover::{Action, AttemptId, Event};
use callosum_proto::server::{Accept, AcceptId as ServerConnId, GrowableServerCore};
use callosum_proto::{Instant, Pool, PoolConfig, Rng, Rover, RoverConfig, ServerId};

const SERVERS: usize = 10;
const CLIENTS: usize = 50;
const POOL_SIZE: usize = 20;
const ONE_WAY_DELAY: Duration = Duration::from_millis(1);
const MEAN_REQUEST_GAP_MS: u64 = 40;
const SERVICE_TIME: Duration = Duration::from_millis(5);
const RUN_FOR: Duration = Duration::from_secs(300);

/// One simulated TCP connection, known by its index in `Cluster::conns`.
type ConnKey = usize;

struct SimConn {
    server: usize,
    server_conn: ServerConnId,
    open: bool,
}

struct Client {
    pool: Pool<ConnKey>,
    rover: Rover,
    /// Connections whose slot line is on its way, by rover attempt.
    handshakes: HashMap<AttemptId, ConnKey>,
    /// The wake-up time last put in the queue, to avoid flooding it with copies.
    wake_at: Option<Instant>,
}

enum Happening {
    /// A client's rover asked to be woken.
    Wake { client: usize },
    /// A connection request reaches a server.
    Syn {
        client: usize,
        attempt: AttemptId,
        server: usize,
    },
    /// The server's slot line reaches the client.
    SlotLine {
        client: usize,
        attempt: AttemptId,
        conn: ConnKey,
        line: Vec<u8>,
    },
    /// A client wants to send a request.
    Request { client: usize },
    /// A response arrives; the client returns the connection.
    Response {
        client: usize,
        id: callosum_proto::pool::PooledId,
        conn: ConnKey,
    },
}

struct Cluster {
    now: Instant,
    servers: Vec<GrowableServerCore>,
    /// Per server, the live connection on each slot, kept by the simulation itself.
    live_slots: Vec<BTreeMap<u32, ConnKey>>,
    conns: Vec<SimConn>,
    clients: Vec<Client>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    happenings: Vec<Option<Happening>>,
    sequence: u64,
    rng: Rng,
    stopping: bool,
    requests_served: u64,
    requests_without_connection: u64,
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let mut rng = Rng::new(seed);
        let servers = (0..SERVERS)
            .map(|_| GrowableServerCore::new(None).unwrap())
            .collect();
        let clients = (0..CLIENTS)
            .map(|_| {
                let pool = Pool::new(
                    PoolConfig {
                        max_slots: POOL_SIZE,
                    },
                    rng.next_u64(),
                )
                .unwrap();
                let mut rover = Rover::new(RoverConfig::default(), rng.next_u64()).unwrap();
                for server in 0..SERVERS {
                    assert!(rover.add_server(ServerId(server as u32)));
                }
                Client {
                    pool,
                    rover,
                    handshakes: HashMap::new(),
                    wake_at: None,
                }
            })
            .collect();
        Cluster {
            now: Instant::ZERO,
            servers,
            live_slots: vec![BTreeMap::new(); SERVERS],
            conns: Vec::new(),
            clients,
            queue: BinaryHeap::new(),
            happenings: Vec::new(),
            sequence: 0,
            rng,
            stopping: false,
            requests_served: 0,
            requests_without_connection: 0,
        }
    }

    fn at(&mut self, when: Instant, happening: Happening) {
        self.happenings.push(Some(happening));
        self.sequence += 1;
        self.queue
            .push(Reverse((when, self.sequence, self.happenings.len() - 1)));
    }

    fn start(&mut self) {
        for client in 0..CLIENTS {
            // Clients start within the first second, as a fleet that boots together.
            let start = Instant::from_millis(self.rng.below(1_000));
            let c = &mut self.clients[client];
            let wanted = c.pool.wanted();
            c.rover.set_demand(wanted, start);
            c.rover.start(start);
            self.after_input(client);
            let first_request = start + self.request_gap();
            self.at(first_request, Happening::Request { client });
        }
    }

    fn request_gap(&mut self) -> Duration {
        // Exponential gaps (Poisson arrivals) from a uniform draw.
        let uniform = (self.rng.below(1 << 20) as f64 + 0.5) / f64::from(1u32 << 20);
        let millis = -(MEAN_REQUEST_GAP_MS as f64) * uniform.ln();
        Duration::from_micros((millis * 1_000.0) as u64)
    }

    fn run_until(&mut self, end: Instant) {
        while let Some(&Reverse((when, _, index))) = self.queue.peek() {
            if when > end {
                break;
            }
            self.queue.pop();
            self.now = when;
            let happening = self.happenings[index].take().expect("each happens once");
            self.happen(happening);
        }
        self.now = end;
    }

    fn happen(&mut self, happening: Happening) {
        let now = self.now;
        match happening {
            Happening::Wake { client } => {
                let c = &mut self.clients[client];
                if c.wake_at == Some(now) {
                    c.wake_at = None;
                }
                if c.rover.poll_timeout().is_some_and(|t| t <= now) {
                    c.rover.handle_timeout(now);
                }
                self.after_input(client);
            }
            Happening::Syn {
                client,
                attempt,
                server,
            } => match self.servers[server].handle_accept() {
                Accept::Assigned { conn, line } => {
                    let previous = self.live_slots[server].insert(conn.slot(), self.conns.len());
                    assert_eq!(
                        previous,
                        None,
                        "server {server} gave slot {} to two live connections",
                        conn.slot()
                    );
                    self.conns.push(SimConn {
                        server,
                        server_conn: conn,
                        open: true,
                    });
                    let key = self.conns.len() - 1;
                    self.at(
                        now + ONE_WAY_DELAY,
                        Happening::SlotLine {
                            client,
                            attempt,
                            conn: key,
                            line: line.as_bytes().to_vec(),
                        },
                    );
                }
                Accept::Full => unreachable!("servers have no slot limit here"),
            },
            Happening::SlotLine {
                client,
                attempt,
                conn,
                line,
            } => {
                let rover = &mut self.clients[client].rover;
                let delivered = rover
                    .handle_connected(attempt, now)
                    .and_then(|()| rover.handle_received(attempt, &line, now));
                match delivered {
                    Ok(consumed) => {
                        assert_eq!(consumed, line.len());
                        self.clients[client].handshakes.insert(attempt, conn);
                    }
                    // The attempt was aborted or timed out meanwhile: hang up.
                    Err(_) => self.close(conn),
                }
                self.after_input(client);
            }
            Happening::Request { client } => {
                if !self.stopping {
                    match self.clients[client].pool.checkout() {
                        Some(lease) => self.at(
                            now + ONE_WAY_DELAY + SERVICE_TIME + ONE_WAY_DELAY,
                            Happening::Response {
                                client,
                                id: lease.id,
                                conn: lease.conn,
                            },
                        ),
                        None => self.requests_without_connection += 1,
                    }
                    let next = now + self.request_gap();
                    self.at(next, Happening::Request { client });
                }
            }
            Happening::Response { client, id, conn } => {
                self.requests_served += 1;
                match self.clients[client].pool.checkin(id, conn) {
                    Ok(Checkin::Idle(_)) => {}
                    Ok(Checkin::Close(conn)) => self.close(conn),
                    Err(error) => panic!("checkin of a leased connection refused: {error}"),
                }
                self.after_input(client);
            }
        }
    }

    /// Tells the client's rover what its pool wants, acts on everything it says, and books
    /// the next wake-up; repeated until the rover has nothing more to say.
    fn after_input(&mut self, client: usize) {
        let now = self.now;
        loop {
            let c = &mut self.clients[client];
            let wanted = c.pool.wanted();
            c.rover.set_demand(wanted, now);
            let mut said_something = false;
            while let Some(action) = self.clients[client].rover.poll_action() {
                said_something = true;
                self.act(client, action);
            }
            while let Some(event) = self.clients[client].rover.poll_event() {
                said_something = true;
                if let Event::Connection {
                    attempt,
                    server,
                    slot,
                } = event
                {
                    let conn = self.clients[client]
                        .handshakes
                        .remove(&attempt)
                        .expect("a connection event follows the slot line");
                    self.offer(client, server, slot, conn);
                }
            }
            if !said_something {
                break;
            }
        }
        let c = &mut self.clients[client];
        if let Some(wake) = c.rover.poll_timeout()
            && c.wake_at.is_none_or(|booked| wake < booked)
        {
            c.wake_at = Some(wake);
            self.at(wake.max(now), Happening::Wake { client });
        }
    }

    fn act(&mut self, client: usize, action: Action) {
        match action {
            Action::Connect { attempt, server } => self.at(
                self.now + ONE_WAY_DELAY,
                Happening::Syn {
                    client,
                    attempt,
                    server: server.0 as usize,
                },
            ),
            Action::Close { attempt } => {
                if let Some(conn) = self.clients[client].handshakes.remove(&attempt) {
                    self.close(conn);
                }
            }
        }
    }

    fn offer(&mut self, client: usize, server: ServerId, slot: u32, conn: ConnKey) {
        match self.clients[client].pool.offer(server, slot, conn) {
            Offer::Kept(_) => {}
            Offer::Replaced { evicted, .. } => {
                if let Evicted::Idle { conn, .. } = evicted {
                    self.close(conn);
                }
            }
            Offer::Rejected(conn) => self.close(conn),
        }
    }

    fn close(&mut self, key: ConnKey) {
        let conn = &mut self.conns[key];
        assert!(conn.open, "connection {key} closed twice");
        conn.open = false;
        let slot = self.servers[conn.server]
            .handle_closed(conn.server_conn)
            .expect("each connection frees its slot exactly once");
        assert_eq!(self.live_slots[conn.server].remove(&slot), Some(key));
    }

    /// Stops traffic and rovers, lets every request finish, and returns the live
    /// connections per server.
    fn settle(&mut self) -> Vec<u32> {
        self.stopping = true;
        for client in 0..CLIENTS {
            self.clients[client].rover.stop();
            self.after_input(client);
        }
        let end = self.now + Duration::from_secs(5);
        self.run_until(end);
        for c in &self.clients {
            assert_eq!(c.pool.status().leased, 0, "a request never finished");
            assert!(c.handshakes.is_empty(), "a handshake was left open");
        }
        self.servers.iter().map(|server| server.live()).collect()
    }
}

#[test]
fn connections_spread_evenly_and_slots_are_never_shared() {
    let mut cluster = Cluster::new(2012);
    cluster.start();
    cluster.run_until(Instant::ZERO + RUN_FOR);
    let per_server = cluster.settle();

    let held: usize = cluster.clients.iter().map(|c| c.pool.status().held).sum();
    assert_eq!(held, CLIENTS * POOL_SIZE, "every pool is full");
    let total: u32 = per_server.iter().sum();
    assert_eq!(
        total as usize, held,
        "a server holds a connection no pool has"
    );

    let mean = f64::from(total) / SERVERS as f64;
    for (server, &count) in per_server.iter().enumerate() {
        let off = (f64::from(count) - mean).abs() / mean;
        assert!(
            off <= 0.05,
            "server {server} holds {count} connections, {:.1}% off the mean {mean}: {per_server:?}",
            off * 100.0
        );
    }
    assert!(
        cluster.requests_served > 100_000,
        "{}",
        cluster.requests_served
    );
}

#[test]
fn the_same_seed_gives_the_same_cluster() {
    let run = |seed| {
        let mut cluster = Cluster::new(seed);
        cluster.start();
        cluster.run_until(Instant::from_millis(20_000));
        (
            cluster.settle(),
            cluster.requests_served,
            cluster.requests_without_connection,
        )
    };
    assert_eq!(run(7), run(7));
}

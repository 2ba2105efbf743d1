//! The mio adapter behind the harness: each component on a thread of its own with its own
//! `Poll`, driven by `callosum_mio::run`; the test reaches it through a `mio::Waker`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use callosum_mio::{
    Client, Happened, Lease, LeaseId, LeaseReady, Server, ServerConfig, ServerConnId, ServerEvent,
    TokenRange, run,
};
use mio::{Poll, Token, Waker};

use super::{
    Background, Cancellation, CancellationTally, ClientSpec, ClientUnderTest, Command,
    FAILURE_ANSWER, Reply, ServerUnderTest, Watch,
};

/// The waker's token; the components get the tokens after it.
const WAKE: Token = Token(0);

fn components() -> TokenRange {
    TokenRange::new(1..10_000)
}

pub(super) fn server(max_slots: Option<u32>) -> ServerUnderTest {
    let mut poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
    let mut config = ServerConfig::default();
    config.max_slots = max_slots;
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    server.register(poll.registry(), components()).unwrap();
    let addr = server.local_addr();
    let live = Arc::new(Watch::default());
    let published = Arc::clone(&live);
    let keep_waker = Arc::clone(&waker);
    let body = move || {
        // The loop owns a waker too: one closed before its event is polled loses the event.
        let _waker = keep_waker;
        // Echoed bytes the socket did not take yet, per connection.
        let mut unsent: HashMap<ServerConnId, Vec<u8>> = HashMap::new();
        run(&mut poll, Some(&mut server), None, |parts, happened| {
            let server = parts.server.as_deref_mut().expect("run drives the server");
            match happened {
                Happened::Server(ServerEvent::Readable { conn }) => {
                    let mut buf = [0u8; 4096];
                    // Until `WouldBlock`, or the end (then `Closed` is queued).
                    while let Ok(n @ 1..) = server.read(conn, &mut buf) {
                        unsent.entry(conn).or_default().extend_from_slice(&buf[..n]);
                    }
                    flush(server, conn, &mut unsent);
                }
                Happened::Server(ServerEvent::Writable { conn }) => {
                    flush(server, conn, &mut unsent)
                }
                Happened::Server(ServerEvent::Closed { conn, .. }) => {
                    unsent.remove(&conn);
                }
                Happened::Foreign(_) => return ControlFlow::Break(()),
                Happened::Woke => published.set(server.status().live),
                Happened::Server(_) | Happened::Client(_) | Happened::Lease(_) => {}
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    };
    ServerUnderTest {
        addr,
        live,
        _background: Background::spawn(move || waker.wake().unwrap(), body),
    }
}

/// Writes what `conn` has to echo, as far as its socket takes it.
fn flush(server: &mut Server, conn: ServerConnId, unsent: &mut HashMap<ServerConnId, Vec<u8>>) {
    let Some(bytes) = unsent.get_mut(&conn) else {
        return;
    };
    while !bytes.is_empty() {
        match server.write(conn, bytes) {
            Ok(n) => {
                bytes.drain(..n);
            }
            // `WouldBlock`: `Writable` follows; anything else ended it and `Closed` follows.
            Err(_) => return,
        }
    }
}

/// A request under way on a leased connection.
struct Trip {
    lease: Lease,
    answer: Vec<u8>,
    reply: mpsc::Sender<Result<Reply, String>>,
}

pub(super) fn client(spec: ClientSpec) -> ClientUnderTest {
    let mut poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
    let mut client = match spec.resolver {
        Some(resolver) => Client::with_resolver(spec.config, resolver),
        None => Client::new(spec.config),
    }
    .unwrap();
    client.register(poll.registry(), components()).unwrap();
    for name in &spec.names {
        client.add_server(name.clone());
    }
    for &server in &spec.servers {
        client.add_server(server);
    }
    let (events_sender, events) = mpsc::channel();
    let (commands, received) = mpsc::channel();
    let keep_waker = Arc::clone(&waker);
    let body = move || {
        // The loop owns a waker too: one closed before its event is polled loses the event.
        let _waker = keep_waker;
        let mut trip: Option<Trip> = None;
        let mut scenario: Option<Scenario> = None;
        run(&mut poll, None, Some(&mut client), |parts, happened| {
            let client = parts.client.as_deref_mut().expect("run drives the client");
            if scenario
                .as_mut()
                .is_some_and(|running| running.step(client))
            {
                scenario = None;
            }
            match happened {
                Happened::Lease(LeaseReady {
                    lease,
                    readable: true,
                    ..
                }) => {
                    trip = trip
                        .take()
                        .and_then(|trip| read_answer(client, trip, lease));
                }
                Happened::Lease(_) => {}
                Happened::Client(event) => {
                    let _ = events_sender.send(event);
                }
                Happened::Foreign(_) => {
                    for command in received.try_iter() {
                        match command {
                            Command::Status(reply) => {
                                let _ = reply.send(client.status());
                            }
                            Command::RoundTrip(line, reply) => {
                                trip = send_request(client, &line, reply);
                            }
                            Command::RemoveServer(server, reply) => {
                                let _ = reply.send(client.remove_server(server));
                            }
                            Command::Cancellation(spec, reply) => {
                                scenario = Some(Scenario::new(spec, reply));
                            }
                            Command::Stop => return ControlFlow::Break(()),
                        }
                    }
                }
                Happened::Woke | Happened::Server(_) => {}
            }
            if scenario.is_some() {
                // The scenario polls its exchanges and their deadlines every millisecond.
                parts.wake_at(Instant::now() + Duration::from_millis(1));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    };
    let send = {
        let waker = Arc::clone(&waker);
        let commands = commands.clone();
        move |command| {
            let _ = commands.send(command);
            waker.wake().unwrap();
        }
    };
    ClientUnderTest {
        events,
        send: Box::new(send.clone()),
        _background: Background::spawn(move || send(Command::Stop), body),
    }
}

/// Writes the request on the lowest idle connection and reads what is there; the rest of
/// the answer comes with `Readable`.
fn send_request(
    client: &mut Client,
    line: &str,
    reply: mpsc::Sender<Result<Reply, String>>,
) -> Option<Trip> {
    let Some(lease) = client.checkout() else {
        let _ = reply.send(Err("no idle connection".to_owned()));
        return None;
    };
    let conn = client
        .conn_mut(&lease)
        .expect("a fresh lease has its connection");
    if let Err(error) = conn.write_all(format!("{line}\n").as_bytes()) {
        let _ = reply.send(Err(error.to_string()));
        client.checkin_broken(lease);
        return None;
    }
    let trip = Trip {
        lease,
        answer: Vec::new(),
        reply,
    };
    // The answer may be there already, with no new readiness to announce it.
    let ready = trip.lease.id();
    read_answer(client, trip, ready)
}

/// Reads what arrived for `trip`; answers and returns the connection once a whole line is
/// in, or the trip back if more is to come.
fn read_answer(client: &mut Client, mut trip: Trip, ready: LeaseId) -> Option<Trip> {
    if trip.lease.id() != ready {
        return Some(trip);
    }
    let conn = client
        .conn_mut(&trip.lease)
        .expect("a lease has its connection");
    let mut buf = [0u8; 256];
    let ended = loop {
        match conn.read(&mut buf) {
            Ok(0) => break Some("the server closed".to_owned()),
            Ok(n) => trip.answer.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break None,
            Err(error) => break Some(error.to_string()),
        }
    };
    let answer = match (ended, trip.answer.iter().position(|&b| b == b'\n')) {
        (_, Some(end)) => Ok(Reply {
            server: trip.lease.server(),
            slot: trip.lease.slot(),
            line: String::from_utf8_lossy(&trip.answer[..end]).into_owned(),
        }),
        (None, None) => return Some(trip),
        (Some(error), None) => Err(error),
    };
    // Returned before the test hears the answer, as the other adapters' round trips do: a
    // test that then closes the server's end sees the connection idle, not still leased. A
    // connection that ended is found broken at checkin and removed.
    if matches!(&answer, Ok(reply) if reply.line == FAILURE_ANSWER) {
        client.checkin_failed(trip.lease);
    } else {
        client.checkin(trip.lease);
    }
    let _ = trip.reply.send(answer);
    None
}

/// The cancellation scenario on the mio client's loop: up to `tasks` exchanges in flight on
/// leases; every `abandon_every`-th is given up after `abandon_after` by dropping its lease,
/// never checked in, as a mio user who gives up on a request would.
struct Scenario {
    spec: Cancellation,
    reply: mpsc::Sender<CancellationTally>,
    next: usize,
    in_flight: Vec<Exchange>,
    tally: CancellationTally,
}

/// One request of the scenario under way.
struct Exchange {
    lease: Lease,
    request: String,
    answer: Vec<u8>,
    started: Instant,
    abandon: bool,
}

impl Scenario {
    fn new(spec: Cancellation, reply: mpsc::Sender<CancellationTally>) -> Scenario {
        Scenario {
            spec,
            reply,
            next: 0,
            in_flight: Vec::new(),
            tally: CancellationTally::default(),
        }
    }

    /// Reads what arrived, gives up what is due, starts what it can; `true` once every
    /// request is done and the tally was sent.
    fn step(&mut self, client: &mut Client) -> bool {
        let mut still = Vec::with_capacity(self.in_flight.len());
        for mut exchange in std::mem::take(&mut self.in_flight) {
            let ended = read_available(client, &exchange.lease, &mut exchange.answer);
            if let Some(end) = exchange.answer.iter().position(|&b| b == b'\n') {
                let reply = String::from_utf8_lossy(&exchange.answer[..=end]).into_owned();
                self.tally.count(&exchange.request, &reply);
                client.checkin(exchange.lease);
            } else if ended {
                self.tally.failed += 1;
                client.checkin_broken(exchange.lease);
            } else if exchange.abandon && exchange.started.elapsed() >= self.spec.abandon_after {
                // Dropped mid-exchange: the client must close it, never lend it again.
                drop(exchange.lease);
                self.tally.abandoned += 1;
            } else {
                still.push(exchange);
            }
        }
        self.in_flight = still;
        while self.in_flight.len() < self.spec.tasks && self.next < self.spec.requests {
            let Some(lease) = client.checkout() else {
                break;
            };
            let number = self.next;
            self.next += 1;
            let request = format!("request {number}\n");
            let written = client
                .conn_mut(&lease)
                .is_some_and(|conn| conn.write_all(request.as_bytes()).is_ok());
            if !written {
                self.tally.failed += 1;
                client.checkin_broken(lease);
                continue;
            }
            self.in_flight.push(Exchange {
                lease,
                request,
                answer: Vec::new(),
                started: Instant::now(),
                abandon: self.spec.abandons(number),
            });
        }
        let done = self.next >= self.spec.requests && self.in_flight.is_empty();
        if done {
            let _ = self.reply.send(self.tally);
        }
        done
    }
}

/// Reads what the lease's connection has, without waiting; `true` if it ended or failed.
fn read_available(client: &mut Client, lease: &Lease, into: &mut Vec<u8>) -> bool {
    let Some(conn) = client.conn_mut(lease) else {
        return true;
    };
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

//! The mio adapter behind the harness: each component on a thread of its own with its own
//! `Poll`, driven by `callosum_mio::run`; the test reaches it through a `mio::Waker`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::{Arc, mpsc};

use callosum_mio::{
    Client, Happened, Lease, LeaseId, LeaseReady, Server, ServerConfig, ServerConnId, ServerEvent,
    TokenRange, run,
};
use mio::{Poll, Token, Waker};

use super::{Background, ClientSpec, ClientUnderTest, Command, Reply, ServerUnderTest, Watch};

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
    let mut client = Client::new(spec.config).unwrap();
    client.register(poll.registry(), components()).unwrap();
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
        run(&mut poll, None, Some(&mut client), |parts, happened| {
            let client = parts.client.as_deref_mut().expect("run drives the client");
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
                                let _ = reply.send(client.status().servers);
                            }
                            Command::RoundTrip(line, reply) => {
                                trip = send_request(client, &line, reply);
                            }
                            Command::RemoveServer(server, reply) => {
                                let _ = reply.send(client.remove_server(server));
                            }
                            Command::Stop => return ControlFlow::Break(()),
                        }
                    }
                }
                Happened::Woke | Happened::Server(_) => {}
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
    let _ = trip.reply.send(answer);
    // A connection that ended is found broken at checkin and removed.
    client.checkin(trip.lease);
    None
}

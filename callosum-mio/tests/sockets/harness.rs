//! A single-threaded loop for the socket tests: a server, a client and/or a plain listener
//! on one `mio` poll, driven until a condition holds or a deadline passes (never by fixed
//! sleeps). The server's "application" reads every readable connection until it would
//! block, keeps what it read per connection, and echoes it back when asked to.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use callosum_mio::{
    Client, ClientConfig, ClientEvent, LeaseReady, RemoveCause, Server, ServerConfig, ServerConnId,
    ServerEvent, TokenRange, timeout_until,
};
use mio::{Events, Interest, Poll, Token};

/// How long any one wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The token of the plain listener, outside every component's range.
const LISTENER: Token = Token(5);

pub struct Harness {
    poll: Poll,
    events: Events,
    pub server: Option<Server>,
    pub client: Option<Client>,
    /// A plain listener standing in for a misbehaving server.
    listener: Option<mio::net::TcpListener>,
    max_slots: usize,
    pub echo: bool,
    pub server_log: Vec<ServerEvent>,
    pub client_log: Vec<ClientEvent>,
    pub ready_log: Vec<LeaseReady>,
    pub received: HashMap<ServerConnId, Vec<u8>>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(256),
            server: None,
            client: None,
            listener: None,
            max_slots: usize::MAX,
            echo: false,
            server_log: Vec::new(),
            client_log: Vec::new(),
            ready_log: Vec::new(),
            received: HashMap::new(),
        }
    }

    /// Adds a server on 127.0.0.1, port 0, with `tokens`.
    pub fn with_server_tokens(mut self, config: ServerConfig, tokens: TokenRange) -> Harness {
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        server.register(self.poll.registry(), tokens).unwrap();
        self.server = Some(server);
        self
    }

    /// Adds a server on 127.0.0.1, port 0, with tokens 10..1000.
    pub fn with_server(self, config: ServerConfig) -> Harness {
        self.with_server_tokens(config, TokenRange::new(10..1000))
    }

    /// Adds a client seeded with `seed`, with tokens from 1000, as many as it needs.
    pub fn with_client(mut self, mut config: ClientConfig, seed: u64) -> Harness {
        self.max_slots = config.pool.max_slots;
        config.seed = Some(seed);
        let mut client = Client::new(config).unwrap();
        let tokens = TokenRange::new(1000..1000 + client.tokens_needed());
        client.register(self.poll.registry(), tokens).unwrap();
        self.client = Some(client);
        self
    }

    /// Adds a plain listener on 127.0.0.1, port 0, and returns its address.
    pub fn with_listener(&mut self) -> SocketAddr {
        let mut listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .unwrap();
        let addr = listener.local_addr().unwrap();
        self.listener = Some(listener);
        addr
    }

    pub fn server(&mut self) -> &mut Server {
        self.server.as_mut().unwrap()
    }

    pub fn client(&mut self) -> &mut Client {
        self.client.as_mut().unwrap()
    }

    pub fn server_addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    /// One turn: poll (until an event, a component's timeout or `deadline`), hand every
    /// event to its component, let time pass, drain the events.
    pub fn turn(&mut self, deadline: Instant) {
        let timeout = timeout_until([
            self.server.as_ref().and_then(Server::poll_timeout),
            self.client.as_ref().and_then(Client::poll_timeout),
            Some(deadline),
        ]);
        self.poll.poll(&mut self.events, timeout).unwrap();
        for event in &self.events {
            let token = event.token();
            if let Some(server) = self.server.as_mut().filter(|s| s.handles(token)) {
                server.handle_event(event);
            } else if let Some(client) = self.client.as_mut().filter(|c| c.handles(token)) {
                client.handle_event(event);
            } else if token != LISTENER {
                panic!("an event for {token:?}, outside every component's range");
            }
        }
        if let Some(server) = self.server.as_mut() {
            server.handle_timeout();
        }
        if let Some(client) = self.client.as_mut() {
            client.handle_timeout();
        }
        self.drain();
    }

    /// Takes every queued event, acting as the server's application.
    pub fn drain(&mut self) {
        loop {
            if let Some(event) = self.server.as_mut().and_then(Server::poll_event) {
                self.server_log.push(event);
                if let ServerEvent::Readable { conn } = event {
                    self.read_all(conn);
                }
            } else if let Some(event) = self.client.as_mut().and_then(Client::poll_event) {
                self.client_log.push(event);
            } else if let Some(ready) = self.client.as_mut().and_then(Client::poll_lease_ready) {
                self.ready_log.push(ready);
            } else {
                break;
            }
        }
        if let Some(client) = self.client.as_ref() {
            let held = client.status().pool.held;
            assert!(held <= self.max_slots, "{held} held, above max_slots");
        }
    }

    fn read_all(&mut self, conn: ServerConnId) {
        let server = self.server.as_mut().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match server.read(conn, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    self.received
                        .entry(conn)
                        .or_default()
                        .extend_from_slice(&buf[..n]);
                    if self.echo {
                        let mut written = 0;
                        while written < n {
                            written += server.write(conn, &buf[written..n]).unwrap();
                        }
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return, // ended: the Closed event is queued
            }
        }
    }

    /// Runs turns until `done` holds; fails the test after [`DEADLINE`].
    pub fn until(&mut self, what: &str, mut done: impl FnMut(&mut Harness) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.client_log
            );
            self.turn(deadline);
        }
    }

    /// Runs turns until the plain listener accepts the client's connection, and returns it
    /// (blocking, its reads bounded by [`DEADLINE`]).
    pub fn accept_from_listener(&mut self) -> TcpStream {
        let mut accepted = None;
        self.until("the client to connect", |h| {
            match h.listener.as_ref().unwrap().accept() {
                Ok((stream, _)) => accepted = Some(stream),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(error) => panic!("accept failed: {error}"),
            }
            accepted.is_some()
        });
        let stream: TcpStream = accepted.unwrap().into();
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    /// The connections accepted so far, with their slots.
    pub fn accepted(&self) -> Vec<(ServerConnId, u32)> {
        self.server_log
            .iter()
            .filter_map(|event| match *event {
                ServerEvent::Accepted { conn, slot, .. } => Some((conn, slot)),
                _ => None,
            })
            .collect()
    }

    /// The slots freed so far, in order.
    pub fn freed(&self) -> Vec<u32> {
        self.server_log
            .iter()
            .filter_map(|event| match *event {
                ServerEvent::Closed { slot, .. } => Some(slot),
                _ => None,
            })
            .collect()
    }

    /// Runs turns until the `n`th connection is accepted, and returns it.
    pub fn accept_nth(&mut self, n: usize) -> (ServerConnId, u32) {
        self.until("a connection to be accepted", |h| h.accepted().len() > n);
        self.accepted()[n]
    }

    /// The removals the client reported so far: slot and cause.
    pub fn removed(&self) -> Vec<(u32, RemoveCause)> {
        self.client_log
            .iter()
            .filter_map(|event| match *event {
                ClientEvent::Removed { slot, cause, .. } => Some((slot, cause)),
                _ => None,
            })
            .collect()
    }

    /// Runs turns until the client has reported `n` removals.
    pub fn until_removed(&mut self, n: usize) -> Vec<(u32, RemoveCause)> {
        self.until("a removal", |h| h.removed().len() >= n);
        self.removed()
    }
}

/// A blocking client socket whose reads give up after [`DEADLINE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// One read call, as the original client does it.
pub fn read_once(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// Reads until the end of the stream; a reset (the peer closed with bytes unread) counts as
/// the end.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => all,
        Err(error) if error.kind() == ErrorKind::ConnectionReset => all,
        Err(error) => panic!("reading to the end: {error}"),
    }
}

//! Draining a server for a rolling restart (PROTOCOL.md section 2, draining), written once and
//! run against each adapter's server (`<check>::smol`, `<check>::mio`, `<check>::tokio`).
//!
//! The server under test runs a line service that cooperates with the drain as the adapters'
//! docs say an application should: it answers the request in hand, closes a connection that
//! is between requests once the server drains, and waits for the next request and the drain
//! together while idle. A line `hold` is answered only once the test releases it, so that a
//! connection can be made busy for as long as the test needs; a line without its newline
//! keeps a connection busy until the deadline. Every wait is an event (a note from the
//! server's thread, a read, the drain's report), bounded by [`DEADLINE`]; none is a sleep.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use callosum_proto::server::{DrainPhase, DrainReport, ServerStatus};
use callosum_tests::conformance::{Adapter, Background, DEADLINE, connect, read_once, read_to_end};
use callosum_tests::each_adapter;

each_adapter!(
    idle_connections_close_at_once_a_busy_one_after_its_reply_and_the_rest_at_the_deadline,
    a_drain_without_connections_is_done_at_once,
);

/// The line the service answers only once the test releases it.
const HOLD: &[u8] = b"hold\n";

/// How long the drains of these checks give connections to finish: ample for the idle and
/// the released ones on a busy machine, short enough for the one kept to its deadline.
const GRACE: Duration = Duration::from_secs(4);

/// What the test asks of the server's thread.
enum Ask {
    /// Answer every `hold` line received, and those to come.
    Release,
    /// Start draining with this deadline; say so on the first sender once the listener is
    /// closed and the accept loop has ended, and send the drain's report on the second.
    Drain(Instant, mpsc::Sender<()>, mpsc::Sender<DrainReport>),
    /// Answer the server's status.
    Status(mpsc::Sender<ServerStatus>),
    /// Return from the thread.
    Stop,
}

/// An adapter's server running the drain-aware line service on a thread of its own.
struct DrainServer {
    addr: SocketAddr,
    /// One note each time a connection has a request in hand that it cannot answer yet: a
    /// `hold` line, or a read that ended mid-line.
    in_hand: mpsc::Receiver<()>,
    ask: Box<dyn Fn(Ask) + Send>,
    _background: Background,
}

impl DrainServer {
    fn start(adapter: Adapter, max_slots: Option<u32>) -> DrainServer {
        match adapter {
            Adapter::Smol => smol_side::start(max_slots),
            Adapter::Mio => mio_side::start(max_slots),
            Adapter::Tokio => tokio_side::start(max_slots),
        }
    }

    /// Waits until the server reports a request in hand.
    fn wait_in_hand(&self, what: &str) {
        self.in_hand
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|error| panic!("{what}: not within {DEADLINE:?} ({error})"));
    }

    /// Starts draining; returns once the server accepts no more, with the receiver of its
    /// report.
    fn drain(&self, deadline: Instant) -> mpsc::Receiver<DrainReport> {
        let (started, is_started) = mpsc::channel();
        let (report, reported) = mpsc::channel();
        (self.ask)(Ask::Drain(deadline, started, report));
        is_started
            .recv_timeout(DEADLINE)
            .expect("the drain started");
        reported
    }

    fn release(&self) {
        (self.ask)(Ask::Release);
    }

    fn status(&self) -> ServerStatus {
        let (reply, answer) = mpsc::channel();
        (self.ask)(Ask::Status(reply));
        answer.recv_timeout(DEADLINE).expect("the server's status")
    }
}

fn idle_connections_close_at_once_a_busy_one_after_its_reply_and_the_rest_at_the_deadline(
    adapter: Adapter,
) {
    let server = DrainServer::start(adapter, Some(3));
    let mut idle = connect(server.addr);
    let mut busy = connect(server.addr);
    let mut stuck = connect(server.addr);
    let lines = [
        read_once(&mut idle),
        read_once(&mut busy),
        read_once(&mut stuck),
    ];
    assert_eq!(lines, ["0\r\n", "1\r\n", "2\r\n"]);
    // A fourth is shed at max_slots.
    assert_eq!(read_to_end(&mut connect(server.addr)), b"");
    // The idle one has answered a request before: it is between requests, not new.
    idle.write_all(b"first\n").unwrap();
    assert_eq!(read_once(&mut idle), "first\n");
    busy.write_all(HOLD).unwrap();
    server.wait_in_hand("the busy connection's request reached the service");
    stuck.write_all(b"a request without its end").unwrap();
    server.wait_in_hand("the stuck connection's partial line reached the service");

    let deadline = Instant::now() + GRACE;
    let report = server.drain(deadline);
    let refused = TcpStream::connect(server.addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    let during = server.status();
    assert!(!during.accepting);
    let drain = during.drain.expect("draining");
    assert_eq!(drain.phase, DrainPhase::BetweenRequests);

    // The idle connection is closed as soon as the drain starts, not at the deadline.
    assert_eq!(read_to_end(&mut idle), b"", "closed without another byte");
    assert!(
        Instant::now() < deadline,
        "the idle connection waited for the deadline"
    );
    // The busy one gets its reply, then is closed.
    server.release();
    assert_eq!(read_to_end(&mut busy), HOLD, "the reply, then the end");
    assert!(
        Instant::now() < deadline,
        "the busy connection waited for the deadline"
    );
    // The one mid-request is closed at the deadline (the server's clock counts whole
    // microseconds, so its deadline may come a fraction of one before the test's).
    assert_eq!(read_to_end(&mut stuck), b"");
    assert!(
        Instant::now() + Duration::from_millis(1) >= deadline,
        "the connection mid-request was closed before the deadline"
    );

    let report = report.recv_timeout(DEADLINE).expect("the drain's report");
    assert_eq!((report.drained, report.closed_at_deadline), (2, 1));
    let status = server.status();
    assert_eq!(status.live, 0, "every slot free");
    let drain = status.drain.expect("drained");
    assert_eq!(drain.phase, DrainPhase::Done);
    assert_eq!(drain.report, report);
    let stats = status.stats;
    assert_eq!((stats.accepted, stats.refused_full), (3, 1));
    assert_eq!((stats.drained, stats.closed_at_deadline), (2, 1));
    assert_eq!(
        (stats.closed, stats.bad_releases),
        (3, 0),
        "each slot freed once"
    );
    assert_eq!(stats.refused_draining, 0);
}

fn a_drain_without_connections_is_done_at_once(adapter: Adapter) {
    let server = DrainServer::start(adapter, None);
    // A deadline far off: nothing waits for it.
    let report = server.drain(Instant::now() + Duration::from_secs(3600));
    let report = report.recv_timeout(DEADLINE).expect("the drain's report");
    assert_eq!(report, DrainReport::default());
    let refused = TcpStream::connect(server.addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    let status = server.status();
    assert_eq!((status.live, status.accepting), (0, false));
    assert_eq!(
        status.drain.map(|drain| drain.phase),
        Some(DrainPhase::Done)
    );
    assert_eq!(status.stats.accepted, 0);
}

/// The line service of smol's server: a task per connection on one local executor.
mod smol_side {
    use super::*;

    use callosum_smol::{Server, ServerConfig, ServerConn};
    use smol::channel::{self, Receiver};
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    use smol::{LocalExecutor, future};

    pub(super) fn start(max_slots: Option<u32>) -> DrainServer {
        let mut config = ServerConfig::default();
        config.max_slots = max_slots;
        let server = Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap());
        let addr = server.local_addr();
        let (notes, in_hand) = mpsc::channel();
        let (asks, asked) = channel::unbounded();
        let body = move || {
            let executor = LocalExecutor::new();
            // Dropped by `Release`: a closed channel's `recv` returns at once.
            let (release, gate) = channel::bounded::<()>(1);
            let mut release = Some(release);
            let (accept_ended, accepting_over) = channel::bounded::<()>(1);
            let accepting = async {
                while let Ok(conn) = server.accept().await {
                    executor
                        .spawn(serve(conn, gate.clone(), notes.clone()))
                        .detach();
                }
                let _ = accept_ended.send(()).await;
                // Serving goes on until `Stop`.
                future::pending::<()>().await;
            };
            let asking = async {
                while let Ok(ask) = asked.recv().await {
                    match ask {
                        Ask::Release => drop(release.take()),
                        Ask::Drain(deadline, started, report) => {
                            let server = Arc::clone(&server);
                            let draining = async move {
                                let _ = report.send(server.drain(deadline).await);
                            };
                            executor.spawn(draining).detach();
                            let _ = accepting_over.recv().await;
                            let _ = started.send(());
                        }
                        Ask::Status(reply) => {
                            let _ = reply.send(server.status());
                        }
                        Ask::Stop => return,
                    }
                }
            };
            smol::block_on(executor.run(future::or(asking, accepting)));
            // Dropping the executor drops the connections still being served.
        };
        let stop = asks.clone();
        DrainServer {
            addr,
            in_hand,
            ask: Box::new(move |ask| {
                let _ = asks.send_blocking(ask);
            }),
            _background: Background::spawn(
                move || {
                    let _ = stop.send_blocking(Ask::Stop);
                },
                body,
            ),
        }
    }

    /// Answers each line (a `hold` line once released); closes the connection between
    /// requests once the server drains, and at once if it drains while the connection is
    /// idle.
    async fn serve(mut conn: ServerConn, gate: Receiver<()>, in_hand: mpsc::Sender<()>) {
        let mut draining = conn.draining();
        let mut buf = Vec::new();
        loop {
            while let Some(end) = buf.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if line == HOLD {
                    let _ = in_hand.send(());
                    let _ = gate.recv().await;
                }
                if conn.write_all(&line).await.is_err() {
                    return;
                }
            }
            let read = if buf.is_empty() {
                if conn.is_draining() {
                    return; // between requests
                }
                let read = async { Some(read_more(&mut conn, &mut buf).await) };
                let drained = async {
                    (&mut draining).await;
                    None
                };
                future::or(read, drained).await
            } else {
                // A request in hand is finished first.
                Some(read_more(&mut conn, &mut buf).await)
            };
            match read {
                Some(1..) if !buf.contains(&b'\n') => {
                    let _ = in_hand.send(());
                }
                Some(1..) => {}
                // Drained while idle, or the connection ended.
                _ => return,
            }
        }
    }

    async fn read_more(conn: &mut ServerConn, buf: &mut Vec<u8>) -> usize {
        let mut chunk = [0u8; 256];
        let n = conn.read(&mut chunk).await.unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        n
    }
}

/// The line service of tokio's server: a task per connection on a current-thread runtime.
mod tokio_side {
    use super::*;

    use callosum_tokio::{Server, ServerConfig, ServerConn};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc as channel, oneshot, watch};

    pub(super) fn start(max_slots: Option<u32>) -> DrainServer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = ServerConfig::default();
        config.max_slots = max_slots;
        let server = {
            let _entered = runtime.enter();
            Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap())
        };
        let addr = server.local_addr();
        let (notes, in_hand) = mpsc::channel();
        let (asks, mut asked) = channel::unbounded_channel();
        let body = move || {
            runtime.block_on(async {
                let (release, gate) = watch::channel(false);
                let (accept_ended, accepting_over) = oneshot::channel();
                let accepting = {
                    let server = Arc::clone(&server);
                    async move {
                        while let Ok(conn) = server.accept().await {
                            tokio::spawn(serve(conn, gate.clone(), notes.clone()));
                        }
                        let _ = accept_ended.send(());
                    }
                };
                tokio::spawn(accepting);
                let mut accepting_over = Some(accepting_over);
                while let Some(ask) = asked.recv().await {
                    match ask {
                        Ask::Release => {
                            let _ = release.send(true);
                        }
                        Ask::Drain(deadline, started, report) => {
                            let server = Arc::clone(&server);
                            tokio::spawn(async move {
                                let _ = report.send(server.drain(deadline).await);
                            });
                            if let Some(over) = accepting_over.take() {
                                let _ = over.await;
                            }
                            let _ = started.send(());
                        }
                        Ask::Status(reply) => {
                            let _ = reply.send(server.status());
                        }
                        Ask::Stop => return,
                    }
                }
            });
            // Dropping the runtime drops the connections still being served.
        };
        let stop = asks.clone();
        DrainServer {
            addr,
            in_hand,
            ask: Box::new(move |ask| {
                let _ = asks.send(ask);
            }),
            _background: Background::spawn(
                move || {
                    let _ = stop.send(Ask::Stop);
                },
                body,
            ),
        }
    }

    /// As smol's: answers each line (a `hold` line once released); closes the connection
    /// between requests once the server drains, and at once if it drains while idle.
    async fn serve(
        mut conn: ServerConn,
        mut gate: watch::Receiver<bool>,
        in_hand: mpsc::Sender<()>,
    ) {
        let mut draining = conn.draining();
        let mut buf = Vec::new();
        loop {
            while let Some(end) = buf.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if line == HOLD {
                    let _ = in_hand.send(());
                    let _ = gate.wait_for(|&open| open).await;
                }
                if conn.write_all(&line).await.is_err() {
                    return;
                }
            }
            let mut chunk = [0u8; 256];
            let read = if buf.is_empty() {
                if conn.is_draining() {
                    return; // between requests
                }
                tokio::select! {
                    biased;
                    read = conn.read(&mut chunk) => read.unwrap_or(0),
                    () = &mut draining => return, // drained while idle
                }
            } else {
                // A request in hand is finished first.
                conn.read(&mut chunk).await.unwrap_or(0)
            };
            if read == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..read]);
            if !buf.contains(&b'\n') {
                let _ = in_hand.send(());
            }
        }
    }
}

/// The line service of mio's server, in `callosum_mio::run`: the test reaches the loop
/// through a `mio::Waker`.
mod mio_side {
    use super::*;

    use std::collections::HashMap;
    use std::ops::ControlFlow;

    use callosum_mio::{
        Happened, Server, ServerConfig, ServerConnId, ServerEvent, TokenRange, run,
    };
    use mio::{Poll, Token, Waker};

    const WAKE: Token = Token(0);

    /// One connection's service.
    #[derive(Default)]
    struct Session {
        /// Bytes read and not yet answered.
        buf: Vec<u8>,
        /// Replies not yet taken by the socket.
        out: Vec<u8>,
        /// A `hold` line waits for the release (and the lines after it, behind it).
        held: bool,
    }

    impl Session {
        /// Answers the complete lines in hand, up to a `hold` line while not released.
        fn answer(&mut self, released: bool, in_hand: &mpsc::Sender<()>) {
            while let Some(end) = self.buf.iter().position(|&byte| byte == b'\n') {
                if self.buf[..=end] == *HOLD && !released {
                    if !self.held {
                        self.held = true;
                        let _ = in_hand.send(());
                    }
                    return;
                }
                self.held = false;
                self.out.extend(self.buf.drain(..=end));
            }
        }

        /// Between requests: nothing in hand, nothing owed.
        fn is_idle(&self) -> bool {
            self.buf.is_empty() && self.out.is_empty() && !self.held
        }
    }

    /// The service's state, beside the server.
    struct Service {
        sessions: HashMap<ServerConnId, Session>,
        released: bool,
        in_hand: mpsc::Sender<()>,
        report: Option<mpsc::Sender<DrainReport>>,
    }

    impl Service {
        /// Writes what `conn` is owed; then, if the server drains and the connection is
        /// between requests, closes it.
        fn flush(&mut self, server: &mut Server, conn: ServerConnId) {
            let Some(session) = self.sessions.get_mut(&conn) else {
                return;
            };
            while !session.out.is_empty() {
                match server.write(conn, &session.out) {
                    Ok(n) => {
                        session.out.drain(..n);
                    }
                    // `WouldBlock`: `Writable` follows; anything else ended it.
                    Err(_) => return,
                }
            }
            if server.is_draining() && session.is_idle() {
                server.close(conn);
            }
        }

        fn handle(&mut self, server: &mut Server, event: ServerEvent) {
            match event {
                ServerEvent::Accepted { conn, .. } => {
                    self.sessions.insert(conn, Session::default());
                }
                ServerEvent::Readable { conn } => {
                    let mut chunk = [0u8; 256];
                    while let Ok(n @ 1..) = server.read(conn, &mut chunk) {
                        if let Some(session) = self.sessions.get_mut(&conn) {
                            session.buf.extend_from_slice(&chunk[..n]);
                            if !session.buf.contains(&b'\n') {
                                let _ = self.in_hand.send(());
                            }
                        }
                    }
                    if let Some(session) = self.sessions.get_mut(&conn) {
                        session.answer(self.released, &self.in_hand);
                    }
                    self.flush(server, conn);
                }
                ServerEvent::Writable { conn } | ServerEvent::Draining { conn } => {
                    self.flush(server, conn);
                }
                ServerEvent::Closed { conn, .. } => {
                    self.sessions.remove(&conn);
                }
                ServerEvent::Drained { report } => {
                    if let Some(sender) = self.report.take() {
                        let _ = sender.send(report);
                    }
                }
                _ => {}
            }
        }

        fn release(&mut self, server: &mut Server) {
            self.released = true;
            let conns: Vec<ServerConnId> = self.sessions.keys().copied().collect();
            for conn in conns {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.answer(true, &self.in_hand);
                }
                self.flush(server, conn);
            }
        }
    }

    pub(super) fn start(max_slots: Option<u32>) -> DrainServer {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
        let mut config = ServerConfig::default();
        config.max_slots = max_slots;
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        server
            .register(poll.registry(), TokenRange::new(1..1_000))
            .unwrap();
        let addr = server.local_addr();
        let (notes, in_hand) = mpsc::channel();
        let (asks, asked) = mpsc::channel();
        let keep_waker = Arc::clone(&waker);
        let body = move || {
            // The loop owns a waker too: one closed before its event is polled loses it.
            let _waker = keep_waker;
            let mut service = Service {
                sessions: HashMap::new(),
                released: false,
                in_hand: notes,
                report: None,
            };
            run(&mut poll, Some(&mut server), None, |parts, happened| {
                let server = parts.server.as_deref_mut().expect("run drives the server");
                match happened {
                    Happened::Server(event) => service.handle(server, event),
                    Happened::Foreign(_) => {
                        for ask in asked.try_iter() {
                            match ask {
                                Ask::Release => service.release(server),
                                Ask::Drain(deadline, started, report) => {
                                    service.report = Some(report);
                                    // The listener is gone when this returns.
                                    server.drain(deadline);
                                    let _ = started.send(());
                                }
                                Ask::Status(reply) => {
                                    let _ = reply.send(server.status());
                                }
                                Ask::Stop => return ControlFlow::Break(()),
                            }
                        }
                    }
                    Happened::Woke | Happened::Client(_) | Happened::Lease(_) => {}
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        };
        let wake = Arc::clone(&waker);
        let stop = asks.clone();
        DrainServer {
            addr,
            in_hand,
            ask: Box::new(move |ask| {
                let _ = asks.send(ask);
                let _ = wake.wake();
            }),
            _background: Background::spawn(
                move || {
                    let _ = stop.send(Ask::Stop);
                    let _ = waker.wake();
                },
                body,
            ),
        }
    }
}

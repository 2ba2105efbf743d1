//! A rolling restart under load (PROTOCOL.md section 6, "Draining, the client's side"): three
//! servers, each drained in turn and replaced by a new one on the same port, while a client of
//! the adapter under test keeps `tasks` requests going, each request a line that must come
//! back.
//!
//! The servers are smol's in every case, with a line service that drains as an application
//! should: it answers the request in hand, closes a connection between requests once its
//! server drains, and waits for the next request and the drain together while idle. What is
//! under test is the client: a request that meets a connection closed before any byte of
//! its reply must fail with the distinct error, so that it can be sent again
//! ([`Retry::Once`]) and no request fails.
//!
//! Every step waits for an event (a drain's report, a connection kept from the new server,
//! a number of answered requests), bounded by [`DEADLINE`]; none is a sleep.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use callosum_proto::client::{ClientConfig, ClientEvent, PoolSizing};
use callosum_proto::server::DrainReport;

use super::{Adapter, Background, DEADLINE, Watch, quick_rover};

/// Requests answered after each step of the restart before the next one: the load is under
/// way, and the new server is in service.
const ANSWERED_PER_STEP: u32 = 200;

/// Whether a request that met a connection closed before any byte of its reply is sent
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// It fails.
    Never,
    /// It is sent once more, on another connection (the documented retry).
    Once,
}

/// What the requests of a load came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests answered with their own line.
    pub answered: usize,
    /// Requests that failed: no connection, an error other than the retryable one (or that
    /// one without a retry left), or a wrong answer.
    pub failed: usize,
    /// Attempts that met a connection closed before any byte of their reply.
    pub closed_before_reply: usize,
    /// Requests sent again after that.
    pub retried: usize,
    /// What the first failure said.
    pub first_failure: Option<String>,
}

/// Drains each of three servers in turn (a deadline far enough off never to be reached) and
/// binds a new one on its port, under `tasks` requests from a client of `adapter`; returns
/// what the requests came to, and each drain's report.
pub fn rolling_restart(adapter: Adapter, tasks: usize, retry: Retry) -> (Tally, Vec<DrainReport>) {
    let mut servers: Vec<LineServer> = (0..3).map(|_| LineServer::start(localhost(0))).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
    let load = Load::start(adapter, &addrs, tasks, retry);
    for &addr in &addrs {
        load.wait_kept(addr);
    }
    let mut answered = ANSWERED_PER_STEP;
    load.wait_answered(answered);
    let mut reports = Vec::new();
    for server in &mut servers {
        let report = server.drain(Instant::now() + DEADLINE);
        // Its listener is closed: the new server takes the port at once.
        let old = std::mem::replace(server, LineServer::start(server.addr));
        reports.push(report.recv_timeout(DEADLINE).expect("the drain's report"));
        drop(old);
        load.skip_events();
        load.wait_kept(server.addr);
        answered += ANSWERED_PER_STEP;
        load.wait_answered(answered);
    }
    (load.stop(), reports)
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The client's configuration: a pool of 12 whatever the demand (so that every server has
/// connections in it, on every adapter, when its drain starts), a rover that looks every
/// 20 ms and backs off little (a restarted server is found again quickly), a fixed seed.
fn client_config() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.pool.max_slots = 12;
    config.sizing = PoolSizing::Fixed;
    config.rover = quick_rover();
    config.seed = Some(11);
    config
}

/// What the test asks of a server's thread.
enum Ask {
    /// Start draining with this deadline; say so on the first sender once the listener is
    /// closed, and send the drain's report on the second.
    Drain(Instant, mpsc::Sender<()>, mpsc::Sender<DrainReport>),
    /// Return from the thread.
    Stop,
}

/// A smol server running the drain-aware line service on a thread of its own; stopped and
/// joined on drop.
struct LineServer {
    addr: SocketAddr,
    asks: smol::channel::Sender<Ask>,
    _background: Background,
}

impl LineServer {
    /// Binds `addr` (port 0 for any) and serves.
    fn start(addr: SocketAddr) -> LineServer {
        use callosum_smol::{Server, ServerConfig};
        use smol::{LocalExecutor, future};

        let server = Arc::new(Server::bind(addr, ServerConfig::default()).unwrap());
        let addr = server.local_addr();
        let (asks, asked) = smol::channel::unbounded();
        let body = move || {
            let executor = LocalExecutor::new();
            let (accept_ended, accepting_over) = smol::channel::bounded::<()>(1);
            let accepting = async {
                while let Ok(conn) = server.accept().await {
                    executor.spawn(serve(conn)).detach();
                }
                // The accept that returned let go of the listener: it is closed.
                let _ = accept_ended.send(()).await;
                future::pending::<()>().await;
            };
            let asking = async {
                while let Ok(ask) = asked.recv().await {
                    match ask {
                        Ask::Drain(deadline, started, report) => {
                            let server = Arc::clone(&server);
                            let draining = async move {
                                let _ = report.send(server.drain(deadline).await);
                            };
                            executor.spawn(draining).detach();
                            let _ = accepting_over.recv().await;
                            let _ = started.send(());
                        }
                        Ask::Stop => return,
                    }
                }
            };
            smol::block_on(executor.run(future::or(asking, accepting)));
            // Dropping the executor drops the connections still being served.
        };
        let stop = asks.clone();
        LineServer {
            addr,
            asks,
            _background: Background::spawn(
                move || {
                    let _ = stop.send_blocking(Ask::Stop);
                },
                body,
            ),
        }
    }

    /// Starts draining; returns once the listener is closed, with the receiver of the
    /// drain's report.
    fn drain(&self, deadline: Instant) -> mpsc::Receiver<DrainReport> {
        let (started, is_started) = mpsc::channel();
        let (report, reported) = mpsc::channel();
        let _ = self
            .asks
            .send_blocking(Ask::Drain(deadline, started, report));
        is_started
            .recv_timeout(DEADLINE)
            .expect("the drain started");
        reported
    }
}

/// Answers each line with itself; closes the connection between requests once the server
/// drains, at once if it drains while the connection is idle, and a request in hand is
/// answered first.
async fn serve(mut conn: callosum_smol::ServerConn) {
    use smol::future;
    use smol::io::{AsyncReadExt, AsyncWriteExt};

    let mut draining = conn.draining();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        while let Some(end) = buf.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if conn.write_all(&line).await.is_err() {
                return;
            }
        }
        let read = if buf.is_empty() {
            if conn.is_draining() {
                return; // between requests
            }
            // A request that has come wins over the drain (`or` polls the read first).
            let read = async { Some(conn.read(&mut chunk).await) };
            let drained = async {
                (&mut draining).await;
                None
            };
            future::or(read, drained).await
        } else {
            Some(conn.read(&mut chunk).await)
        };
        match read {
            Some(Ok(n @ 1..)) => buf.extend_from_slice(&chunk[..n]),
            // Drained while idle, the end of the stream, or an error.
            _ => return,
        }
    }
}

/// What a load's tasks share: the tally, the count of answered requests the test waits on,
/// and the word to stop.
struct Shared {
    retry: Retry,
    tally: Mutex<Tally>,
    answered: Watch,
    stop: AtomicBool,
}

impl Shared {
    /// Counts one attempt's outcome; whether to send the request again (only after the
    /// retryable error, and as often as `retry` allows).
    fn attempt_failed(&self, error: &io::Error, retried: bool) -> bool {
        let mut tally = self.tally.lock().unwrap();
        if !callosum_proto::adapter::is_closed_before_reply(error) {
            return false;
        }
        tally.closed_before_reply += 1;
        let again = self.retry == Retry::Once && !retried;
        if again {
            tally.retried += 1;
        }
        again
    }

    /// Counts a request's end: answered with its own line, or failed.
    fn finished(&self, request: &str, outcome: io::Result<String>) {
        let mut tally = self.tally.lock().unwrap();
        let failure = match outcome {
            Ok(reply) if reply == request => None,
            Ok(reply) => Some(format!("answer {reply:?} to {request:?}")),
            Err(error) => Some(error.to_string()),
        };
        match failure {
            None => {
                tally.answered += 1;
                self.answered
                    .set(u32::try_from(tally.answered).unwrap_or(u32::MAX));
            }
            Some(failure) => {
                tally.failed += 1;
                tally.first_failure.get_or_insert(failure);
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One task's requests, one after the other until the load stops, each sent with
/// `exchange` and, after the retryable error, sent again as the load's [`Retry`] says (on
/// another connection: the one it met was closed).
async fn requests<F, Fut>(shared: Arc<Shared>, task: usize, exchange: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = io::Result<String>>,
{
    let mut number = 0;
    while !shared.stopping() {
        let request = Run::request(task, number);
        let mut retried = false;
        let outcome = loop {
            let outcome = exchange(request.clone()).await;
            match &outcome {
                Err(error) if shared.attempt_failed(error, retried) => retried = true,
                _ => break outcome,
            }
        };
        shared.finished(&request, outcome);
        number += 1;
    }
}

/// A client of the adapter under test with `tasks` requests in flight until stopped.
struct Load {
    events: mpsc::Receiver<ClientEvent>,
    shared: Arc<Shared>,
    tally: mpsc::Receiver<Tally>,
    _background: Background,
}

impl Load {
    fn start(adapter: Adapter, servers: &[SocketAddr], tasks: usize, retry: Retry) -> Load {
        let shared = Arc::new(Shared {
            retry,
            tally: Mutex::default(),
            answered: Watch::default(),
            stop: AtomicBool::new(false),
        });
        let (events_sender, events) = mpsc::channel();
        let (tally_sender, tally) = mpsc::channel();
        let run = Run {
            servers: servers.to_vec(),
            tasks,
            shared: Arc::clone(&shared),
            events: events_sender,
            tally: tally_sender,
        };
        let body: Box<dyn FnOnce() + Send> = match adapter {
            Adapter::Smol => Box::new(move || smol_load::run(run)),
            Adapter::Tokio => Box::new(move || tokio_load::run(run)),
            Adapter::Mio => Box::new(move || mio_load::run(run)),
        };
        let stopping = Arc::clone(&shared);
        Load {
            events,
            shared,
            tally,
            _background: Background::spawn(
                move || stopping.stop.store(true, Ordering::Relaxed),
                body,
            ),
        }
    }

    /// Forgets the events reported so far.
    fn skip_events(&self) {
        for _ in self.events.try_iter() {}
    }

    /// Waits for the pool to keep a connection from `server`.
    fn wait_kept(&self, server: SocketAddr) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ClientEvent::Kept { server: kept, .. }) if kept == server => return,
                Ok(_) => {}
                Err(error) => panic!("no connection kept from {server} ({error})"),
            }
        }
    }

    /// Waits until `at_least` requests were answered in all.
    fn wait_answered(&self, at_least: u32) {
        self.shared
            .answered
            .wait_for("requests answered", |answered| answered >= at_least);
    }

    /// Stops the requests (each task finishes the one it has) and returns the tally.
    fn stop(self) -> Tally {
        self.shared.stop.store(true, Ordering::Relaxed);
        // A whole request may take a get's timeout (10 s) and a retry.
        self.tally
            .recv_timeout(DEADLINE * 3)
            .expect("the load's tally")
    }
}

/// What a load's thread is given.
struct Run {
    servers: Vec<SocketAddr>,
    tasks: usize,
    shared: Arc<Shared>,
    events: mpsc::Sender<ClientEvent>,
    tally: mpsc::Sender<Tally>,
}

impl Run {
    /// The request line of a task's `number`-th request.
    fn request(task: usize, number: usize) -> String {
        format!("task {task} request {number}\n")
    }

    fn send_tally(&self) {
        let tally = self.shared.tally.lock().unwrap().clone();
        let _ = self.tally.send(tally);
    }
}

/// smol's client: a task per request stream on a local executor.
mod smol_load {
    use super::*;

    use callosum_smol::Client;
    use smol::LocalExecutor;
    use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    pub(super) fn run(run: Run) {
        let (client, driver) = Client::new(client_config()).unwrap();
        let executor = LocalExecutor::new();
        executor.spawn(driver).detach();
        let watched = client.clone();
        let events = run.events.clone();
        executor
            .spawn(async move { while events.send(watched.next_event().await).is_ok() {} })
            .detach();
        for &server in &run.servers {
            client.add_server(server);
        }
        let tasks: Vec<_> = (0..run.tasks)
            .map(|task| {
                let client = client.clone();
                let exchange = move |request: String| {
                    let client = client.clone();
                    async move { exchange(&client, &request).await }
                };
                executor.spawn(requests(Arc::clone(&run.shared), task, exchange))
            })
            .collect();
        smol::block_on(executor.run(async {
            for task in tasks {
                task.await;
            }
        }));
        run.send_tally();
    }

    async fn exchange(client: &Client, request: &str) -> io::Result<String> {
        let mut conn = client.get().await.map_err(io::Error::other)?;
        conn.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        BufReader::new(&mut conn).read_line(&mut reply).await?;
        conn.finish();
        Ok(reply)
    }
}

/// tokio's client: a task per request stream on a runtime of two worker threads.
mod tokio_load {
    use super::*;

    use callosum_tokio::Client;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    pub(super) fn run(run: Run) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, driver) = Client::new(client_config()).unwrap();
            tokio::spawn(driver);
            let watched = client.clone();
            let events = run.events.clone();
            tokio::spawn(async move { while events.send(watched.next_event().await).is_ok() {} });
            for &server in &run.servers {
                client.add_server(server);
            }
            let tasks: Vec<_> = (0..run.tasks)
                .map(|task| {
                    let client = client.clone();
                    let exchange = move |request: String| {
                        let client = client.clone();
                        async move { exchange(&client, &request).await }
                    };
                    tokio::spawn(requests(Arc::clone(&run.shared), task, exchange))
                })
                .collect();
            for task in tasks {
                task.await.expect("a request task");
            }
        });
        run.send_tally();
    }

    async fn exchange(client: &Client, request: &str) -> io::Result<String> {
        let mut conn = client.get().await.map_err(io::Error::other)?;
        conn.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        BufReader::new(&mut conn).read_line(&mut reply).await?;
        conn.finish();
        Ok(reply)
    }
}

/// mio's client: `tasks` exchanges on leases in one `callosum_mio::run` loop, each a request
/// after the other, reading and writing through `Client::read` and `Client::write`.
mod mio_load {
    use super::*;

    use std::ops::ControlFlow;

    use callosum_mio::{Client, Happened, Lease, TokenRange};
    use mio::Poll;

    /// One stream of requests: the one under way, if any, on its lease.
    struct Exchange {
        task: usize,
        number: usize,
        /// The lease and what is left to write, once one was taken.
        lease: Option<Lease>,
        unsent: usize,
        answer: Vec<u8>,
        /// Whether this request was sent again already.
        retried: bool,
    }

    pub(super) fn run(run: Run) {
        let mut poll = Poll::new().unwrap();
        let mut client = Client::new(client_config()).unwrap();
        client
            .register(poll.registry(), TokenRange::new(1..10_000))
            .unwrap();
        for &server in &run.servers {
            client.add_server(server);
        }
        let mut exchanges: Vec<Exchange> = (0..run.tasks)
            .map(|task| Exchange {
                task,
                number: 0,
                lease: None,
                unsent: 0,
                answer: Vec::new(),
                retried: false,
            })
            .collect();
        let shared = Arc::clone(&run.shared);
        run_loop(&mut poll, &mut client, |client, event| {
            if let Some(event) = event {
                let _ = run.events.send(event);
            }
            for exchange in &mut exchanges {
                step(client, &shared, exchange);
            }
            // A request under way, or one to send again, is finished before stopping.
            !shared.stopping()
                || exchanges
                    .iter()
                    .any(|exchange| exchange.lease.is_some() || exchange.retried)
        });
        run.send_tally();
    }

    /// Drives the client until `on` says nothing is under way; `on` runs after every event
    /// and at least every millisecond (a lease may be free with no event of ours to say so).
    fn run_loop(
        poll: &mut Poll,
        client: &mut Client,
        mut on: impl FnMut(&mut Client, Option<ClientEvent>) -> bool,
    ) {
        callosum_mio::run(poll, None, Some(client), |parts, happened| {
            let client = parts.client.as_deref_mut().expect("run drives the client");
            let event = match happened {
                Happened::Client(event) => Some(event),
                _ => None,
            };
            if !on(client, event) {
                return ControlFlow::Break(());
            }
            parts.wake_at(Instant::now() + Duration::from_millis(1));
            ControlFlow::Continue(())
        })
        .unwrap();
    }

    /// Moves one exchange on as far as it goes without waiting.
    fn step(client: &mut Client, shared: &Shared, exchange: &mut Exchange) {
        let request = Run::request(exchange.task, exchange.number);
        if exchange.lease.is_none() {
            if shared.stopping() && !exchange.retried {
                return;
            }
            let Some(lease) = client.checkout() else {
                return;
            };
            exchange.lease = Some(lease);
            exchange.unsent = request.len();
            exchange.answer.clear();
        }
        let lease = exchange.lease.as_ref().expect("taken above");
        let Some(outcome) = attempt(
            client,
            lease,
            &request,
            &mut exchange.unsent,
            &mut exchange.answer,
        ) else {
            return; // under way
        };
        let lease = exchange.lease.take().expect("under way");
        match &outcome {
            Ok(_) => client.checkin(lease),
            Err(_) => client.checkin_broken(lease),
        }
        if let Err(error) = &outcome
            && shared.attempt_failed(error, exchange.retried)
        {
            exchange.retried = true;
            return; // sent again on the next lease
        }
        shared.finished(&request, outcome);
        exchange.number += 1;
        exchange.retried = false;
    }

    /// Writes what is left of the request and reads what came: the answer once a whole
    /// line is in, the error if the exchange failed, `None` while it is under way.
    fn attempt(
        client: &mut Client,
        lease: &Lease,
        request: &str,
        unsent: &mut usize,
        answer: &mut Vec<u8>,
    ) -> Option<io::Result<String>> {
        while *unsent > 0 {
            let from = request.len() - *unsent;
            match client.write(lease, &request.as_bytes()[from..]) {
                Ok(0) => return Some(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *unsent -= n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(error) => return Some(Err(error)),
            }
        }
        let mut buf = [0u8; 256];
        // Until the whole line is in (the server may close the connection right after it).
        while !answer.contains(&b'\n') {
            match client.read(lease, &mut buf) {
                Ok(0) => {
                    let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "a reply cut short");
                    return Some(Err(cut));
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok(String::from_utf8_lossy(answer).into_owned()))
    }
}

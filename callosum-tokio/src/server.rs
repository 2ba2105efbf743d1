//! A Callosum server: accepts TCP connections, writes each one its slot line, and frees the
//! slot when the connection ends; and drains for a rolling restart ([`Server::drain`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use callosum_proto::SlotLine;
use callosum_proto::adapter::{AcceptError, Clock, ServerError, accept_error};
use callosum_proto::allocator::ReleaseError;
use callosum_proto::server::{
    Accept, AcceptId, DrainPhase, DrainReport, GrowableServerCore, ServerConfig, ServerStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, futures::OwnedNotified};

use crate::race;

/// The server stopped accepting: [`Server::shutdown`] was called.
///
/// ```
/// use callosum_tokio::{Server, ServerConfig, ShutDown};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
/// server.shutdown();
/// assert_eq!(server.accept().await.err(), Some(ShutDown));
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutDown;

impl fmt::Display for ShutDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server is shut down and accepts no more connections")
    }
}

impl std::error::Error for ShutDown {}

/// State shared by the server and every connection it handed out.
struct Shared {
    state: Mutex<State>,
    clock: Clock,
    /// Notified when a slot is freed, for [`Server::wait_idle`] and [`Server::drain`].
    slot_freed: Notify,
    /// Set, then notified, by [`Server::shutdown`].
    shut_down: AtomicBool,
    shutting_down: Notify,
    /// Set when a drain starts, then `drain_started` is notified: what every connection's
    /// [`ServerConn::is_draining`] reads, without taking the lock.
    draining: AtomicBool,
    drain_started: Arc<Notify>,
}

/// The core and the sockets of the connections holding its slots, under one lock (the one
/// every accept and every end already takes).
struct State {
    core: GrowableServerCore,
    /// Each connection holding a slot, at its slot: what a drain's deadline closes.
    open: Vec<Option<Arc<Held>>>,
}

/// A connection's socket and slot: one allocation, shared by its [`ServerConn`] and the
/// server's table, so that a drain's deadline can shut the socket down under its holder.
/// Tokio's `TcpStream` reads and writes only through `&mut`, so `&Held` does what its own
/// `AsyncRead`/`AsyncWrite` do, through `&`: wait for readiness, then a non-blocking call
/// (which clears the readiness when it would block).
struct Held {
    stream: TcpStream,
    conn: AcceptId,
}

impl State {
    /// A connection was accepted: its slot and line, with its socket kept for a drain.
    fn admit(&mut self, stream: TcpStream) -> Option<(Arc<Held>, SlotLine)> {
        let Accept::Assigned { conn, line } = self.core.handle_accept() else {
            return None;
        };
        let held = Arc::new(Held { stream, conn });
        let index = conn.slot() as usize;
        if self.open.len() <= index {
            // The lowest free slot is at most the number of open connections.
            self.open.resize_with(index + 1, || None);
        }
        self.open[index] = Some(Arc::clone(&held));
        Some((held, line))
    }

    /// A connection ended: its slot is freed, unless a drain's deadline closed it and freed
    /// it already (`None`), so that it is freed exactly once.
    fn release(&mut self, conn: AcceptId, before_line: bool) -> Option<Result<u32, ReleaseError>> {
        let entry = self.open.get_mut(conn.slot() as usize)?;
        entry.take_if(|held| held.conn == conn)?;
        Some(if before_line {
            self.core.handle_lost_before_line(conn)
        } else {
            self.core.handle_closed(conn)
        })
    }

    /// The drain's deadline came: shuts every open connection's socket down (its holder's
    /// next read sees the end, its next write fails) and frees its slot, counted as closed
    /// at the deadline.
    fn close_remaining(&mut self) {
        for held in self.open.iter_mut().filter_map(Option::take) {
            // Already shut down by the peer or broken: it is closed either way.
            let _ = socket2::SockRef::from(&held.stream).shutdown(std::net::Shutdown::Both);
            if let Err(error) = self.core.handle_closed(held.conn) {
                log::error!("callosum server: {error}");
            }
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a thread panicked while holding the lock: every
        // operation on it is a single call that either happened or did not.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection ended; `before_line` if its slot line could not be written.
    fn release(&self, conn: AcceptId, before_line: bool) {
        let released = self.state().release(conn, before_line);
        match released {
            // Unreachable through this crate's API, which releases each slot once; logged
            // rather than panicking, because the core has refused it and is unharmed.
            Some(Err(error)) => log::error!("callosum server: {error}"),
            Some(Ok(slot)) => log::debug!("callosum server: slot {slot} freed"),
            // Freed at a drain's deadline already.
            None => return,
        }
        self.slot_freed.notify_waiters();
    }

    /// Waits until [`Server::shutdown`] is called.
    async fn shut_down(&self) {
        let mut notified = pin!(self.shutting_down.notified());
        // Registered before the flag is read, so a shutdown between the two is not missed.
        notified.as_mut().enable();
        if !self.shut_down.load(Ordering::Acquire) {
            notified.await;
        }
    }
}

/// A listening Callosum server on tokio's reactor.
///
/// Call [`Server::accept`] in a loop (usually spawning a task per connection). Each
/// [`ServerConn`] already had its slot line written, and frees its slot when it ends.
///
/// ```
/// use callosum_tokio::{Server, ServerConfig};
/// use tokio::io::AsyncReadExt;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?;
/// let addr = server.local_addr();
/// let client = tokio::spawn(async move {
///     let mut stream = tokio::net::TcpStream::connect(addr).await?;
///     let mut line = [0u8; 3];
///     stream.read_exact(&mut line).await?;
///     std::io::Result::Ok(line)
/// });
/// let conn = server.accept().await?;
/// assert_eq!(conn.slot(), 0);
/// assert_eq!(&client.await??, b"0\r\n");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Server {
    listener: Mutex<Option<Arc<TcpListener>>>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    /// Listens on `addr`, IPv4 or IPv6 (port 0 picks a free port; see
    /// [`Server::local_addr`]).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as every tokio socket does.
    ///
    /// ```
    /// use callosum_tokio::{Server, ServerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = Server::bind("[::1]:0".parse().unwrap(), ServerConfig::default()).unwrap();
    /// assert!(server.local_addr().is_ipv6());
    /// assert_ne!(server.local_addr().port(), 0);
    /// # });
    /// ```
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> Result<Server, ServerError> {
        let core = GrowableServerCore::from_config(&config).map_err(ServerError::Config)?;
        let bind_error = |source| ServerError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let listener = TcpListener::from_std(listener).map_err(bind_error)?;
        Ok(Server {
            listener: Mutex::new(Some(Arc::new(listener))),
            local_addr,
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    core,
                    open: Vec::new(),
                }),
                clock: Clock::new(),
                slot_freed: Notify::new(),
                shut_down: AtomicBool::new(false),
                shutting_down: Notify::new(),
                draining: AtomicBool::new(false),
                drain_started: Arc::new(Notify::new()),
            }),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the next connection, gives it the lowest free slot and writes its slot line
    /// in one write call.
    ///
    /// Connections refused because every slot is taken, connections that vanish before their
    /// line is written, and accept errors are dealt with here and never returned. An error of
    /// one connection (aborted or reset before it was accepted, an interrupted call) is
    /// passed over at once; a shortage (too many open files, say) pauses accepting for as
    /// long as the core's backoff says (10 ms doubling up to 1 s while errors go on), so it
    /// neither stops nor spins. It returns [`ShutDown`] only once [`Server::shutdown`] (or
    /// [`Server::drain`]) was called.
    ///
    /// ```no_run
    /// use callosum_tokio::{Server, ServerConfig};
    ///
    /// # async fn serve() {
    /// let server = Server::bind("127.0.0.1:7000".parse().unwrap(), ServerConfig::default()).unwrap();
    /// while let Ok(conn) = server.accept().await {
    ///     tokio::spawn(async move {
    ///         // ... serve `conn`; dropping it frees its slot.
    ///         drop(conn);
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> Result<ServerConn, ShutDown> {
        loop {
            let listener = self
                .listener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .ok_or(ShutDown)?;
            let shut_down = async {
                self.shared.shut_down().await;
                None
            };
            let accepted = race(shut_down, async { Some(listener.accept().await) }).await;
            match accepted.ok_or(ShutDown)? {
                Ok((stream, peer)) => {
                    if let Some(conn) = self.start(stream, peer).await {
                        return Ok(conn);
                    }
                }
                Err(error) => self.accept_failed(&error).await?,
            }
        }
    }

    /// Deals with a failed accept: at once for a trouble of one connection, after the core's
    /// pause for a shortage of resources.
    async fn accept_failed(&self, error: &io::Error) -> Result<(), ShutDown> {
        match accept_error(error) {
            AcceptError::Pending => return Ok(()),
            AcceptError::PerConnection => {
                log::debug!(
                    "callosum server {}: accept failed ({error}); accepting again",
                    self.local_addr,
                );
                return Ok(());
            }
            AcceptError::Resource => {}
        }
        let clock = self.shared.clock;
        let now = clock.now();
        let resume = self.shared.state().core.handle_accept_error(now);
        log::warn!(
            "callosum server {}: accept failed ({error}); pausing {:?}",
            self.local_addr,
            resume.saturating_duration_since(now),
        );
        // A resume beyond the system clock's reach: only a shutdown ends the pause.
        match clock.to_std(resume) {
            Some(resume) => {
                let shut_down = async {
                    self.shared.shut_down().await;
                    Err(ShutDown)
                };
                race(shut_down, async {
                    tokio::time::sleep_until(resume.into()).await;
                    Ok(())
                })
                .await?;
            }
            None => {
                self.shared.shut_down().await;
                return Err(ShutDown);
            }
        }
        self.shared.state().core.handle_timeout(clock.now());
        Ok(())
    }

    /// Gives a new connection its slot and line; `None` if it was refused or vanished.
    async fn start(&self, stream: TcpStream, peer: SocketAddr) -> Option<ServerConn> {
        let admitted = self.shared.state().admit(stream);
        let Some((held, line)) = admitted else {
            let why = if self.is_draining() {
                "draining"
            } else {
                "all slots in use"
            };
            log::info!(
                "callosum server {}: {why}; closing {peer} without a line",
                self.local_addr
            );
            return None;
        };
        // Made before the line is written, so that a connection that vanishes (or an accept
        // dropped while writing) frees its slot, counted as lost before its line.
        let mut conn = ServerConn {
            held,
            shared: Arc::clone(&self.shared),
            peer,
            hold: Hold::BeforeLine,
        };
        if let Err(error) = write_line(&mut &*conn.held, line.as_bytes()).await {
            log::debug!(
                "callosum server {}: {peer} left before its slot line ({error})",
                self.local_addr
            );
            return None;
        }
        conn.hold = Hold::Serving;
        log::debug!(
            "callosum server {}: slot {} assigned to {peer}",
            self.local_addr,
            conn.slot()
        );
        Some(conn)
    }

    /// Stops accepting: the listening socket closes (new connections are refused) and every
    /// pending and later [`Server::accept`] returns [`ShutDown`]. Connections already handed
    /// out go on until they end; [`Server::wait_idle`] waits for that.
    ///
    /// ```
    /// use callosum_tokio::{Server, ServerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    /// server.shutdown();
    /// assert!(server.is_shut_down());
    /// # });
    /// ```
    pub fn shutdown(&self) {
        self.listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.shared.shut_down.store(true, Ordering::Release);
        self.shared.shutting_down.notify_waiters();
    }

    /// Whether [`Server::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::Acquire)
    }

    /// Drains the server for a rolling restart (PROTOCOL.md section 2), and returns how its
    /// connections ended once none is left.
    ///
    /// 1. It stops accepting at once, as [`Server::shutdown`] does: the listening socket
    ///    closes, so new connections are refused, and [`Server::accept`] returns
    ///    [`ShutDown`].
    /// 2. Every connection's [`ServerConn::is_draining`] is true from now on, and its
    ///    [`ServerConn::draining`] future completes: the application finishes the exchange
    ///    in hand and drops the connection before reading another request, and drops an idle
    ///    one at once (its read loop selects on `draining()`). A client then sees an idle
    ///    pooled connection close, and removes it without a failed request.
    /// 3. At `deadline`, every connection still open is closed: its socket is shut down and
    ///    its slot freed, and its holder's next read sees the end of the stream and its next
    ///    write fails.
    ///
    /// Each connection's slot is freed once, whichever way it ended. The report counts the
    /// connections that ended before the deadline (`drained`) and those closed at it
    /// (`closed_at_deadline`); [`Server::status`] has the same in `drain` and `stats`.
    ///
    /// Calling it again (or from two tasks) waits for the same drain, with the earlier of
    /// the deadlines. Dropping the future leaves the drain started but its deadline unwatched:
    /// call `drain` again to finish it. The types are `callosum_proto::server`'s
    /// ([`DrainReport`], [`DrainPhase`]), as in every adapter.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use callosum_tokio::{Server, ServerConfig, ServerConn};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// // An echo service that closes a connection between requests once the server drains.
    /// async fn serve(mut conn: ServerConn) {
    ///     let mut draining = conn.draining();
    ///     let mut buf = [0u8; 1024];
    ///     loop {
    ///         // Idle: the next request, or the drain, whichever comes first.
    ///         let n = tokio::select! {
    ///             read = conn.read(&mut buf) => match read {
    ///                 Ok(n @ 1..) => n,
    ///                 _ => return, // the connection ended
    ///             },
    ///             () = &mut draining => return, // drained between requests
    ///         };
    ///         if conn.write_all(&buf[..n]).await.is_err() {
    ///             return;
    ///         }
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?;
    /// let idle = tokio::net::TcpStream::connect(server.local_addr()).await?;
    /// let conn = server.accept().await?;
    /// let task = tokio::spawn(serve(conn));
    /// let report = server.drain(Instant::now() + Duration::from_secs(10)).await;
    /// assert_eq!((report.drained, report.closed_at_deadline), (1, 0));
    /// assert_eq!(server.status().live, 0);
    /// task.await?;
    /// # drop(idle);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn drain(&self, deadline: Instant) -> DrainReport {
        let clock = self.shared.clock;
        let deadline = clock.from_std(deadline);
        // The core's drain starts before anything else hears of it, the accept loop's
        // shutdown included, so that a connection that ends as soon as it does (its task
        // dropped with the accept loop's executor, say) is counted as drained, not as an
        // ordinary end before the drain.
        let _ = self.shared.state().core.handle_drain(clock.now(), deadline);
        self.shared.draining.store(true, Ordering::Release);
        self.shared.drain_started.notify_waiters();
        self.shutdown();
        log::info!("callosum server {}: draining", self.local_addr);
        loop {
            let mut freed = pin!(self.shared.slot_freed.notified());
            // Registered before the state is read, so an end between the two is not missed.
            freed.as_mut().enable();
            let drain = {
                let mut state = self.shared.state();
                // Draining again is the same drain, its deadline checked against now.
                let now = clock.now();
                let drain = state.core.handle_drain(now, deadline);
                if drain.phase == DrainPhase::CloseRemaining {
                    state.close_remaining();
                    state.core.handle_drain(now, deadline)
                } else {
                    drain
                }
            };
            if drain.phase == DrainPhase::Done {
                log::info!(
                    "callosum server {}: drained ({:?})",
                    self.local_addr,
                    drain.report
                );
                // Wakes `wait_idle`, whose connections the deadline may just have closed.
                self.shared.slot_freed.notify_waiters();
                return drain.report;
            }
            match clock.to_std(drain.deadline) {
                Some(at) => {
                    race(freed, async {
                        tokio::time::sleep_until(at.into()).await;
                    })
                    .await
                }
                // A deadline beyond the system clock's reach: only the connections' ends count.
                None => freed.await,
            }
        }
    }

    /// Whether [`Server::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Waits until no connection holds a slot: with [`Server::shutdown`], a graceful stop.
    ///
    /// ```
    /// use callosum_tokio::{Server, ServerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    /// server.shutdown();
    /// server.wait_idle().await; // no connections: returns at once
    /// # });
    /// ```
    pub async fn wait_idle(&self) {
        loop {
            let mut freed = pin!(self.shared.slot_freed.notified());
            freed.as_mut().enable();
            if self.shared.state().core.live() == 0 {
                return;
            }
            freed.await;
        }
    }

    /// The core's snapshot: live connections, whether it accepts (`false` while pausing
    /// after an accept error, and once draining), the drain if one started, and the
    /// counters: accepted, shed at `max_slots` (`refused_full`), drained, closed at the
    /// deadline, lost before their slot line, ...
    pub fn status(&self) -> ServerStatus {
        self.shared.state().core.status()
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("status", &self.status())
            .finish()
    }
}

/// Writes the slot line in one write call: old clients parse each read on its own
/// (PROTOCOL.md section 1). A fresh socket takes 12 bytes at once in practice; if it ever
/// does not, the rest still goes out rather than the client getting half a line.
async fn write_line(out: &mut (impl AsyncWrite + Unpin), mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = std::future::poll_fn(|cx| Pin::new(&mut *out).poll_write(cx, bytes)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}

/// Where a [`ServerConn`] is with its slot, which it frees exactly once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Its slot line is being written: an end now is a connection lost before its line.
    BeforeLine,
    /// Its line was written and it holds its slot.
    Serving,
    /// It ended and its slot was freed.
    Ended,
}

/// One accepted connection, its slot line already written: tokio's [`AsyncRead`] and
/// [`AsyncWrite`] over the socket.
///
/// Its slot is freed when the connection ends: when a read sees the end of the stream or an
/// error, when a write fails, or when it is dropped, whichever comes first. The end of the
/// client's stream ends the whole connection: from then on a read gives the end of the
/// stream and a write fails with [`io::ErrorKind::BrokenPipe`] without touching the socket
/// (which closes when the connection is dropped), so a slot is never shared by two
/// connections that could both still send; a client that half-closes to mark the end of a
/// request gets no reply.
///
/// When the server drains ([`Server::drain`]), drop the connection between two requests:
/// after answering the one in hand, check [`ServerConn::is_draining`]; while idle, wait for
/// the next request and [`ServerConn::draining`] together (the example at
/// [`Server::drain`]). A connection still open at the drain's deadline is closed under its
/// holder.
///
/// ```no_run
/// use callosum_tokio::{Server, ServerConfig};
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
///
/// # async fn serve() {
/// let server = Server::bind("127.0.0.1:7000".parse().unwrap(), ServerConfig::default()).unwrap();
/// let conn = server.accept().await.unwrap();
/// println!("slot {} for {}", conn.slot(), conn.peer_addr());
/// let mut conn = BufReader::new(conn);
/// let mut line = String::new();
/// conn.read_line(&mut line).await.unwrap();
/// conn.write_all(line.as_bytes()).await.unwrap();
/// # }
/// ```
pub struct ServerConn {
    /// The socket and the slot, shared with the server, which shuts the socket down at a
    /// drain's deadline.
    held: Arc<Held>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    hold: Hold,
}

impl ServerConn {
    /// The slot this connection was given.
    pub fn slot(&self) -> u32 {
        self.held.conn.slot()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The underlying socket, for options such as `set_nodelay`.
    pub fn get_ref(&self) -> &TcpStream {
        &self.held.stream
    }

    /// Whether the connection ended (and its slot was freed) while still held, as a read or
    /// a write through it found.
    pub fn has_ended(&self) -> bool {
        self.hold == Hold::Ended
    }

    /// Whether the server is draining ([`Server::drain`]): finish the exchange in hand, then
    /// drop the connection instead of reading another request. An atomic load, no lock.
    ///
    /// ```no_run
    /// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// # async fn serve(mut conn: callosum_tokio::ServerConn) -> std::io::Result<()> {
    /// let mut request = [0u8; 64];
    /// while !conn.is_draining() {
    ///     let n = conn.read(&mut request).await?;
    ///     conn.write_all(&request[..n]).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// A future that completes once the server drains (at once if it is draining already),
    /// and again each time it is polled after that. It borrows nothing from the connection,
    /// so a read loop can wait for the next request and the drain together (`select!` on
    /// `&mut draining`) and drop an idle connection as soon as the drain starts: see the
    /// example at [`Server::drain`].
    pub fn draining(&self) -> impl Future<Output = ()> + Send + Unpin + use<> {
        Draining {
            shared: Arc::clone(&self.shared),
            wait: None,
        }
    }

    /// The connection is over: its slot is freed, once. Reads and writes through it stop
    /// here (see the type's docs), so it can never act alongside a new connection that gets
    /// the same slot; no system call is spent on a socket that is about to close.
    fn end(&mut self) {
        if self.hold != Hold::Ended {
            let before_line = self.hold == Hold::BeforeLine;
            self.hold = Hold::Ended;
            self.shared.release(self.held.conn, before_line);
        }
    }
}

impl Drop for ServerConn {
    fn drop(&mut self) {
        self.end();
    }
}

/// [`ServerConn::draining`]: ready whenever the server's drain flag is set; until then it
/// waits for the drain's start (boxed, so that the future stays `Unpin` for `select!`).
struct Draining {
    shared: Arc<Shared>,
    wait: Option<Pin<Box<OwnedNotified>>>,
}

impl Future for Draining {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            // Checked after the waiter is made, which counts every `notify_waiters` from its
            // making on, so a drain that starts between the two is not missed.
            if this.shared.draining.load(Ordering::Acquire) {
                this.wait = None;
                return Poll::Ready(());
            }
            match &mut this.wait {
                Some(wait) => {
                    ready!(wait.as_mut().poll(cx));
                    this.wait = None;
                }
                None => {
                    let notify = Arc::clone(&this.shared.drain_started);
                    this.wait = Some(Box::pin(notify.notified_owned()));
                }
            }
        }
    }
}

impl AsyncRead for &Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            // Zeroes only the part of `buf` never initialized before.
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for &Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write_vectored(bufs) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A socket has no buffer of its own to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write))
    }
}

impl fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConn")
            .field("slot", &self.slot())
            .field("peer", &self.peer)
            .field("ended", &self.has_ended())
            .finish()
    }
}

/// Whether a finished read or write ended the connection: the end of the stream (a read of
/// nothing into room for something) or an error other than an interrupted call.
fn ends_connection(result: &io::Result<()>, read_nothing: bool) -> bool {
    match result {
        Ok(()) => read_nothing,
        Err(error) => error.kind() != io::ErrorKind::Interrupted,
    }
}

impl AsyncRead for ServerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.has_ended() {
            // The end of the stream: nothing is filled.
            return Poll::Ready(Ok(()));
        }
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let result = Pin::new(&mut &*self.held).poll_read(cx, buf);
        if let Poll::Ready(result) = &result
            && ends_connection(result, room && buf.filled().len() == before)
        {
            self.end();
        }
        result
    }
}

impl AsyncWrite for ServerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.has_ended() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let result = Pin::new(&mut &*self.held).poll_write(cx, buf);
        if let Poll::Ready(Err(error)) = &result
            && error.kind() != io::ErrorKind::Interrupted
        {
            self.end();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.has_ended() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let result = Pin::new(&mut &*self.held).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Err(error)) = &result
            && error.kind() != io::ErrorKind::Interrupted
        {
            self.end();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        (&*self.held).is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.held).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.has_ended() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut &*self.held).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each write call it gets.
    #[derive(Default)]
    struct Counting {
        calls: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn the_slot_line_goes_out_in_one_write_call() {
        let line = callosum_proto::SlotLine::new(4_294_967_295);
        let mut out = Counting::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(write_line(&mut out, line.as_bytes()))
            .unwrap();
        assert_eq!(out.calls, [line.as_bytes().to_vec()]);
    }
}

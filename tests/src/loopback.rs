//! Servers on 127.0.0.1 for the load and memory programs (`handshake-bench`, `memory`): the
//! three adapters' servers, and bare servers on the same runtimes that number nothing, to
//! compare them with.
//!
//! Each server runs on a thread of its own until the process exits, and serves the way an
//! application would: the adapters' servers keep every connection until its peer closes it
//! (reading whatever arrives), which is when its slot is freed.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::mpsc::{self, Sender};
use std::thread;

use callosum_mio::{Happened, ServerEvent, TokenRange};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Tokens for the `mio` servers: the listener and up to 65,535 connections at once.
const TOKENS: usize = 1 << 16;

/// The line the bare loops write: a fixed slot, since they number nothing.
const BARE_LINE: &[u8] = b"0\r\n";

/// A server under measurement.
///
/// ```
/// use callosum_tests::loopback::Kind;
///
/// assert_eq!(Kind::parse("smol"), Some(Kind::Smol));
/// assert_eq!(Kind::BareClose.name(), "bare-close");
/// assert_eq!(Kind::Mio.bare(), Kind::BareHold);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `callosum_smol::Server` on a single-threaded executor, a task per connection reading
    /// until the peer closes.
    Smol,
    /// `callosum_mio::Server` driven by `callosum_mio::run`, each connection read when it is
    /// readable until the peer closes.
    Mio,
    /// A bare `mio` loop: accept, write `0\r\n`, close at once.
    BareClose,
    /// A bare `mio` loop that writes `0\r\n` and keeps each connection, registered for
    /// reading, until the peer closes it: the mio adapter's work less the slots.
    BareHold,
    /// A bare smol server (`Async<TcpListener>`, a task per connection) that writes `0\r\n`
    /// and keeps each connection until the peer closes it: the smol adapter's work less the
    /// slots.
    BareSmol,
    /// `callosum_tokio::Server` on a current-thread runtime, a task per connection reading
    /// until the peer closes.
    Tokio,
    /// A bare tokio server (`tokio::net::TcpListener`, a task per connection on a
    /// current-thread runtime) that writes `0\r\n` and keeps each connection until the peer
    /// closes it: the tokio adapter's work less the slots.
    BareTokio,
}

impl Kind {
    /// Every kind, in the order the programs report them.
    pub const ALL: [Kind; 7] = [
        Kind::Smol,
        Kind::Mio,
        Kind::Tokio,
        Kind::BareClose,
        Kind::BareHold,
        Kind::BareSmol,
        Kind::BareTokio,
    ];

    /// The name the programs print and accept.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Smol => "smol",
            Kind::Mio => "mio",
            Kind::BareClose => "bare-close",
            Kind::BareHold => "bare-hold",
            Kind::BareSmol => "bare-smol",
            Kind::Tokio => "tokio",
            Kind::BareTokio => "bare-tokio",
        }
    }

    /// The bare server doing the same socket work without slots: `bare-smol` for `smol`,
    /// `bare-hold` for `mio`, `bare-tokio` for `tokio`; a bare server is its own.
    pub fn bare(self) -> Kind {
        match self {
            Kind::Smol => Kind::BareSmol,
            Kind::Mio => Kind::BareHold,
            Kind::Tokio => Kind::BareTokio,
            bare => bare,
        }
    }

    /// The kind called `name`, if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Starts a server of `kind` on 127.0.0.1 (a free port) on a thread of its own, and returns
/// its address once it listens. The thread runs until the process exits; it panics if its
/// event loop fails after the start, which the programs see as refused connections.
pub fn spawn(kind: Kind) -> io::Result<SocketAddr> {
    let (ready, listening) = mpsc::channel();
    thread::Builder::new()
        .name(kind.name().to_owned())
        .spawn(move || {
            let served = match kind {
                Kind::Smol => serve_smol(&ready),
                Kind::Mio => serve_mio(&ready),
                Kind::BareClose => serve_bare(&ready, false),
                Kind::BareHold => serve_bare(&ready, true),
                Kind::BareSmol => serve_bare_smol(&ready),
                Kind::Tokio => serve_tokio(&ready),
                Kind::BareTokio => serve_bare_tokio(&ready),
            };
            if let Err(error) = served {
                let message = format!("{} server failed: {error}", kind.name());
                // Before the start, `spawn`'s caller still listens and gets the error.
                assert!(ready.send(Err(error)).is_ok(), "{message}");
            }
        })?;
    listening
        .recv()
        .map_err(|_| io::Error::other("the server thread ended before listening"))?
}

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn serve_smol(ready: &Sender<io::Result<SocketAddr>>) -> io::Result<()> {
    let config = callosum_smol::ServerConfig::default();
    let server = callosum_smol::Server::bind(localhost(), config).map_err(io::Error::other)?;
    let _ = ready.send(Ok(server.local_addr()));
    let executor = smol::LocalExecutor::new();
    smol::block_on(executor.run(async {
        while let Ok(mut conn) = server.accept().await {
            executor
                .spawn(async move {
                    let mut buf = [0u8; 64];
                    // Until the end of the stream or an error; dropping `conn` frees the slot.
                    while let Ok(1..) = conn.read(&mut buf).await {}
                })
                .detach();
        }
    }));
    Ok(())
}

fn serve_bare_smol(ready: &Sender<io::Result<SocketAddr>>) -> io::Result<()> {
    let listener = smol::Async::<std::net::TcpListener>::bind(localhost())?;
    let _ = ready.send(Ok(listener.get_ref().local_addr()?));
    let executor = smol::LocalExecutor::new();
    smol::block_on(executor.run(async {
        loop {
            // An accept error waits for the next connection.
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            executor
                .spawn(async move {
                    if stream.write(BARE_LINE).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 64];
                    while let Ok(1..) = stream.read(&mut buf).await {}
                })
                .detach();
        }
    }))
}

/// A current-thread runtime, as one thread of a server wants.
fn tokio_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn serve_tokio(ready: &Sender<io::Result<SocketAddr>>) -> io::Result<()> {
    tokio_runtime()?.block_on(async {
        let config = callosum_tokio::ServerConfig::default();
        let server = callosum_tokio::Server::bind(localhost(), config).map_err(io::Error::other)?;
        let _ = ready.send(Ok(server.local_addr()));
        while let Ok(mut conn) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                // Until the end of the stream or an error; dropping `conn` frees the slot.
                while let Ok(1..) = conn.read(&mut buf).await {}
            });
        }
        Ok(())
    })
}

fn serve_bare_tokio(ready: &Sender<io::Result<SocketAddr>>) -> io::Result<()> {
    tokio_runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(localhost()).await?;
        let _ = ready.send(Ok(listener.local_addr()?));
        loop {
            // An accept error waits for the next connection.
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if stream.write(BARE_LINE).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while let Ok(1..) = stream.read(&mut buf).await {}
            });
        }
    })
}

fn serve_mio(ready: &Sender<io::Result<SocketAddr>>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut server =
        callosum_mio::Server::bind(localhost(), callosum_mio::ServerConfig::default())?;
    server.register(poll.registry(), TokenRange::new(0..TOKENS))?;
    let _ = ready.send(Ok(server.local_addr()));
    callosum_mio::run(&mut poll, Some(&mut server), None, |parts, happened| {
        if let (Happened::Server(ServerEvent::Readable { conn }), Some(server)) =
            (happened, parts.server.as_deref_mut())
        {
            let mut buf = [0u8; 64];
            // Until `WouldBlock`, the end of the stream or an error (which closes it).
            while let Ok(1..) = server.read(conn, &mut buf) {}
        }
        ControlFlow::Continue(())
    })?;
    Err(io::Error::other("the event loop stopped"))
}

fn serve_bare(ready: &Sender<io::Result<SocketAddr>>, hold: bool) -> io::Result<()> {
    let listener_token = Token(TOKENS);
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(localhost())?;
    poll.registry()
        .register(&mut listener, listener_token, Interest::READABLE)?;
    let _ = ready.send(Ok(listener.local_addr()?));
    let mut conns: Vec<Option<TcpStream>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(256);
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        for event in &events {
            if event.token() == listener_token {
                // Accept until `WouldBlock`; any other error waits for the next event.
                while let Ok((mut stream, _)) = listener.accept() {
                    if stream.write(BARE_LINE).is_err() || !hold {
                        continue; // dropped: closed
                    }
                    let index = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(&mut stream, Token(index), Interest::READABLE)?;
                    conns[index] = Some(stream);
                }
                continue;
            }
            let index = event.token().0;
            let Some(stream) = conns.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            let mut buf = [0u8; 64];
            let ended = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            if ended {
                conns[index] = None;
                free.push(index);
            }
        }
    }
}

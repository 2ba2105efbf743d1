//! An adapter's echo server, as the harness runs it, that also tells how many accept errors
//! it has had: the harness's server does not expose its counters.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use callosum_mio::{Happened, ServerConnId, ServerEvent, TokenRange, run};
use mio::{Poll, Token, Waker};
use smol::LocalExecutor;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use callosum_tests::conformance::{Adapter, Background, ServerUnderTest, Watch};

/// A server under test (stopped and joined on drop) and its count of accept errors.
pub struct Counted {
    pub server: ServerUnderTest,
    accept_errors: Box<dyn Fn() -> u64>,
}

impl Counted {
    pub fn start(adapter: Adapter) -> Counted {
        match adapter {
            Adapter::Smol => smol_server(),
            Adapter::Mio => mio_server(),
            Adapter::Tokio => tokio_server(),
        }
    }

    /// Accept errors so far.
    pub fn accept_errors(&self) -> u64 {
        (self.accept_errors)()
    }
}

fn smol_server() -> Counted {
    let config = callosum_smol::ServerConfig::default();
    let server =
        Arc::new(callosum_smol::Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap());
    let addr = server.local_addr();
    let live = Arc::new(Watch::default());
    let stopping = Arc::clone(&server);
    let counted = Arc::clone(&server);
    let published = Arc::clone(&live);
    let body = move || {
        let executor = LocalExecutor::new();
        smol::block_on(executor.run(async {
            while let Ok(mut conn) = server.accept().await {
                published.set(server.status().live);
                let server = Arc::clone(&server);
                let published = Arc::clone(&published);
                let echo = async move {
                    let mut buf = [0u8; 256];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    drop(conn);
                    published.set(server.status().live);
                };
                executor.spawn(echo).detach();
            }
        }));
    };
    Counted {
        server: ServerUnderTest {
            addr,
            live,
            _background: Background::spawn(move || stopping.shutdown(), body),
        },
        accept_errors: Box::new(move || counted.status().stats.accept_errors),
    }
}

fn tokio_server() -> Counted {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = callosum_tokio::ServerConfig::default();
    let server = {
        let _entered = runtime.enter();
        Arc::new(callosum_tokio::Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap())
    };
    let addr = server.local_addr();
    let live = Arc::new(Watch::default());
    let stopping = Arc::clone(&server);
    let counted = Arc::clone(&server);
    let published = Arc::clone(&live);
    let body = move || {
        runtime.block_on(async {
            while let Ok(mut conn) = server.accept().await {
                published.set(server.status().live);
                let server = Arc::clone(&server);
                let published = Arc::clone(&published);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 256];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    drop(conn);
                    published.set(server.status().live);
                });
            }
        });
    };
    Counted {
        server: ServerUnderTest {
            addr,
            live,
            _background: Background::spawn(move || stopping.shutdown(), body),
        },
        accept_errors: Box::new(move || counted.status().stats.accept_errors),
    }
}

/// The waker's token; the server gets the tokens after it.
const WAKE: Token = Token(0);

fn mio_server() -> Counted {
    let mut poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
    let config = callosum_mio::ServerConfig::default();
    let mut server = callosum_mio::Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    server
        .register(poll.registry(), TokenRange::new(1..1_000))
        .unwrap();
    let addr = server.local_addr();
    let live = Arc::new(Watch::default());
    let accept_errors = Arc::new(AtomicU64::new(0));
    let published = Arc::clone(&live);
    let counted = Arc::clone(&accept_errors);
    let keep_waker = Arc::clone(&waker);
    let body = move || {
        // The loop owns a waker too: one closed before its event is polled loses the event.
        let _waker = keep_waker;
        run(&mut poll, Some(&mut server), None, |parts, happened| {
            let server = parts.server.as_deref_mut().expect("run drives the server");
            counted.store(server.status().stats.accept_errors, Ordering::Relaxed);
            match happened {
                Happened::Server(ServerEvent::Readable { conn }) => echo(server, conn),
                Happened::Foreign(_) => return ControlFlow::Break(()),
                Happened::Woke => published.set(server.status().live),
                Happened::Server(_) | Happened::Client(_) | Happened::Lease(_) => {}
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    };
    Counted {
        server: ServerUnderTest {
            addr,
            live,
            _background: Background::spawn(move || waker.wake().unwrap(), body),
        },
        accept_errors: Box::new(move || accept_errors.load(Ordering::Relaxed)),
    }
}

/// Echoes what `conn` has to read. The checks send a few bytes at a time, which a socket
/// always takes whole: anything else fails the test rather than losing bytes.
fn echo(server: &mut callosum_mio::Server, conn: ServerConnId) {
    let mut buf = [0u8; 256];
    // Until `WouldBlock`, or the end (then `Closed` is queued).
    while let Ok(n @ 1..) = server.read(conn, &mut buf) {
        let written = server.write(conn, &buf[..n]);
        assert_eq!(written.ok(), Some(n), "{conn} takes a short answer whole");
    }
}

//! A server dies while the client holds idle and leased connections to it. Same story for
//! every adapter, told through each one's own API (leases are the application's):
//!
//! 1. servers A and B, a pool of four: it settles on slots 0 and 1 of each;
//! 2. the two slot-0 connections are leased, so A holds one leased and one idle;
//! 3. A stops, closing its connections (the adapter's server shut down) or resetting them
//!    (a raw server): its idle connection leaves the pool, the leased one answers a request with an
//!    error or the end of the stream (never a hang) and leaves the pool when returned, the
//!    lease on B still works, and the rover refills the pool from B;
//! 4. with every connection leased, asking for one fails at once (mio) or when its timeout
//!    is up and not much later (smol, tokio).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{LocalExecutor, Timer, future};

use crate::resetting::ResettingServer;
use callosum_tests::conformance::{Adapter, DEADLINE, ServerUnderTest, client_config, quick_rover};

/// Runs the story for each adapter and each way to die, as `death::<adapter>_<death>`.
macro_rules! each_death {
    ($($test:ident: $run:ident($adapter:ident, $death:ident),)*) => {$(
        #[test]
        fn $test() {
            $run(Dying::start(Adapter::$adapter, Death::$death));
        }
    )*};
}

each_death!(
    smol_shutdown: smol(Smol, Shutdown),
    smol_reset: smol(Smol, Reset),
    mio_shutdown: mio(Mio, Shutdown),
    mio_reset: mio(Mio, Reset),
    tokio_shutdown: tokio(Tokio, Shutdown),
    tokio_reset: tokio(Tokio, Reset),
);

/// How server A dies.
enum Death {
    /// The adapter's own server shuts down: its connections close.
    Shutdown,
    /// A raw server resets every connection.
    Reset,
}

/// Server A, until it dies.
enum Dying {
    Shutdown(ServerUnderTest),
    Reset(ResettingServer),
}

impl Dying {
    fn start(adapter: Adapter, death: Death) -> Dying {
        match death {
            Death::Shutdown => Dying::Shutdown(ServerUnderTest::start(adapter, None)),
            Death::Reset => Dying::Reset(ResettingServer::start()),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Dying::Shutdown(server) => server.addr,
            Dying::Reset(server) => server.addr,
        }
    }

    fn kill(self) {
        match self {
            Dying::Shutdown(server) => drop(server),
            Dying::Reset(server) => server.kill(),
        }
    }
}

const MAX_SLOTS: usize = 4;

/// What `get_timeout` may take past its timeout on a busy machine.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// The slots held per server, in the order the servers were given.
fn held_on(status: &[(SocketAddr, Vec<u32>)], servers: &[SocketAddr]) -> Vec<Vec<u32>> {
    let slots = |server| {
        status
            .iter()
            .find(|(addr, _)| *addr == server)
            .map_or_else(Vec::new, |(_, slots)| slots.clone())
    };
    servers.iter().map(|&server| slots(server)).collect()
}

fn smol(dying: Dying) {
    let survivor = ServerUnderTest::start(Adapter::Smol, None);
    let (a, b) = (dying.addr(), survivor.addr);
    let config = client_config(MAX_SLOTS, quick_rover());
    let (client, driver) = callosum_smol::Client::new(config).unwrap();
    let executor = LocalExecutor::new();
    executor.spawn(driver).detach();
    let held = |client: &callosum_smol::Client| {
        let status: Vec<_> = client
            .status()
            .servers
            .into_iter()
            .map(|held| (held.server, held.slots))
            .collect();
        held_on(&status, &[a, b])
    };
    // Waits, event by event, until the pool holds `wanted`; returns the events seen.
    let settle = |wanted: [Vec<u32>; 2]| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + DEADLINE;
            let mut seen = Vec::new();
            while held(&client) != wanted {
                let timed_out = async {
                    Timer::at(deadline).await;
                    panic!("the pool {:?}, not {wanted:?}", held(&client))
                };
                seen.push(future::or(client.next_event(), timed_out).await);
            }
            seen
        }
    };
    smol::block_on(executor.run(async {
        client.add_server(a);
        client.add_server(b);
        settle([vec![0, 1], vec![0, 1]]).await;
        let mut leases = [client.try_get().unwrap(), client.try_get().unwrap()];
        leases.sort_by_key(|lease| lease.server() != a);
        let [mut on_a, mut on_b] = leases;
        assert_eq!((on_a.server(), on_a.slot()), (a, 0));
        assert_eq!((on_b.server(), on_b.slot()), (b, 0));

        dying.kill();
        // A's idle slot 1 leaves the pool, and the rover fills its place from B.
        let seen = settle([vec![0], vec![0, 1, 2]]).await;
        // Closed by the server, or an error for a reset.
        let removed = |event: &callosum_smol::ClientEvent| {
            matches!(event, callosum_smol::ClientEvent::Removed { server, slot: 1, .. }
                if *server == a)
        };
        assert!(seen.iter().any(removed), "{seen:?}");

        // The lease on A fails instead of hanging, and leaves the pool when dropped.
        let request = async {
            on_a.write_all(b"ping\n").await?;
            on_a.read(&mut [0u8; 16]).await
        };
        let hung = async {
            Timer::after(DEADLINE).await;
            panic!("a request to a dead server hung")
        };
        match future::or(request, hung).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("a dead server answered {n} bytes"),
        }
        assert!(on_a.is_broken(), "a failed read marks the lease broken");
        drop(on_a);
        let seen = settle([vec![], vec![0, 1, 2, 3]]).await;
        let removed = callosum_smol::ClientEvent::Removed {
            server: a,
            slot: 0,
            cause: callosum_smol::RemoveCause::Broken,
        };
        assert!(seen.contains(&removed), "{seen:?}");

        // The lease on B still works.
        on_b.write_all(b"ping\n").await.unwrap();
        let mut echo = [0u8; 5];
        on_b.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping\n");

        // Everything leased: a timed get waits its time and no more.
        let rest: Vec<_> = (1..MAX_SLOTS).map(|_| client.try_get().unwrap()).collect();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let got = client.get_timeout(timeout).await;
        let waited = started.elapsed();
        assert!(got.is_err(), "nothing was idle");
        assert!(
            waited >= timeout && waited < timeout + TIMER_SLACK,
            "get_timeout({timeout:?}) took {waited:?}"
        );
        drop(rest);
        // Its exchange is over: back to idle (dropped, it would be closed as interrupted).
        on_b.finish();
        assert_eq!(client.status().pool.idle, MAX_SLOTS);
    }));
}

fn tokio(dying: Dying) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let survivor = ServerUnderTest::start(Adapter::Tokio, None);
    let (a, b) = (dying.addr(), survivor.addr);
    let config = client_config(MAX_SLOTS, quick_rover());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, driver) = callosum_tokio::Client::new(config).unwrap();
    let held = |client: &callosum_tokio::Client| {
        let status: Vec<_> = client
            .status()
            .servers
            .into_iter()
            .map(|held| (held.server, held.slots))
            .collect();
        held_on(&status, &[a, b])
    };
    // Waits, event by event, until the pool holds `wanted`; returns the events seen.
    let settle = |wanted: [Vec<u32>; 2]| {
        let client = client.clone();
        async move {
            let waited = tokio::time::timeout(DEADLINE, async {
                let mut seen = Vec::new();
                while held(&client) != wanted {
                    seen.push(client.next_event().await);
                }
                seen
            });
            match waited.await {
                Ok(seen) => seen,
                Err(_) => panic!("the pool {:?}, not {wanted:?}", held(&client)),
            }
        }
    };
    runtime.block_on(async {
        tokio::spawn(driver);
        client.add_server(a);
        client.add_server(b);
        settle([vec![0, 1], vec![0, 1]]).await;
        let mut leases = [client.try_get().unwrap(), client.try_get().unwrap()];
        leases.sort_by_key(|lease| lease.server() != a);
        let [mut on_a, mut on_b] = leases;
        assert_eq!((on_a.server(), on_a.slot()), (a, 0));
        assert_eq!((on_b.server(), on_b.slot()), (b, 0));

        dying.kill();
        // A's idle slot 1 leaves the pool, and the rover fills its place from B.
        let seen = settle([vec![0], vec![0, 1, 2]]).await;
        // Closed by the server, or an error for a reset.
        let removed = |event: &callosum_tokio::ClientEvent| {
            matches!(event, callosum_tokio::ClientEvent::Removed { server, slot: 1, .. }
                if *server == a)
        };
        assert!(seen.iter().any(removed), "{seen:?}");

        // The lease on A fails instead of hanging, and leaves the pool when dropped.
        let request = async {
            on_a.write_all(b"ping\n").await?;
            on_a.read(&mut [0u8; 16]).await
        };
        match tokio::time::timeout(DEADLINE, request).await {
            Err(_) => panic!("a request to a dead server hung"),
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(n)) => panic!("a dead server answered {n} bytes"),
        }
        assert!(on_a.is_broken(), "a failed read marks the lease broken");
        drop(on_a);
        let seen = settle([vec![], vec![0, 1, 2, 3]]).await;
        let removed = callosum_tokio::ClientEvent::Removed {
            server: a,
            slot: 0,
            cause: callosum_tokio::RemoveCause::Broken,
        };
        assert!(seen.contains(&removed), "{seen:?}");

        // The lease on B still works.
        on_b.write_all(b"ping\n").await.unwrap();
        let mut echo = [0u8; 5];
        on_b.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping\n");

        // Everything leased: a timed get waits its time and no more, and says why.
        let rest: Vec<_> = (1..MAX_SLOTS).map(|_| client.try_get().unwrap()).collect();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let got = client.get_timeout(timeout).await;
        let waited = started.elapsed();
        assert!(
            matches!(got, Err(callosum_tokio::GetError::TimedOut { .. })),
            "nothing was idle: {got:?}"
        );
        assert!(
            waited >= timeout && waited < timeout + TIMER_SLACK,
            "get_timeout({timeout:?}) took {waited:?}"
        );
        drop(rest);
        on_b.finish();
        assert_eq!(client.status().pool.idle, MAX_SLOTS);
    });
}

/// The mio client on the test's thread: it is polled only while the test waits.
struct MioClient {
    poll: Poll,
    events: Events,
    client: callosum_mio::Client,
    /// Everything the client reported, in order.
    seen: Vec<callosum_mio::ClientEvent>,
}

impl MioClient {
    fn start(servers: &[SocketAddr]) -> MioClient {
        let poll = Poll::new().unwrap();
        let config = client_config(MAX_SLOTS, quick_rover());
        let mut client = callosum_mio::Client::new(config).unwrap();
        client
            .register(poll.registry(), callosum_mio::TokenRange::new(0..10_000))
            .unwrap();
        for &server in servers {
            client.add_server(server);
        }
        MioClient {
            poll,
            events: Events::with_capacity(64),
            client,
            seen: Vec::new(),
        }
    }

    /// Runs the client until `check` answers; fails the test after [`DEADLINE`].
    fn until<T>(&mut self, what: &str, mut check: impl FnMut(&mut MioClient) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(answer) = check(self) {
                return answer;
            }
            let now = Instant::now();
            assert!(now < deadline, "{what}: not within {DEADLINE:?}");
            let wake = self
                .client
                .poll_timeout()
                .map_or(deadline, |at| at.min(deadline));
            self.poll
                .poll(&mut self.events, Some(wake.saturating_duration_since(now)))
                .unwrap();
            for event in &self.events {
                self.client.handle_event(event);
            }
            self.client.handle_timeout();
            while let Some(event) = self.client.poll_event() {
                self.seen.push(event);
            }
        }
    }

    fn held(&self, servers: &[SocketAddr]) -> Vec<Vec<u32>> {
        let status: Vec<_> = self
            .client
            .status()
            .servers
            .into_iter()
            .map(|held| (held.server, held.slots))
            .collect();
        held_on(&status, servers)
    }

    /// Runs the client until the pool holds `wanted`.
    fn settle(&mut self, servers: &[SocketAddr], wanted: [Vec<u32>; 2]) {
        self.until(&format!("the pool {wanted:?}"), |this| {
            (this.held(servers) == wanted).then_some(())
        });
    }

    /// Whether the client reported that `slot` on `server` left the pool.
    fn removed(&self, server: SocketAddr, slot: u32) -> bool {
        self.seen.iter().any(|event| {
            matches!(event, callosum_mio::ClientEvent::Removed { server: gone_from, slot: gone, .. }
                if (*gone_from, *gone) == (server, slot))
        })
    }
}

fn mio(dying: Dying) {
    let survivor = ServerUnderTest::start(Adapter::Mio, None);
    let servers = [dying.addr(), survivor.addr];
    let [a, b] = servers;
    let mut client = MioClient::start(&servers);
    client.settle(&servers, [vec![0, 1], vec![0, 1]]);
    let mut leases = [
        client.client.checkout().unwrap(),
        client.client.checkout().unwrap(),
    ];
    leases.sort_by_key(|lease| lease.server() != a);
    let [on_a, on_b] = leases;
    assert_eq!((on_a.server(), on_a.slot()), (a, 0));
    assert_eq!((on_b.server(), on_b.slot()), (b, 0));

    dying.kill();
    client.settle(&servers, [vec![0], vec![0, 1, 2]]);
    assert!(client.removed(a, 1), "{:?}", client.seen);

    // The lease on A fails instead of hanging, and leaves the pool when returned.
    let sent = client.client.conn_mut(&on_a).unwrap().write_all(b"ping\n");
    if sent.is_ok() {
        client.until("the dead server's answer", |this| {
            match this.client.conn_mut(&on_a).unwrap().read(&mut [0u8; 16]) {
                Ok(0) => Some(()),
                Ok(n) => panic!("a dead server answered {n} bytes"),
                Err(error) if error.kind() == ErrorKind::WouldBlock => None,
                Err(_) => Some(()),
            }
        });
    }
    client.client.checkin(on_a);
    client.settle(&servers, [vec![], vec![0, 1, 2, 3]]);
    assert!(client.removed(a, 0), "{:?}", client.seen);

    // The lease on B still works.
    client
        .client
        .conn_mut(&on_b)
        .unwrap()
        .write_all(b"ping\n")
        .unwrap();
    let mut echo = Vec::new();
    client.until("the echo from B", |this| {
        let mut buf = [0u8; 16];
        match this.client.conn_mut(&on_b).unwrap().read(&mut buf) {
            Ok(n @ 1..) => echo.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            other => panic!("the lease on B: {other:?}"),
        }
        (echo.len() == 5).then_some(())
    });
    assert_eq!(echo, b"ping\n");

    // Everything leased: nothing to hand out, at once.
    let rest: Vec<_> = (1..MAX_SLOTS)
        .map(|_| client.client.checkout().unwrap())
        .collect();
    assert!(client.client.checkout().is_none());
    for lease in rest.into_iter().chain([on_b]) {
        client.client.checkin(lease);
    }
    assert_eq!(client.client.status().pool.idle, MAX_SLOTS);
}

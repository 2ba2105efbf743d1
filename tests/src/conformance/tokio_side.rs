//! The tokio adapter behind the harness: the server on a thread of its own with a
//! current-thread runtime, the client on a thread of its own with a multi-thread runtime (so
//! the suite runs the adapter on both); stopping a thread drops its runtime, and with it every
//! task and socket it owns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use callosum_tokio::{Client, PooledConn, Server, ServerConfig, ServerConn};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::runtime::{Builder, Runtime};

use super::{
    Background, Cancellation, CancellationTally, ClientSpec, ClientUnderTest, Command, DEADLINE,
    FAILURE_ANSWER, Reply, ServerUnderTest, Watch,
};

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

pub(super) fn server(max_slots: Option<u32>) -> ServerUnderTest {
    let runtime = current_thread();
    let mut config = ServerConfig::default();
    config.max_slots = max_slots;
    let server = {
        let _entered = runtime.enter();
        Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap())
    };
    let addr = server.local_addr();
    let live = Arc::new(Watch::default());
    let stopping = Arc::clone(&server);
    let published = Arc::clone(&live);
    let body = move || {
        runtime.block_on(async {
            while let Ok(conn) = server.accept().await {
                published.set(server.status().live);
                let server = Arc::clone(&server);
                let published = Arc::clone(&published);
                tokio::spawn(async move {
                    echo(conn).await;
                    published.set(server.status().live);
                });
            }
        });
        // Dropping the runtime drops the connections still being served.
    };
    ServerUnderTest {
        addr,
        live,
        _background: Background::spawn(move || stopping.shutdown(), body),
    }
}

/// Echoes until the connection ends; dropping it frees its slot.
async fn echo(mut conn: ServerConn) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = conn.read(&mut buf).await {
        if conn.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

pub(super) fn client(spec: ClientSpec) -> ClientUnderTest {
    let (client, driver) = match spec.resolver {
        Some(resolver) => Client::with_resolver(spec.config, resolver),
        None => Client::new(spec.config),
    }
    .unwrap();
    let (events_sender, events) = mpsc::channel();
    let (commands, mut received) = tokio::sync::mpsc::unbounded_channel();
    let body = move || {
        let runtime = Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(driver);
            let watched = client.clone();
            tokio::spawn(
                async move { while events_sender.send(watched.next_event().await).is_ok() {} },
            );
            for name in &spec.names {
                client.add_server(name.clone());
            }
            for &server in &spec.servers {
                client.add_server(server);
            }
            while let Some(command) = received.recv().await {
                match command {
                    Command::Status(reply) => {
                        let _ = reply.send(client.status());
                    }
                    Command::RoundTrip(line, reply) => {
                        let answer = tokio::time::timeout(DEADLINE, round_trip(&client, &line))
                            .await
                            .unwrap_or_else(|_| Err("no reply in time".to_owned()));
                        let _ = reply.send(answer);
                    }
                    Command::RemoveServer(server, reply) => {
                        let _ = reply.send(client.remove_server(server));
                    }
                    Command::Cancellation(spec, reply) => {
                        let _ = reply.send(cancellation(&client, spec).await);
                    }
                    Command::Stop => return,
                }
            }
        });
    };
    let stop = {
        let commands = commands.clone();
        move || {
            let _ = commands.send(Command::Stop);
        }
    };
    ClientUnderTest {
        events,
        send: Box::new(move |command| {
            let _ = commands.send(command);
        }),
        _background: Background::spawn(stop, body),
    }
}

async fn round_trip(client: &Client, line: &str) -> Result<Reply, String> {
    let mut conn = client.try_get().ok_or("no idle connection")?;
    let failed = |error: std::io::Error| error.to_string();
    conn.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(failed)?;
    let mut answer = String::new();
    BufReader::new(&mut conn)
        .read_line(&mut answer)
        .await
        .map_err(failed)?;
    let reply = Reply {
        server: conn.server(),
        slot: conn.slot(),
        line: answer.trim_end().to_owned(),
    };
    if reply.line == FAILURE_ANSWER {
        conn.finish_failed();
    } else {
        conn.finish();
    }
    Ok(reply)
}

/// `tasks` tasks share the pool for `spec.requests` requests; every `abandon_every`-th one is
/// given up after `abandon_after` by `tokio::time::timeout`, which drops its guard
/// mid-exchange.
async fn cancellation(client: &Client, spec: Cancellation) -> CancellationTally {
    let tally = Arc::new(Mutex::new(CancellationTally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..spec.tasks {
        let (client, tally, next) = (client.clone(), Arc::clone(&tally), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= spec.requests {
                    return;
                }
                let request = format!("request {number}\n");
                let Ok(mut conn) = client.get().await else {
                    tally.lock().unwrap().failed += 1;
                    continue;
                };
                let answered = if spec.abandons(number) {
                    tokio::time::timeout(spec.abandon_after, exchange(&mut conn, &request))
                        .await
                        .ok()
                } else {
                    Some(exchange(&mut conn, &request).await)
                };
                let mut tally = tally.lock().unwrap();
                match answered {
                    // Dropping the guard mid-exchange: it must be closed, never reused.
                    None => tally.abandoned += 1,
                    Some(Ok(reply)) => {
                        tally.count(&request, &reply);
                        conn.finish();
                    }
                    Some(Err(_)) => tally.failed += 1,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    *tally.lock().unwrap()
}

/// Writes `request` and reads one line back.
async fn exchange(conn: &mut PooledConn, request: &str) -> std::io::Result<String> {
    conn.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply).await?;
    Ok(reply)
}

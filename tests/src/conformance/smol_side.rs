//! The smol adapter behind the harness: each component on a thread of its own running a
//! local executor, so that stopping the thread drops every task and socket it owns.

use std::sync::{Arc, mpsc};

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use callosum_smol::{Client, PooledConn, Server, ServerConfig, ServerConn};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::{LocalExecutor, Timer, future};

use super::{
    Background, Cancellation, CancellationTally, ClientSpec, ClientUnderTest, Command, DEADLINE,
    FAILURE_ANSWER, Reply, ServerUnderTest, Watch,
};

pub(super) fn server(max_slots: Option<u32>) -> ServerUnderTest {
    let mut config = ServerConfig::default();
    config.max_slots = max_slots;
    let server = Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap());
    let addr = server.local_addr();
    let live = Arc::new(Watch::default());
    let stopping = Arc::clone(&server);
    let published = Arc::clone(&live);
    let body = move || {
        let executor = LocalExecutor::new();
        smol::block_on(executor.run(async {
            while let Ok(conn) = server.accept().await {
                published.set(server.status().live);
                let server = Arc::clone(&server);
                let published = Arc::clone(&published);
                let serve = async move {
                    echo(conn).await;
                    published.set(server.status().live);
                };
                executor.spawn(serve).detach();
            }
        }));
        // Dropping the executor drops the connections still being served.
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
    let (commands, received) = smol::channel::unbounded();
    let body = move || {
        let executor = LocalExecutor::new();
        executor.spawn(driver).detach();
        let watched = client.clone();
        let forward =
            async move { while events_sender.send(watched.next_event().await).is_ok() {} };
        executor.spawn(forward).detach();
        for name in &spec.names {
            client.add_server(name.clone());
        }
        for &server in &spec.servers {
            client.add_server(server);
        }
        smol::block_on(executor.run(async {
            while let Ok(command) = received.recv().await {
                match command {
                    Command::Status(reply) => {
                        let _ = reply.send(client.status());
                    }
                    Command::RoundTrip(line, reply) => {
                        let timed_out = async {
                            Timer::after(DEADLINE).await;
                            Err("no reply in time".to_owned())
                        };
                        let _ = reply.send(future::or(round_trip(&client, &line), timed_out).await);
                    }
                    Command::RemoveServer(server, reply) => {
                        let _ = reply.send(client.remove_server(server));
                    }
                    Command::Cancellation(spec, reply) => {
                        let _ = reply.send(cancellation(&executor, &client, spec).await);
                    }
                    Command::Stop => return,
                }
            }
        }));
    };
    let stop = {
        let commands = commands.clone();
        move || {
            let _ = commands.send_blocking(Command::Stop);
        }
    };
    ClientUnderTest {
        events,
        send: Box::new(move |command| {
            let _ = commands.send_blocking(command);
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
/// given up after `abandon_after` by `future::or` with a timer, which drops its guard
/// mid-exchange.
async fn cancellation(
    executor: &LocalExecutor<'_>,
    client: &Client,
    spec: Cancellation,
) -> CancellationTally {
    let tally = Rc::new(RefCell::new(CancellationTally::default()));
    let next = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..spec.tasks)
        .map(|_| {
            let (client, tally, next) = (client.clone(), Rc::clone(&tally), Rc::clone(&next));
            executor.spawn(async move {
                loop {
                    let number = next.get();
                    if number >= spec.requests {
                        return;
                    }
                    next.set(number + 1);
                    let request = format!("request {number}\n");
                    let Ok(mut conn) = client.get().await else {
                        tally.borrow_mut().failed += 1;
                        continue;
                    };
                    let answered = if spec.abandons(number) {
                        let exchange = async { Some(exchange(&mut conn, &request).await) };
                        let give_up = async {
                            Timer::after(spec.abandon_after).await;
                            None
                        };
                        future::or(exchange, give_up).await
                    } else {
                        Some(exchange(&mut conn, &request).await)
                    };
                    let mut tally = tally.borrow_mut();
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
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    tally.take()
}

/// Writes `request` and reads one line back.
async fn exchange(conn: &mut PooledConn, request: &str) -> std::io::Result<String> {
    conn.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply).await?;
    Ok(reply)
}

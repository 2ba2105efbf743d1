//! The smol adapter behind the harness: each component on a thread of its own running a
//! local executor, so that stopping the thread drops every task and socket it owns.

use std::sync::{Arc, mpsc};

use callosum_smol::{Client, Server, ServerConfig, ServerConn};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::{LocalExecutor, Timer, future};

use super::{
    Background, ClientSpec, ClientUnderTest, Command, DEADLINE, Reply, ServerUnderTest, Watch,
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
    let (client, driver) = Client::new(spec.config).unwrap();
    let (events_sender, events) = mpsc::channel();
    let (commands, received) = smol::channel::unbounded();
    let body = move || {
        let executor = LocalExecutor::new();
        executor.spawn(driver).detach();
        let watched = client.clone();
        let forward =
            async move { while events_sender.send(watched.next_event().await).is_ok() {} };
        executor.spawn(forward).detach();
        for &server in &spec.servers {
            client.add_server(server);
        }
        smol::block_on(executor.run(async {
            while let Ok(command) = received.recv().await {
                match command {
                    Command::Status(reply) => {
                        let _ = reply.send(client.status().servers);
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
    Ok(Reply {
        server: conn.server(),
        slot: conn.slot(),
        line: answer.trim_end().to_owned(),
    })
}

//! A small line-based request/response service on tokio, balanced by Callosum across three
//! servers on loopback, written the way a tokio user would write one: `tokio_util::codec`'s
//! `LinesCodec` on both sides.
//!
//! `cargo run -p callosum-tokio --example tokio-rpc -- [--requests N] [--tasks T]`
//!
//! Starts three servers that answer each request line with the line in capitals. Then T
//! tasks (default 8) share one client with a pool of 6 and make N requests in all (default
//! 3000): each takes a connection with `get()`, sends its request, reads the reply, and calls
//! `finish()`. Prints how many requests each server answered and the slots held on it, and
//! exits 0 if every reply was right.

#[path = "shared/flags.rs"]
mod flags;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use callosum_tokio::{Client, ClientConfig, Server, ServerConfig, ServerConn};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, LinesCodec};

/// The longest request or reply line, its newline excluded.
const MAX_LINE: usize = 64 * 1024;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("rpc: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether every reply was right.
async fn run() -> Result<bool, Error> {
    let flags = flags::flags(&["requests", "tasks"])?;
    let requests: usize = flags::parsed(&flags, "requests", 3000)?;
    let tasks: usize = flags::parsed(&flags, "tasks", 8)?;

    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(serve("127.0.0.1:0".parse()?)?);
    }
    let mut config = ClientConfig::default();
    config.pool.max_slots = 6;
    let (client, driver) = Client::new(config)?;
    tokio::spawn(driver);
    for &server in &servers {
        client.add_server(server);
    }

    let next = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..tasks {
        let (client, next) = (client.clone(), Arc::clone(&next));
        callers.push(tokio::spawn(async move {
            // Requests answered per server, and wrong or failed ones.
            let mut answered: BTreeMap<SocketAddr, usize> = BTreeMap::new();
            let mut wrong = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return (answered, wrong);
                }
                let request = format!("request {n}");
                match call(&client, &request).await {
                    Ok((server, reply)) if reply == request.to_uppercase() => {
                        *answered.entry(server).or_default() += 1;
                    }
                    Ok((server, reply)) => {
                        eprintln!("rpc: {server} answered {request:?} with {reply:?}");
                        wrong += 1;
                    }
                    Err(error) => {
                        eprintln!("rpc: {request:?} failed: {error}");
                        wrong += 1;
                    }
                }
            }
        }));
    }
    let mut answered: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    let mut wrong = 0;
    for caller in callers {
        let (theirs, their_wrong) = caller.await?;
        for (server, count) in theirs {
            *answered.entry(server).or_default() += count;
        }
        wrong += their_wrong;
    }
    let status = client.status();
    for held in &status.servers {
        let count = answered.get(&held.server).copied().unwrap_or(0);
        println!("{}: {count} requests, slots {:?}", held.server, held.slots);
    }
    println!("{requests} requests, {wrong} failed or wrong");
    Ok(wrong == 0)
}

/// One call: a connection from the pool, the request, the reply, and the connection back.
async fn call(client: &Client, request: &str) -> Result<(SocketAddr, String), Error> {
    let mut conn = client.get().await?;
    let server = conn.server();
    let mut lines = Framed::new(&mut conn, LinesCodec::new_with_max_length(MAX_LINE));
    lines.send(request).await?;
    let reply = lines
        .next()
        .await
        .ok_or("the server closed the connection")??;
    // One reply per request: anything more in the codec's buffer would reach the next caller.
    let more = !lines.read_buffer().is_empty();
    drop(lines);
    if more {
        conn.mark_broken();
    }
    // The whole reply was read: the connection may serve the next caller. (Were this
    // future dropped before here, by a timeout say, the connection would be closed.)
    conn.finish();
    Ok((server, reply))
}

/// Starts a server on `addr` that answers each line with the line in capitals.
fn serve(addr: SocketAddr) -> Result<SocketAddr, Error> {
    let server = Server::bind(addr, ServerConfig::default())?;
    let addr = server.local_addr();
    tokio::spawn(async move {
        while let Ok(conn) = server.accept().await {
            tokio::spawn(answer(conn));
        }
    });
    Ok(addr)
}

/// Answers one connection's requests until it ends (or sends a line that is too long).
async fn answer(conn: ServerConn) {
    let mut lines = Framed::new(conn, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(Ok(request)) = lines.next().await {
        if lines.send(request.to_uppercase()).await.is_err() {
            return;
        }
    }
}

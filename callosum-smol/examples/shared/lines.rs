//! The demo's line protocol: each line a client sends comes back after the service time.

use std::time::Duration;

use async_io::Timer;
use callosum_smol::ServerConn;
use futures_lite::io::{BufReader, split};
use futures_lite::{AsyncBufReadExt, AsyncWriteExt, StreamExt};

/// Serves one connection: for each line received, waits `service` and writes the line back.
pub async fn serve_lines(conn: ServerConn, service: Duration) {
    let (reader, mut writer) = split(conn);
    let mut lines = BufReader::new(reader).lines();
    while let Some(Ok(line)) = lines.next().await {
        if !service.is_zero() {
            Timer::after(service).await;
        }
        if writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
}

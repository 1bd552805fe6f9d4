//! The metrics endpoint: GET /metrics on a loopback address, answered from
//! the agent's last status (a scrape never touches a store).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::status::Status;

/// Connections served at once. Further ones wait in the kernel's listen
/// queue, where they cost the agent no file descriptor: a flood of idle
/// connections must not take the descriptors its backups, ships and state
/// file need. A scraper needs one.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request head, and to take the
/// answer: an idle or stalled connection gives its slot back after that.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: TcpListener, status: Arc<Mutex<Option<Status>>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A slot first, then accept: at the cap, nothing more is accepted.
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        match listener.accept().await {
            Ok((stream, _)) => {
                let status = status.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = answer(stream, &status).await {
                        tracing::debug!("metrics request: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// The request's method and path, from its first line.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    Some((parts.next()?, parts.next()?))
}

async fn answer(mut stream: TcpStream, status: &Mutex<Option<Status>>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Only the head matters; a request that never ends it is dropped.
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let (code, content_type, body) = match request_line(&head) {
        Some(("GET", path)) if path == "/metrics" || path.starts_with("/metrics?") => {
            match status.lock().expect("not poisoned").as_ref() {
                Some(s) => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    crate::metrics::render(s),
                ),
                None => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    "the agent has not read its targets yet\n".to_string(),
                ),
            }
        }
        Some(("GET", _)) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only /metrics is here\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".into(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(done) => done,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not take the answer",
        )),
    }
}

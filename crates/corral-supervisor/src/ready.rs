//! Readiness probes for a starting worker: a TCP connect, or an HTTP GET answering 2xx.

use std::time::Duration;

use corral_config::Ready;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use corral_routes::Address;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes of a probe's answer kept; the rest is read and dropped.
const MAX_ANSWER: usize = 4096;
/// Pause between probes of a starting worker.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(25);

/// One readiness probe; `Ok(())` when the worker can take traffic, `Err` says why not.
pub async fn probe(kind: Ready, addr: &Address, path: &str) -> Result<(), String> {
    probe_within(kind, addr, path, PROBE_TIMEOUT).await
}

/// One probe that may take up to `timeout`: the active health checks' own limit.
pub async fn probe_within(
    kind: Ready,
    addr: &Address,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe_inner(kind, addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn probe_inner(kind: Ready, addr: &Address, path: &str) -> Result<(), String> {
    match addr {
        Address::Tcp(a) => {
            let stream = TcpStream::connect(a)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            exchange(kind, stream, addr, path).await
        }
        Address::Unix(p) => {
            let stream = UnixStream::connect(p)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            exchange(kind, stream, addr, path).await
        }
    }
}

async fn exchange(
    kind: Ready,
    stream: impl AsyncRead + AsyncWrite + Unpin,
    addr: &Address,
    path: &str,
) -> Result<(), String> {
    if kind != Ready::Http {
        return Ok(());
    }
    match status(stream, addr, path).await? {
        200..=299 => Ok(()),
        code => Err(format!("answered {code}")),
    }
}

/// The status `GET path` gets from `addr` within `timeout`: for smoke checks, which expect
/// a given status rather than any 2xx.
pub async fn status_of(addr: &Address, path: &str, timeout: Duration) -> Result<u16, String> {
    let ask = async {
        match addr {
            Address::Tcp(a) => {
                let stream = TcpStream::connect(a)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                status(stream, addr, path).await
            }
            Address::Unix(p) => {
                let stream = UnixStream::connect(p)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                status(stream, addr, path).await
            }
        }
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn status(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    addr: &Address,
    path: &str,
) -> Result<u16, String> {
    let host = match addr {
        Address::Tcp(a) => a.to_string(),
        Address::Unix(_) => "localhost".to_string(),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corral-health\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    // Read the whole answer (the request said `Connection: close`): closing early would reset
    // the connection under a worker still writing, and it would log an error for a probe.
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        if answer.len() < MAX_ANSWER {
            answer.extend_from_slice(&chunk[..n]);
        }
    }
    // "HTTP/1.x NNN ..."
    answer
        .get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .ok_or_else(|| "closed before answering".into())
}

/// How a worker's start ended, as far as readiness goes.
pub(crate) enum Outcome {
    /// It can take traffic.
    Ready,
    /// `start_timeout` passed; the last reason it was not ready.
    TimedOut(String),
    /// It exited first; nothing to report.
    Gone,
}

/// Waits until a starting worker is ready: by probing it (`http`, `tcp`) or by its `READY=1`
/// on the notify socket (`notify`), until `deadline`, while `alive` holds.
pub(crate) async fn wait_ready(
    kind: Ready,
    addr: &Address,
    path: &str,
    notify: Option<tokio::net::UnixDatagram>,
    deadline: std::time::Instant,
    alive: &std::sync::atomic::AtomicBool,
) -> Outcome {
    let is_alive = || alive.load(std::sync::atomic::Ordering::Acquire);
    if let Some(socket) = notify {
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // Wake now and then to notice a worker that exited without a word.
            match tokio::time::timeout(left.min(PROBE_INTERVAL * 8), socket.recv(&mut buf)).await {
                Ok(Ok(n)) if notify_says_ready(&buf[..n]) => return Outcome::Ready,
                Ok(_) | Err(_) if !is_alive() => return Outcome::Gone,
                Ok(_) | Err(_) if std::time::Instant::now() >= deadline => {
                    return Outcome::TimedOut("no READY=1 on $NOTIFY_SOCKET".into())
                }
                _ => {}
            }
        }
    }
    while is_alive() {
        let why = match probe(kind, addr, path).await {
            Ok(()) => return Outcome::Ready,
            Err(why) => why,
        };
        if std::time::Instant::now() >= deadline {
            return Outcome::TimedOut(why);
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    Outcome::Gone
}

/// Whether an sd_notify datagram (newline-separated `KEY=VALUE` lines) contains `READY=1`.
fn notify_says_ready(datagram: &[u8]) -> bool {
    datagram
        .split(|b| *b == b'\n')
        .any(|line| line == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_found_among_others() {
        assert!(notify_says_ready(b"READY=1"));
        assert!(notify_says_ready(b"STATUS=warming up\nREADY=1\n"));
        assert!(!notify_says_ready(b"STATUS=READY=1"));
        assert!(!notify_says_ready(b"READY=0"));
    }
}

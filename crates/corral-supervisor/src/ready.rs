//! Readiness probes for a starting worker: a TCP connect, or an HTTP GET answering 2xx.

use std::net::SocketAddr;
use std::time::Duration;

use corral_config::Ready;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes of a probe's answer kept; the rest is read and dropped.
const MAX_ANSWER: usize = 4096;
/// Pause between probes of a starting worker.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(25);

/// One readiness probe; `Ok(())` when the worker can take traffic, `Err` says why not.
pub async fn probe(kind: Ready, addr: SocketAddr, path: &str) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe_inner(kind, addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

async fn probe_inner(kind: Ready, addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if kind == Ready::Tcp {
        return Ok(());
    }
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: corral-health\r\nConnection: close\r\n\r\n");
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
    match answer.get(9..12) {
        Some([b'2', _, _]) => Ok(()),
        Some(status) => Err(format!("answered {}", String::from_utf8_lossy(status))),
        None => Err("closed before answering".into()),
    }
}

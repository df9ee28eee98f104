//! Upgraded connections (WebSocket): once the worker has answered 101, bytes are copied both
//! ways until either side closes. Small fixed buffers keep an idle connection cheap; pingora's
//! HTTP sessions would hold 64 KiB per direction for as long as it lives.

use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tokio::io::AsyncWriteExt;

/// Bytes buffered per direction of an upgraded connection.
const TUNNEL_BUFFER: usize = 4096;

/// Copies bytes between client and worker until both directions end. Returns the bytes
/// sent to the client.
pub async fn run(
    mut client: DownstreamSession,
    mut worker: UpstreamSession,
) -> std::io::Result<u64> {
    // Bytes that arrived with the handshake (a client or worker that spoke first) sit in the
    // sessions' buffers: hand them over before the sessions are taken apart.
    let early_from_client = ready_now(client.read_body_bytes()).and_then(|r| r.ok().flatten());
    let early_from_worker =
        ready_now(worker.read_body_ref()).and_then(|r| r.ok().flatten().map(<[u8]>::to_vec));
    let mut client = client.into_inner();
    let mut worker = worker.into_inner();
    if let Some(bytes) = early_from_client {
        worker.write_all(&bytes).await?;
        worker.flush().await?;
    }
    let mut early = 0;
    if let Some(bytes) = early_from_worker {
        client.write_all(&bytes).await?;
        client.flush().await?;
        early = bytes.len() as u64;
    }
    let (_, to_client) = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut worker,
        TUNNEL_BUFFER,
        TUNNEL_BUFFER,
    )
    .await?;
    Ok(early + to_client)
}

/// Polls a future once: its value if it needs no waiting. A read that would wait leaves
/// the socket's bytes where they are, for the copy loop to read.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

//! Upgraded connections (WebSocket): once the worker has answered 101, bytes are copied both
//! ways until either side closes. An open tunnel holds only the two sockets and small fixed
//! buffers; pingora's HTTP sessions would hold 64 KiB per direction for as long as it lives.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use tokio::io::AsyncWriteExt;

/// Bytes buffered per direction of an upgraded connection.
const TUNNEL_BUFFER: usize = 4096;

/// The two ends of an upgraded connection, taken out of their HTTP sessions.
pub struct Tunnel {
    client: Stream,
    worker: Stream,
    early_from_client: Option<Bytes>,
    early_from_worker: Option<Bytes>,
}

impl Tunnel {
    /// Takes the sockets out of the sessions, keeping bytes that arrived with the handshake
    /// (a client or worker that spoke first) to hand over before copying starts.
    pub fn open(mut client: DownstreamSession, mut worker: UpstreamSession) -> Tunnel {
        let early_from_client = ready_now(client.read_body_bytes()).and_then(|r| r.ok().flatten());
        let early_from_worker = ready_now(worker.read_body_ref())
            .and_then(|r| r.ok().flatten().map(Bytes::copy_from_slice));
        Tunnel {
            client: client.into_inner(),
            worker: worker.into_inner(),
            early_from_client,
            early_from_worker,
        }
    }

    /// Copies bytes both ways until both directions end; returns the bytes sent to the client.
    pub async fn run(mut self) -> std::io::Result<u64> {
        if let Some(bytes) = self.early_from_client.take() {
            self.worker.write_all(&bytes).await?;
            self.worker.flush().await?;
        }
        let mut early = 0;
        if let Some(bytes) = self.early_from_worker.take() {
            self.client.write_all(&bytes).await?;
            self.client.flush().await?;
            early = bytes.len() as u64;
        }
        let (_, to_client) = tokio::io::copy_bidirectional_with_sizes(
            &mut self.client,
            &mut self.worker,
            TUNNEL_BUFFER,
            TUNNEL_BUFFER,
        )
        .await?;
        Ok(early + to_client)
    }
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

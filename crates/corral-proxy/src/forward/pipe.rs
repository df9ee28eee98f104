//! An in-memory connection with pingora's stream traits, on which an HTTP/2 stream reaches
//! the HTTP/1.1 forwarder: one end is read as a client connection by the forwarder's own
//! loop, the other written and read by the HTTP/2 side.

use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID, UniqueIDType,
};
use pingora_core::protocols::{SocketDigest, TimingDigest};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// How much one direction of a pipe holds before its writer waits: a request or answer
/// head, and a body in pieces of about this size.
const PIPE_BUFFER: usize = 64 * 1024;

/// One end of an in-memory connection.
#[derive(Debug)]
pub(super) struct Pipe {
    inner: DuplexStream,
    id: UniqueIDType,
}

/// Both ends of a new pipe.
pub(super) fn pair() -> (Pipe, Pipe) {
    static NEXT: AtomicI32 = AtomicI32::new(1);
    let (a, b) = tokio::io::duplex(PIPE_BUFFER);
    let id = NEXT.fetch_add(2, Ordering::Relaxed);
    (
        Pipe { inner: a, id },
        Pipe {
            inner: b,
            id: id + 1,
        },
    )
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Pipe {
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for Pipe {
    fn id(&self) -> UniqueIDType {
        self.id
    }
}

impl Ssl for Pipe {}

impl GetTimingDigest for Pipe {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for Pipe {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Pipe {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}

#[async_trait]
impl Peek for Pipe {}

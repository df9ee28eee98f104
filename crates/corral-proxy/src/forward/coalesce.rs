//! Small writes to a client joined into one system call, with a buffer held only while there
//! is something in it. pingora's listener gives every connection a 1,460-byte write buffer
//! for its whole life (so an answer head and a small body go out as one packet); corral's own
//! accept loop (`listen.rs`) gives the connection none, and the HTTP/1.x wrapper (`Sniff`)
//! joins writes here instead: a write shorter than the buffer is copied, a longer one goes
//! straight out (after what is waiting), and a flush sends what is waiting and lets the buffer
//! go, so a quiet connection holds none.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pingora_core::protocols::Stream;
use tokio::io::AsyncWrite;

/// Writes shorter than this are joined: pingora's `DEFAULT_L4_WRITE_BUFFER_SIZE` (an MSS).
const JOIN_BELOW: usize = 1460;

/// Bytes written but not yet sent.
#[derive(Debug, Default)]
pub(super) struct WriteBuffer {
    bytes: Vec<u8>,
    /// How much of `bytes` is sent already (a partial write).
    sent: usize,
}

impl WriteBuffer {
    /// Takes `buf` into the buffer, or writes it to `inner` when it is long.
    pub(super) fn poll_write(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.bytes.len() + buf.len() > JOIN_BELOW {
            ready!(self.poll_send(inner, cx))?;
        }
        if buf.len() >= JOIN_BELOW {
            return Pin::new(inner).poll_write(cx, buf);
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(JOIN_BELOW);
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Sends what is waiting, then lets the buffer go.
    pub(super) fn poll_send(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.bytes.len() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.bytes[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.bytes.capacity() > 0 {
            *self = WriteBuffer::default();
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what is waiting and flushes `inner`.
    pub(super) fn poll_flush(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send(inner, cx))?;
        Pin::new(inner).poll_flush(cx)
    }

    /// Sends what is waiting and shuts `inner`'s writing side.
    pub(super) fn poll_shutdown(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send(inner, cx))?;
        Pin::new(inner).poll_shutdown(cx)
    }

    /// Whether anything waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

    use super::*;

    /// A connection that counts the writes made on it.
    #[derive(Debug)]
    struct Counting {
        inner: Stream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut this.inner).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    impl pingora_core::protocols::Ssl for Counting {}

    super::super::wrapped::delegate_all_but_writes_to_inner!(Counting);

    async fn write(out: &mut WriteBuffer, inner: &mut Stream, bytes: &[u8]) -> usize {
        std::future::poll_fn(|cx| out.poll_write(inner, cx, bytes))
            .await
            .expect("write")
    }

    async fn flush(out: &mut WriteBuffer, inner: &mut Stream) {
        std::future::poll_fn(|cx| out.poll_flush(inner, cx))
            .await
            .expect("flush")
    }

    #[tokio::test]
    async fn small_writes_go_out_as_one_and_the_buffer_goes_with_the_flush() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let writes = Arc::new(AtomicUsize::new(0));
        let mut inner: Stream = Box::new(Counting {
            inner: Box::new(near),
            writes: writes.clone(),
        });
        let mut out = WriteBuffer::default();
        assert_eq!(
            write(&mut out, &mut inner, b"HTTP/1.1 200 OK\r\n\r\n").await,
            19
        );
        assert_eq!(write(&mut out, &mut inner, b"body").await, 4);
        assert_eq!(
            writes.load(Ordering::Relaxed),
            0,
            "nothing sent before the flush"
        );
        assert!(out.bytes.capacity() > 0);
        flush(&mut out, &mut inner).await;
        assert_eq!(writes.load(Ordering::Relaxed), 1, "one write for both");
        assert_eq!(out.bytes.capacity(), 0, "a flushed buffer holds no memory");
        let mut got = vec![0u8; 23];
        far.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n\r\nbody");
    }

    #[tokio::test]
    async fn a_long_write_goes_straight_out_after_what_waits() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let writes = Arc::new(AtomicUsize::new(0));
        let mut inner: Stream = Box::new(Counting {
            inner: Box::new(near),
            writes: writes.clone(),
        });
        let mut out = WriteBuffer::default();
        write(&mut out, &mut inner, b"head").await;
        let long = vec![b'x'; 4000];
        assert_eq!(write(&mut out, &mut inner, &long).await, 4000);
        assert_eq!(
            writes.load(Ordering::Relaxed),
            2,
            "the head, then the long write"
        );
        assert!(out.is_empty());
        let mut got = vec![0u8; 4004];
        far.read_exact(&mut got).await.expect("read");
        assert_eq!(&got[..4], b"head");
        assert!(got[4..].iter().all(|&b| b == b'x'));
    }
}

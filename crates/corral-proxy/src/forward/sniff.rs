//! Each request line as the client sent it. pingora's parser percent-encodes a request line
//! whose target has spaces or control bytes (NUL included) before corral sees the head, so
//! a target RFC 9112 refuses would reach the worker rewritten (`/a b` as `/a%20b`), and
//! corral could not tell it from a client that encoded it. This wrapper of an HTTP/1.x
//! client connection keeps the bytes of the next request line as they are read, for
//! `framing` to judge: only while armed (from the end of one request to the end of the next
//! one's first line), so a body or an idle connection costs one flag test per read. Being
//! the one wrapper of every HTTP/1.x client connection, it also joins small writes
//! (`coalesce.rs`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{Ssl, Stream, ALPN};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::coalesce::WriteBuffer;

/// Bytes kept of a request line at most: a longer one is the limits' to refuse (414).
const MAX_LINE: usize = 16 * 1024;

/// A client connection that keeps the next request line as read.
#[derive(Debug)]
pub(super) struct Sniff {
    inner: Stream,
    line: Arc<Line>,
    /// Small writes joined into one send (`coalesce.rs`).
    out: WriteBuffer,
}

/// The request line being kept, shared by the connection's wrapper and its request loop
/// (one task: the lock is never contended).
#[derive(Debug, Default)]
pub(super) struct Line {
    armed: AtomicBool,
    bytes: Mutex<Vec<u8>>,
}

impl Sniff {
    /// The connection, wrapped, and the line it keeps.
    pub(super) fn wrap(inner: Stream) -> (Stream, Arc<Line>) {
        let line = Arc::new(Line::default());
        let sniff = Sniff {
            inner,
            line: line.clone(),
            out: WriteBuffer::default(),
        };
        (Box::new(sniff), line)
    }

    /// The connection it wraps (for `sendfile`, which needs the socket under it).
    pub(super) fn inner(&self) -> &Stream {
        &self.inner
    }
}

impl Line {
    /// Starts keeping the next request line: `prefix` is what was already read of it (the
    /// bytes pipelined after the last request).
    pub(super) fn arm(&self, prefix: Option<&[u8]>) {
        if let Ok(mut bytes) = self.bytes.lock() {
            bytes.clear();
        }
        self.armed.store(true, Ordering::Relaxed);
        if let Some(prefix) = prefix {
            self.keep(prefix);
        }
    }

    /// `judge` of the request line read since `arm` (without leading empty lines and its
    /// line end), when it is whole; `None` while it is not, or when it was too long to keep.
    pub(super) fn with_whole<R>(&self, judge: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let bytes = self.bytes.lock().ok()?;
        let line = bytes.strip_suffix(b"\n")?;
        Some(judge(line.strip_suffix(b"\r").unwrap_or(line)))
    }

    /// Keeps `read` up to the end of the first non-empty line (empty lines before it are
    /// skipped, as the parser skips them). Copied a slice at a time, not a byte at a time:
    /// this runs on every request.
    fn keep(&self, mut read: &[u8]) {
        let Ok(mut bytes) = self.bytes.lock() else {
            return;
        };
        if bytes.is_empty() {
            let start = read.iter().position(|&b| b != b'\r' && b != b'\n');
            read = &read[start.unwrap_or(read.len())..];
        }
        let room = MAX_LINE.saturating_sub(bytes.len());
        let (take, ends) = match memchr::memchr(b'\n', read) {
            Some(end) if end < room => (end + 1, true),
            _ => (read.len().min(room), false),
        };
        bytes.extend_from_slice(&read[..take]);
        if ends || bytes.len() >= MAX_LINE {
            self.armed.store(false, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Sniff {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.line.armed.load(Ordering::Relaxed) {
            this.line.keep(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl Ssl for Sniff {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl AsyncWrite for Sniff {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.out.poll_write(&mut this.inner, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.out.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.out.poll_shutdown(&mut this.inner, cx)
    }
}

impl Drop for Sniff {
    /// What was written and never flushed goes out if the socket takes it now, as pingora's
    /// own stream does with its write buffer when dropped.
    fn drop(&mut self) {
        if !self.out.is_empty() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let _ = self.out.poll_flush(&mut self.inner, &mut cx);
        }
    }
}

super::wrapped::delegate_all_but_writes_to_inner!(Sniff);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn keeps_the_request_line_as_sent_only_while_armed() {
        let (near, mut far) = tokio::io::duplex(256);
        let (mut stream, line) = Sniff::wrap(Box::new(near));
        line.arm(Some(b"\r\nGET /a"));
        far.write_all(b" b").await.expect("write");
        let mut got = vec![0u8; 2];
        stream.read_exact(&mut got).await.expect("read");
        // Not whole yet: the line ends later in the stream.
        assert!(line.with_whole(<[u8]>::to_vec).is_none());
        far.write_all(b"\0 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut rest = vec![0u8; 23];
        stream.read_exact(&mut rest).await.expect("read");
        assert_eq!(
            line.with_whole(<[u8]>::to_vec).as_deref(),
            Some(&b"GET /a b\0 HTTP/1.1"[..])
        );
        // Disarmed: a body is not kept.
        far.write_all(b"body").await.expect("write");
        let mut body = vec![0u8; 4];
        stream.read_exact(&mut body).await.expect("read");
        assert_eq!(
            line.with_whole(<[u8]>::to_vec).as_deref(),
            Some(&b"GET /a b\0 HTTP/1.1"[..])
        );
    }
}

//! A worker connection with the bytes corral already read from it put back in front, so
//! pingora's session can read an answer that corral looked at first and found not plain.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use pingora_core::protocols::{Ssl, Stream};
use tokio::io::{AsyncRead, ReadBuf};

/// Reads `prefix` first, then the connection; everything else goes to the connection.
#[derive(Debug)]
pub(super) struct Replay {
    prefix: BytesMut,
    inner: Stream,
}

impl Replay {
    /// The connection `inner` as a stream that yields `prefix` before its own bytes.
    pub(super) fn stream(prefix: BytesMut, inner: Stream) -> Stream {
        Box::new(Replay { prefix, inner })
    }

    /// The connection under a fully read `Replay`, so connections kept for reuse never
    /// nest; `None` when bytes were left unread (the connection cannot be reused).
    pub(super) fn unwrap(stream: Stream) -> Option<Stream> {
        if !stream.as_any().is::<Replay>() {
            return Some(stream);
        }
        let replay = stream.into_any().downcast::<Replay>().ok()?;
        replay.prefix.is_empty().then_some(replay.inner)
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl Ssl for Replay {}

super::wrapped::delegate_to_inner!(Replay);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_prefix_first_and_unwraps_only_when_it_is_read() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Replay::stream(BytesMut::from(&b"head "[..]), Box::new(near));
        far.write_all(b"rest").await.expect("write");
        let mut got = vec![0u8; 9];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(got, b"head rest");
        // Fully read: the inner connection comes back, so wrappers never pile up.
        let inner = Replay::unwrap(stream).expect("unwrapped");
        assert!(!inner.as_any().is::<Replay>());

        let (near, _far) = tokio::io::duplex(64);
        let unread = Replay::stream(BytesMut::from(&b"left"[..]), Box::new(near));
        assert!(
            Replay::unwrap(unread).is_none(),
            "unread bytes: not reusable"
        );
    }
}

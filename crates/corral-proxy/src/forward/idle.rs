//! A kept-alive connection between requests holds no buffer. pingora's session allocates its
//! 4 KiB head buffer as soon as a read of the next request starts, before any byte has come,
//! so every idle connection would hold one. Instead the connection loop waits here: one read
//! into the stack, when the client sends; only the bytes it got are kept, in a buffer of the
//! size pingora's would have had, handed to the session as the start of the head. nginx does
//! the same (its header buffer is taken when bytes arrive and freed when a connection idles).

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// The most read at once, and the buffer the head starts in: pingora's own first read of a
/// head (`INIT_HEADER_BUF_SIZE`), so the reads and system calls are the same as before.
pub(super) const HEAD_START: usize = 4096;

/// The first bytes of the connection's next request, once the client sends them; `None` when
/// it closed (or the connection failed) before sending any, a quiet end of a kept-alive
/// connection. Cancel-safe: a read either happened in the poll that returns it or not at all.
pub(super) async fn first_bytes(stream: &mut Stream) -> Option<BytesMut> {
    std::future::poll_fn(|cx| {
        // On this poll's stack only: the waiting future holds no buffer.
        let mut room = [MaybeUninit::<u8>::uninit(); HEAD_START];
        let mut read = ReadBuf::uninit(&mut room);
        match Pin::new(&mut *stream).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                let mut bytes = BytesMut::with_capacity(HEAD_START);
                bytes.extend_from_slice(read.filled());
                Poll::Ready(Some(bytes))
            }
            Poll::Ready(_) => Poll::Ready(None),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_first_bytes_come_in_a_head_sized_buffer_and_a_close_is_none() {
        let (near, mut far) = tokio::io::duplex(8192);
        let mut stream: Stream = Box::new(near);
        far.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        let bytes = first_bytes(&mut stream).await.expect("bytes");
        assert_eq!(&bytes[..], b"GET / HTTP/1.1\r\n");
        assert_eq!(bytes.capacity(), HEAD_START);
        drop(far);
        assert!(first_bytes(&mut stream).await.is_none());
    }

    #[tokio::test]
    async fn nothing_is_read_while_the_client_sends_nothing() {
        let (near, mut far) = tokio::io::duplex(8192);
        let mut stream: Stream = Box::new(near);
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            first_bytes(&mut stream),
        )
        .await;
        assert!(waited.is_err(), "nothing was sent");
        // The cancelled wait lost nothing: the next one gets every byte.
        far.write_all(b"GET /").await.expect("write");
        assert_eq!(
            &first_bytes(&mut stream).await.expect("bytes")[..],
            b"GET /"
        );
    }
}

//! Lingering close, as nginx's `lingering_close` does: a connection closed while the
//! client is still sending (a body over `body_size`, a refused upload) is not simply dropped.
//! Closing a socket with unread bytes makes the kernel send a RST, and a RST that reaches the
//! client before it has read the answer destroys that answer: the client sees "connection
//! reset" instead of the 413. So corral finishes its side (FIN), then reads and discards what
//! the client still sends, for a bounded time, before closing. An HTTP/2 stream answered
//! before its body was read lingers the same way ([`drain`]): clients that see the stream
//! reset while they upload may drop the answer too.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use pingora_core::protocols::http::v2::server::HttpSession as H2Stream;

use super::DownstreamSession;

/// The longest corral keeps reading a refused client (nginx's `lingering_time` is 30 s; a
/// refusal is not worth holding a connection slot that long).
const LINGER_TIME: Duration = Duration::from_secs(5);

/// A client quiet for this long is done (nginx's `lingering_timeout`).
const LINGER_QUIET: Duration = Duration::from_secs(1);

/// Sends FIN, then discards what the client still sends until it closes, pauses for
/// `LINGER_QUIET`, or `LINGER_TIME` passes.
pub(super) async fn close(client: Box<DownstreamSession>) {
    let mut stream = (*client).into_inner();
    if stream.shutdown().await.is_err() {
        return;
    }
    let end = Instant::now() + LINGER_TIME;
    // On the heap: a buffer in this future would make every connection's task 16 KiB
    // larger, since the request loop's future has room for its largest state.
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        let quiet = (Instant::now() + LINGER_QUIET).min(end);
        match timeout_at(quiet, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Discards the rest of an answered stream's body until it ends, pauses for
/// `LINGER_QUIET`, or `LINGER_TIME` passes.
pub(super) async fn drain(stream: &mut H2Stream) {
    let end = Instant::now() + LINGER_TIME;
    while !stream.is_body_done() {
        let quiet = (Instant::now() + LINGER_QUIET).min(end);
        match timeout_at(quiet, stream.read_body_bytes()).await {
            Ok(Ok(Some(_))) => {}
            _ => return,
        }
    }
}

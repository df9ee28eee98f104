//! The start of a request body, read before a worker is chosen (like nginx's client body
//! buffer): a malformed chunk or a body over `body_size` within it is refused before any
//! worker sees the request, and a slow client does not hold a sync worker while it sends a
//! small body. Bodies longer than the buffer stream on after it.

use bytes::Bytes;

use super::client::ClientSide;

use super::failure::Failure;
use super::headers::expects_continue;

/// Body bytes read ahead, at most this many (plus one read).
const BUFFER: usize = 64 * 1024;

/// What was read of a body before the request went to a worker.
#[derive(Default)]
pub(super) struct BodyStart {
    /// Whether the head announced a body (`Content-Length` above 0 or `Transfer-Encoding`),
    /// even one that turned out empty: its framing goes to the worker whole, so a chunked
    /// body of no bytes still gets its last chunk.
    pub(super) declared: bool,
    pub(super) chunks: Vec<Bytes>,
    /// Whether the body ended within the buffer.
    pub(super) complete: bool,
    /// Bytes read so far.
    pub(super) len: u64,
}

/// Reads the body's start, answering `Expect: 100-continue` first.
pub(super) async fn read_start<C: ClientSide>(
    client: &mut C,
    body_size: u64,
) -> Result<BodyStart, Failure> {
    let client_error = |e: Box<pingora_error::Error>| {
        let mut failure = Failure::client(&e);
        if failure.status == 0 {
            // The framing broke (a bad chunk): the client's fault, and it may still read.
            failure.status = 400;
        }
        failure
    };
    if expects_continue(client.req_header()) {
        client
            .write_continue()
            .await
            .map_err(|e| Failure::client(&e))?;
    }
    let mut start = BodyStart {
        declared: true,
        ..BodyStart::default()
    };
    while start.len < BUFFER as u64 {
        match client.read_body_bytes().await.map_err(client_error)? {
            Some(chunk) => {
                if start.count(&chunk, body_size)? {
                    start.chunks.push(chunk);
                }
            }
            None => {
                start.complete = true;
                break;
            }
        }
    }
    Ok(start)
}

impl BodyStart {
    /// Counts in one more piece of the body, refusing it past `body_size`; false for an
    /// empty piece, which would end a chunked body early if written on.
    pub(super) fn count(&mut self, chunk: &Bytes, body_size: u64) -> Result<bool, Failure> {
        if chunk.is_empty() {
            return Ok(false);
        }
        self.len += chunk.len() as u64;
        if self.len > body_size {
            return Err(Failure::refused(413, "body too large"));
        }
        Ok(true)
    }
}

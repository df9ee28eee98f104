//! A request body read before a worker is chosen: by default all of it (nginx's
//! `proxy_request_buffering on`), in memory up to `server.buffering.body_buffer` and the
//! rest in a temp file, so a slow upload never holds a sync worker and the worker gets the
//! body at loopback speed; with the pool's `request_buffering = false`, its first 64 KiB,
//! the rest streaming to the worker as it comes. Either way a malformed chunk or a body over
//! `body_size` within what is read ahead is refused before any worker sees the request.

use bytes::Bytes;
use corral_telemetry::buffer::BufferMetrics;

use super::buffer::{BodyFile, BufferSettings, MemoryHold};
use super::client::ClientSide;

use super::failure::Failure;
use super::headers::expects_continue;

/// Body bytes read ahead without request buffering, at most this many (plus one read).
const BUFFER: usize = 64 * 1024;

/// How much of a body is read before a worker is chosen.
pub(super) enum ReadAhead<'a> {
    /// Its first 64 KiB; the rest streams (`request_buffering = false`).
    Start,
    /// All of it: memory, then a temp file.
    Whole(&'a BufferSettings, &'a BufferMetrics),
}

/// What was read of a body before the request went to a worker.
#[derive(Default)]
pub(super) struct BodyStart {
    /// Whether the head announced a body (`Content-Length` above 0 or `Transfer-Encoding`),
    /// even one that turned out empty: its framing goes to the worker whole, so a chunked
    /// body of no bytes reaches it as `Content-Length: 0` (see `send::with_length`).
    pub(super) declared: bool,
    /// The body's first pieces, in memory.
    pub(super) chunks: Vec<Bytes>,
    /// What follows them, when the body was read whole and outgrew its memory.
    pub(super) file: Option<BodyFile>,
    /// Whether the body was read to its end.
    pub(super) complete: bool,
    /// Bytes read so far.
    pub(super) len: u64,
    /// The memory of `chunks`, counted against the process budget (a whole body only).
    memory: Option<MemoryHold>,
}

/// Reads the body's start, or all of it, answering `Expect: 100-continue` first.
pub(super) async fn read_start<C: ClientSide>(
    client: &mut C,
    body_size: u64,
    ahead: ReadAhead<'_>,
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
    let whole = match ahead {
        ReadAhead::Whole(settings, metrics) => Some((settings, metrics)),
        ReadAhead::Start => None,
    };
    while whole.is_some() || start.len < BUFFER as u64 {
        let Some(chunk) = client.read_body_bytes().await.map_err(client_error)? else {
            start.complete = true;
            break;
        };
        if !start.count(&chunk, body_size)? {
            continue;
        }
        let Some((settings, metrics)) = whole else {
            start.chunks.push(chunk);
            continue;
        };
        if start.keep(chunk, settings, metrics)? {
            // No temp file to be had: the rest streams to the worker as it comes.
            break;
        }
    }
    Ok(start)
}

impl BodyStart {
    /// Keeps one more piece of a body read whole: in memory while there is room, else in
    /// the temp file. True when no temp file could be made: the piece is kept in memory and
    /// reading ahead stops there.
    fn keep(
        &mut self,
        chunk: Bytes,
        settings: &BufferSettings,
        metrics: &BufferMetrics,
    ) -> Result<bool, Failure> {
        let memory = self.memory.get_or_insert_with(|| MemoryHold::new(metrics));
        if self.file.is_none() && memory.take(chunk.len(), settings) {
            self.chunks.push(chunk);
            return Ok(false);
        }
        if self.file.is_none() {
            match BodyFile::create(settings, metrics) {
                Ok(file) => self.file = Some(file),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %settings.temp_dir.display(), "cannot make a temp file for a request body; the rest of it streams to the worker");
                    self.chunks.push(chunk);
                    return Ok(true);
                }
            }
        }
        if let Some(file) = &mut self.file {
            file.append(&chunk).map_err(|e| {
                let e = pingora_error::Error::because(
                    pingora_error::ErrorType::InternalError,
                    "writing a request body's temp file",
                    e,
                );
                Failure::worker(500, e)
            })?;
        }
        Ok(false)
    }

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

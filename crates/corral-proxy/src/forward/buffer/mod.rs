//! Buffering between a worker and a slow client, as nginx's `proxy_buffering` does: the
//! worker's answer is read as fast as the worker sends it, and what the client has not
//! taken yet waits in a [`Spool`]: in memory up to a per-answer buffer (and while the
//! process-wide budget allows), then in an unlinked temp file up to `max_temp_file`, then
//! the worker's side waits. The worker's slot and connection go back when its side is done,
//! not when the client has the answer.
//!
//! A request body is read whole before a worker is chosen (nginx's
//! `proxy_request_buffering`): in memory up to `body_buffer` ([`MemoryHold`]), the rest in a
//! [`BodyFile`], and then sent to the worker at once.
//!
//! The spool never waits to fill up: a piece pushed is there for the client at once, so a
//! stream (Server-Sent Events, progress) reaches the client as it comes.

mod body;
mod spool;
mod temp;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use corral_routes::Backend;
use corral_telemetry::buffer::BufferMetrics;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub(crate) use body::{BodyFile, MemoryHold};
pub(crate) use spool::{Pulled, PullerGone, Spool};

/// `[server.buffering]` made once per config.
#[derive(Debug, Clone)]
pub struct BufferSettings {
    /// Bytes all spools of the process may hold in memory together.
    pub memory: usize,
    /// Bytes one answer may hold in memory.
    pub answer_buffer: usize,
    /// Bytes one request body may hold in memory.
    pub body_buffer: usize,
    /// Bytes one answer may hold in its temp file; 0: none.
    pub max_temp_file: u64,
    /// Where temp files are made.
    pub temp_dir: PathBuf,
}

impl BufferSettings {
    /// The settings of `config`.
    pub fn new(config: &corral_config::Config) -> BufferSettings {
        let b = &config.server.buffering;
        BufferSettings {
            memory: usize::try_from(b.memory).unwrap_or(usize::MAX),
            answer_buffer: usize::try_from(b.answer_buffer).unwrap_or(usize::MAX),
            body_buffer: usize::try_from(b.body_buffer).unwrap_or(usize::MAX),
            max_temp_file: b.max_temp_file,
            temp_dir: b
                .temp_dir
                .clone()
                .unwrap_or_else(|| config.server.runtime_dir.clone()),
        }
    }

    /// A pool that opted out (`response_buffering = false`): one piece in flight at a time,
    /// so the worker goes at the client's pace.
    pub(crate) fn unbuffered(&self) -> BufferSettings {
        BufferSettings {
            answer_buffer: 0,
            max_temp_file: 0,
            ..self.clone()
        }
    }
}

/// What one answer's relay needs of buffering: the pool's settings (or the opted-out ones),
/// the gauges, and how long a client may take nothing.
#[derive(Clone, Copy)]
pub(crate) struct Buffered<'a> {
    pub(crate) settings: &'a BufferSettings,
    pub(crate) metrics: &'a BufferMetrics,
    pub(crate) send_timeout: Duration,
}

impl<'a> Buffered<'a> {
    /// An empty spool for an answer.
    pub(crate) fn answer_spool(&self) -> Spool<'a> {
        Spool::new(self.settings, self.metrics, &self.metrics.answers_spilled)
    }

    /// The client has the whole answer; its worker was free since `freed`.
    pub(crate) fn freed(&self, freed: Instant) {
        self.metrics
            .freed_early
            .observe(freed.elapsed().as_secs_f64());
    }
}

/// An answer its worker has given whole that is still on its way to the client, counted
/// on the worker for `/status` (`delivering`) until dropped.
pub(crate) struct Delivering(Arc<Backend>);

impl Delivering {
    pub(crate) fn begin(backend: Arc<Backend>) -> Delivering {
        backend.load.delivery_began();
        Delivering(backend)
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        self.0.load.delivery_ended();
    }
}

/// Writes `bytes` and flushes, each write waiting at most `send_timeout` for the client to
/// take something (nginx's `send_timeout` is between two writes, not for the whole answer).
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    client: &mut W,
    mut bytes: &[u8],
    send_timeout: Duration,
) -> io::Result<()> {
    let stalled = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "client took nothing for send_timeout",
        )
    };
    while !bytes.is_empty() {
        let n = pingora_timeout::timeout(send_timeout, client.write(bytes))
            .await
            .map_err(|_| stalled())??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    pingora_timeout::timeout(send_timeout, client.flush())
        .await
        .map_err(|_| stalled())?
}

//! Worker stdout and stderr become log events tagged with pool, worker and pid; the last
//! stderr lines are kept to explain a crash.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use corral_telemetry::logging::WORKER_OUTPUT_TARGET;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longest line re-emitted; longer ones are cut, so a worker flooding one giant line cannot
/// make the master buffer without bound.
const MAX_LINE: usize = 16 * 1024;
/// stderr lines kept for the crash report: enough for a Python traceback or the stack
/// faulthandler writes for a hung worker.
pub const TAIL_LINES: usize = 40;

/// The last stderr lines of one worker.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Which of the worker's streams a line came from.
#[derive(Clone, Copy)]
pub enum Stream {
    /// The worker's stdout.
    Stdout,
    /// The worker's stderr.
    Stderr,
}

/// Reads `reader` line by line until EOF, logging each line; stderr lines also go to `tail`.
pub async fn pump(
    reader: impl AsyncRead + Unpin,
    stream: Stream,
    pool: Arc<str>,
    worker: u32,
    pid: u32,
    tail: Tail,
) {
    let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(item) = lines.next().await {
        let line = match item {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                format!("[line over {MAX_LINE} bytes cut]")
            }
            Err(LinesCodecError::Io(_)) => break,
        };
        match stream {
            Stream::Stdout => {
                tracing::info!(target: WORKER_OUTPUT_TARGET, pool = &*pool, worker, pid, stream = "stdout", "{line}")
            }
            Stream::Stderr => {
                tracing::info!(target: WORKER_OUTPUT_TARGET, pool = &*pool, worker, pid, stream = "stderr", "{line}");
                tail.push(line);
            }
        }
    }
}

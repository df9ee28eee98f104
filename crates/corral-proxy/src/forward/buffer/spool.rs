//! [`Spool`]: the pieces of one answer (or body) between the side that reads them and the
//! side that writes them on, in order: each in memory or in the temp file, as room allows.
//! One pusher and one puller, usually two futures of one task joined; the lock is the
//! spool's own, held for a push or a pull (a positional file read or write at most), never
//! across an `.await`.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;
use corral_telemetry::buffer::BufferMetrics;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::temp::TempFile;
use super::BufferSettings;

/// The most one pull takes: a piece on its way to a slow client is held outside the budget,
/// so this bounds what each such client costs beyond it.
const READ_BACK: usize = 64 * 1024;

/// What the puller gets.
#[derive(Debug)]
pub(crate) enum Pulled {
    /// The next piece.
    Piece(Bytes),
    /// The pusher finished and everything was pulled.
    End,
    /// The pusher failed: what follows is not whole.
    Failed,
}

/// A piece waiting to be pulled.
enum Piece {
    Memory(Bytes),
    File { at: u64, len: usize },
}

#[derive(PartialEq, Eq)]
enum Ends {
    Open,
    Finished,
    Failed,
    PullerGone,
}

struct State {
    queue: VecDeque<Piece>,
    /// Bytes of this spool in memory (counted in the process-wide gauge too).
    memory: usize,
    /// Bytes in the temp file not pulled yet.
    on_disk: u64,
    file: Option<TempFile>,
    /// The temp file failed: no more pieces go there.
    no_file: bool,
    ends: Ends,
}

/// The pieces between a pusher and a puller. Dropping it gives back its memory and its temp
/// file.
pub(crate) struct Spool<'a> {
    state: Mutex<State>,
    /// A piece or an end to pull.
    pullable: Notify,
    /// Room to push, or the puller gone.
    pushable: Notify,
    settings: &'a BufferSettings,
    metrics: &'a BufferMetrics,
    /// Counts the first spill to the temp file.
    spills: &'a prometheus::IntCounter,
}

impl<'a> Spool<'a> {
    /// An empty spool under `settings`; `spills` counts it when it first uses a temp file.
    pub(crate) fn new(
        settings: &'a BufferSettings,
        metrics: &'a BufferMetrics,
        spills: &'a prometheus::IntCounter,
    ) -> Spool<'a> {
        Spool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                memory: 0,
                on_disk: 0,
                file: None,
                no_file: false,
                ends: Ends::Open,
            }),
            pullable: Notify::new(),
            pushable: Notify::new(),
            settings,
            metrics,
            spills,
        }
    }

    /// Adds `bytes` after what the spool holds: in memory while this spool's buffer and the
    /// process's budget have room, else in the temp file while it has room, else once the
    /// puller has taken what waits (the worker then goes at the client's pace). An empty
    /// spool always takes a piece, so a zero-sized buffer means one piece in flight.
    /// Fails when the puller is gone. A piece kept in memory is copied; see
    /// [`Spool::push_owned`] for one the caller gives away.
    pub(crate) async fn push(&self, bytes: &[u8]) -> Result<(), PullerGone> {
        self.push_with(bytes, || Bytes::copy_from_slice(bytes))
            .await
    }

    /// [`Spool::push`] of a piece the spool may keep as it is (no copy when it stays in
    /// memory; one that goes to the temp file is dropped once written, so its buffer can
    /// be reused by the caller).
    pub(crate) async fn push_owned(&self, bytes: Bytes) -> Result<(), PullerGone> {
        self.push_with(&bytes, || bytes.clone()).await
    }

    async fn push_with(&self, bytes: &[u8], keep: impl Fn() -> Bytes) -> Result<(), PullerGone> {
        if bytes.is_empty() {
            return Ok(());
        }
        loop {
            if let Some(first) = self.try_push(bytes, &keep)? {
                self.pullable.notify_one();
                if first {
                    // The puller may be waiting for this piece: let it run before the next
                    // read. A worker that sends faster than corral compresses would
                    // otherwise keep the pusher busy (never pending) until tokio's budget
                    // runs out, and the client would wait for pieces that are ready.
                    tokio::task::yield_now().await;
                }
                return Ok(());
            }
            self.pushable.notified().await;
        }
    }

    /// `Some(first)` when the piece was taken (`first`: the spool was empty), `None` when
    /// there is no room for it yet.
    fn try_push(&self, bytes: &[u8], keep: impl Fn() -> Bytes) -> Result<Option<bool>, PullerGone> {
        let mut state = self.state.lock();
        if state.ends == Ends::PullerGone {
            return Err(PullerGone);
        }
        let len = bytes.len();
        let memory_room = state.memory + len <= self.settings.answer_buffer
            && usize::try_from(self.metrics.memory.get()).unwrap_or(0) + len
                <= self.settings.memory;
        if state.queue.is_empty() || memory_room {
            state.memory += len;
            self.metrics.memory.add(len as i64);
            state.queue.push_back(Piece::Memory(keep()));
            return Ok(Some(state.queue.len() == 1));
        }
        let file_end = state.file.as_ref().map_or(0, TempFile::end);
        if state.no_file || file_end + len as u64 > self.settings.max_temp_file {
            return Ok(None);
        }
        if state.file.is_none() {
            match TempFile::create(&self.settings.temp_dir) {
                Ok(file) => state.file = Some(file),
                Err(e) => return Ok(self.without_file(&mut state, &e)),
            }
            self.spills.inc();
        }
        let Some(file) = state.file.as_mut() else {
            return Ok(None);
        };
        let at = match file.append(bytes) {
            Ok(at) => at,
            Err(e) => return Ok(self.without_file(&mut state, &e)),
        };
        state.on_disk += len as u64;
        self.metrics.disk.add(len as i64);
        // Bytes written right after the last piece in the file join it: the puller reads
        // the file back in pieces of its own size.
        match state.queue.back_mut() {
            Some(Piece::File {
                at: last,
                len: held,
            }) if *last + *held as u64 == at => {
                *held += len;
            }
            _ => state.queue.push_back(Piece::File { at, len }),
        }
        Ok(Some(state.queue.len() == 1))
    }

    /// The temp file cannot be made or written (a missing directory, a full disk): the
    /// answer goes on at the client's pace, as without a temp file, rather than fail.
    fn without_file(&self, state: &mut State, e: &io::Error) -> Option<bool> {
        tracing::warn!(error = %e, dir = %self.settings.temp_dir.display(), "cannot use a temp file for a slow client's answer; the worker goes at the client's pace");
        state.no_file = true;
        None
    }

    /// The next piece, waiting for one; `End` or `Failed` once the pusher is done and all
    /// was pulled. A temp file that cannot be read is `Failed`.
    pub(crate) async fn pull(&self) -> Pulled {
        loop {
            if let Some(pulled) = self.try_pull() {
                self.pushable.notify_one();
                return pulled;
            }
            self.pullable.notified().await;
        }
    }

    fn try_pull(&self) -> Option<Pulled> {
        let mut state = self.state.lock();
        if state.ends == Ends::Failed {
            return Some(Pulled::Failed);
        }
        match state.queue.pop_front() {
            Some(Piece::Memory(mut bytes)) => {
                // So for a piece in memory (without a copy).
                if bytes.len() > READ_BACK {
                    state
                        .queue
                        .push_front(Piece::Memory(bytes.split_off(READ_BACK)));
                }
                state.memory -= bytes.len();
                self.metrics.memory.sub(bytes.len() as i64);
                Some(Pulled::Piece(bytes))
            }
            Some(Piece::File { at, len: held }) => {
                // One pull reads back at most READ_BACK; the rest stays first in line.
                let len = held.min(READ_BACK);
                if len < held {
                    state.queue.push_front(Piece::File {
                        at: at + len as u64,
                        len: held - len,
                    });
                }
                state.on_disk -= len as u64;
                self.metrics.disk.sub(len as i64);
                let emptied = state.on_disk == 0;
                let file = state.file.as_mut()?;
                let read = file.read(at, len);
                let reset = if emptied { file.reset() } else { Ok(()) };
                match (read, reset) {
                    (Ok(bytes), Ok(())) => Some(Pulled::Piece(Bytes::from(bytes))),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "cannot read back a buffer's temp file");
                        state.ends = Ends::PullerGone;
                        Some(Pulled::Failed)
                    }
                }
            }
            None => match state.ends {
                Ends::Open => None,
                Ends::Finished => Some(Pulled::End),
                Ends::Failed | Ends::PullerGone => Some(Pulled::Failed),
            },
        }
    }

    /// The pusher is done: the puller gets `End` after the last piece.
    pub(crate) fn finish(&self) {
        self.end(Ends::Finished);
    }

    /// The pusher failed: the puller gets `Failed` at its next pull.
    pub(crate) fn fail(&self) {
        self.end(Ends::Failed);
    }

    /// The puller will take nothing more: the pusher's next push fails.
    pub(crate) fn puller_gone(&self) {
        self.end(Ends::PullerGone);
        self.pushable.notify_one();
    }

    fn end(&self, ends: Ends) {
        let mut state = self.state.lock();
        if state.ends == Ends::Open || ends == Ends::PullerGone {
            state.ends = ends;
        }
        drop(state);
        self.pullable.notify_one();
    }

    /// Whether anything went to the temp file.
    #[cfg(test)]
    pub(crate) fn on_disk(&self) -> u64 {
        self.state.lock().on_disk
    }
}

/// A push failed: the puller is gone, nothing more will be taken.
#[derive(Debug)]
pub(crate) struct PullerGone;

impl Drop for Spool<'_> {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        self.metrics.memory.sub(state.memory as i64);
        self.metrics.disk.sub(state.on_disk as i64);
    }
}

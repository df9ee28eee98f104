//! Bytes copied both ways between two sockets, holding no buffer while both are quiet. Reads
//! go into one scratch buffer per thread and are written on at once; only what the other side
//! cannot take yet is kept, in a buffer of its own that is freed once written. An idle
//! WebSocket (most of them, most of the time) costs its two sockets and this small state,
//! not the 8 KiB that two fixed copy buffers would hold for its whole life.
//!
//! For a WebSocket the way back (worker to client) follows the framing (`frames`), so the
//! copy can be asked to stop at the next frame boundary: the tunnel then writes its close
//! frame where the client's parser expects a frame.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::frames::Frames;

/// Bytes one read may bring; shared by every tunnel of a thread.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// What one direction counts, for the metrics and the idle timeout.
pub struct Meter<'a> {
    /// Bytes read from the source (and so written to the other side).
    pub bytes: &'a AtomicU64,
    /// Milliseconds from `start` to the last read of either direction.
    pub last: &'a AtomicU64,
    pub start: Instant,
}

/// One direction's state.
#[derive(Default)]
struct Direction {
    /// Read but not yet written; empty (and unallocated) in the steady state.
    pending: Vec<u8>,
    written: usize,
    /// Written since the last flush.
    unflushed: bool,
    /// The source has ended; the sink is shut down next.
    ended: bool,
    done: bool,
    /// The WebSocket framing of what passed, when followed.
    frames: Option<Frames>,
    /// Asked to stop at the next frame boundary.
    cut: bool,
    /// Stopped there: everything up to the boundary was written.
    cut_done: bool,
}

/// How a copy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// Both directions ended.
    Closed,
    /// The way back stopped at a frame boundary, as asked.
    Cut,
}

/// Copies both ways until both directions have ended (each source's end shuts the other
/// side's write half, as `tokio::io::copy_bidirectional` does). With `cut_back`, the way
/// back (`b` to `a`) follows WebSocket framing from the state given, and once the flag is
/// set (and the future polled again) the copy ends at the next frame boundary of that way.
pub async fn both_ways<A, B>(
    a: &mut A,
    b: &mut B,
    a_meter: Meter<'_>,
    b_meter: Meter<'_>,
    cut_back: Option<(Frames, &AtomicBool)>,
) -> io::Result<Copied>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_to_b, mut b_to_a) = (Direction::default(), Direction::default());
    b_to_a.frames = cut_back.map(|(frames, _)| frames);
    poll_fn(|cx| {
        b_to_a.cut = cut_back.is_some_and(|(_, cut)| cut.load(Ordering::Relaxed));
        let forth = a_to_b.poll(cx, a, b, &a_meter)?;
        let back = b_to_a.poll(cx, b, a, &b_meter)?;
        if b_to_a.cut_done {
            return Poll::Ready(Ok(Copied::Cut));
        }
        match (forth, back) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(Copied::Closed)),
            _ => Poll::Pending,
        }
    })
    .await
}

impl Direction {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        meter: &Meter<'_>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.written < self.pending.len() {
                let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.pending[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.unflushed = true;
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.written = 0;
            }
            if self.unflushed {
                ready!(Pin::new(&mut *to).poll_flush(cx))?;
                self.unflushed = false;
            }
            if self.cut && self.frames.is_some_and(|f| f.at_boundary()) {
                self.cut_done = true;
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_read_through(cx, from, to, meter))?;
        }
    }

    /// Reads what the source has into the scratch buffer and writes as much as the sink takes
    /// now; keeps the rest in `pending`.
    fn poll_read_through<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        meter: &Meter<'_>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut *from).poll_read(cx, &mut buf))?;
            let read = buf.filled();
            if read.is_empty() {
                self.ended = true;
                return Poll::Ready(Ok(()));
            }
            meter.bytes.fetch_add(read.len() as u64, Ordering::Relaxed);
            meter
                .last
                .store(meter.start.elapsed().as_millis() as u64, Ordering::Relaxed);
            // Stopping at a boundary: what comes after it is never passed on.
            let read = match &mut self.frames {
                Some(frames) if self.cut => match frames.until_boundary(read) {
                    Some(end) => &read[..end],
                    None => read,
                },
                Some(frames) => {
                    frames.follow(read);
                    read
                }
                None => read,
            };
            let mut sent = 0;
            while sent < read.len() {
                match Pin::new(&mut *to).poll_write(cx, &read[sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        self.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if sent < read.len() {
                self.pending = read[sent..].to_vec();
                self.written = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `bytes` then shuts down, while reading everything the other side sends.
    async fn send_and_read(end: tokio::io::DuplexStream, bytes: Vec<u8>) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(end);
        let write = async move {
            w.write_all(&bytes).await.expect("write");
            w.shutdown().await.expect("shutdown");
        };
        let read = async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.expect("read");
            got
        };
        tokio::join!(write, read).1
    }

    #[tokio::test]
    async fn every_byte_goes_through_both_ways_and_ends_close_the_other_side() {
        let (client, mut a) = tokio::io::duplex(64);
        let (mut b, worker) = tokio::io::duplex(64);
        let (forth, back, last) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let start = Instant::now();
        let copy = tokio::spawn(async move {
            let meters = (
                Meter {
                    bytes: &forth,
                    last: &last,
                    start,
                },
                Meter {
                    bytes: &back,
                    last: &last,
                    start,
                },
            );
            both_ways(&mut a, &mut b, meters.0, meters.1, None)
                .await
                .map(|_| (forth.load(Ordering::Relaxed), back.load(Ordering::Relaxed)))
        });
        // More than the pipes hold at once, so writes wait and bytes are kept pending.
        let up: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let down: Vec<u8> = (0..150_000u32).map(|i| (i * 13) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let client_side = tokio::spawn(send_and_read(client, up2));
        let worker_side = tokio::spawn(send_and_read(worker, down2));
        let (at_client, at_worker) = (
            client_side.await.expect("client"),
            worker_side.await.expect("worker"),
        );
        assert!(
            at_worker == up,
            "client to worker: {} of {} bytes",
            at_worker.len(),
            up.len()
        );
        assert!(
            at_client == down,
            "worker to client: {} of {} bytes",
            at_client.len(),
            down.len()
        );
        let counted = copy.await.expect("copy").expect("copied");
        assert_eq!(counted, (up.len() as u64, down.len() as u64));
    }
}

//! The log writer thread. Threads that log put finished lines on a bounded queue; the writer
//! drains it and writes what it found in one go. While lines keep coming it looks again every
//! millisecond on its own, so a busy proxy never wakes it: a writer woken per line (as
//! tracing-appender's is) cost the proxy thread a fifth of its throughput at 50,000 access
//! lines a second. Once a look finds nothing it sleeps until the next line wakes it, so a
//! quiet process's lines appear at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a busy writer waits before looking again: the most a line waits.
const BUSY_POLL: Duration = Duration::from_millis(5);

/// Hands lines to the writer thread; when the queue is full, the logging thread waits for
/// room (no line is dropped).
#[derive(Clone)]
pub struct QueuedWriter {
    queue: SyncSender<Vec<u8>>,
    /// Set while the writer sleeps until woken; the next line wakes it.
    sleeping: Arc<AtomicBool>,
    writer: Thread,
}

/// Stops the writer thread when dropped, after every queued line is written.
pub struct WriterGuard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread on `out`, with room for `lines` queued lines.
pub fn spawn(out: Box<dyn Write + Send>, lines: usize) -> io::Result<(QueuedWriter, WriterGuard)> {
    let (queue, lines_in) = sync_channel(lines);
    let stop = Arc::new(AtomicBool::new(false));
    let sleeping = Arc::new(AtomicBool::new(false));
    let (stopping, asleep) = (stop.clone(), sleeping.clone());
    let thread = thread::Builder::new()
        .name("corral-log".into())
        .spawn(move || write_lines(lines_in, out, &stopping, &asleep))?;
    Ok((
        QueuedWriter {
            queue,
            sleeping,
            writer: thread.thread().clone(),
        },
        WriterGuard {
            stop,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: drain, write, flush, wait; until stopped and drained.
fn write_lines(
    lines: Receiver<Vec<u8>>,
    mut out: Box<dyn Write + Send>,
    stop: &AtomicBool,
    sleeping: &AtomicBool,
) {
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut wrote = false;
        let gone = loop {
            match lines.try_recv() {
                Ok(line) => {
                    put(&mut out, &line);
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        let _ = out.flush();
        if stopping || gone {
            return;
        }
        if wrote {
            thread::park_timeout(BUSY_POLL);
            continue;
        }
        // Quiet: sleep until a line arrives. Look once more after saying so, so a line sent
        // just before is not left waiting.
        sleeping.store(true, Ordering::SeqCst);
        match lines.try_recv() {
            Ok(line) => put(&mut out, &line),
            Err(TryRecvError::Empty) if !stop.load(Ordering::SeqCst) => thread::park(),
            Err(_) => {}
        }
        sleeping.store(false, Ordering::SeqCst);
    }
}

/// A failed write (stdout closed) must not stop the draining, or logging threads would block.
fn put(out: &mut Box<dyn Write + Send>, line: &[u8]) {
    let _ = out.write_all(line);
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl QueuedWriter {
    /// Queues one finished line (or several), waking the writer if it sleeps.
    pub fn send(&self, line: Vec<u8>) -> io::Result<()> {
        self.queue
            .send(line)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the log writer has stopped"))?;
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.writer.unpark();
        }
        Ok(())
    }
}

impl Write for &QueuedWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.send(line.to_vec())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueuedWriter {
    type Writer = &'a QueuedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let out = Shared::default();
        let (writer, guard) = spawn(Box::new(out.clone()), 64).expect("spawn");
        // More lines than the queue holds: senders wait for room, none is lost.
        for i in 0..1000 {
            (&writer)
                .write_all(format!("{i}\n").as_bytes())
                .expect("queued");
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        let expected: String = (0..1000).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn a_line_after_a_quiet_spell_wakes_the_writer() {
        let out = Shared::default();
        let (writer, _guard) = spawn(Box::new(out.clone()), 64).expect("spawn");
        for round in 0..3 {
            // Long enough for the writer to find nothing and go to sleep.
            thread::sleep(Duration::from_millis(20));
            let line = format!("line {round}\n");
            (&writer).write_all(line.as_bytes()).expect("queued");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !String::from_utf8_lossy(&out.0.lock().expect("lock")).ends_with(&line) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{line:?} never written"
                );
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

//! What a request body read ahead holds: its bytes in memory, counted against the process
//! budget ([`MemoryHold`]), and the rest in a temp file ([`BodyFile`]). Both give their
//! count back when dropped, so the gauges are right on every path out of a request.

use std::io;

use corral_telemetry::buffer::BufferMetrics;
use prometheus::IntGauge;

use super::temp::TempFile;
use super::BufferSettings;

/// Pieces read back from a body's temp file, at most this long.
const PIECE: u64 = 64 * 1024;

/// Bytes of a body held in memory, counted in `corral_buffered_memory_bytes`.
pub(crate) struct MemoryHold {
    gauge: IntGauge,
    held: usize,
}

impl MemoryHold {
    pub(crate) fn new(metrics: &BufferMetrics) -> MemoryHold {
        MemoryHold {
            gauge: metrics.memory.clone(),
            held: 0,
        }
    }

    /// Counts `len` more bytes when the body's buffer and the process budget have room.
    pub(crate) fn take(&mut self, len: usize, settings: &BufferSettings) -> bool {
        let in_process = usize::try_from(self.gauge.get()).unwrap_or(0);
        if self.held + len > settings.body_buffer || in_process + len > settings.memory {
            return false;
        }
        self.held += len;
        self.gauge.add(len as i64);
        true
    }
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        self.gauge.sub(self.held as i64);
    }
}

/// The part of a body past its memory, in an unlinked temp file, read back in pieces for
/// each attempt to send the request.
pub(crate) struct BodyFile {
    file: TempFile,
    disk: IntGauge,
}

impl BodyFile {
    /// A new, empty file, counted as a spill.
    pub(crate) fn create(settings: &BufferSettings, metrics: &BufferMetrics) -> io::Result<Self> {
        let file = TempFile::create(&settings.temp_dir)?;
        metrics.bodies_spilled.inc();
        Ok(BodyFile {
            file,
            disk: metrics.disk.clone(),
        })
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.append(bytes)?;
        self.disk.add(bytes.len() as i64);
        Ok(())
    }

    /// Where each piece to read back is: (offset, length), in order.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = (u64, usize)> {
        let end = self.file.end();
        (0..end.div_ceil(PIECE)).map(move |i| {
            let at = i * PIECE;
            (at, (end - at).min(PIECE) as usize)
        })
    }

    pub(crate) fn read(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        self.file.read(at, len)
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        self.disk.sub(self.file.end() as i64);
    }
}

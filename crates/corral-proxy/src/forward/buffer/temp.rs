//! A spool's temp file: created under the configured directory with `O_TMPFILE` where the
//! file system has it (never a name), else created and unlinked at once (the `tempfile`
//! crate does both), so it vanishes with its last descriptor on any exit. Reads and writes
//! are positional and go to the page cache, as nginx's temp files do without `aio`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One append-only temp file; the space is reused once everything in it was read.
pub(super) struct TempFile {
    file: File,
    /// Where the next write goes; also the file's size.
    end: u64,
}

impl TempFile {
    /// A new temp file in `dir`, which is made first if it is missing (a runtime directory
    /// cleaned under a running corral, say).
    pub(super) fn create(dir: &Path) -> io::Result<TempFile> {
        let file = match tempfile::tempfile_in(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                tempfile::tempfile_in(dir)?
            }
            made => made?,
        };
        Ok(TempFile { file, end: 0 })
    }

    /// The file's size now.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// Appends `bytes`; returns where they are.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let at = self.end;
        self.file.write_all_at(bytes, at)?;
        self.end += bytes.len() as u64;
        Ok(at)
    }

    /// Reads `len` bytes at `at`.
    pub(super) fn read(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    /// Everything written was read: start again at 0 and give the space back.
    pub(super) fn reset(&mut self) -> io::Result<()> {
        self.end = 0;
        self.file.set_len(0)
    }
}

//! `[log] file`: a log file that rotates by size or day, keeps `keep` old files
//! (`name.1` newest), and reopens its path on request (SIGUSR1, after logrotate moved it).
//! It is written only by the log writer thread, whole lines per `write`: a batch in which a
//! rotation falls is taken line by line, so a rotation or reopen always falls between lines
//! and none is split or lost.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use corral_config::Rotation;

/// Buffer of the open file; the writer thread flushes after each batch of lines.
const BUFFER: usize = 64 * 1024;

/// One log file and its rotation state.
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    out: BufWriter<File>,
    /// Bytes in the current file.
    size: u64,
    /// The day (UTC, days since 1970) of the current file's first line.
    day: u64,
    /// Set by [`crate::LogGuard::reopen`]; taken before the next line.
    reopen: Arc<AtomicBool>,
    /// Whether a failed rotation was reported on stderr already: once is enough.
    rotate_failed: bool,
}

impl RotatingFile {
    /// Opens (appending to) `path`; fails with the path in the message.
    pub fn open(path: &Path, rotation: Rotation, reopen: Arc<AtomicBool>) -> io::Result<Self> {
        let (out, size) = open_append(path)?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            out,
            size,
            day: today(),
            reopen,
            rotate_failed: false,
        })
    }

    /// Closes the current file, shifts `name.N` to `name.N+1` (dropping the oldest) and
    /// starts an empty `name`.
    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        // Moved away (logrotate, before its SIGUSR1): there is nothing to shift; start anew.
        if !self.path.exists() {
            return self.reopen_now();
        }
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        // The oldest goes, and any beyond it left by a larger `keep` before.
        let mut n = self.rotation.keep;
        while std::fs::remove_file(numbered(n)).is_ok() {
            n += 1;
        }
        for n in (1..self.rotation.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.reopen_now()
    }

    fn reopen_now(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let (out, size) = open_append(&self.path)?;
        self.out = out;
        self.size = size;
        self.day = today();
        Ok(())
    }

    /// Whether the next line of `len` bytes starts a new file.
    fn due(&self, len: u64) -> bool {
        let full =
            matches!(self.rotation.max_size, Some(max) if self.size > 0 && self.size + len > max);
        full || self.day_over()
    }

    /// Whether `len` more bytes all go in the current file: no rotation falls within them.
    fn room_for(&self, len: u64) -> bool {
        let fits = self
            .rotation
            .max_size
            .is_none_or(|max| self.size + len <= max);
        fits && !self.day_over()
    }

    fn day_over(&self) -> bool {
        self.rotation.daily && self.size > 0 && today() != self.day
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_now()?;
        }
        // A rotation that fails (a full disk, a directory made read-only) keeps the line in
        // the current file rather than losing it; the next line tries again.
        if self.due(line.len() as u64) && self.rotate().is_err() && !self.rotate_failed {
            self.rotate_failed = true;
            eprintln!(
                "corral: cannot rotate {}; writing on in the current file",
                self.path.display()
            );
        }
        self.put(line)
    }

    /// Appends whole lines to the current file; the first ones of a file start its day.
    fn put(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.size == 0 {
            self.day = today();
        }
        self.out.write_all(lines)?;
        self.size += lines.len() as u64;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, lines: &[u8]) -> io::Result<usize> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_now()?;
        }
        // Nearly every batch ends before any rotation is due: one check and one copy for the
        // whole batch, where taking it line by line cost ~100 instructions a line to find
        // the line ends and check each.
        if self.room_for(lines.len() as u64) {
            self.put(lines)?;
            return Ok(lines.len());
        }
        for line in lines.split_inclusive(|b| *b == b'\n') {
            self.write_line(line)?;
        }
        Ok(lines.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn open_append(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })?;
    let size = file.metadata().map_or(0, |m| m.len());
    Ok((BufWriter::with_capacity(BUFFER, file), size))
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(dir: &Path) -> Vec<String> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).expect("dir") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            all.extend(text.lines().map(str::to_string));
        }
        all.sort();
        all
    }

    /// A log file in `dir` rotated at 100 bytes, keeping 50 old ones.
    fn files_of_100_bytes(dir: &Path, name: &str) -> (PathBuf, Rotation, RotatingFile) {
        let path = dir.join(name);
        let rotation = Rotation {
            max_size: Some(100),
            daily: false,
            keep: 50,
        };
        let file = RotatingFile::open(&path, rotation, Arc::default()).expect("open");
        (path, rotation, file)
    }

    #[test]
    fn rotation_by_size_keeps_every_line_until_keep_runs_out() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, rotation, mut file) = files_of_100_bytes(dir.path(), "corral.log");
        let sent: Vec<String> = (0..200).map(|i| format!("line {i:04}")).collect();
        // In batches, as the writer thread hands them over: each line is placed on its own.
        for batch in sent.chunks(7) {
            let text: String = batch.iter().map(|line| format!("{line}\n")).collect();
            file.write_all(text.as_bytes()).expect("write");
        }
        file.flush().expect("flush");
        let mut expected = sent.clone();
        expected.sort();
        assert_eq!(lines_in(dir.path()), expected);
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let len = entry.expect("entry").metadata().expect("meta").len();
            assert!(len <= 100, "a file of {len} bytes");
        }
        // A smaller keep drops the oldest files, never the newest lines.
        let rotation = Rotation {
            keep: 2,
            ..rotation
        };
        let mut file = RotatingFile::open(&path, rotation, Arc::default()).expect("open");
        for i in 0..30 {
            file.write_all(format!("more {i:04}\n").as_bytes())
                .expect("write");
        }
        file.flush().expect("flush");
        assert!(!dir.path().join("corral.log.3").exists());
        let current = std::fs::read_to_string(&path).expect("read");
        assert!(current.ends_with("more 0029\n"), "{current}");
    }

    #[test]
    fn a_batch_larger_than_the_limit_is_rotated_within() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, _, mut file) = files_of_100_bytes(dir.path(), "access.log");
        let sent: Vec<String> = (0..30).map(|i| format!("line {i:04}")).collect();
        let batch: String = sent.iter().map(|line| format!("{line}\n")).collect();
        file.write_all(batch.as_bytes()).expect("write");
        file.flush().expect("flush");
        assert_eq!(lines_in(dir.path()), sent);
        let files = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, 3, "300 bytes in files of at most 100");
    }

    #[test]
    fn a_file_moved_away_before_the_reopen_loses_no_line_when_it_is_full() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, _, mut file) = files_of_100_bytes(dir.path(), "access.log");
        let mut sent: Vec<String> = (0..9).map(|i| format!("line {i:04}")).collect();
        for line in &sent {
            file.write_all(format!("{line}\n").as_bytes())
                .expect("write");
        }
        // logrotate moved it; lines come before the SIGUSR1 and overflow the size.
        std::fs::rename(&path, dir.path().join("moved.log")).expect("mv");
        for i in 0..30 {
            let line = format!("late {i:04}");
            file.write_all(format!("{line}\n").as_bytes())
                .expect("write");
            sent.push(line);
        }
        file.flush().expect("flush");
        sent.sort();
        assert_eq!(lines_in(dir.path()), sent);
    }

    #[test]
    fn reopen_starts_a_new_file_where_the_old_one_was_moved_from() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("corral.log");
        let reopen = Arc::new(AtomicBool::new(false));
        let rotation = Rotation {
            max_size: None,
            daily: false,
            keep: 7,
        };
        let mut file = RotatingFile::open(&path, rotation, reopen.clone()).expect("open");
        file.write_all(b"before\n").expect("write");
        file.flush().expect("flush");
        std::fs::rename(&path, dir.path().join("moved.log")).expect("mv");
        file.write_all(b"still old\n").expect("write");
        reopen.store(true, Ordering::Release);
        file.write_all(b"after\n").expect("write");
        file.flush().expect("flush");
        let moved = std::fs::read_to_string(dir.path().join("moved.log")).expect("read");
        assert_eq!(moved, "before\nstill old\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "after\n");
    }
}

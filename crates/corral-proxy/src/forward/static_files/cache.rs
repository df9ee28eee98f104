//! Small files of a static route kept in memory, as nginx's `open_file_cache` keeps
//! descriptors, but checked on every request: a hit costs one `statx(2)` of the file's path
//! beneath the route's directory instead of `openat2`, `fstat`, `pread` and `close`, and
//! the answer's fields (`ETag`, `Last-Modified`, type, `Cache-Control`, length) come made.
//!
//! **Freshness.** An entry is served only while the path's `statx` (following symlinks, as
//! the open does) names the same file, unchanged: device, inode, size, and modification
//! and status-change times to the nanosecond. Rewriting a file in place changes its times;
//! replacing it (a deploy's rename) changes its inode; either sends the request to disk,
//! which reads the file again. A file changed within [`SETTLE`] of being read is not kept:
//! file times advance by the kernel's clock tick, so a write in the same tick as the read
//! would leave the times as they were (git's "racily clean" entries). An entry is only ever
//! the bytes of a file once opened beneath the root; a path that now leads elsewhere finds
//! another inode and goes to disk, where `openat2` refuses what leaves the root.
//!
//! **Bounds.** Files up to [`MAX_FILE`] (those sent in the head's write), and per proxy
//! thread and route at most [`MAX_BYTES`] of file bytes in [`MAX_ENTRIES`] entries; a full
//! cache drops an entry to make room. Each proxy thread has its own (no lock, nothing
//! shared between threads); a reload makes new routes and so new, empty caches.
//!
//! Requests that accept a precompressed coding (`Accept-Encoding` with `br`, `zstd` or
//! `gzip`) and range requests for other versions go to disk as before: the siblings are
//! looked for there.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::HeaderValue;
use rustix::fs::{AtFlags, Statx, StatxFlags};
use thread_local::ThreadLocal;

use super::fields;
use super::open::Root;

/// The largest file kept: the ones that go out in the head's write.
pub(super) const MAX_FILE: u64 = 64 << 10;
/// File bytes kept per proxy thread and route.
pub(super) const MAX_BYTES: usize = 8 << 20;
/// Entries kept per proxy thread and route.
pub(super) const MAX_ENTRIES: usize = 4096;
/// How long a file must have been left alone before it is kept.
pub(super) const SETTLE: Duration = Duration::from_secs(2);

/// What identifies a file's bytes: which file, its size and its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: (u32, u32),
    ino: u64,
    size: u64,
    modified: (i64, u32),
    changed: (i64, u32),
}

impl Stamp {
    fn of(st: &Statx) -> Stamp {
        Stamp {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            size: st.stx_size,
            modified: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            changed: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
        }
    }

    /// The later of the two times, as a `SystemTime`.
    fn last_touched(&self) -> SystemTime {
        let (secs, nanos) = self.modified.max(self.changed);
        let since = Duration::new(u64::try_from(secs).unwrap_or(0), nanos);
        UNIX_EPOCH + since
    }
}

const MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME);

/// One file kept: its bytes and the fields of its answers.
pub(super) struct Cached {
    stamp: Stamp,
    /// Its path under the root, for the check.
    relative: CString,
    pub(super) bytes: Bytes,
    pub(super) modified: SystemTime,
    pub(super) etag: Box<str>,
    pub(super) etag_value: HeaderValue,
    pub(super) last_modified: HeaderValue,
    pub(super) content_type: &'static str,
    pub(super) cache_control: Option<HeaderValue>,
    /// `Content-Length` of the whole file.
    pub(super) content_length: HeaderValue,
}

/// One proxy thread's entries, by request path.
#[derive(Default)]
struct Shelf {
    entries: HashMap<Box<str>, Arc<Cached>>,
    bytes: usize,
}

/// The small files of one static route, per proxy thread.
pub(super) struct FileCache {
    shelves: ThreadLocal<RefCell<Shelf>>,
    /// [`SETTLE`], but for tests.
    settle: Duration,
}

impl Default for FileCache {
    fn default() -> FileCache {
        FileCache {
            shelves: ThreadLocal::new(),
            settle: SETTLE,
        }
    }
}

impl FileCache {
    /// The entry for `path`, if there is one and its file is unchanged.
    pub(super) fn get(&self, root: &Root, path: &str) -> Option<Arc<Cached>> {
        let shelf = self.shelves.get()?;
        let cached = shelf.borrow().entries.get(path).cloned()?;
        let now = root
            .dir()
            .and_then(|dir| rustix::fs::statx(dir, &*cached.relative, AtFlags::empty(), MASK).ok())
            .map(|st| Stamp::of(&st));
        if now == Some(cached.stamp) {
            return Some(cached);
        }
        let mut shelf = shelf.borrow_mut();
        if let Some(gone) = shelf.entries.remove(path) {
            shelf.bytes -= gone.bytes.len();
        }
        None
    }

    /// Reads `file` (opened beneath the root as `relative`, for request `path`) whole and
    /// keeps it, when it is small and has settled; `None` when it is not kept.
    pub(super) fn fill(
        &self,
        root: &Root,
        path: &str,
        relative: &Path,
        file: &File,
        cache_control: Option<&HeaderValue>,
    ) -> Option<Arc<Cached>> {
        root.dir()?;
        let st = rustix::fs::statx(file.as_fd(), "", AtFlags::EMPTY_PATH, MASK).ok()?;
        let stamp = Stamp::of(&st);
        let len = stamp.size;
        if len > MAX_FILE || st.stx_mask & MASK.bits() != MASK.bits() {
            return None;
        }
        let touched = stamp.last_touched();
        let settled = SystemTime::now()
            .duration_since(touched)
            .is_ok_and(|d| d >= self.settle);
        if !settled {
            return None;
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0).ok()?;
        let modified =
            UNIX_EPOCH + Duration::new(u64::try_from(stamp.modified.0).ok()?, stamp.modified.1);
        let etag = fields::etag(len, modified, None);
        let cached = Arc::new(Cached {
            stamp,
            relative: CString::new(relative.as_os_str().as_bytes()).ok()?,
            bytes: Bytes::from(bytes),
            modified,
            etag_value: HeaderValue::from_str(&etag).ok()?,
            etag: etag.into(),
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified)).ok()?,
            content_type: fields::content_type(relative),
            cache_control: cache_control.cloned(),
            content_length: HeaderValue::from(len),
        });
        let mut shelf = self.shelves.get_or_default().borrow_mut();
        let size = cached.bytes.len();
        while !shelf.entries.is_empty()
            && (shelf.bytes + size > MAX_BYTES || shelf.entries.len() >= MAX_ENTRIES)
        {
            let Some(victim) = shelf.entries.keys().next().cloned() else {
                break;
            };
            if let Some(gone) = shelf.entries.remove(&victim) {
                shelf.bytes -= gone.bytes.len();
            }
        }
        if let Some(old) = shelf.entries.insert(path.into(), cached.clone()) {
            shelf.bytes -= old.bytes.len();
        }
        shelf.bytes += size;
        Some(cached)
    }
}

#[cfg(test)]
mod tests;

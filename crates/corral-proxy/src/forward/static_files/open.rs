//! Opening a static route's file by its checked relative path, never outside the root.
//! The root directory is opened once per config; each file is then one
//! `openat2(RESOLVE_BENEATH)` from it, which the kernel refuses for any `..` or symlink
//! that would leave the root, absolute symlinks included (Linux 5.6+). Where the kernel
//! lacks `openat2` (or under valgrind, which does not know it), the path is canonicalized
//! and compared with the canonical root instead.
//! The calls run on the proxy thread, as nginx's do without `aio threads`: a file in the
//! page cache opens in microseconds, where a trip to tokio's blocking pool per call cost
//! more than the whole answer of a small file. Files are opened non-blocking, so a FIFO
//! under the root cannot hold the thread.

use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A static route's directory, open.
pub(super) struct Root {
    /// The canonical path, for the fallback.
    path: PathBuf,
    /// The directory (`O_PATH`), if it could be opened.
    dir: Option<OwnedFd>,
    /// Whether `openat2` works here: files are then opened beneath `dir`.
    beneath: bool,
}

/// One open file and what `fstat` said of it.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) meta: Metadata,
    /// The path under the root it was opened by (its name decides its type and caching).
    pub(super) relative: PathBuf,
}

const FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

impl Root {
    /// The root at `path` (canonical). If the directory cannot be opened now, or the
    /// kernel has no `openat2`, every lookup takes the canonicalizing way.
    pub(super) fn new(path: &Path) -> Root {
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok();
        let beneath = dir.as_ref().is_some_and(|dir| {
            rustix::fs::openat2(dir, ".", OFlags::PATH, Mode::empty(), beneath()).is_ok()
        });
        Root {
            path: path.to_path_buf(),
            dir,
            beneath,
        }
    }

    /// The directory, open: the file cache checks its entries' paths from it, and is
    /// off without it.
    pub(super) fn dir(&self) -> Option<&OwnedFd> {
        self.dir.as_ref()
    }

    /// The regular file `relative` names, or its `index.html` when it is a directory;
    /// `None` when there is none under the root.
    pub(super) fn open(&self, relative: &Path) -> Option<Opened> {
        let opened = self.open_any(relative)?;
        if opened.meta.is_file() {
            return Some(opened);
        }
        if opened.meta.is_dir() {
            let index = relative.join("index.html");
            return self.open_any(&index).filter(|o| o.meta.is_file());
        }
        None
    }

    /// The regular file `relative` names, if there is one (a precompressed sibling).
    pub(super) fn open_file(&self, relative: &Path) -> Option<Opened> {
        self.open_any(relative).filter(|o| o.meta.is_file())
    }

    fn open_any(&self, relative: &Path) -> Option<Opened> {
        let file: File = match &self.dir {
            Some(dir) if self.beneath => {
                rustix::fs::openat2(dir, relative, FLAGS, Mode::empty(), beneath()).ok()?
            }
            _ => {
                let real = std::fs::canonicalize(self.path.join(relative)).ok()?;
                if !real.starts_with(&self.path) {
                    return None;
                }
                rustix::fs::open(&real, FLAGS, Mode::empty()).ok()?
            }
        }
        .into();
        let meta = file.metadata().ok()?;
        Some(Opened {
            file,
            meta,
            relative: relative.to_path_buf(),
        })
    }
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_leaving_the_root_are_not_followed() {
        let outside = tempfile::tempdir().expect("dir");
        std::fs::write(outside.path().join("secret"), "x").expect("write");
        let dir = tempfile::tempdir().expect("dir");
        let root_path = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir(root_path.join("css")).expect("mkdir");
        std::fs::write(root_path.join("css/a.css"), "a").expect("write");
        std::fs::write(root_path.join("css/index.html"), "i").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), root_path.join("out"))
            .expect("symlink");
        std::os::unix::fs::symlink("../../", root_path.join("css/up")).expect("symlink");
        std::os::unix::fs::symlink("css/a.css", root_path.join("in")).expect("symlink");
        let root = Root::new(&root_path);
        assert!(root.beneath, "openat2 is available on this kernel");
        for fallback in [false, true] {
            let root = if fallback {
                Root {
                    beneath: false,
                    ..Root::new(&root_path)
                }
            } else {
                Root::new(&root_path)
            };
            assert!(root.open(Path::new("out")).is_none(), "absolute out");
            assert!(root.open(Path::new("css/up/etc/passwd")).is_none(), "../..");
            assert!(root.open(Path::new("/etc/passwd")).is_none(), "absolute");
            assert!(root.open(Path::new("in")).is_some(), "relative, inside");
            assert!(root.open(Path::new("css")).is_some(), "index.html");
            assert!(root.open_file(Path::new("css")).is_none(), "a directory");
        }
    }
}

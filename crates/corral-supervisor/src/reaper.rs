//! Workers corral did not start itself: an app pool's template forks each worker through a
//! short-lived middle process, so the worker's parent becomes corral, a child subreaper.
//! Such a worker is watched through a pidfd (readable when it exits) and reaped with
//! `waitid` for its exit status, like a worker corral spawned. Being a subreaper also makes
//! corral the parent of whatever a worker's own children leave orphaned; [`Orphans`]
//! reaps those. One of the two modules of the crate allowed `unsafe` (with `spawn`): the
//! `pidfd_open` system call has no safe wrapper in the crates we use.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

/// Makes corral the parent of every orphan among its descendants, so a forked worker whose
/// middle process exits is corral's child.
pub(crate) fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// A file descriptor for process `pid` that turns readable when it exits.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the child behind `pidfd` exits, reaps it and returns how it ended.
pub(crate) async fn wait(pidfd: OwnedFd) -> io::Result<ExitStatus> {
    // SAFETY: `pidfd` is an open descriptor owned by the `AsyncFd` from here on, and an
    // `OwnedFd` always returns the same descriptor.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    loop {
        let mut guard = fd.readable().await?;
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        match waitid(Id::PIDFd(fd.get_ref().as_fd()), flags) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::from_raw((code & 0xff) << 8)),
            Ok(WaitStatus::Signaled(_, signal, core)) => {
                return Ok(ExitStatus::from_raw(
                    signal as i32 | if core { 0x80 } else { 0 },
                ))
            }
            Ok(_) => guard.clear_ready(),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reaps the orphans corral inherits as a subreaper: zombies among its children that no
/// one else waits for. A zombie is reaped only when `known` does not claim it (tokio waits
/// for the workers it spawned; pidfd watchers for forked ones) and it was already a zombie
/// at the previous call, so a child whose own waiter is about to reap it is left alone.
#[derive(Default)]
pub(crate) struct Orphans {
    seen: HashSet<i32>,
}

impl Orphans {
    /// One round; call it now and then (each second).
    pub(crate) fn reap(&mut self, known: impl Fn(u32) -> bool) {
        let mut seen = HashSet::new();
        // Each peek shows the first zombie child only: go on while we reap.
        for _ in 0..64 {
            let peek = waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            let pid = match peek {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => pid,
                _ => break,
            };
            let raw = pid.as_raw();
            if known(raw as u32) || !self.seen.contains(&raw) {
                seen.insert(raw);
                break;
            }
            let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
            tracing::debug!(pid = raw, "reaped an orphaned process");
        }
        self.seen = seen;
    }
}

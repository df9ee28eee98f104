//! `SIGUSR2`: starting a new corral binary on the listening sockets of this one. The new
//! process gets them as socket activation would give them (`LISTEN_FDS` from fd 3, through
//! [`LISTEN_PID_SHIM`]), plus one end of a socket pair as `$CORRAL_UPGRADE_FD` on which it
//! says `ready` once its workers are, or `failed: why`. Only then does the old master stop
//! accepting; until then, and whenever the new one fails, the old one serves as before.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::activation::LISTEN_PID_SHIM;

/// The variable naming the successor's end of the report socket.
pub const UPGRADE_FD_ENV: &str = "CORRAL_UPGRADE_FD";
/// The first fd socket activation passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Why an upgrade did not happen; the old master goes on serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The new binary could not be started.
    #[error("cannot start the new binary: {0}")]
    Spawn(std::io::Error),
    /// It said why it gave up.
    #[error("the new binary failed: {0}")]
    Failed(String),
    /// It ended before saying it was ready.
    #[error("the new binary exited before it was ready ({0})")]
    Exited(ExitStatus),
    /// It took too long.
    #[error("the new binary was not ready within {0:?}")]
    Timeout(Duration),
}

/// A new corral binary started on our listeners, not yet known to be ready.
pub struct Successor {
    child: Child,
    report: BufReader<UnixStream>,
    /// Its pid (the shim execs in place, so it is corral's).
    pub pid: u32,
}

impl Successor {
    /// Starts `exe args` (this process's own command line, normally) with `listeners` as
    /// fds 3.. and the report socket after them. The new process is not tied to this one
    /// (no death signal): it is meant to outlive it.
    pub fn spawn(exe: &Path, args: &[OsString], listeners: &[RawFd]) -> Result<Self, UpgradeError> {
        let (ours, theirs) = StdUnixStream::pair().map_err(UpgradeError::Spawn)?;
        ours.set_nonblocking(true).map_err(UpgradeError::Spawn)?;
        let report = UnixStream::from_std(ours).map_err(UpgradeError::Spawn)?;
        let mut sources: Vec<RawFd> = listeners.to_vec();
        sources.push(theirs.as_raw_fd());
        let count = listeners.len() as RawFd;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(LISTEN_PID_SHIM)
            .arg(exe)
            .args(args)
            .env("LISTEN_FDS", listeners.len().to_string())
            .env(UPGRADE_FD_ENV, (FIRST_FD + count).to_string())
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            // systemd's WATCHDOG_PID names this process; unset, the watchdog applies to
            // the successor once it is the main process.
            .env_remove("WATCHDOG_PID")
            .kill_on_drop(false);
        let above = FIRST_FD + sources.len() as RawFd;
        // SAFETY: runs between fork and exec, where only async-signal-safe calls are
        // allowed: fcntl and dup2, on fds copied in before fork; nothing is allocated (the
        // vector is only read) and errors are raw OS codes.
        unsafe {
            cmd.pre_exec(move || {
                // First move every source above the target range (a source may sit inside
                // it), then into place; dup2 clears close-on-exec on the targets only.
                let mut moved = [0 as RawFd; 64];
                if sources.len() > moved.len() {
                    return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
                }
                for (i, &fd) in sources.iter().enumerate() {
                    let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above);
                    if high < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    moved[i] = high;
                }
                for (i, &high) in moved[..sources.len()].iter().enumerate() {
                    if libc::dup2(high, FIRST_FD + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(UpgradeError::Spawn)?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        Ok(Successor {
            child,
            report: BufReader::new(report),
            pid,
        })
    }

    /// Waits until the successor says it serves (its pid), gives up, exits, or `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<u32, UpgradeError> {
        let mut line = String::new();
        let said = tokio::time::timeout(timeout, self.report.read_line(&mut line)).await;
        match said {
            Err(_) => Err(UpgradeError::Timeout(timeout)),
            Ok(Ok(_)) if line.trim() == "ready" => Ok(self.pid),
            Ok(Ok(_)) if !line.trim().is_empty() => Err(UpgradeError::Failed(
                line.trim().trim_start_matches("failed:").trim().to_string(),
            )),
            // End of stream or an error: it is gone (or going); say how it ended.
            Ok(_) => match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
                Ok(Ok(status)) => Err(UpgradeError::Exited(status)),
                _ => Err(UpgradeError::Failed(
                    "it closed its report socket without a word".into(),
                )),
            },
        }
    }

    /// Stops a successor that will not take over (SIGQUIT: a quick stop, its workers with
    /// it) and reaps it; SIGKILL if it is still there after `grace`.
    pub async fn abandon(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGQUIT);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Lets the successor go on alone; it is reparented when this process exits.
    pub fn release(self) {
        drop(self.child);
    }
}

/// The successor's end of the report socket.
pub struct SuccessorReport {
    stream: StdUnixStream,
}

impl SuccessorReport {
    /// The report socket, when this process was started by an upgrade (taken once: the
    /// variable is not read again after it).
    pub fn from_env() -> Option<Self> {
        static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let fd: RawFd = std::env::var(UPGRADE_FD_ENV).ok()?.parse().ok()?;
        if fd < FIRST_FD || TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        // Close-on-exec, so workers never inherit it; this also tells whether it is open.
        // SAFETY: fcntl on a descriptor number; it changes nothing when the fd is not open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: the fd is open, was placed by the previous corral's pre_exec and named in
        // the variable (which our workers never get); TAKEN makes this its only owner.
        let stream = unsafe { StdUnixStream::from_raw_fd(fd) };
        if stream.peer_addr().is_err() {
            // Not a connected socket: not ours to close either.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(stream);
            return None;
        }
        Some(SuccessorReport { stream })
    }

    /// Tells the old master this one serves; it then stops accepting.
    pub fn ready(mut self) {
        let _ = self.stream.write_all(b"ready\n");
    }

    /// Tells the old master why this one gives up; it goes on serving.
    pub fn failed(mut self, reason: &str) {
        let line = format!("failed: {}\n", reason.replace('\n', " "));
        let _ = self.stream.write_all(line.as_bytes());
    }
}

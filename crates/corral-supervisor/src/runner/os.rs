//! The small OS calls the runner makes on workers: signals and memory readings.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Signals a worker's whole process group; a group that is already gone is not an error.
pub(super) fn signal_group(pid: u32, signal: Signal) {
    if pid > 1 {
        let _ = killpg(Pid::from_raw(pid as i32), signal);
    }
}

/// Name of a signal number, for logs.
pub(super) fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal)
        .map(|s| s.as_str())
        .unwrap_or("unknown")
}

/// Resident set size of a process in bytes, from /proc; `None` if it is gone.
pub(super) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(999), "unknown");
    }
}

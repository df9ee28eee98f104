//! `sd_notify(3)` over `$NOTIFY_SOCKET`, through the `sd-notify` crate. Without the
//! variable (not under systemd) every call is a no-op, so callers never check.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends state changes to the service manager. Failures are logged once at debug: a
/// service manager that went away must not disturb serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    _private: (),
}

impl Notifier {
    /// The notifier of this process (reads `$NOTIFY_SOCKET` at each send, as sd_notify does).
    pub fn new() -> Self {
        Notifier { _private: () }
    }

    /// `READY=1` with a `STATUS=` line: startup (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=`: the line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253+ requires both for
    /// `Type=notify-reload`, and older ones accept them); `READY=1` must follow.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
        }
    }

    /// `STOPPING=1`: a stop has begun.
    pub fn stopping(&self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: the master's loops answered since the last ping.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// `MAINPID=`: after a binary upgrade the successor is the unit's main process.
    pub fn main_pid(&self, pid: u32) {
        send(&[NotifyState::MainPid(pid)]);
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC` (as sd_watchdog_enabled(3)
/// advises), when the watchdog is on for this process. `$WATCHDOG_PID`, when set, must name
/// this process; unset, the watchdog applies to whoever reads it.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

//! How a worker's end is handled: exits (logged with their reason, counted, and restarted
//! with backoff and the start limit when they were failures) and the timers that restart a
//! slot or kill a worker that outlived its `kill_timeout`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Exit, Policy, Timer};
use crate::backoff::HEALTHY_RUN;
use crate::worker::{ExitReason, WorkerId};

impl Policy {
    pub(super) fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::RestartDue { pool, slot } => {
                let Some(state) = self.pool_mut(pool) else {
                    return;
                };
                if let Some(s) = state.slots.get_mut(&slot) {
                    s.restart_pending = false;
                }
                self.ensure_slots(pool, now);
            }
            Timer::KillDeadline(id) => self.kill(id),
            Timer::HandOver(id) => self.begin_drain(id, None, now),
            Timer::StopDeadline => {
                let ids: Vec<WorkerId> = self
                    .pools
                    .iter()
                    .flat_map(|p| p.workers.iter().map(|w| w.id))
                    .collect();
                for id in ids {
                    self.kill(id);
                }
            }
        }
    }

    /// SIGKILL for a worker that outlived its `kill_timeout`.
    fn kill(&mut self, id: WorkerId) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &self.pools[p];
        let w = &pool.workers[i];
        tracing::warn!(
            event = "worker_kill",
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            "worker still running after kill_timeout; sending SIGKILL"
        );
        let pid = w.pid;
        self.signal(pid, Signal::SIGKILL);
    }

    pub(super) fn on_exit(
        &mut self,
        id: WorkerId,
        exit: &Exit,
        ran: Duration,
        stderr: &[String],
        now: Instant,
    ) {
        let stopping = self.stopping.is_some();
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let pool_id = pool.id;
        let w = pool.workers.remove(i);
        let reason = w.ending.unwrap_or(if stopping {
            ExitReason::Shutdown
        } else {
            ExitReason::Crash
        });
        let (code, signal, error) = match exit {
            Exit::Code(c) => (Some(*c), None, None),
            Exit::Signal(s) => (None, Some(*s), None),
            Exit::Error(e) => (None, None, Some(e.as_str())),
        };
        let ran_ms = ran.as_millis() as u64;
        if let Some(request) = &w.hung_on {
            // One event with the request and where the worker hung (a Python worker's
            // faulthandler writes its stack on SIGABRT).
            let stack = hang_stack(stderr);
            tracing::error!(event = "worker_exited", reason = reason.as_str(), pool = &*pool.name, worker = w.slot, pid = w.pid, request = &**request, exit_code = code, signal, ran_ms, stack = %stack, "worker killed for timeout; the stack it hung in");
        } else if reason.is_failure() {
            tracing::error!(event = "worker_exited", reason = reason.as_str(), pool = &*pool.name, worker = w.slot, pid = w.pid, exit_code = code, signal, ran_ms, error, stderr_tail = %stderr.join("\n"), "worker exited unexpectedly");
        } else {
            tracing::info!(
                event = "worker_exited",
                reason = reason.as_str(),
                pool = &*pool.name,
                worker = w.slot,
                pid = w.pid,
                exit_code = code,
                signal,
                ran_ms,
                "worker exited"
            );
        }
        if stopping {
            return;
        }
        self.metrics.restart(&pool.name, reason.as_str());
        let slot = pool.slots.entry(w.slot).or_default();
        slot.restarts += 1;
        if reason.is_failure() {
            let delay = slot.backoff.on_exit(ran);
            if !delay.is_zero() {
                slot.restart_pending = true;
            }
            if ran < HEALTHY_RUN && pool.count_failure(now) {
                return;
            }
            if !delay.is_zero() {
                tracing::info!(
                    event = "worker_backoff",
                    pool = &*pool.name,
                    worker = w.slot,
                    delay_ms = delay.as_millis() as u64,
                    "restarting after a delay"
                );
                let timer = Timer::RestartDue {
                    pool: pool_id,
                    slot: w.slot,
                };
                self.after(delay, timer);
            }
        }
        self.ensure_slots(pool_id, now);
    }
}

/// The part of a hung worker's last stderr lines that shows where it hung: from Python's
/// faulthandler header on (`Fatal Python error: Aborted`, then each thread's frames), or
/// every kept line when there is none.
fn hang_stack(stderr: &[String]) -> String {
    let start = stderr
        .iter()
        .rposition(|l| l.starts_with("Fatal Python error"))
        .unwrap_or(0);
    stderr[start..].join("\n")
}

#[cfg(test)]
mod hang_tests {
    use super::hang_stack;

    #[test]
    fn the_stack_starts_at_faulthandlers_header() {
        let lines: Vec<String> = [
            "GET / 200",
            "Fatal Python error: Aborted",
            "",
            "Current thread 0x1 (most recent call first):",
            "  File \"app.py\", line 8 in hang",
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        assert!(hang_stack(&lines).starts_with("Fatal Python error: Aborted\n"));
        assert!(hang_stack(&lines).ends_with("line 8 in hang"));
        let other = vec!["no stack here".to_string()];
        assert_eq!(hang_stack(&other), "no stack here");
    }
}

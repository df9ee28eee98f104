//! What operators ask for: reload, scale, start or stop one pool, stop everything (a
//! switch is in `lanes.rs`).

use std::time::{Duration, Instant};

use corral_config::{Config, MAX_WORKERS};
use nix::sys::signal::Signal;

use super::{Policy, Timer};
use crate::worker::{ExitReason, PoolId, State};
use crate::{Scale, StopMode};

impl Policy {
    /// Applies a new, valid config: new settings for each pool and a rolling replacement of
    /// every worker, which keeps serving until its replacement is ready. Pools no longer in
    /// the config drain away; new ones start.
    pub(super) fn reload(&mut self, config: &Config, now: Instant) {
        self.generation += 1;
        self.graceful_timeout = config.server.graceful_timeout;
        self.runtime_dir = config.server.runtime_dir.clone();
        for new in &config.pools {
            match self.pool_named(&new.name).and_then(|id| self.pool_mut(id)) {
                Some(pool) => {
                    pool.config = std::sync::Arc::new(new.clone());
                    // A pool stopped at run time stays stopped.
                    if pool.desired > 0 {
                        pool.desired = new.workers;
                    }
                }
                None => {
                    self.add_pool(new, 0);
                }
            }
        }
        for pool in &mut self.pools {
            if !config.pools.iter().any(|c| c.name == *pool.name) {
                pool.removed = true;
                pool.desired = 0;
            }
        }
        // A reload that leaves a route's traffic as it was keeps a switch made at run
        // time; so does one that leaves every pool getting traffic in place.
        self.reload_lanes(config, now);
        for id in self.pool_ids() {
            self.renew_pool(id);
            self.ensure_slots(id, now);
        }
        tracing::info!(
            event = "config_applied",
            generation = self.generation,
            "replacing every worker"
        );
    }

    /// Starts a pool's next generation: failures forgotten, every worker replaced rolling.
    fn renew_pool(&mut self, id: PoolId) {
        let mut starting = Vec::new();
        let Some(pool) = self.pool_mut(id) else {
            return;
        };
        pool.generation += 1;
        pool.clear_failures();
        for w in &mut pool.workers {
            match &w.state {
                // Started with the old config: start over with the new one.
                State::Starting { .. } if w.ending.is_none() => {
                    w.ending = Some(ExitReason::Reload);
                    starting.push(w.pid);
                }
                State::Ready { backend, .. } => {
                    backend.load.retire();
                    w.retiring = Some(ExitReason::Reload);
                }
                _ => {}
            }
        }
        for pid in starting {
            self.signal(pid, Signal::SIGTERM);
        }
    }

    /// Changes a pool's worker count, within `1..=MAX_WORKERS`.
    pub(super) fn scale(&mut self, pool: Option<&str>, to: Scale, now: Instant) {
        let id = match pool {
            Some(name) => self.pool_named(name),
            None => Some(self.primary()),
        };
        let Some(state) = id.and_then(|id| self.pool_mut(id)) else {
            tracing::warn!(pool, "scale: no such pool");
            return;
        };
        let desired = match to {
            Scale::By(delta) => i64::from(state.desired) + i64::from(delta),
            Scale::To(n) => i64::from(n),
        }
        .clamp(1, MAX_WORKERS) as u32;
        tracing::info!(
            event = "pool_scaled",
            pool = &*state.name,
            from = state.desired,
            to = desired,
            "scaling"
        );
        state.desired = desired;
        let id = state.id;
        self.ensure_slots(id, now);
    }

    /// Starts the workers of a stopped pool (its configured count).
    pub(super) fn start_pool(&mut self, name: &str, now: Instant) {
        let Some(pool) = self.pool_named(name).and_then(|id| self.pool_mut(id)) else {
            tracing::warn!(pool = name, "start: no such pool");
            return;
        };
        if pool.desired > 0 {
            return;
        }
        pool.desired = pool.config.workers;
        pool.clear_failures();
        tracing::info!(event = "pool_starting", pool = name, "starting pool");
        let id = pool.id;
        self.ensure_slots(id, now);
    }

    /// Drains and stops every worker of a pool; the active pool cannot be stopped.
    pub(super) fn stop_pool(&mut self, name: &str, now: Instant) {
        let Some(id) = self.pool_named(name) else {
            tracing::warn!(pool = name, "stop: no such pool");
            return;
        };
        if self.gets_traffic(id) {
            tracing::warn!(
                pool = name,
                "stop: a pool that gets traffic cannot be stopped; switch first"
            );
            return;
        }
        if let Some(pool) = self.pool_mut(id) {
            pool.desired = 0;
            tracing::info!(event = "pool_stopping", pool = name, "stopping pool");
        }
        self.ensure_slots(id, now);
    }

    pub(super) fn pool_name(&self, id: PoolId) -> Option<String> {
        self.pools
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.to_string())
    }

    /// Signals every worker to stop and sets the deadline after which they are killed.
    pub(super) fn begin_stop(&mut self, mode: StopMode, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!(event = "workers_stopping", mode = ?mode, "stopping all workers");
        let signal = match mode {
            StopMode::Graceful => Signal::SIGTERM,
            StopMode::Quick => Signal::SIGINT,
        };
        let mut longest = Duration::ZERO;
        let mut pids = Vec::new();
        for pool in &mut self.pools {
            longest = longest.max(pool.config.kill_timeout);
            for w in &mut pool.workers {
                if !matches!(w.state, State::Stopping { .. }) {
                    pids.push(w.pid);
                    w.state = State::Stopping { since: now };
                }
            }
        }
        for pid in pids {
            self.signal(pid, signal);
        }
        self.stopping = Some(mode);
        self.after(longest, Timer::StopDeadline);
    }
}

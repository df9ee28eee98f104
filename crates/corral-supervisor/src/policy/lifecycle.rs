//! A worker's life up to its end: filling slots, spawns, readiness, retirement, hangs and
//! draining. Exits and restarts are in `exit`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Action, Exit, Policy, SpawnOrder, Timer};
use crate::backoff::Backoff;
use crate::worker::{ExitReason, PoolId, State, Worker, WorkerId};
use corral_routes::{Address, Backend, BackendInfo};

impl Policy {
    /// Spawns a worker for every slot of `pool` that lacks one, and ends workers beyond
    /// `desired`.
    pub(super) fn ensure_slots(&mut self, pool: PoolId, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        let Some(state) = self.pools.iter().find(|p| p.id == pool) else {
            return;
        };
        if state.is_remote() {
            self.ensure_resolver(pool);
            return;
        }
        // Beyond the desired count (scale down, a pool stopped or removed): drain away.
        let extra: Vec<(WorkerId, u32, bool)> = state
            .workers
            .iter()
            .filter(|w| w.slot > state.desired && w.ending.is_none())
            .map(|w| (w.id, w.pid, matches!(w.state, State::Starting { .. })))
            .collect();
        for (id, pid, starting) in extra {
            if starting {
                self.end_starting(id, ExitReason::Scale);
                self.signal(pid, Signal::SIGTERM);
            } else {
                self.begin_drain(id, Some(ExitReason::Scale), now);
            }
        }
        let Some(state) = self.pools.iter().find(|p| p.id == pool) else {
            return;
        };
        if state.failed.is_some() {
            return;
        }
        let missing: Vec<u32> = (1..=state.desired)
            .filter(|slot| {
                !state
                    .workers
                    .iter()
                    .any(|w| w.slot == *slot && w.covers_slot())
            })
            .filter(|slot| !state.slots.get(slot).is_some_and(|s| s.restart_pending))
            .collect();
        for slot in missing {
            self.spawn(pool, slot, now);
        }
    }

    /// Records a new worker in `slot` and asks the runner to start it.
    fn spawn(&mut self, pool: PoolId, slot: u32, now: Instant) {
        let worker = WorkerId(self.next_worker);
        self.next_worker += 1;
        let runtime_dir = self.runtime_dir.clone();
        let Some(state) = self.pool_mut(pool) else {
            return;
        };
        state.slots.entry(slot).or_default();
        state.workers.push(Worker {
            id: worker,
            slot,
            generation: state.generation,
            pid: 0,
            addr: None,
            started: now,
            state: State::Starting { since: now },
            retiring: None,
            ending: None,
            hung_on: None,
        });
        let order = SpawnOrder {
            worker,
            pool,
            slot,
            config: state.config.clone(),
            runtime_dir,
        };
        self.actions.push(Action::Spawn(Box::new(order)));
    }

    pub(super) fn on_spawned(&mut self, id: WorkerId, pid: u32, addr: Address) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let w = &mut pool.workers[i];
        w.pid = pid;
        tracing::info!(event = "worker_spawned", pool = &*pool.name, worker = w.slot, pid, %addr, generation = w.generation, "worker spawned");
        w.addr = Some(addr);
    }

    /// A start that failed before a process existed takes the same path as a crash.
    pub(super) fn on_spawn_failed(&mut self, id: WorkerId, error: String, now: Instant) {
        if let Some((p, i)) = self.find(id) {
            let pool = &mut self.pools[p];
            let w = &mut pool.workers[i];
            tracing::error!(event = "worker_spawn_failed", pool = &*pool.name, worker = w.slot, command = ?pool.config.command, error = %error, "cannot start the worker");
            w.ending = Some(ExitReason::SpawnFailed);
        }
        self.on_exit(id, &Exit::Error(error), Duration::ZERO, &[], now);
    }

    pub(super) fn on_ready(&mut self, id: WorkerId, now: Instant) {
        let Some((p, i)) = self.find(id) else { return };
        let (max_requests, jitter) = {
            let config = &self.pools[p].config;
            (config.max_requests, config.max_requests_jitter)
        };
        let max_requests = match max_requests {
            0 => 0,
            n => n + self.jitter(jitter),
        };
        let pool = &mut self.pools[p];
        let State::Starting { since } = pool.workers[i].state else {
            return;
        };
        let replacement = pool.started_in(now.saturating_duration_since(since));
        let w = &mut pool.workers[i];
        let (State::Starting { since }, Some(addr)) = (&w.state, &w.addr) else {
            return;
        };
        if w.ending.is_some() {
            return;
        }
        let since = *since;
        let backend = Arc::new(Backend::new(BackendInfo {
            id,
            pool: pool.name.clone(),
            worker: w.slot,
            pid: w.pid,
            addr: addr.clone(),
            started: since,
            max_requests,
            recycle: corral_routes::Recycle::new(max_requests, replacement, now),
        }));
        let watch = pool
            .config
            .health
            .interval
            .is_some()
            .then(|| Action::WatchHealth {
                worker: id,
                backend: backend.clone(),
                health: pool.config.health.clone(),
                path: pool.config.health_path.clone(),
                counters: pool.metrics.health.clone(),
            });
        w.state = State::Ready {
            since: now,
            backend,
        };
        let (slot, generation) = (w.slot, w.generation);
        tracing::info!(
            event = "worker_ready",
            pool = &*pool.name,
            worker = slot,
            pid = w.pid,
            startup_ms = now.saturating_duration_since(since).as_millis() as u64,
            "worker ready"
        );
        if let Some(s) = pool.slots.get_mut(&slot) {
            s.backoff = Backoff::default();
        }
        // A current worker is ready: whatever else serves this slot hands over to it, but a
        // worker replaced ahead of `max_requests` serves on until the proxy counts its limit
        // (then `retire` hands over): the pool has one worker more meanwhile.
        if generation == pool.generation {
            let ahead: Vec<(WorkerId, Duration)> = pool
                .workers
                .iter()
                .filter(|o| o.slot == slot && o.id != id && o.replaced_ahead())
                .filter_map(|o| {
                    let b = o.backend()?;
                    Some((o.id, b.time_to_limit(now)))
                })
                .collect();
            let others: Vec<WorkerId> = pool
                .workers
                .iter()
                .filter(|o| o.slot == slot && o.id != id && o.routable())
                .filter(|o| !o.replaced_ahead())
                .map(|o| o.id)
                .collect();
            for (other, wait) in ahead {
                self.after(wait, Timer::HandOver(other));
            }
            for other in others {
                self.begin_drain(other, None, now);
            }
        }
        self.actions.extend(watch);
    }

    pub(super) fn on_start_timeout(&mut self, id: WorkerId, why: &str) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let w = &mut pool.workers[i];
        if !matches!(w.state, State::Starting { .. }) || w.ending.is_some() {
            return;
        }
        tracing::warn!(event = "worker_start_timeout", pool = &*pool.name, worker = w.slot, pid = w.pid, last_probe = %why, "worker not ready within start_timeout ({:?}); killing it", pool.config.start_timeout);
        w.ending = Some(ExitReason::StartTimeout);
        let pid = w.pid;
        self.signal(pid, Signal::SIGKILL);
    }

    pub(super) fn on_hung(&mut self, id: WorkerId, request: &str, now: Instant) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let (kill_timeout, timeout, pool_id) =
            (pool.config.kill_timeout, pool.config.timeout, pool.id);
        let w = &mut pool.workers[i];
        if !w.routable() || w.ending.is_some() {
            return;
        }
        tracing::error!(
            event = "worker_timeout",
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            request,
            timeout_ms = timeout.as_millis() as u64,
            "worker hung on a request; sending SIGABRT"
        );
        w.ending = Some(ExitReason::Timeout);
        w.hung_on = Some(request.to_string());
        w.state = State::Stopping { since: now };
        let pid = w.pid;
        self.signal(pid, Signal::SIGABRT);
        self.after(kill_timeout, Timer::KillDeadline(id));
        self.ensure_slots(pool_id, now);
    }

    /// Starts the replacement of a worker nearing `max_requests`; the worker keeps its full
    /// share until the proxy counts its limit (then it is retiring) or the replacement is
    /// ready (then it drains), whichever comes first.
    pub(super) fn replace_ahead(&mut self, id: WorkerId, now: Instant) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let pool_id = pool.id;
        let w = &mut pool.workers[i];
        if !w.routable() || w.retiring.is_some() {
            return;
        }
        let (served, limit) = w
            .backend()
            .map_or((0, 0), |b| (b.load.served(), b.info.max_requests));
        tracing::info!(
            event = "worker_retiring",
            reason = ExitReason::MaxRequests.as_str(),
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            served,
            limit,
            "starting the replacement ahead of the limit"
        );
        w.retiring = Some(ExitReason::MaxRequests);
        self.ensure_slots(pool_id, now);
    }

    /// Marks a ready worker for replacement: it serves on until its replacement is ready.
    pub(super) fn retire(&mut self, id: WorkerId, reason: ExitReason, now: Instant) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let pool_id = pool.id;
        let w = &mut pool.workers[i];
        if !w.routable() {
            return;
        }
        if w.retiring.is_some() {
            // Replaced ahead and now at its limit: hand over if the replacement is ready.
            let slot = w.slot;
            let successor_ready = pool
                .workers
                .iter()
                .any(|o| o.slot == slot && o.id != id && o.routable() && o.retiring.is_none());
            if successor_ready {
                self.begin_drain(id, None, now);
            }
            return;
        }
        let served = w.backend().map_or(0, |b| b.load.served());
        tracing::info!(
            event = "worker_retiring",
            reason = reason.as_str(),
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            served,
            "replacing worker"
        );
        w.retiring = Some(reason);
        if let Some(b) = w.backend() {
            b.load.retire();
        }
        self.ensure_slots(pool_id, now);
    }

    pub(super) fn on_memory(&mut self, samples: &[(WorkerId, u64)], now: Instant) {
        for &(id, rss) in samples {
            let Some((p, i)) = self.find(id) else {
                continue;
            };
            let pool = &self.pools[p];
            let w = &pool.workers[i];
            let Some(limit) = pool.config.max_memory.filter(|limit| rss > *limit) else {
                continue;
            };
            if !w.routable() || w.retiring.is_some() {
                continue;
            }
            tracing::warn!(
                event = "worker_over_memory",
                pool = &*pool.name,
                worker = w.slot,
                pid = w.pid,
                rss,
                limit,
                "worker over max_memory"
            );
            self.retire(id, ExitReason::MaxMemory, now);
        }
    }

    /// Takes a ready worker out of the routing table and stops it once its requests finish.
    pub(super) fn begin_drain(&mut self, id: WorkerId, reason: Option<ExitReason>, now: Instant) {
        let within = self.graceful_timeout;
        let Some((p, i)) = self.find(id) else { return };
        let w = &mut self.pools[p].workers[i];
        let State::Ready { backend, .. } = &w.state else {
            return;
        };
        let backend = backend.clone();
        let why = reason.or(w.retiring).unwrap_or(ExitReason::Reload);
        w.ending = Some(why);
        w.state = State::Draining {
            since: now,
            backend: backend.clone(),
        };
        self.actions.push(Action::WatchDrain {
            worker: id,
            backend,
            within,
            why,
        });
    }

    pub(super) fn on_drained(&mut self, id: WorkerId, now: Instant) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let kill_timeout = pool.config.kill_timeout;
        let w = &mut pool.workers[i];
        let State::Draining { backend, .. } = &w.state else {
            return;
        };
        tracing::info!(
            event = "worker_drained",
            reason = w.ending.map(|r| r.as_str()),
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            served = backend.load.served(),
            limit = backend.info.max_requests,
            "worker drained; stopping it"
        );
        w.state = State::Stopping { since: now };
        let pid = w.pid;
        self.signal(pid, Signal::SIGTERM);
        self.after(kill_timeout, Timer::KillDeadline(id));
    }

    /// Marks a worker that has not turned ready as ended on purpose.
    pub(super) fn end_starting(&mut self, id: WorkerId, reason: ExitReason) {
        if let Some((p, i)) = self.find(id) {
            self.pools[p].workers[i].ending = Some(reason);
        }
    }
}

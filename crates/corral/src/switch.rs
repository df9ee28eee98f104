//! `corral switch POOL` and `corral switch --weights blue=90,green=10`: moves traffic only
//! to pools that have shown they can take it. Each pool that gains a share is started if it
//! is not running; every one of its workers must be ready, pass a health check made now
//! (`GET health.path`, 2xx) and, with active checks, be in rotation; every `smoke` check
//! must get its status. Then new requests go where asked with one store of the routing
//! table, and a pool left without a share drains (requests and WebSockets, up to
//! `graceful_timeout`) and stops, or stays warm with `routing.keep_previous`. A switch that
//! fails any step leaves traffic where it was and says why. A switch that stands is
//! recorded in the state directory, so it outlives a restart (`routing_state`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use corral_config::{Config, Pool, Rollback, Traffic};
use corral_supervisor::ready::{probe_within, status_of};
use corral_supervisor::{Backend, Supervisor};
use corral_telemetry::Metrics;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often the switch looks at the pool's workers while it waits for them.
const POLL: Duration = Duration::from_millis(50);
/// How long requests that read the old routing table have to claim a worker of the old
/// pool before its drain begins: one of them must not find it stopped.
const FLIP_GRACE: Duration = Duration::from_millis(250);

use corral_control::{Answer, Refusal, Reply, Switched};

/// A switch under way, which answers its caller itself (after the flip) and then, with a
/// rollback window, watches the new pool until the window is over.
pub type Switching<'a> = Option<Pin<Box<dyn Future<Output = ()> + 'a>>>;

/// What one switch needs to know, taken from the config when it is asked for.
pub struct Plan {
    from: Traffic,
    to: Traffic,
    /// The pools whose share grows: they are checked first and watched after.
    gaining: Vec<Arc<Pool>>,
    keep_previous: bool,
    rollback: Option<Rollback>,
    /// The config the switch was asked under, for the record it leaves.
    config: Arc<Config>,
}

impl Plan {
    /// The plan for sending traffic where `to` says instead of `from` (where it goes now,
    /// which a run-time switch may have changed); an error when there is nothing to do or
    /// a pool does not exist.
    pub fn new(config: &Config, from: Traffic, to: Traffic) -> Result<Plan, Vec<String>> {
        let unknown: Vec<String> = to
            .pools()
            .into_iter()
            .filter_map(|name| corral_config::unknown_pool(name, &config.pools))
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        if to == from {
            return Err(vec![format!("traffic already goes to {to}")]);
        }
        let gaining = config
            .pools
            .iter()
            .filter(|p| to.share(&p.name) > from.share(&p.name))
            .map(|p| Arc::new(p.clone()))
            .collect();
        Ok(Plan {
            from,
            to,
            gaining,
            keep_previous: config.routing.keep_previous,
            rollback: config.routing.rollback,
            config: Arc::new(config.clone()),
        })
    }

    /// The pools `a` sends requests to and `b` does not.
    fn left_out(a: &Traffic, b: &Traffic) -> Vec<String> {
        a.pools()
            .into_iter()
            .filter(|p| b.share(p) == 0.0)
            .map(str::to_string)
            .collect()
    }

    /// Runs the switch, answers `reply`, and watches the rollback window if there is one.
    pub async fn run(
        self,
        supervisor: &Supervisor,
        metrics: Arc<Metrics>,
        reply: oneshot::Sender<Reply>,
    ) {
        let answer = self.switch(supervisor).await;
        let switched = answer.is_ok();
        metrics.switch(if switched { "switched" } else { "refused" });
        if switched {
            crate::routing_state::record(&self.config, &self.to, "switch");
        }
        let _ = reply.send(answer);
        if !switched {
            return;
        }
        match self.rollback {
            Some(rollback) => self.watch(supervisor, &metrics, rollback).await,
            None => {
                self.retire(supervisor, &Self::left_out(&self.from, &self.to))
                    .await
            }
        }
    }

    /// Pools traffic has just left drain and stop, unless kept warm; requests that read the
    /// table before the flip get `FLIP_GRACE` to claim one of their workers.
    async fn retire(&self, supervisor: &Supervisor, pools: &[String]) {
        if !self.keep_previous && !pools.is_empty() {
            tokio::time::sleep(FLIP_GRACE).await;
            for pool in pools {
                supervisor.stop_pool(pool.clone());
            }
        }
    }

    /// Within the window, a pool that gained a share and answers too many 5xx or has no
    /// backend in rotation gives the traffic back to where it went before (a canary's
    /// weights too); the pools that lost their share are kept warm until then.
    async fn watch(&self, supervisor: &Supervisor, metrics: &Metrics, rollback: Rollback) {
        let watched: Vec<_> = self
            .gaining
            .iter()
            .map(|p| {
                let m = metrics.pool(&p.name);
                let at_flip = m.answered();
                (p.name.as_str(), m, at_flip)
            })
            .collect();
        let until = Instant::now() + rollback.window;
        let reason = 'watch: loop {
            if Instant::now() >= until {
                break None;
            }
            tokio::time::sleep(POLL).await;
            let table = supervisor.routes.load();
            for (name, pool_metrics, (total_at_flip, errors_at_flip)) in &watched {
                let (total, errors) = pool_metrics.answered();
                let (total, errors) = (total - total_at_flip, errors - errors_at_flip);
                let ratio = errors as f64 / total.max(1) as f64;
                if total >= rollback.min_requests && ratio > rollback.error_rate {
                    break 'watch Some(format!(
                        "{name}: {errors} of {total} answers 5xx ({:.1}%, above {:.1}%)",
                        100.0 * ratio,
                        100.0 * rollback.error_rate
                    ));
                }
                let in_rotation = table
                    .pool(name)
                    .is_some_and(|r| r.backends.iter().any(|b| b.health.in_rotation(&mut None)));
                if !in_rotation {
                    break 'watch Some(format!("{name} has no backend in rotation"));
                }
            }
        };
        let Some(why) = reason else {
            tracing::info!(
                event = "rollback_window_passed",
                to = %self.to,
                "no rollback within the window; the switch stands"
            );
            self.retire(supervisor, &Self::left_out(&self.from, &self.to))
                .await;
            return;
        };
        tracing::error!(event = "rolled_back", from = %self.to, to = %self.from, reason = %why, "switch rolled back");
        metrics.rolled_back();
        supervisor.switch(self.from.clone(), "rollback");
        crate::routing_state::record(&self.config, &self.from, "rollback");
        self.retire(supervisor, &Self::left_out(&self.to, &self.from))
            .await;
    }

    async fn switch(&self, supervisor: &Supervisor) -> Reply {
        let (from, to) = (&self.from, &self.to);
        tracing::info!(event = "switch_started", from = %from, to = %to, "switch requested; checking the pools that gain traffic");
        let started = Instant::now();
        for pool in &self.gaining {
            supervisor.start_pool(pool.name.clone());
        }
        let mut workers = 0;
        for pool in &self.gaining {
            let checked = match wait_ready(supervisor, pool).await {
                Ok(backends) => check(pool, &backends).await.map(|()| backends.len()),
                Err(e) => Err(e),
            };
            match checked {
                Ok(n) => workers += n,
                Err(why) => {
                    let why = format!("switch to {to} refused: {why}; traffic stays with {from}");
                    tracing::error!(event = "switch_failed", from = %from, to = %to, pool = %pool.name, reason = %why, "switch refused");
                    if !self.keep_previous {
                        for p in self.gaining.iter().filter(|p| from.share(&p.name) == 0.0) {
                            supervisor.stop_pool(p.name.clone());
                        }
                    }
                    return Err(Refusal::Refused(vec![why]));
                }
            }
        }
        supervisor.switch(to.clone(), "switch");
        let flipped = Instant::now() + Duration::from_secs(5);
        while supervisor.routes.load().traffic() != *to && Instant::now() < flipped {
            tokio::time::sleep(POLL).await;
        }
        let took_ms = started.elapsed().as_millis() as u64;
        let left = Self::left_out(from, to);
        tracing::info!(event = "switched", from = %from, to = %to, workers, took_ms, previous_kept = self.keep_previous, "traffic switched");
        let previous = match (left.is_empty(), self.keep_previous, self.rollback) {
            (true, _, _) => "every pool keeps a share".to_string(),
            (false, true, _) => "kept warm".to_string(),
            (false, false, Some(rb)) => format!(
                "kept warm for the {:?} rollback window, then stopped",
                rb.window
            ),
            (false, false, None) => "draining, then stopped".to_string(),
        };
        Ok(Answer::Switched(Switched {
            from: from.to_string(),
            to: to.to_string(),
            workers,
            took_ms,
            left,
            previous,
        }))
    }
}

/// Waits until every worker of `pool` is ready; returns their routing entries.
async fn wait_ready(supervisor: &Supervisor, pool: &Pool) -> Result<Vec<Arc<Backend>>, String> {
    let name = pool.name.as_str();
    let ready_within = pool.start_timeout + Duration::from_secs(5);
    let deadline = Instant::now() + ready_within;
    loop {
        let status = supervisor.status.load();
        let view = status.pools.iter().find(|p| &*p.name == name);
        if let Some(failed) = view.and_then(|p| p.failed.as_ref()) {
            return Err(format!("pool {name} failed: {failed}"));
        }
        let table = supervisor.routes.load();
        let backends = table
            .pool(name)
            .map(|r| r.backends.clone())
            .unwrap_or_default();
        let wanted = pool.workers as usize;
        if view.is_some_and(|p| p.desired > 0) && backends.len() >= wanted.max(1) {
            return Ok(backends);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} of {wanted} workers of {name} ready after {ready_within:?}",
                backends.len(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The health check of every worker, then the smoke checks, spread over the workers.
async fn check(pool: &Pool, backends: &[Arc<Backend>]) -> Result<(), String> {
    let timeout = pool.health.timeout;
    for b in backends {
        if let Err(why) = probe_within(
            corral_config::Ready::Http,
            &b.addr,
            &pool.health_path,
            timeout,
        )
        .await
        {
            return Err(format!(
                "health check GET {} on {} worker {} ({}): {why}",
                pool.health_path, pool.name, b.worker, b.addr
            ));
        }
        if !b.health.in_rotation(&mut None) {
            return Err(format!(
                "{} worker {} ({}) is out of rotation (failed health checks or ejected)",
                pool.name, b.worker, b.addr
            ));
        }
    }
    for (i, smoke) in pool.smoke.iter().enumerate() {
        let b = &backends[i % backends.len()];
        match status_of(&b.addr, &smoke.path, timeout).await {
            Ok(status) if status == smoke.status => {}
            Ok(status) => {
                return Err(format!(
                    "smoke check GET {} on {} worker {} answered {status}, expected {}",
                    smoke.path, pool.name, b.worker, smoke.status
                ))
            }
            Err(why) => {
                return Err(format!(
                    "smoke check GET {} on {} worker {}: {why}",
                    smoke.path, pool.name, b.worker
                ))
            }
        }
    }
    Ok(())
}

/// Starts the switch `request` asks for, unless one is under way or it makes no sense.
pub fn begin<'a>(
    switching: &mut Switching<'a>,
    config: &Config,
    supervisor: &'a Supervisor,
    metrics: &Arc<Metrics>,
    to: Traffic,
    reply: oneshot::Sender<Reply>,
) {
    if switching.is_some() {
        let _ = reply.send(Err(Refusal::Refused(vec![
            "a switch is already under way".into()
        ])));
        return;
    }
    let from = supervisor.routes.load().traffic();
    match Plan::new(config, from, to) {
        Ok(plan) => *switching = Some(Box::pin(plan.run(supervisor, metrics.clone(), reply))),
        Err(e) => {
            let _ = reply.send(Err(Refusal::Refused(e)));
        }
    }
}

/// Resolves when the switch under way (and its rollback window) ends; never while none is.
pub async fn finished(switching: &mut Switching<'_>) {
    match switching {
        Some(future) => {
            future.await;
            *switching = None;
        }
        None => std::future::pending().await,
    }
}

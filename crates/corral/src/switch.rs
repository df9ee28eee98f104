//! `corral switch POOL`: moves traffic to another pool only once it has shown it can take
//! it. The target is started if it is not running; every one of its workers must be ready,
//! pass a health check made now (`GET health.path`, 2xx) and, with active checks, be in
//! rotation; every `smoke` check must get its status. Then new requests go to it with one
//! store of the routing table, and the pool that was active drains (requests and WebSockets,
//! up to `graceful_timeout`) and stops, or stays warm with `routing.keep_previous`. A switch
//! that fails any step leaves the old pool serving everything and says why.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use corral_config::{Config, Pool, Rollback};
use corral_supervisor::ready::{probe_within, status_of};
use corral_supervisor::{Backend, Supervisor};
use corral_telemetry::Metrics;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often the switch looks at the pool's workers while it waits for them.
const POLL: Duration = Duration::from_millis(50);
/// How long requests that read the old routing table have to claim a worker of the old
/// pool before its drain begins: one of them must not find it stopped.
const FLIP_GRACE: Duration = Duration::from_millis(250);

/// The answer to a control request.
type Reply = corral_proxy::Reply;

/// A switch under way, which answers its caller itself (after the flip) and then, with a
/// rollback window, watches the new pool until the window is over.
pub type Switching<'a> = Option<Pin<Box<dyn Future<Output = ()> + 'a>>>;

/// What one switch needs to know, taken from the config when it is asked for.
pub struct Plan {
    from: String,
    to: Arc<Pool>,
    keep_previous: bool,
    rollback: Option<Rollback>,
    /// How long the target's workers may take to be ready.
    ready_within: Duration,
}

impl Plan {
    /// The plan for switching `config`'s active pool (`active`, which a run-time switch may
    /// have changed) to `target`; an error when there is nothing to do or no such pool.
    pub fn new(config: &Config, active: &str, target: &str) -> Result<Plan, Vec<String>> {
        let Some(pool) = config.pools.iter().find(|p| p.name == target) else {
            let names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
            return Err(vec![format!(
                "no pool is named {target:?}; the pools are: {}",
                names.join(", ")
            )]);
        };
        if target == active {
            return Err(vec![format!("{target} is already the active pool")]);
        }
        Ok(Plan {
            from: active.to_string(),
            to: Arc::new(pool.clone()),
            keep_previous: config.routing.keep_previous,
            rollback: config.routing.rollback,
            ready_within: pool.start_timeout + Duration::from_secs(5),
        })
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
        let _ = reply.send(answer);
        if !switched {
            return;
        }
        match self.rollback {
            Some(rollback) => self.watch(supervisor, &metrics, rollback).await,
            None => self.retire(supervisor, &self.from).await,
        }
    }

    /// The pool traffic has just left drains and stops, unless it is kept warm; requests
    /// that read the table before the flip get `FLIP_GRACE` to claim one of its workers.
    async fn retire(&self, supervisor: &Supervisor, pool: &str) {
        if !self.keep_previous {
            tokio::time::sleep(FLIP_GRACE).await;
            supervisor.stop_pool(pool.to_string());
        }
    }

    /// Within the window, a new pool that answers too many 5xx or has no backend in
    /// rotation gives the traffic back; the previous pool is kept warm until then.
    async fn watch(&self, supervisor: &Supervisor, metrics: &Metrics, rollback: Rollback) {
        let target = self.to.name.as_str();
        let pool_metrics = metrics.pool(target);
        let (total_at_flip, errors_at_flip) = pool_metrics.answered();
        let until = Instant::now() + rollback.window;
        let reason = loop {
            if Instant::now() >= until {
                break None;
            }
            tokio::time::sleep(POLL).await;
            let (total, errors) = pool_metrics.answered();
            let (total, errors) = (total - total_at_flip, errors - errors_at_flip);
            let ratio = errors as f64 / total.max(1) as f64;
            if total >= rollback.min_requests && ratio > rollback.error_rate {
                break Some(format!(
                    "{errors} of {total} answers 5xx ({:.1}%, above {:.1}%)",
                    100.0 * ratio,
                    100.0 * rollback.error_rate
                ));
            }
            let in_rotation = supervisor
                .routes
                .load()
                .pool(target)
                .is_some_and(|r| r.backends.iter().any(|b| b.health.in_rotation(&mut None)));
            if !in_rotation {
                break Some(format!("{target} has no backend in rotation"));
            }
        };
        let Some(why) = reason else {
            tracing::info!(
                event = "rollback_window_passed",
                pool = target,
                "no rollback within the window; the switch stands"
            );
            self.retire(supervisor, &self.from).await;
            return;
        };
        tracing::error!(event = "rolled_back", from = target, to = %self.from, reason = %why, "switch rolled back");
        metrics.rolled_back();
        supervisor.switch(self.from.clone());
        self.retire(supervisor, target).await;
    }

    async fn switch(&self, supervisor: &Supervisor) -> Reply {
        let target = self.to.name.clone();
        tracing::info!(event = "switch_started", from = %self.from, to = %target, "switch requested; checking the target pool");
        let started = Instant::now();
        supervisor.start_pool(target.clone());
        let checked = match self.wait_ready(supervisor).await {
            Ok(backends) => self.check(&backends).await.map(|()| backends.len()),
            Err(e) => Err(e),
        };
        let workers = match checked {
            Ok(n) => n,
            Err(why) => {
                let why = format!(
                    "switch to {target} refused: {why}; {} keeps all traffic",
                    self.from
                );
                tracing::error!(event = "switch_failed", from = %self.from, to = %target, reason = %why, "switch refused");
                if !self.keep_previous {
                    supervisor.stop_pool(target);
                }
                return Err(vec![why]);
            }
        };
        supervisor.switch(target.clone());
        let flipped = Instant::now() + Duration::from_secs(5);
        while supervisor.routes.load().active.name.as_ref() != target.as_str()
            && Instant::now() < flipped
        {
            tokio::time::sleep(POLL).await;
        }
        let took_ms = started.elapsed().as_millis() as u64;
        tracing::info!(event = "switched", from = %self.from, to = %target, workers, took_ms, previous_kept = self.keep_previous, "traffic switched");
        Ok(json!({
            "from": self.from,
            "to": target,
            "workers": workers,
            "took_ms": took_ms,
            "previous": match (self.keep_previous, self.rollback) {
                (true, _) => "kept warm".to_string(),
                (false, Some(rb)) => format!("kept warm for the {:?} rollback window, then stopped", rb.window),
                (false, None) => "draining, then stopped".to_string(),
            },
        }))
    }

    /// Waits until every worker of the target is ready; returns their routing entries.
    async fn wait_ready(&self, supervisor: &Supervisor) -> Result<Vec<Arc<Backend>>, String> {
        let name = self.to.name.as_str();
        let deadline = Instant::now() + self.ready_within;
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
            let wanted = self.to.workers as usize;
            if view.is_some_and(|p| p.desired > 0) && backends.len() >= wanted.max(1) {
                return Ok(backends);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} of {wanted} workers of {name} ready after {:?}",
                    backends.len(),
                    self.ready_within
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The health check of every worker, then the smoke checks, spread over the workers.
    async fn check(&self, backends: &[Arc<Backend>]) -> Result<(), String> {
        let pool = &self.to;
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
}

/// Starts the switch `request` asks for, unless one is under way or it makes no sense.
pub fn begin<'a>(
    switching: &mut Switching<'a>,
    config: &Config,
    supervisor: &'a Supervisor,
    metrics: &Arc<Metrics>,
    target: String,
    reply: oneshot::Sender<Reply>,
) {
    if switching.is_some() {
        let _ = reply.send(Err(vec!["a switch is already under way".into()]));
        return;
    }
    let active = supervisor.routes.load().active.name.to_string();
    match Plan::new(config, &active, &target) {
        Ok(plan) => *switching = Some(Box::pin(plan.run(supervisor, metrics.clone(), reply))),
        Err(e) => {
            let _ = reply.send(Err(e));
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

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

use corral_config::{Config, Pool};
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

/// A switch under way: its future, and where its answer goes.
pub type Switching<'a> = Option<(
    Pin<Box<dyn Future<Output = Reply> + 'a>>,
    oneshot::Sender<Reply>,
)>;

/// What one switch needs to know, taken from the config when it is asked for.
pub struct Plan {
    from: String,
    to: Arc<Pool>,
    keep_previous: bool,
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
            ready_within: pool.start_timeout + Duration::from_secs(5),
        })
    }

    /// Runs the switch to its end, counting its result.
    pub async fn run(self, supervisor: &Supervisor, metrics: Arc<Metrics>) -> Reply {
        let answer = self.switch(supervisor).await;
        metrics.switch(if answer.is_ok() {
            "switched"
        } else {
            "refused"
        });
        answer
    }

    async fn switch(self, supervisor: &Supervisor) -> Reply {
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
        if !self.keep_previous {
            tokio::time::sleep(FLIP_GRACE).await;
            supervisor.stop_pool(self.from.clone());
        }
        let took_ms = started.elapsed().as_millis() as u64;
        tracing::info!(event = "switched", from = %self.from, to = %target, workers, took_ms, previous_kept = self.keep_previous, "traffic switched");
        Ok(json!({
            "from": self.from,
            "to": target,
            "workers": workers,
            "took_ms": took_ms,
            "previous": if self.keep_previous { "kept warm" } else { "draining, then stopped" },
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
        Ok(plan) => *switching = Some((Box::pin(plan.run(supervisor, metrics.clone())), reply)),
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

/// Resolves when the switch under way ends (never while none is), with its answer's channel.
pub async fn finished(switching: &mut Switching<'_>) -> (Reply, oneshot::Sender<Reply>) {
    match switching {
        Some((future, _)) => {
            let answer = future.await;
            let (_, reply) = switching.take().expect("a switch under way");
            (answer, reply)
        }
        None => std::future::pending().await,
    }
}

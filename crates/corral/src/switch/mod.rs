//! `corral switch POOL` and `corral switch --weights blue=90,green=10` (with `[[routes]]`,
//! of one route: `--route NAME`, or the route whose pools they name): moves traffic only
//! to pools that have shown they can take it, and leaves every other route as it is. Each pool that gains a share is started if it
//! is not running; every one of its workers must be ready, pass a health check made now
//! (`GET health.path`, 2xx) and, with active checks, be in rotation; every `smoke` check
//! must get its status. Then new requests go where asked with one store of the routing
//! table, and a pool left without a share drains (requests and WebSockets, up to
//! `graceful_timeout`) and stops, or stays warm with `routing.keep_previous`. A switch that
//! fails any step leaves traffic where it was and says why. A switch that stands is
//! recorded in the state directory, so it outlives a restart (`routing_state`).
//!
//! What to do next is decided by the pure [`plan`]; [`Switching`] is its runner: it turns
//! requests, looks at the supervisor (every [`POLL`]) and check results into events, and
//! carries out the actions (supervisor calls, the checks, the record, the answer).

mod checks;
pub mod plan;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use corral_config::{Config, Traffic};
use corral_control::Reply;
use corral_supervisor::Supervisor;
use corral_telemetry::Metrics;
use tokio::sync::oneshot;
use tokio::time::Instant;

use plan::{Action, Event, Observation, PoolSeen, Switches};

/// How often the runner looks at the pools while a switch is under way.
const POLL: Duration = Duration::from_millis(50);

/// The checks of one pool, running.
type Checking<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

/// The switch runner, owned by the master.
pub struct Switching<'a> {
    supervisor: &'a Supervisor,
    metrics: Arc<Metrics>,
    switches: Switches,
    /// The callers waiting for their answer, by request id.
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    next_id: u64,
    /// The checks under way, when the plan waits for them.
    checking: Option<Checking<'a>>,
    /// When to look at the pools next, while a switch is under way.
    next_look: Option<Instant>,
}

impl<'a> Switching<'a> {
    /// No switch under way yet.
    pub fn new(supervisor: &'a Supervisor, metrics: Arc<Metrics>) -> Self {
        Switching {
            supervisor,
            metrics,
            switches: Switches::default(),
            replies: HashMap::new(),
            next_id: 0,
            checking: None,
            next_look: None,
        }
    }

    /// `corral switch` under `config`, of `route` (or the route whose pools `to` names):
    /// begins, or is refused at once (another is under way, nothing to do, an unknown pool
    /// or route). `reply` gets the answer.
    pub fn request(
        &mut self,
        config: &Config,
        route: Option<String>,
        to: Traffic,
        reply: oneshot::Sender<Reply>,
    ) {
        self.next_id += 1;
        let id = self.next_id;
        self.replies.insert(id, reply);
        let table = self.supervisor.routes.load();
        let now = config
            .lanes()
            .into_iter()
            .filter_map(|lane| Some((lane.route.clone(), table.traffic_of(&lane.route)?)))
            .collect();
        let event = Event::Requested {
            id,
            config: Arc::new(config.clone()),
            now,
            route,
            to,
        };
        self.feed(event);
        // Look at once: a pool already running may be ready now.
        self.next_look = Some(Instant::now());
    }

    /// The master stops: a switch under way ends; its caller hears so.
    pub fn stopping(&mut self) {
        self.feed(Event::Stopping);
    }

    /// Runs the switch under way one step: waits for its checks or its next look, then
    /// carries out what the plan decides. Pending forever while no switch is under way.
    /// Cancel-safe: the checks and the time of the next look live in `self`.
    pub async fn step(&mut self) {
        if let Some(checks) = self.checking.as_mut() {
            let result = checks.await;
            self.checking = None;
            self.feed(Event::Checked(result));
            self.next_look = Some(Instant::now());
            return;
        }
        let Some(at) = self.next_look.filter(|_| self.switches.busy()) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at).await;
        let seen = self.observe();
        self.feed(Event::Observed(seen));
        self.next_look = Some(Instant::now() + POLL);
    }

    /// The pools the plan watches, as the supervisor and the counters show them now.
    fn observe(&self) -> Observation {
        let status = self.supervisor.status.load();
        let table = self.supervisor.routes.load();
        let counting = self.switches.counting();
        let pools = self.switches.watched().into_iter().map(|name| {
            let view = status.pools.iter().find(|p| *p.name == name);
            let route = table.pool(&name);
            PoolSeen {
                desired: view.map_or(0, |p| p.desired),
                failed: view.and_then(|p| p.failed.clone()),
                ready: route.map_or(0, |r| r.backends.len()),
                in_rotation: route
                    .is_some_and(|r| r.backends.iter().any(|b| b.health.in_rotation(&mut None))),
                answered: if counting {
                    self.metrics.pool(&name).answered()
                } else {
                    (0, 0)
                },
                name,
            }
        });
        let route = self.switches.route().unwrap_or("");
        Observation {
            traffic: table.traffic_of(route).unwrap_or_default(),
            pools: pools.collect(),
        }
    }

    /// Hands `event` to the plan and carries out its actions.
    fn feed(&mut self, event: Event) {
        let now = Instant::now().into_std();
        for action in self.switches.on_event(event, now) {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        let supervisor = self.supervisor;
        match action {
            Action::Answer { id, reply } => {
                if let Some(sender) = self.replies.remove(&id) {
                    let _ = sender.send(reply);
                }
            }
            Action::StartPool(pool) => supervisor.start_pool(pool),
            Action::StopPool(pool) => supervisor.stop_pool(pool),
            Action::Check(stage, pool) => {
                let backends = supervisor
                    .routes
                    .load()
                    .pool(&pool.name)
                    .map(|r| r.backends.clone())
                    .unwrap_or_default();
                self.checking = Some(Box::pin(async move {
                    checks::check(stage, &pool, &backends).await
                }));
            }
            Action::Route { route, to, why } => supervisor.switch(&route, to, why),
            Action::Record {
                config,
                route,
                to,
                why,
            } => crate::routing_state::record(&config, &route, &to, why),
            Action::Count("rolled_back") => self.metrics.rolled_back(),
            Action::Count(result) => self.metrics.switch(result),
        }
    }
}

//! The switch as a pure state machine: [`Switches::on_event`] takes what the runner saw
//! (a request, the pools' state, a check's result, the master stopping) with the time, and
//! returns the [`Action`]s to take. No process, socket, clock or channel: time comes in
//! with each event, so the whole switch is tested on a hand-moved clock (`tests/`),
//! like the supervisor's policy.
//!
//! A switch moves one route's traffic (with `[[routes]]`, the route named, or the one whose
//! pools the target names; without, the only one) and leaves every other route as it is.
//! One switch at a time, across routes, goes through these phases:
//! 1. *Waiting*: the pools that gain a share were started; each in turn must have all the
//!    workers the supervisor wants of it (its desired count, which `corral scale` sets)
//!    ready in the routing table within its `start_timeout` plus 5 s.
//! 2. *Checking*: the runner runs that pool's health checks, then its smoke checks if it
//!    has any.
//! 3. *Flipping*: every pool passed; traffic is routed and the switch waits (up to 5 s)
//!    until the routing table says so, then answers its caller.
//! 4. *Watching* (with `routing.rollback`): until the window passes, a gaining pool whose
//!    answers since the flip are too often 5xx, or which has no backend in rotation, rolls
//!    the traffic back.
//! 5. *Retiring*: the pools left without a share stop after `FLIP_GRACE` (requests that
//!    read the old table claim their worker first), unless `routing.keep_previous`.
//!
//! A step that fails refuses the switch: traffic stays where it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::{Config, Pool, Traffic};
use corral_control::{Refusal, Reply};

use steps::{Phase, Plan};

mod steps;
#[cfg(test)]
mod tests;

/// How long requests that read the old routing table have to claim a worker of the old
/// pool before its drain begins: one of them must not find it stopped.
pub const FLIP_GRACE: Duration = Duration::from_millis(250);
/// How long the routing table may take to show the flip.
pub(crate) const FLIP_WAIT: Duration = Duration::from_secs(5);
/// How much longer than its `start_timeout` a pool may take to be ready.
pub(crate) const READY_SLACK: Duration = Duration::from_secs(5);

/// What happened.
#[derive(Debug)]
pub enum Event {
    /// `corral switch`, request `id`, asked under `config` while each route's traffic
    /// goes where `now` says.
    Requested {
        /// Names the answer.
        id: u64,
        /// The config in force.
        config: Arc<Config>,
        /// Where each route's traffic goes now (the routing table's), by route name (`""`
        /// without `[[routes]]`).
        now: Vec<(String, Traffic)>,
        /// The route named by the caller, if any.
        route: Option<String>,
        /// Where it is to go.
        to: Traffic,
    },
    /// What the runner saw of the pools the switch watches.
    Observed(Observation),
    /// The health and smoke checks of the pool being checked ended.
    Checked(Result<(), String>),
    /// The master stops: a switch under way ends here.
    Stopping,
}

/// The state of the world as the runner read it.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Where the routing table sends the switched route's traffic.
    pub traffic: Traffic,
    /// The pools [`Switches::watched`] names.
    pub pools: Vec<PoolSeen>,
}

/// One pool, as the supervisor's snapshot, the routing table and the counters show it.
#[derive(Debug, Clone, Default)]
pub struct PoolSeen {
    /// The pool.
    pub name: String,
    /// How many workers the supervisor wants of it (0: stopped).
    pub desired: u32,
    /// Why it failed (its start limit), if it did.
    pub failed: Option<String>,
    /// Its ready workers in the routing table.
    pub ready: usize,
    /// Whether any of them is in rotation.
    pub in_rotation: bool,
    /// Its answers so far, and how many were 5xx; read only when [`Switches::counting`].
    pub answered: (u64, u64),
}

/// What the runner is to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer request `id`.
    Answer {
        /// The request.
        id: u64,
        /// The answer.
        reply: Reply,
    },
    /// Start a stopped pool.
    StartPool(String),
    /// Drain and stop a pool.
    StopPool(String),
    /// Run one stage of the checks of the pool's ready workers; answer with
    /// [`Event::Checked`].
    Check(Stage, Arc<Pool>),
    /// Send new requests of `route` where `to` says.
    Route {
        /// The route (`""` without `[[routes]]`).
        route: String,
        /// Where.
        to: Traffic,
        /// Why, for the routing table.
        why: &'static str,
    },
    /// Record where a route's traffic goes in the state directory, with the config asked
    /// under.
    Record {
        /// The config the switch was asked under.
        config: Arc<Config>,
        /// The route.
        route: String,
        /// Where traffic goes.
        to: Traffic,
        /// `switch` or `rollback`.
        why: &'static str,
    },
    /// Count a switch `switched`, `refused` or `rolled_back`.
    Count(&'static str),
}

/// The checks a pool passes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A health check made now on every worker (`GET health.path`, 2xx), each in rotation.
    Health,
    /// The pool's `smoke` checks, spread over its workers; only when it has any.
    Smoke,
}

/// At most one switch under way.
#[derive(Default)]
pub struct Switches {
    current: Option<Plan>,
}

impl Switches {
    /// Decides what `event` at `now` calls for.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Requested {
                id,
                config,
                now: traffic,
                route,
                to,
            } => self.requested(id, config, &traffic, route, to, now, &mut actions),
            Event::Observed(seen) => {
                if let Some(plan) = &mut self.current {
                    plan.observed(&seen, now, &mut actions);
                }
            }
            Event::Checked(result) => {
                if let Some(plan) = &mut self.current {
                    plan.checked(result, now, &mut actions);
                }
            }
            Event::Stopping => {
                if let Some(plan) = self.current.take() {
                    plan.abandon(&mut actions);
                }
            }
        }
        if self
            .current
            .as_ref()
            .is_some_and(|p| p.phase == Phase::Done)
        {
            self.current = None;
        }
        actions
    }

    /// Whether a switch is under way (its rollback window included).
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// The route of the switch under way, whose traffic an observation must show.
    pub fn route(&self) -> Option<&str> {
        self.current.as_ref().map(|p| p.route.as_str())
    }

    /// The pools an observation must show.
    pub fn watched(&self) -> Vec<String> {
        self.current
            .iter()
            .flat_map(|p| p.gaining.iter().map(|g| g.name.clone()))
            .collect()
    }

    /// Whether an observation must carry the pools' answer counts (from the flip on, with
    /// a rollback window).
    pub fn counting(&self) -> bool {
        self.current.as_ref().is_some_and(|p| {
            p.rollback.is_some()
                && matches!(p.phase, Phase::Flipping { .. } | Phase::Watching { .. })
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn requested(
        &mut self,
        id: u64,
        config: Arc<Config>,
        traffic: &[(String, Traffic)],
        route: Option<String>,
        to: Traffic,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if self.current.is_some() {
            let why = "a switch is already under way".to_string();
            actions.push(refuse(id, vec![why]));
            return;
        }
        match Plan::new(id, config, traffic, route.as_deref(), to, now) {
            Ok(plan) => {
                tracing::info!(event = "switch_started", route = %plan.route, from = %plan.from, to = %plan.to, "switch requested; checking the pools that gain traffic");
                for pool in &plan.gaining {
                    actions.push(Action::StartPool(pool.name.clone()));
                }
                let mut plan = plan;
                plan.wait_for(0, now, actions);
                self.current = Some(plan);
            }
            Err(errors) => actions.push(refuse(id, errors)),
        }
    }
}

fn refuse(id: u64, errors: Vec<String>) -> Action {
    Action::Answer {
        id,
        reply: Err(Refusal::Refused(errors)),
    }
}

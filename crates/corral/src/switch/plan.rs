//! The switch as a pure state machine: [`Switches::on_event`] takes what the runner saw
//! (a request, the pools' state, a check's result, the master stopping) with the time, and
//! returns the [`Action`]s to take. No process, socket, clock or channel: time comes in
//! with each event, so the whole switch is tested on a hand-moved clock (`tests.rs`),
//! like the supervisor's policy.
//!
//! One switch at a time goes through these phases:
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

use corral_config::{Config, Pool, Rollback, Traffic};
use corral_control::{Answer, Refusal, Reply, Switched};

/// How long requests that read the old routing table have to claim a worker of the old
/// pool before its drain begins: one of them must not find it stopped.
pub const FLIP_GRACE: Duration = Duration::from_millis(250);
/// How long the routing table may take to show the flip.
const FLIP_WAIT: Duration = Duration::from_secs(5);
/// How much longer than its `start_timeout` a pool may take to be ready.
const READY_SLACK: Duration = Duration::from_secs(5);

/// What happened.
#[derive(Debug)]
pub enum Event {
    /// `corral switch`, request `id`, asked under `config` while traffic goes to `from`.
    Requested {
        /// Names the answer.
        id: u64,
        /// The config in force.
        config: Arc<Config>,
        /// Where traffic goes now (the routing table's).
        from: Traffic,
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
    /// Where the routing table sends traffic.
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
    /// Send new requests where `to` says.
    Route {
        /// Where.
        to: Traffic,
        /// Why, for the routing table.
        why: &'static str,
    },
    /// Record where traffic goes in the state directory, with the config asked under.
    Record {
        /// The config the switch was asked under.
        config: Arc<Config>,
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

/// Where a switch stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for `gaining[index]` to be ready, until `deadline`.
    Waiting { index: usize, deadline: Instant },
    /// `gaining[index]`'s checks of `stage` are running.
    Checking { index: usize, stage: Stage },
    /// Routed; waiting for the routing table to show it.
    Flipping { deadline: Instant },
    /// Within the rollback window, from each gaining pool's counts at the flip.
    Watching {
        until: Instant,
        baseline: Vec<(u64, u64)>,
    },
    /// `pools` stop once `at` comes.
    Retiring { at: Instant, pools: Vec<String> },
    /// Over.
    Done,
}

/// One switch.
struct Plan {
    id: u64,
    /// Whether its caller has its answer.
    answered: bool,
    from: Traffic,
    to: Traffic,
    /// The pools whose share grows: they are checked first and watched after.
    gaining: Vec<Arc<Pool>>,
    keep_previous: bool,
    rollback: Option<Rollback>,
    /// The config the switch was asked under, for the record it leaves.
    config: Arc<Config>,
    started: Instant,
    /// The workers found ready, pool by pool.
    workers: usize,
    phase: Phase,
}

impl Switches {
    /// Decides what `event` at `now` calls for.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Requested {
                id,
                config,
                from,
                to,
            } => self.requested(id, config, from, to, now, &mut actions),
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

    fn requested(
        &mut self,
        id: u64,
        config: Arc<Config>,
        from: Traffic,
        to: Traffic,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if self.current.is_some() {
            let why = "a switch is already under way".to_string();
            actions.push(refuse(id, vec![why]));
            return;
        }
        match Plan::new(id, config, from, to, now) {
            Ok(plan) => {
                tracing::info!(event = "switch_started", from = %plan.from, to = %plan.to, "switch requested; checking the pools that gain traffic");
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

impl Plan {
    /// The plan for sending traffic where `to` says instead of `from`; an error when there
    /// is nothing to do or a pool does not exist.
    fn new(
        id: u64,
        config: Arc<Config>,
        from: Traffic,
        to: Traffic,
        now: Instant,
    ) -> Result<Plan, Vec<String>> {
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
            id,
            answered: false,
            from,
            to,
            gaining,
            keep_previous: config.routing.keep_previous,
            rollback: config.routing.rollback,
            config,
            started: now,
            workers: 0,
            phase: Phase::Done,
        })
    }

    /// Waits for `gaining[index]`, or flips when every pool has passed.
    fn wait_for(&mut self, index: usize, now: Instant, actions: &mut Vec<Action>) {
        match self.gaining.get(index) {
            Some(pool) => {
                let deadline = now + pool.start_timeout + READY_SLACK;
                self.phase = Phase::Waiting { index, deadline };
            }
            None => {
                actions.push(Action::Route {
                    to: self.to.clone(),
                    why: "switch",
                });
                self.phase = Phase::Flipping {
                    deadline: now + FLIP_WAIT,
                };
            }
        }
    }

    fn observed(&mut self, seen: &Observation, now: Instant, actions: &mut Vec<Action>) {
        match self.phase.clone() {
            Phase::Waiting { index, deadline } => self.waiting(index, deadline, seen, now, actions),
            Phase::Flipping { deadline } if seen.traffic == self.to || now >= deadline => {
                self.flipped(seen, now, actions)
            }
            Phase::Watching { until, baseline } => {
                self.watching(until, &baseline, seen, now, actions)
            }
            Phase::Retiring { at, pools } if now >= at => {
                actions.extend(pools.into_iter().map(Action::StopPool));
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    /// Every worker the supervisor wants of the pool ready, its failure, or its deadline.
    fn waiting(
        &mut self,
        index: usize,
        deadline: Instant,
        seen: &Observation,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let pool = &self.gaining[index];
        let name = pool.name.as_str();
        let view = seen.pools.iter().find(|p| p.name == name);
        if let Some(failed) = view.and_then(|p| p.failed.as_ref()) {
            let why = format!("pool {name} failed: {failed}");
            return self.refused(&why, name.to_string(), actions);
        }
        let ready = view.map_or(0, |p| p.ready);
        // The count the supervisor wants now (`corral scale` changes it; a stopped pool
        // starts with its configured one), not the file's.
        let wanted = view.map_or(pool.workers, |p| p.desired).max(1) as usize;
        if view.is_some_and(|p| p.desired > 0) && ready >= wanted {
            self.workers += ready;
            self.phase = Phase::Checking {
                index,
                stage: Stage::Health,
            };
            actions.push(Action::Check(Stage::Health, pool.clone()));
            return;
        }
        if now >= deadline {
            let within = pool.start_timeout + READY_SLACK;
            let why = format!("{ready} of {wanted} workers of {name} ready after {within:?}");
            self.refused(&why, name.to_string(), actions);
        }
    }

    fn checked(&mut self, result: Result<(), String>, now: Instant, actions: &mut Vec<Action>) {
        let Phase::Checking { index, stage } = self.phase else {
            return;
        };
        let pool = &self.gaining[index];
        match result {
            Ok(()) if stage == Stage::Health && !pool.smoke.is_empty() => {
                self.phase = Phase::Checking {
                    index,
                    stage: Stage::Smoke,
                };
                actions.push(Action::Check(Stage::Smoke, pool.clone()));
            }
            Ok(()) => self.wait_for(index + 1, now, actions),
            Err(why) => {
                let pool = self.gaining[index].name.clone();
                self.refused(&why, pool, actions)
            }
        }
    }

    /// A step failed: traffic stays; the pools started for the switch stop again unless
    /// kept warm.
    fn refused(&mut self, why: &str, pool: String, actions: &mut Vec<Action>) {
        let (from, to) = (&self.from, &self.to);
        let why = format!("switch to {to} refused: {why}; traffic stays with {from}");
        tracing::error!(event = "switch_failed", from = %from, to = %to, pool = %pool, reason = %why, "switch refused");
        if !self.keep_previous {
            let started = self.gaining.iter().filter(|p| from.share(&p.name) == 0.0);
            actions.extend(started.map(|p| Action::StopPool(p.name.clone())));
        }
        actions.push(Action::Count("refused"));
        actions.push(refuse(self.id, vec![why]));
        self.answered = true;
        self.phase = Phase::Done;
    }

    /// The routing table shows the flip (or it took too long): answer, then watch or retire.
    fn flipped(&mut self, seen: &Observation, now: Instant, actions: &mut Vec<Action>) {
        let (from, to) = (&self.from, &self.to);
        let took_ms = now.duration_since(self.started).as_millis() as u64;
        let left = left_out(from, to);
        tracing::info!(event = "switched", from = %from, to = %to, workers = self.workers, took_ms, previous_kept = self.keep_previous, "traffic switched");
        let previous = match (left.is_empty(), self.keep_previous, self.rollback) {
            (true, _, _) => "every pool keeps a share".to_string(),
            (false, true, _) => "kept warm".to_string(),
            (false, false, Some(rb)) => format!(
                "kept warm for the {:?} rollback window, then stopped",
                rb.window
            ),
            (false, false, None) => "draining, then stopped".to_string(),
        };
        actions.push(Action::Count("switched"));
        actions.push(Action::Record {
            config: self.config.clone(),
            to: to.clone(),
            why: "switch",
        });
        actions.push(Action::Answer {
            id: self.id,
            reply: Ok(Answer::Switched(Switched {
                from: from.to_string(),
                to: to.to_string(),
                workers: self.workers,
                took_ms,
                left,
                previous,
            })),
        });
        self.answered = true;
        match self.rollback {
            Some(rollback) => {
                let baseline = self
                    .gaining
                    .iter()
                    .map(|p| answered(seen, &p.name))
                    .collect();
                self.phase = Phase::Watching {
                    until: now + rollback.window,
                    baseline,
                };
            }
            None => self.retire(left_out(&self.from, &self.to), now),
        }
    }

    /// Within the window: a gaining pool answering too many 5xx since the flip, or with no
    /// backend in rotation, gives the traffic back.
    fn watching(
        &mut self,
        until: Instant,
        baseline: &[(u64, u64)],
        seen: &Observation,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if now >= until {
            tracing::info!(event = "rollback_window_passed", to = %self.to, "no rollback within the window; the switch stands");
            return self.retire(left_out(&self.from, &self.to), now);
        }
        let Some(rollback) = self.rollback else {
            return;
        };
        let reason = self
            .gaining
            .iter()
            .zip(baseline)
            .find_map(|(pool, at_flip)| {
                let name = &pool.name;
                let (total, errors) = answered(seen, name);
                let (total, errors) =
                    (total - at_flip.0.min(total), errors - at_flip.1.min(errors));
                let ratio = errors as f64 / total.max(1) as f64;
                if total >= rollback.min_requests && ratio > rollback.error_rate {
                    return Some(format!(
                        "{name}: {errors} of {total} answers 5xx ({:.1}%, above {:.1}%)",
                        100.0 * ratio,
                        100.0 * rollback.error_rate
                    ));
                }
                let in_rotation = seen.pools.iter().any(|p| p.name == *name && p.in_rotation);
                (!in_rotation).then(|| format!("{name} has no backend in rotation"))
            });
        let Some(why) = reason else {
            return;
        };
        tracing::error!(event = "rolled_back", from = %self.to, to = %self.from, reason = %why, "switch rolled back");
        actions.push(Action::Count("rolled_back"));
        actions.push(Action::Route {
            to: self.from.clone(),
            why: "rollback",
        });
        actions.push(Action::Record {
            config: self.config.clone(),
            to: self.from.clone(),
            why: "rollback",
        });
        self.retire(left_out(&self.to, &self.from), now);
    }

    /// The pools traffic has just left stop after [`FLIP_GRACE`], unless kept warm.
    fn retire(&mut self, pools: Vec<String>, now: Instant) {
        self.phase = if self.keep_previous || pools.is_empty() {
            Phase::Done
        } else {
            Phase::Retiring {
                at: now + FLIP_GRACE,
                pools,
            }
        };
    }

    /// The master stops: a caller still waiting hears so; nothing else is done.
    fn abandon(self, actions: &mut Vec<Action>) {
        if !self.answered {
            actions.push(Action::Answer {
                id: self.id,
                reply: Err(Refusal::Stopping),
            });
        }
    }
}

/// The pools `a` sends requests to and `b` does not.
fn left_out(a: &Traffic, b: &Traffic) -> Vec<String> {
    a.pools()
        .into_iter()
        .filter(|p| b.share(p) == 0.0)
        .map(str::to_string)
        .collect()
}

/// A pool's answer counts in an observation (none when it is not there).
fn answered(seen: &Observation, pool: &str) -> (u64, u64) {
    seen.pools
        .iter()
        .find(|p| p.name == pool)
        .map_or((0, 0), |p| p.answered)
}

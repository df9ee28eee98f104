//! One switch's phases and what moves it from one to the next; [`super::Switches`] holds
//! at most one and hands it the events.

use std::sync::Arc;
use std::time::Instant;

use corral_config::{Config, Pool, Rollback, Traffic};
use corral_control::{Answer, Refusal, Switched};

use super::{refuse, Action, Observation, Stage, FLIP_GRACE, FLIP_WAIT, READY_SLACK};

/// Where a switch stands.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
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
pub(super) struct Plan {
    id: u64,
    /// Whether its caller has its answer.
    answered: bool,
    /// The route whose traffic moves (`""` without `[[routes]]`).
    pub(super) route: String,
    pub(super) from: Traffic,
    pub(super) to: Traffic,
    /// The pools whose share grows: they are checked first and watched after.
    pub(super) gaining: Vec<Arc<Pool>>,
    keep_previous: bool,
    pub(super) rollback: Option<Rollback>,
    /// The config the switch was asked under, for the record it leaves.
    config: Arc<Config>,
    started: Instant,
    /// The workers found ready, pool by pool.
    workers: usize,
    pub(super) phase: Phase,
}

impl Plan {
    /// The plan for sending one route's traffic where `to` says instead of where it goes
    /// now (`traffic`, by route); an error when there is nothing to do, a pool does not
    /// exist, or the pools are not those of one route (`route`, when named).
    pub(super) fn new(
        id: u64,
        config: Arc<Config>,
        traffic: &[(String, Traffic)],
        route: Option<&str>,
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
        let lane = config.lane_for(route, &to).map_err(|e| vec![e])?;
        let from = traffic
            .iter()
            .find(|(r, _)| *r == lane.route)
            .map_or_else(|| lane.traffic.clone(), |(_, t)| t.clone());
        if to == from {
            let of = if lane.route.is_empty() {
                String::new()
            } else {
                format!(" of route {:?}", lane.route)
            };
            return Err(vec![format!("traffic{of} already goes to {to}")]);
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
            route: lane.route,
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
    pub(super) fn wait_for(&mut self, index: usize, now: Instant, actions: &mut Vec<Action>) {
        match self.gaining.get(index) {
            Some(pool) => {
                let deadline = now + pool.start_timeout + READY_SLACK;
                self.phase = Phase::Waiting { index, deadline };
            }
            None => {
                actions.push(Action::Route {
                    route: self.route.clone(),
                    to: self.to.clone(),
                    why: "switch",
                });
                self.phase = Phase::Flipping {
                    deadline: now + FLIP_WAIT,
                };
            }
        }
    }

    pub(super) fn observed(&mut self, seen: &Observation, now: Instant, actions: &mut Vec<Action>) {
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

    pub(super) fn checked(
        &mut self,
        result: Result<(), String>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
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
        tracing::error!(event = "switch_failed", route = %self.route, from = %from, to = %to, pool = %pool, reason = %why, "switch refused");
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
        tracing::info!(event = "switched", route = %self.route, from = %from, to = %to, workers = self.workers, took_ms, previous_kept = self.keep_previous, "traffic switched");
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
            route: self.route.clone(),
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
                route: (!self.route.is_empty()).then(|| self.route.clone()),
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
        tracing::error!(event = "rolled_back", route = %self.route, from = %self.to, to = %self.from, reason = %why, "switch rolled back");
        actions.push(Action::Count("rolled_back"));
        actions.push(Action::Route {
            route: self.route.clone(),
            to: self.from.clone(),
            why: "rollback",
        });
        actions.push(Action::Record {
            config: self.config.clone(),
            route: self.route.clone(),
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
    pub(super) fn abandon(self, actions: &mut Vec<Action>) {
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

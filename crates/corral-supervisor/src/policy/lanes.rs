//! Where new requests go, route by route: one [`LaneState`] per lane of the config
//! ([`corral_config::Lane`]: the one `[routing]` steers first, then every other
//! `[[routes]]` pool route; a single lane without routes). A switch, a rollback or a
//! reload moves one lane and leaves the others as they are.

use std::sync::Arc;
use std::time::Instant;

use corral_config::{Config, Lane, Traffic};

use super::Policy;
use crate::worker::PoolId;

/// One lane's traffic.
pub(super) struct LaneState {
    /// The route's name; `""` without `[[routes]]`.
    pub(super) route: Arc<str>,
    /// The pool its new requests go to.
    pub(super) active: PoolId,
    /// Its active pool before its last switch.
    pub(super) previous: Option<PoolId>,
    /// A canary split: each pool that gets requests and its weight; empty when `active`
    /// gets them all.
    pub(super) canary: Vec<(PoolId, u32)>,
    /// Since when it has gone where it goes, and why: `config`, `switch`, `rollback`,
    /// `restored`.
    pub(super) since: Option<(Instant, &'static str)>,
    /// Its traffic in the last config applied, so a reload that does not change it keeps
    /// a switch made at run time.
    pub(super) config_traffic: Traffic,
    /// Whether its traffic came from a run-time switch kept across a restart.
    pub(super) restored: bool,
}

impl Policy {
    /// The lanes of `config`, each where the file sends it, or where `restored` (a run-time
    /// switch kept over a restart, by route) says when every pool it names exists.
    pub(super) fn lanes_of(
        &self,
        config: &Config,
        restored: &[(String, Traffic)],
    ) -> Vec<LaneState> {
        config
            .lanes()
            .iter()
            .map(|lane| {
                let mut state = self.lane_state(lane);
                let kept = restored.iter().find(|(route, _)| *route == lane.route);
                if let Some((_, to)) = kept {
                    if let (Some(active), Some(canary)) =
                        (self.pool_named(&to.active), self.weights_of(to))
                    {
                        state.active = active;
                        state.canary = canary;
                        state.restored = true;
                    }
                }
                state
            })
            .collect()
    }

    /// A lane where the file sends it.
    fn lane_state(&self, lane: &Lane) -> LaneState {
        LaneState {
            route: Arc::from(lane.route.as_str()),
            active: self
                .pool_named(&lane.traffic.active)
                .or_else(|| self.pools.first().map(|p| p.id))
                .unwrap_or(PoolId(0)),
            previous: None,
            canary: self.weights_of(&lane.traffic).unwrap_or_default(),
            since: None,
            config_traffic: lane.traffic.clone(),
            restored: false,
        }
    }

    /// After a reload: each lane whose file traffic did not change, and whose pools all
    /// still run, keeps where it goes (a run-time switch stands); the others go where the
    /// file now says. Lanes of routes gone are dropped, new ones begin.
    pub(super) fn reload_lanes(&mut self, config: &Config, now: Instant) {
        let mut old = std::mem::take(&mut self.lanes);
        let gone =
            |policy: &Policy, id: PoolId| policy.pools.iter().all(|p| p.id != id || p.removed);
        for lane in config.lanes() {
            let kept = old
                .iter()
                .position(|l| *l.route == *lane.route)
                .map(|i| old.remove(i));
            match kept {
                Some(state) => {
                    let lost = gone(self, state.active)
                        || state.canary.iter().any(|(id, _)| gone(self, *id));
                    let changed = lane.traffic != state.config_traffic;
                    self.lanes.push(state);
                    if changed || lost {
                        let index = self.lanes.len() - 1;
                        self.lanes[index].config_traffic = lane.traffic.clone();
                        self.switch_lane(index, &lane.traffic, "config", now);
                    }
                }
                None => {
                    let mut state = self.lane_state(&lane);
                    state.since = Some((now, "config"));
                    self.lanes.push(state);
                }
            }
        }
    }

    /// The lane of the route named `route`: `""` is the first (the one `[routing]` steers).
    pub(super) fn lane_index(&self, route: &str) -> Option<usize> {
        if route.is_empty() {
            return (!self.lanes.is_empty()).then_some(0);
        }
        self.lanes.iter().position(|l| *l.route == *route)
    }

    /// Sends new requests of one lane where `to` says, starting the pools that get a share
    /// if they are stopped. Its active pool before keeps its workers (its `previous`) until
    /// stopped. Every other lane is left as it is.
    pub(super) fn switch_lane(
        &mut self,
        index: usize,
        to: &Traffic,
        why: &'static str,
        now: Instant,
    ) {
        if self.pool_named(&to.active).is_none() || self.weights_of(to).is_none() {
            tracing::warn!(to = %to, "switch: no such pool");
            return;
        }
        for name in to.pools() {
            self.start_pool(name, now);
        }
        let Some(id) = self.pool_named(&to.active) else {
            return;
        };
        let canary = self.weights_of(to).unwrap_or_default();
        let from = self.traffic_of(index);
        let Some(lane) = self.lanes.get_mut(index) else {
            return;
        };
        if id == lane.active && canary == lane.canary {
            return;
        }
        if id != lane.active {
            lane.previous = Some(lane.active);
            lane.active = id;
        }
        lane.canary = canary;
        lane.since = Some((now, why));
        let route = lane.route.clone();
        tracing::info!(event = "traffic_routed", route = &*route, from = %from, to = %to, why, "new requests go elsewhere");
    }

    /// The pools of `traffic`'s split with their weights; `None` if one of them does not run.
    pub(super) fn weights_of(&self, traffic: &Traffic) -> Option<Vec<(PoolId, u32)>> {
        traffic
            .weights
            .iter()
            .map(|(name, w)| self.pool_named(name).map(|id| (id, *w)))
            .collect()
    }

    /// Where new requests of lane `index` go now, by pool name.
    pub(super) fn traffic_of(&self, index: usize) -> Traffic {
        let name = |id| self.pool_name(id).unwrap_or_default();
        let Some(lane) = self.lanes.get(index) else {
            return Traffic::default();
        };
        Traffic {
            active: name(lane.active),
            weights: lane.canary.iter().map(|(id, w)| (name(*id), *w)).collect(),
        }
    }

    /// Whether pool `id` gets new requests in some lane.
    pub(super) fn gets_traffic(&self, id: PoolId) -> bool {
        self.lanes
            .iter()
            .any(|l| l.active == id || l.canary.iter().any(|(c, _)| *c == id))
    }

    /// The active pool of the lane `[routing]` steers (what `corral scale` means without a
    /// pool).
    pub(super) fn primary(&self) -> PoolId {
        self.lanes.first().map_or(PoolId(0), |l| l.active)
    }
}

//! The policy on a clock the tests move by hand, with no process: a small world plays the
//! runner, giving out pids for spawns, keeping timers, and exiting workers when told.

mod control;
mod health;
mod lanes;
mod lifecycle;
mod recycle;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_telemetry::Metrics;
use nix::sys::signal::Signal;

use super::{Action, Event, Exit, Policy, Timer};
use crate::worker::{StateKind, WorkerId};
use corral_routes::{Address, Backend};

const QUICK: Duration = Duration::from_millis(50);

struct World {
    policy: Policy,
    metrics: Arc<Metrics>,
    now: Instant,
    next_pid: u32,
    fail_spawns: bool,
    timers: Vec<(Instant, Timer)>,
    drains: Vec<(WorkerId, Arc<Backend>, Instant)>,
    signals: Vec<(u32, Signal)>,
    spawns: Vec<(String, u32)>,
    /// Workers whose health checks the runner was told to start.
    health_watched: Vec<WorkerId>,
    /// Resolvers the runner was told to run: pool and generation.
    resolvers: Vec<(super::PoolId, u64)>,
    finished: bool,
}

/// A config of the given pools (`[pools.NAME]` bodies) with `active` routed.
fn config(active: &str, pools: &[(&str, &str)]) -> corral_config::Config {
    let mut text = format!("[routing]\nactive = {active:?}\n");
    for (name, extra) in pools {
        if extra.contains("upstreams") {
            text.push_str(&format!("[pools.{name}]\n{extra}\n"));
            continue;
        }
        text.push_str(&format!(
            "[pools.{name}]\ncommand = [\"app\", \"{{port}}\"]\nkill_timeout = \"5s\"\n{extra}\n"
        ));
    }
    corral_config::parse(Path::new("test.toml"), &text).expect("valid test config")
}

impl World {
    fn new(active: &str, pools: &[(&str, &str)]) -> World {
        World::of(&config(active, pools))
    }

    /// A world running `config` as given.
    fn of(config: &corral_config::Config) -> World {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let policy = Policy::new(config, &[], metrics.clone(), 7);
        let mut world = World {
            policy,
            metrics,
            now: Instant::now(),
            next_pid: 1000,
            fail_spawns: false,
            timers: Vec::new(),
            drains: Vec::new(),
            signals: Vec::new(),
            spawns: Vec::new(),
            health_watched: Vec::new(),
            resolvers: Vec::new(),
            finished: false,
        };
        world.send(Event::Start);
        world
    }

    /// Feeds an event and plays the runner's part for the actions.
    fn send(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            for action in self.policy.on_event(event, self.now) {
                match action {
                    Action::Spawn(order) if self.fail_spawns => pending.push(Event::SpawnFailed {
                        worker: order.worker,
                        error: "No such file or directory".into(),
                    }),
                    Action::Spawn(order) => {
                        self.next_pid += 1;
                        self.spawns.push((order.config.name.clone(), order.slot));
                        pending.push(Event::Spawned {
                            worker: order.worker,
                            pid: self.next_pid,
                            addr: Address::Tcp(([127, 0, 0, 1], 9000).into()),
                        });
                    }
                    Action::Signal { pid, signal } => self.signals.push((pid, signal)),
                    Action::After { delay, timer } => self.timers.push((self.now + delay, timer)),
                    Action::WatchDrain {
                        worker,
                        backend,
                        within,
                        ..
                    } => self.drains.push((worker, backend, self.now + within)),
                    Action::WatchHealth { worker, .. } => self.health_watched.push(worker),
                    Action::Resolve {
                        pool, generation, ..
                    } => self.resolvers.push((pool, generation)),
                    Action::ForgetPool(_) | Action::Publish => {}
                    Action::Finished => self.finished = true,
                }
            }
        }
    }

    /// Moves the clock; drains that are over and timers that are due fire, in time order.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            let over: Vec<WorkerId> = self
                .drains
                .iter()
                .filter(|(_, b, deadline)| b.load.in_flight() == 0 || *deadline <= self.now)
                .map(|(w, _, _)| *w)
                .collect();
            self.drains.retain(|(w, _, _)| !over.contains(w));
            for worker in over {
                self.send(Event::Drained(worker));
            }
            self.timers.sort_by_key(|(at, _)| *at);
            let next_timer = self.timers.first().map(|(at, _)| *at);
            let next_drain = self.drains.iter().map(|(_, _, at)| *at).min();
            match next_timer.into_iter().chain(next_drain).min() {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    if next_timer == Some(at) {
                        let (_, timer) = self.timers.remove(0);
                        self.send(Event::Timer(timer));
                    }
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Workers of `pool`: (id, pid, state, generation, slot).
    fn workers(&self, pool: &str) -> Vec<(WorkerId, u32, StateKind, u64, u32)> {
        self.policy
            .pools
            .iter()
            .filter(|p| &*p.name == pool)
            .flat_map(|p| p.workers.iter())
            .map(|w| (w.id, w.pid, w.state_kind(), w.generation, w.slot))
            .collect()
    }

    fn in_state(&self, pool: &str, state: StateKind) -> Vec<WorkerId> {
        self.workers(pool)
            .into_iter()
            .filter(|w| w.2 == state)
            .map(|w| w.0)
            .collect()
    }

    /// Every starting worker of `pool` passes its readiness check.
    fn ready_all(&mut self, pool: &str) {
        for id in self.in_state(pool, StateKind::Starting) {
            self.send(Event::Ready(id));
        }
    }

    fn pid_of(&self, id: WorkerId) -> u32 {
        self.policy
            .pools
            .iter()
            .flat_map(|p| p.workers.iter())
            .find(|w| w.id == id)
            .map_or(0, |w| w.pid)
    }

    fn exit(&mut self, id: WorkerId, ran: Duration) {
        self.send(Event::Exited {
            worker: id,
            exit: Exit::Code(1),
            ran,
            stderr: vec!["boom".into()],
        });
    }

    /// Every worker signalled to stop exits (processes that obey).
    fn obey_signals(&mut self) {
        let signalled: Vec<u32> = self.signals.drain(..).map(|(pid, _)| pid).collect();
        let ids: Vec<WorkerId> = self
            .policy
            .pools
            .iter()
            .flat_map(|p| p.workers.iter())
            .filter(|w| signalled.contains(&w.pid))
            .map(|w| w.id)
            .collect();
        for id in ids {
            self.exit(id, Duration::from_secs(60));
        }
    }

    fn routed(&self, pool: &str) -> Vec<u32> {
        let table = self.policy.routing_table();
        table
            .pool(pool)
            .map(|r| r.backends.iter().map(|b| b.info.pid).collect())
            .unwrap_or_default()
    }

    fn backend(&self, id: WorkerId) -> Arc<Backend> {
        self.policy
            .pools
            .iter()
            .flat_map(|p| p.workers.iter())
            .find(|w| w.id == id)
            .and_then(|w| w.backend().cloned())
            .expect("a worker with a routing entry")
    }

    fn reload(&mut self, active: &str, pools: &[(&str, &str)]) {
        self.send(Event::Reload(Box::new(config(active, pools))));
    }

    fn restarts(&self, pool: &str, reason: &str) -> bool {
        self.metrics.render().contains(&format!(
            "corral_worker_restarts_total{{pool=\"{pool}\",reason=\"{reason}\"}} 1"
        ))
    }
}

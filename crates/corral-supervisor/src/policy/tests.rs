//! The policy on a clock the tests move by hand, with no process: a small world plays the
//! runner, giving out pids for spawns, keeping timers, and exiting workers when told.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_telemetry::Metrics;
use nix::sys::signal::Signal;

use super::{Action, Event, Exit, Policy, Timer};
use crate::routes::{Address, Backend};
use crate::worker::{ExitReason, StateKind, WorkerId};
use crate::{Scale, StopMode};

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
    finished: bool,
}

/// A config of the given pools (`[pools.NAME]` bodies) with `active` routed.
fn config(active: &str, pools: &[(&str, &str)]) -> corral_config::Config {
    let mut text = format!("[routing]\nactive = {active:?}\n");
    for (name, extra) in pools {
        text.push_str(&format!(
            "[pools.{name}]\ncommand = [\"app\", \"{{port}}\"]\nkill_timeout = \"5s\"\n{extra}\n"
        ));
    }
    corral_config::parse(Path::new("test.toml"), &text).expect("valid test config")
}

impl World {
    fn new(active: &str, pools: &[(&str, &str)]) -> World {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let policy = Policy::new(&config(active, pools), metrics.clone(), 7);
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
                    } => self.drains.push((worker, backend, self.now + within)),
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
                .filter(|(_, b, deadline)| b.load() == 0 || *deadline <= self.now)
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
            .map(|r| r.backends.iter().map(|b| b.pid).collect())
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

#[test]
fn start_fills_every_slot_and_routes_only_ready_workers() {
    let mut w = World::new("web", &[("web", "workers = 3")]);
    assert_eq!(w.spawns.len(), 3);
    assert!(w.routed("web").is_empty(), "nothing is routed before ready");
    w.ready_all("web");
    assert_eq!(w.routed("web").len(), 3);
    assert_eq!(w.policy.status().pools[0].ready(), 3);
}

#[test]
fn a_crash_restarts_at_once_then_backs_off() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    w.ready_all("web");
    let first = w.in_state("web", StateKind::Ready)[0];
    w.exit(first, QUICK);
    assert_eq!(w.spawns.len(), 2, "the first quick crash restarts at once");
    let second = w.in_state("web", StateKind::Starting)[0];
    w.exit(second, QUICK);
    assert_eq!(w.spawns.len(), 2, "the second waits for its backoff");
    w.advance(Duration::from_millis(99));
    assert_eq!(w.spawns.len(), 2);
    w.advance(Duration::from_millis(2));
    assert_eq!(w.spawns.len(), 3, "restarted once 100 ms passed");
    assert!(w.metrics.render().contains("reason=\"crash\"} 2"));
}

#[test]
fn a_worker_that_ran_long_restarts_at_once_every_time() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    for n in 0..4 {
        w.ready_all("web");
        let id = w.in_state("web", StateKind::Ready)[0];
        w.exit(id, Duration::from_secs(60));
        assert_eq!(w.spawns.len(), n + 2);
    }
}

#[test]
fn the_start_limit_fails_the_pool_until_a_reload() {
    let pool = "workers = 1\nstart_limit_burst = 3\nstart_limit_interval = \"30s\"";
    let mut w = World::new("web", &[("web", pool)]);
    for _ in 0..3 {
        let id = w.in_state("web", StateKind::Starting)[0];
        w.exit(id, QUICK);
        w.advance(Duration::from_secs(5));
    }
    let status = w.policy.status();
    assert!(status.pools[0]
        .failed
        .as_deref()
        .unwrap_or("")
        .contains("3 failed starts"));
    assert!(w.workers("web").is_empty());
    let spawns = w.spawns.len();
    w.advance(Duration::from_secs(60));
    assert_eq!(w.spawns.len(), spawns, "no attempt while failed");
    w.reload("web", &[("web", pool)]);
    assert_eq!(w.spawns.len(), spawns + 1, "a reload starts it again");
    assert!(w.policy.status().pools[0].failed.is_none());
}

#[test]
fn a_spawn_that_fails_counts_as_a_failed_start() {
    let pool = "workers = 1\nstart_limit_burst = 2";
    let mut w = World::new("web", &[("web", "workers = 1")]);
    w.fail_spawns = true;
    w.reload("web", &[("web", pool)]);
    w.advance(Duration::from_secs(1));
    assert!(w.restarts("web", "spawn_failed") || w.metrics.render().contains("spawn_failed"));
    assert!(w.policy.status().pools[0].failed.is_some());
}

#[test]
fn a_start_timeout_kills_the_worker_and_counts_as_a_failure() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    let id = w.in_state("web", StateKind::Starting)[0];
    let pid = w.pid_of(id);
    w.send(Event::StartTimeout {
        worker: id,
        why: "connection refused".into(),
    });
    assert_eq!(w.signals, [(pid, Signal::SIGKILL)]);
    w.obey_signals();
    assert!(w.restarts("web", "start_timeout"));
    assert_eq!(w.spawns.len(), 2, "the first failure restarts at once");
}

#[test]
fn a_draining_worker_is_signalled_only_after_its_requests_finish() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    w.ready_all("web");
    let old = w.in_state("web", StateKind::Ready)[0];
    let old_pid = w.pid_of(old);
    w.backend(old).in_flight.store(1, Ordering::SeqCst);
    w.reload("web", &[("web", "workers = 1")]);
    w.ready_all("web");
    assert_eq!(
        w.workers("web").iter().find(|x| x.0 == old).map(|x| x.2),
        Some(StateKind::Draining)
    );
    assert_eq!(w.routed("web").len(), 1, "only the replacement is routed");
    w.advance(Duration::from_secs(5));
    assert!(
        w.signals.is_empty(),
        "no signal while a request is in flight"
    );
    w.backend(old).in_flight.store(0, Ordering::SeqCst);
    w.advance(Duration::from_millis(20));
    assert_eq!(w.signals, [(old_pid, Signal::SIGTERM)]);
    // It ignores SIGTERM: SIGKILL after kill_timeout.
    w.advance(Duration::from_secs(5));
    assert_eq!(w.signals.last(), Some(&(old_pid, Signal::SIGKILL)));
    w.exit(old, Duration::from_secs(60));
    assert!(w.restarts("web", "reload"));
}

#[test]
fn a_drain_ends_at_graceful_timeout_even_with_requests_in_flight() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    w.ready_all("web");
    let old = w.in_state("web", StateKind::Ready)[0];
    w.backend(old).in_flight.store(1, Ordering::SeqCst);
    w.reload("web", &[("web", "workers = 1")]);
    w.ready_all("web");
    w.advance(Duration::from_secs(29));
    assert!(w.signals.is_empty());
    w.advance(Duration::from_secs(2));
    assert_eq!(
        w.signals,
        [(w.pid_of(old), Signal::SIGTERM)],
        "graceful_timeout is 30 s"
    );
}

#[test]
fn a_rolling_reload_replaces_every_worker_and_never_routes_fewer() {
    let mut w = World::new("web", &[("web", "workers = 4")]);
    w.ready_all("web");
    let before: Vec<u32> = w.routed("web");
    w.reload("web", &[("web", "workers = 4")]);
    assert_eq!(w.spawns.len(), 8, "one replacement per worker");
    assert_eq!(w.routed("web"), before, "old workers serve until replaced");
    for id in w.in_state("web", StateKind::Starting) {
        w.send(Event::Ready(id));
        assert_eq!(w.routed("web").len(), 4);
        w.advance(Duration::from_millis(20));
        w.obey_signals();
    }
    let after = w.routed("web");
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|pid| !before.contains(pid)));
    assert!(
        w.workers("web").iter().all(|x| x.3 == 2),
        "all of generation 2"
    );
}

#[test]
fn a_reload_during_a_reload_ends_on_the_newest_config() {
    let mut w = World::new("web", &[("web", "workers = 2")]);
    w.ready_all("web");
    w.reload("web", &[("web", "workers = 2")]);
    let first_replacements = w.in_state("web", StateKind::Starting);
    let pids: Vec<u32> = first_replacements.iter().map(|id| w.pid_of(*id)).collect();
    w.reload("web", &[("web", "workers = 3")]);
    // The replacements of the first reload started with the old config: they are ended.
    for pid in &pids {
        assert!(w.signals.contains(&(*pid, Signal::SIGTERM)));
    }
    w.obey_signals();
    w.ready_all("web");
    w.advance(Duration::from_millis(20));
    w.obey_signals();
    let workers = w.workers("web");
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert!(workers.iter().all(|x| x.3 == 3 && x.2 == StateKind::Ready));
    assert_eq!(w.policy.status().generation, 3);
}

#[test]
fn scaling_down_drains_the_highest_slots_and_clamps_to_one() {
    let mut w = World::new("web", &[("web", "workers = 4")]);
    w.ready_all("web");
    w.send(Event::Scale {
        pool: None,
        to: Scale::To(2),
    });
    w.advance(Duration::from_millis(20));
    w.obey_signals();
    let slots: Vec<u32> = w.workers("web").iter().map(|x| x.4).collect();
    assert_eq!(slots, [1, 2]);
    assert!(w.restarts("web", "scale") || w.metrics.render().contains("reason=\"scale\"} 2"));
    w.send(Event::Scale {
        pool: Some("web".into()),
        to: Scale::By(-10),
    });
    assert_eq!(w.policy.status().pools[0].desired, 1);
    w.send(Event::Scale {
        pool: None,
        to: Scale::By(2),
    });
    assert_eq!(w.policy.status().pools[0].desired, 3);
    assert_eq!(w.in_state("web", StateKind::Starting).len(), 2);
}

#[test]
fn max_requests_retires_a_worker_once_its_replacement_is_ready() {
    let mut w = World::new("web", &[("web", "workers = 2\nmax_requests = 10")]);
    w.ready_all("web");
    let tired = w.in_state("web", StateKind::Ready)[0];
    w.send(Event::Retire {
        worker: tired,
        reason: ExitReason::MaxRequests,
    });
    assert_eq!(
        w.workers("web").iter().find(|x| x.0 == tired).map(|x| x.2),
        Some(StateKind::Retiring)
    );
    assert_eq!(w.routed("web").len(), 2, "it serves until replaced");
    w.ready_all("web");
    w.advance(Duration::from_millis(20));
    w.obey_signals();
    assert!(w.restarts("web", "max_requests"));
    assert_eq!(w.routed("web").len(), 2);
    assert!(!w.routed("web").contains(&w.pid_of(tired)));
}

#[test]
fn max_requests_gets_a_jitter_within_its_bound() {
    let mut w = World::new(
        "web",
        &[(
            "web",
            "workers = 8\nmax_requests = 100\nmax_requests_jitter = 10",
        )],
    );
    w.ready_all("web");
    let limits: Vec<u64> = w
        .in_state("web", StateKind::Ready)
        .into_iter()
        .map(|id| w.backend(id).max_requests)
        .collect();
    assert!(limits.iter().all(|m| (100..=110).contains(m)), "{limits:?}");
    assert!(
        limits.iter().any(|m| *m != limits[0]),
        "workers do not all retire together"
    );
}

#[test]
fn max_memory_retires_only_the_worker_over_the_limit() {
    let mut w = World::new("web", &[("web", "workers = 2\nmax_memory = \"64MiB\"")]);
    w.ready_all("web");
    let watched = w.policy.memory_watch();
    assert_eq!(watched.len(), 2);
    let (fat, thin) = (watched[0].0, watched[1].0);
    w.send(Event::Memory(vec![(fat, 100 << 20), (thin, 10 << 20)]));
    let states: Vec<(WorkerId, StateKind)> = w.workers("web").iter().map(|x| (x.0, x.2)).collect();
    assert!(states.contains(&(fat, StateKind::Retiring)));
    assert!(states.contains(&(thin, StateKind::Ready)));
    assert_eq!(w.in_state("web", StateKind::Starting).len(), 1);
    assert_eq!(
        w.policy.memory_watch().len(),
        1,
        "a retiring worker is not measured again"
    );
}

#[test]
fn a_hung_worker_gets_sigabrt_then_sigkill_and_a_replacement_at_once() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    w.ready_all("web");
    let hung = w.in_state("web", StateKind::Ready)[0];
    let pid = w.pid_of(hung);
    w.send(Event::Hung {
        worker: hung,
        request: "GET /hang".into(),
    });
    assert_eq!(w.signals, [(pid, Signal::SIGABRT)]);
    assert!(w.routed("web").is_empty(), "no new request goes to it");
    assert_eq!(
        w.in_state("web", StateKind::Starting).len(),
        1,
        "replacement at once"
    );
    w.advance(Duration::from_secs(5));
    assert_eq!(w.signals.last(), Some(&(pid, Signal::SIGKILL)));
    w.exit(hung, Duration::from_secs(60));
    assert!(w.restarts("web", "timeout"));
    assert_eq!(w.spawns.len(), 2, "the exit does not start another");
}

#[test]
fn sigterm_during_a_reload_stops_every_worker_and_starts_none() {
    let mut w = World::new("web", &[("web", "workers = 2")]);
    w.ready_all("web");
    w.reload("web", &[("web", "workers = 2")]);
    assert_eq!(w.workers("web").len(), 4);
    w.send(Event::Stop(StopMode::Graceful));
    assert_eq!(w.signals.len(), 4);
    assert!(w.signals.iter().all(|(_, s)| *s == Signal::SIGTERM));
    // A replacement turning ready now changes nothing; exits start nothing.
    w.ready_all("web");
    let spawns = w.spawns.len();
    w.obey_signals();
    assert_eq!(w.spawns.len(), spawns);
    assert!(w.finished, "finished once every worker is gone");
    assert!(!w.metrics.render().contains("reason=\"crash\""));
}

#[test]
fn a_quick_stop_sends_sigint_and_kills_stragglers_at_the_deadline() {
    let mut w = World::new("web", &[("web", "workers = 2")]);
    w.ready_all("web");
    w.send(Event::Stop(StopMode::Quick));
    assert!(w.signals.iter().all(|(_, s)| *s == Signal::SIGINT));
    w.signals.clear();
    w.advance(Duration::from_secs(5));
    assert_eq!(w.signals.len(), 2);
    assert!(w.signals.iter().all(|(_, s)| *s == Signal::SIGKILL));
    assert!(!w.finished);
    w.obey_signals();
    assert!(w.finished);
}

/// The bug of a timer that named its pool by position.
#[test]
fn a_restart_timer_outlives_a_reload_that_removes_another_pool() {
    let pools = [
        ("old", "workers = 1"),
        ("web", "workers = 1"),
        ("flaky", "workers = 1"),
    ];
    let mut w = World::new("web", &pools);
    w.ready_all("old");
    w.ready_all("web");
    // flaky crashes twice: its slot now waits for a restart timer.
    for _ in 0..2 {
        let id = w.in_state("flaky", StateKind::Starting)[0];
        w.exit(id, QUICK);
    }
    assert!(w.in_state("flaky", StateKind::Starting).is_empty());
    w.reload("web", &[pools[1], pools[2]]);
    w.ready_all("web");
    w.advance(Duration::from_millis(20));
    w.obey_signals();
    assert!(w.workers("old").is_empty(), "old is gone");
    assert_eq!(w.policy.status().pools.len(), 2);
    let flaky_spawns = |w: &World| w.spawns.iter().filter(|(p, _)| p == "flaky").count();
    let before = flaky_spawns(&w);
    w.advance(Duration::from_secs(1));
    // The old timer finds flaky by id: flaky restarts (or already has), web is untouched.
    assert!(w.workers("web").len() == 1, "{:?}", w.workers("web"));
    assert!(flaky_spawns(&w) >= before);
    assert_eq!(w.in_state("flaky", StateKind::Starting).len(), 1);
}

#[test]
fn a_restart_timer_of_a_removed_pool_does_nothing() {
    let pools = [("web", "workers = 1"), ("flaky", "workers = 1")];
    let mut w = World::new("web", &pools);
    w.ready_all("web");
    for _ in 0..2 {
        let id = w.in_state("flaky", StateKind::Starting)[0];
        w.exit(id, QUICK);
    }
    w.reload("web", &pools[..1]);
    assert_eq!(
        w.policy.status().pools.len(),
        1,
        "flaky had no worker left: gone at once"
    );
    let spawns = w.spawns.len();
    w.ready_all("web");
    w.advance(Duration::from_secs(1));
    w.obey_signals();
    assert_eq!(
        w.spawns
            .iter()
            .skip(spawns)
            .filter(|(p, _)| p == "flaky")
            .count(),
        0
    );
}

#[test]
fn the_routing_table_holds_every_pool_and_a_switch_remembers_the_previous() {
    let mut w = World::new("blue", &[("blue", "workers = 2"), ("green", "workers = 1")]);
    w.ready_all("blue");
    w.ready_all("green");
    let table = w.policy.routing_table();
    assert_eq!(table.pools.len(), 2);
    assert_eq!(&*table.active.name, "blue");
    assert!(table.previous.is_none());
    w.send(Event::Switch("green".into()));
    let table = w.policy.routing_table();
    assert_eq!(&*table.active.name, "green");
    assert_eq!(table.active.backends.len(), 1);
    assert_eq!(table.previous.as_ref().map(|p| &*p.name), Some("blue"));
    assert!(w.signals.is_empty(), "a switch leaves the old pool running");
}

#[test]
fn one_pool_starts_and_stops_without_touching_the_others() {
    let mut w = World::new("blue", &[("blue", "workers = 2"), ("green", "workers = 2")]);
    w.ready_all("blue");
    w.ready_all("green");
    let blue = w.routed("blue");
    w.send(Event::StopPool("blue".into()));
    assert!(w.signals.is_empty(), "the active pool is not stopped");
    w.send(Event::StopPool("green".into()));
    w.advance(Duration::from_millis(20));
    w.obey_signals();
    assert!(w.workers("green").is_empty());
    assert_eq!(w.routed("blue"), blue);
    // A reload keeps a stopped pool stopped.
    w.reload("blue", &[("blue", "workers = 2"), ("green", "workers = 2")]);
    assert!(w.workers("green").is_empty());
    w.send(Event::Switch("green".into()));
    assert_eq!(
        w.in_state("green", StateKind::Starting).len(),
        2,
        "a switch starts it"
    );
    assert_eq!(&*w.policy.routing_table().active.name, "green");
}

#[test]
fn a_reload_keeps_a_switch_unless_the_config_changes_active() {
    let pools = [("blue", "workers = 1"), ("green", "workers = 1")];
    let mut w = World::new("blue", &pools);
    w.send(Event::Switch("green".into()));
    w.reload("blue", &pools);
    assert_eq!(
        &*w.policy.routing_table().active.name,
        "green",
        "switch kept"
    );
    w.reload("green", &pools);
    w.reload("blue", &pools);
    assert_eq!(
        &*w.policy.routing_table().active.name,
        "blue",
        "config changed it"
    );
}

#[test]
fn events_for_unknown_workers_are_ignored() {
    let mut w = World::new("web", &[("web", "workers = 1")]);
    let ghost = WorkerId(999);
    w.send(Event::Ready(ghost));
    w.send(Event::Drained(ghost));
    w.send(Event::Timer(Timer::KillDeadline(ghost)));
    w.send(Event::Hung {
        worker: ghost,
        request: "GET /".into(),
    });
    w.exit(ghost, QUICK);
    assert!(w.signals.is_empty());
    assert_eq!(w.spawns.len(), 1);
}

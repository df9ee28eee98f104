//! A worker's life: starts, crashes and backoff, the start limit, draining, reloads,
//! scaling, memory and hang retirement, and stopping (`max_requests` is in `recycle.rs`).

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{World, QUICK};
use crate::policy::Event;
use crate::worker::{StateKind, WorkerId};
use crate::{Scale, StopMode};

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
    assert!(w
        .metrics
        .render()
        .contains("corral_worker_restarts_total{pool=\"web\",reason=\"spawn_failed\"} 2"));
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
    assert!(w.backend(old).load.claim(0));
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
    w.backend(old).load.release();
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
    assert!(w.backend(old).load.claim(0));
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
    assert!(w
        .metrics
        .render()
        .contains("corral_worker_restarts_total{pool=\"web\",reason=\"scale\"} 2"));
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

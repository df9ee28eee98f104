//! Pools: timers that outlive a pool, the routing table of every pool, switching, and
//! starting or stopping one pool alone.

use std::time::Duration;

use super::{World, QUICK};
use crate::policy::{Event, Timer};
use crate::worker::{StateKind, WorkerId};

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
    w.send(switch_to("green"));
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
    w.send(switch_to("green"));
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
    w.send(switch_to("green"));
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

/// A run-time switch of all traffic to `pool`.
fn switch_to(pool: &str) -> Event {
    Event::Switch {
        route: String::new(),
        to: corral_config::Traffic::to(pool),
        why: "switch",
    }
}

/// How many of `n` tickets in a row each pool of the table gets, tickets drawn as the proxy
/// draws them (a golden-ratio sequence).
fn shares(table: &crate::RoutingTable, n: usize) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut ticket = 0u32;
    for _ in 0..n {
        ticket = ticket.wrapping_add(0x9E37_79B9);
        let name = table.route(ticket).name.to_string();
        match counts.iter_mut().find(|(p, _)| *p == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort();
    counts
}

#[test]
fn weights_split_new_requests_and_a_reload_keeps_them_unless_the_file_changes() {
    let pools = [("blue", "workers = 1"), ("green", "workers = 1")];
    let mut w = World::new("blue", &pools);
    w.ready_all("blue");
    w.ready_all("green");
    assert_eq!(
        shares(&w.policy.routing_table(), 1000),
        vec![("blue".into(), 1000)]
    );
    let split = corral_config::Traffic::split(&[("blue".into(), 90), ("green".into(), 10)])
        .expect("a split");
    w.send(Event::Switch {
        route: String::new(),
        to: split,
        why: "switch",
    });
    let table = w.policy.routing_table();
    assert_eq!(
        &*table.active.name, "blue",
        "the heaviest pool is the primary"
    );
    let counts = shares(&table, 2000);
    let green = counts.iter().find(|(p, _)| p == "green").map_or(0, |c| c.1);
    assert!((180..=220).contains(&green), "{counts:?}");
    w.send(Event::StopPool("green".into()));
    assert!(w.signals.is_empty(), "a pool with a weight is not stopped");
    let status = w.policy.status();
    assert_eq!(status.pools[1].weight, Some(10));
    w.reload("blue", &pools);
    assert_eq!(
        w.policy.routing_table().split.len(),
        2,
        "canary kept over a reload"
    );
    w.reload("green", &pools);
    let table = w.policy.routing_table();
    assert!(table.split.is_empty(), "the file's new routing wins");
    assert_eq!(&*table.active.name, "green");
}

#[test]
fn a_restored_switch_stands_instead_of_the_file_until_it_changes() {
    let pools = [("blue", "workers = 1"), ("green", "workers = 1")];
    let metrics = std::sync::Arc::new(corral_telemetry::Metrics::new().expect("metrics"));
    let config = super::config("blue", &pools);
    let restored = corral_config::Traffic::to("green");
    let policy =
        crate::policy::Policy::new(&config, &[(String::new(), restored)], metrics.clone(), 7);
    assert_eq!(&*policy.routing_table().active.name, "green");
    let unknown = corral_config::Traffic::to("red");
    let policy = crate::policy::Policy::new(&config, &[(String::new(), unknown)], metrics, 7);
    assert_eq!(
        &*policy.routing_table().active.name,
        "blue",
        "a stale state is ignored"
    );
}

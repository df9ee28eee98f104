//! `max_requests`: a worker retired at its limit, its replacement started ahead of it from
//! the pool's measured start times, the hand-over at the limit (or when the load stops), and
//! the jitter.

use std::time::Duration;

use super::World;
use crate::policy::Event;
use crate::worker::{ExitReason, StateKind};

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
fn a_replacement_started_ahead_takes_over_at_the_limit_and_the_worker_keeps_its_share() {
    let mut w = World::new("web", &[("web", "workers = 2\nmax_requests = 100")]);
    w.ready_all("web");
    let tired = w.in_state("web", StateKind::Ready)[0];
    w.send(Event::StartReplacement(tired));
    assert_eq!(
        w.in_state("web", StateKind::Starting).len(),
        1,
        "its replacement starts"
    );
    assert!(
        !w.backend(tired).load.is_retiring(),
        "before its limit it keeps its full share"
    );
    assert_eq!(w.routed("web").len(), 2);
    // A second report for the same worker starts nothing more.
    w.send(Event::StartReplacement(tired));
    assert_eq!(w.in_state("web", StateKind::Starting).len(), 1);
    w.ready_all("web");
    assert_eq!(
        w.routed("web").len(),
        3,
        "ready early: both serve until the limit"
    );
    // The proxy counts the limit: it marks the backend and reports.
    w.backend(tired).load.retire();
    w.send(Event::Retire {
        worker: tired,
        reason: ExitReason::MaxRequests,
    });
    w.advance(Duration::from_millis(20));
    w.obey_signals();
    assert!(w.restarts("web", "max_requests"));
    assert_eq!(w.routed("web").len(), 2);
    assert!(!w.routed("web").contains(&w.pid_of(tired)));
}

#[test]
fn a_worker_replaced_ahead_hands_over_anyway_when_the_load_stops_short_of_its_limit() {
    let mut w = World::new("web", &[("web", "workers = 1\nmax_requests = 100")]);
    w.ready_all("web");
    let tired = w.in_state("web", StateKind::Ready)[0];
    w.send(Event::StartReplacement(tired));
    w.ready_all("web");
    assert_eq!(w.routed("web").len(), 2);
    // It served nothing more: after at most 30 s it hands over.
    w.advance(Duration::from_secs(31));
    w.obey_signals();
    assert_eq!(w.routed("web").len(), 1);
    assert!(!w.routed("web").contains(&w.pid_of(tired)));
}

#[test]
fn the_replacement_estimate_is_the_longest_recent_start() {
    let mut w = World::new("web", &[("web", "workers = 3\nmax_requests = 100")]);
    w.advance(Duration::from_millis(600));
    let first = w.in_state("web", StateKind::Starting);
    w.send(Event::Ready(first[0]));
    w.advance(Duration::from_millis(1400));
    w.send(Event::Ready(first[1]));
    w.send(Event::Ready(first[2]));
    let slow = w.backend(first[1]).info.recycle.replacement;
    assert!(slow >= Duration::from_millis(2000), "{slow:?}");
    assert!(w.backend(first[2]).info.recycle.replacement >= slow);
    assert_eq!(
        w.backend(first[0]).info.recycle.cap,
        110,
        "the limit plus a tenth"
    );
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
        .map(|id| w.backend(id).info.max_requests)
        .collect();
    assert!(limits.iter().all(|m| (100..=110).contains(m)), "{limits:?}");
    assert!(
        limits.iter().any(|m| *m != limits[0]),
        "workers do not all retire together"
    );
}

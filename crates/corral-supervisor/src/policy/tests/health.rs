//! Health checks and remote pools in the policy: which backends are checked, what an
//! unhealthy one leads to, and how resolved addresses become backends.

use super::World;
use crate::policy::Event;
use crate::worker::{StateKind, WorkerId};

#[test]
fn health_checks_start_with_readiness_and_an_unhealthy_worker_is_replaced() {
    let mut plain = World::new("web", &[("web", "workers = 2")]);
    plain.ready_all("web");
    assert!(plain.health_watched.is_empty(), "no interval, no checks");

    let mut w = World::new(
        "web",
        &[("web", "workers = 2\n[pools.web.health]\ninterval = \"1s\"")],
    );
    w.ready_all("web");
    let ready = w.in_state("web", StateKind::Ready);
    assert_eq!(w.health_watched, ready);
    let (sick, well) = (ready[0], ready[1]);
    w.send(Event::Unhealthy(sick));
    let states: Vec<(WorkerId, StateKind)> = w.workers("web").iter().map(|x| (x.0, x.2)).collect();
    assert!(states.contains(&(sick, StateKind::Retiring)), "{states:?}");
    assert!(states.contains(&(well, StateKind::Ready)), "{states:?}");
    assert_eq!(w.in_state("web", StateKind::Starting).len(), 1);
    // A second report while it is being replaced changes nothing.
    w.send(Event::Unhealthy(sick));
    assert_eq!(w.in_state("web", StateKind::Starting).len(), 1);
}

#[test]
fn a_remote_pool_routes_to_what_its_names_resolve_to_and_keeps_them_through_a_failed_lookup() {
    let mut w = World::new(
        "api",
        &[("api", "upstreams = [\"a.internal:80\", \"b.internal:80\"]")],
    );
    assert!(w.spawns.is_empty(), "no process for a remote pool");
    assert_eq!(w.resolvers.len(), 1);
    let (pool, generation) = w.resolvers[0];
    let a: std::net::SocketAddr = "10.0.0.1:80".parse().expect("addr");
    let b: std::net::SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let b2: std::net::SocketAddr = "10.0.0.3:80".parse().expect("addr");
    w.send(Event::Resolved {
        pool,
        generation,
        addrs: vec![Ok(vec![a]), Ok(vec![b, b2])],
    });
    let backends = |w: &World| -> Vec<String> {
        w.policy
            .routing_table()
            .active
            .backends
            .iter()
            .map(|b| b.info.addr.to_string())
            .collect()
    };
    assert_eq!(
        backends(&w),
        vec!["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    );
    let first_id = w.policy.routing_table().active.backends[0].info.id;
    assert_eq!(
        w.health_watched.len(),
        3,
        "remote pools are checked by default"
    );
    // b.internal fails to resolve: its addresses stay; a.internal's one is kept as it was.
    w.send(Event::Resolved {
        pool,
        generation,
        addrs: vec![Ok(vec![a]), Err("timed out".into())],
    });
    assert_eq!(
        backends(&w),
        vec!["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    );
    assert_eq!(
        w.policy.routing_table().active.backends[0].info.id,
        first_id
    );
    // b.internal now resolves to one address: the other goes.
    w.send(Event::Resolved {
        pool,
        generation,
        addrs: vec![Ok(vec![a]), Ok(vec![b2])],
    });
    assert_eq!(backends(&w), vec!["10.0.0.1:80", "10.0.0.3:80"]);
    // A late answer for an older generation changes nothing.
    w.send(Event::Resolved {
        pool,
        generation: generation - 1,
        addrs: vec![Ok(vec![]), Ok(vec![])],
    });
    assert_eq!(backends(&w).len(), 2);
    let status = w.policy.status();
    assert_eq!(status.pools[0].ready(), 2);
    assert!(status.pools[0].workers.iter().all(|v| v.pid.is_none()));
    // Unhealthy reports and hangs find no process to replace or kill.
    w.send(Event::Unhealthy(first_id));
    assert!(w.spawns.is_empty() && w.signals.is_empty());
}

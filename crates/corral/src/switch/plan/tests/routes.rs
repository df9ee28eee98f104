//! With `[[routes]]`: a switch moves one route's traffic, named or found by its pools, and
//! its rollback gives that route's traffic back; pools of another route are refused.

use std::path::Path;
use std::sync::Arc;

use corral_config::{Config, Traffic};
use corral_control::Answer;

use super::{refusal, reply, Run};
use crate::switch::plan::{Action, Event, Observation, PoolSeen};

/// `web` at `/`, and the `api` route with api-blue (active) and api-green; a rollback
/// window of 10 s.
fn config() -> Arc<Config> {
    let text = "[routing]\nrollback_window = \"10s\"\nrollback_min_requests = 1\n\
        [[routes]]\npools = [\"web\"]\n\
        [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\nactive = \"api-blue\"\n\
        [pools.web]\ncommand = [\"app\", \"{port}\"]\n\
        [pools.api-blue]\ncommand = [\"app\", \"{port}\"]\n\
        [pools.api-green]\ncommand = [\"app\", \"{port}\"]\n";
    Arc::new(corral_config::parse(Path::new("corral.toml"), text).expect("valid config"))
}

fn now() -> Vec<(String, Traffic)> {
    vec![
        ("/".into(), Traffic::to("web")),
        ("api".into(), Traffic::to("api-blue")),
    ]
}

fn green(answered: (u64, u64)) -> PoolSeen {
    PoolSeen {
        name: "api-green".into(),
        desired: 1,
        failed: None,
        ready: 1,
        in_rotation: true,
        answered,
    }
}

fn request(run: &mut Run, route: Option<&str>, to: &str) -> Vec<Action> {
    run.event(Event::Requested {
        id: 1,
        config: config(),
        now: now(),
        route: route.map(str::to_string),
        to: Traffic::to(to),
    })
}

fn see(run: &mut Run, traffic: &str, answered: (u64, u64)) -> Vec<Action> {
    run.event(Event::Observed(Observation {
        traffic: Traffic::to(traffic),
        pools: vec![green(answered)],
    }))
}

#[test]
fn a_switch_found_by_its_pools_moves_its_route_and_its_rollback_gives_it_back() {
    let mut run = Run::new();
    assert_eq!(
        request(&mut run, None, "api-green"),
        vec![Action::StartPool("api-green".into())]
    );
    assert_eq!(run.switches.route(), Some("api"));
    see(&mut run, "api-blue", (0, 0));
    let routed = run.checked(Ok(()));
    assert_eq!(
        routed,
        vec![Action::Route {
            route: "api".into(),
            to: Traffic::to("api-green"),
            why: "switch"
        }]
    );
    let flipped = see(&mut run, "api-green", (0, 0));
    let Some(Ok(Answer::Switched(s))) = reply(&flipped, 1) else {
        panic!("{flipped:?}");
    };
    assert_eq!(s.route.as_deref(), Some("api"));
    assert!(flipped
        .iter()
        .any(|a| matches!(a, Action::Record { route, why: "switch", .. } if route == "api")));
    let back = run.at(1_000).event(Event::Observed(Observation {
        traffic: Traffic::to("api-green"),
        pools: vec![green((5, 5))],
    }));
    assert!(
        back.contains(&Action::Route {
            route: "api".into(),
            to: Traffic::to("api-blue"),
            why: "rollback"
        }),
        "{back:?}"
    );
}

#[test]
fn a_switch_to_another_route_s_pool_or_an_unknown_route_is_refused() {
    let mut run = Run::new();
    let refused = request(&mut run, Some("/"), "api-green");
    let why = refusal(&refused, 1);
    assert!(why.contains("api-green not of route \"/\""), "{why}");
    let refused = request(&mut run, Some("nope"), "api-green");
    assert!(refusal(&refused, 1).contains("no pool route is named \"nope\""));
    let refused = request(&mut run, Some("api"), "api-blue");
    assert_eq!(
        refusal(&refused, 1),
        "traffic of route \"api\" already goes to api-blue"
    );
    assert!(!run.switches.busy());
}

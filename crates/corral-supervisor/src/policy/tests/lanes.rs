//! `[[routes]]`: each pool route has its own traffic; a switch, a rollback or a reload of
//! one route leaves every other route where it was.

use std::path::Path;

use super::World;
use crate::policy::Event;
use corral_config::Traffic;

const POOLS: &str = "[pools.web]\ncommand = [\"app\", \"{port}\"]\n[pools.web-next]\ncommand = [\"app\", \"{port}\"]\n[pools.api-blue]\ncommand = [\"app\", \"{port}\"]\n[pools.api-green]\ncommand = [\"app\", \"{port}\"]\n";

fn routes(api: &str) -> corral_config::Config {
    let text = format!(
        "[[routes]]\npools = [\"web\", \"web-next\"]\nactive = \"web\"\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\n{api}\n{POOLS}"
    );
    corral_config::parse(Path::new("test.toml"), &text).expect("valid test config")
}

fn switch(route: &str, to: Traffic) -> Event {
    Event::Switch {
        route: route.into(),
        to,
        why: "switch",
    }
}

fn ready(w: &mut World) {
    for pool in ["web", "web-next", "api-blue", "api-green"] {
        w.ready_all(pool);
    }
}

#[test]
fn each_pool_route_has_its_own_traffic_and_weights() {
    let mut w = World::of(&routes("weights = { api-blue = 90, api-green = 10 }"));
    ready(&mut w);
    let table = w.policy.routing_table();
    assert_eq!(&*table.steered, "/");
    assert_eq!(&*table.active.name, "web");
    assert!(table.split.is_empty());
    assert_eq!(table.lanes.len(), 1);
    let api = table.lane("api").expect("the api lane");
    assert_eq!(api.traffic().to_string(), "api-blue=90,api-green=10");
    assert!(table.splits());
    let status = w.policy.status();
    let views: Vec<(&str, &str)> = status
        .routes
        .iter()
        .map(|r| (&*r.route, &*r.active))
        .collect();
    assert_eq!(views, [("/", "web"), ("api", "api-blue")]);
    let weight = |name: &str| {
        status
            .pools
            .iter()
            .find(|p| &*p.name == name)
            .and_then(|p| p.weight)
    };
    assert_eq!((weight("web"), weight("api-green")), (None, Some(10)));
}

#[test]
fn a_switch_of_one_route_leaves_the_others_untouched() {
    let mut w = World::of(&routes("active = \"api-blue\""));
    ready(&mut w);
    w.send(switch("api", Traffic::to("api-green")));
    let table = w.policy.routing_table();
    assert_eq!(&*table.active.name, "web", "the steered route stays");
    assert!(table.previous.is_none());
    let api = table.lane("api").expect("the api lane");
    assert_eq!(&*api.active.name, "api-green");
    assert_eq!(api.previous.as_ref().map(|p| &*p.name), Some("api-blue"));
    // A pool that gets traffic in any route cannot be stopped.
    w.send(Event::StopPool("web".into()));
    w.send(Event::StopPool("api-green".into()));
    assert!(w.signals.is_empty(), "{:?}", w.signals);
    // The rollback of the api route, and a switch of the steered route by its name.
    w.send(Event::Switch {
        route: "api".into(),
        to: Traffic::to("api-blue"),
        why: "rollback",
    });
    w.send(switch("/", Traffic::to("web-next")));
    let table = w.policy.routing_table();
    assert_eq!(&*table.active.name, "web-next");
    assert_eq!(&*table.lane("api").expect("lane").active.name, "api-blue");
    let status = w.policy.status();
    let api = &status.routes[1];
    assert_eq!(api.since.map(|(_, why)| why), Some("rollback"));
    // A reload that leaves the file's traffic alone keeps both switches.
    w.send(Event::Reload(Box::new(routes("active = \"api-blue\""))));
    let table = w.policy.routing_table();
    assert_eq!(&*table.active.name, "web-next");
    // One that changes the api route's moves that route alone.
    w.send(Event::Reload(Box::new(routes("active = \"api-green\""))));
    let table = w.policy.routing_table();
    assert_eq!(
        &*table.active.name, "web-next",
        "the other route keeps its switch"
    );
    assert_eq!(&*table.lane("api").expect("lane").active.name, "api-green");
}

#[test]
fn a_request_finds_its_route_s_lane_by_place_then_by_name_then_by_its_file_pool() {
    let mut w = World::of(&routes("weights = { api-blue = 1, api-green = 3 }"));
    ready(&mut w);
    let table = w.policy.routing_table();
    let key = |route: &str, index: usize, fallback: &str| corral_routes::LaneKey {
        route: route.into(),
        fallback: fallback.into(),
        index,
    };
    let pool = |k: &corral_routes::LaneKey, ticket: u32| {
        table.pick(ticket, Some(k)).map(|p| p.name.to_string())
    };
    // In place: the steered route is 0, the api route 1 (its split: a quarter blue).
    assert_eq!(pool(&key("/", 0, "web"), 0).as_deref(), Some("web"));
    assert_eq!(
        pool(&key("api", 1, "api-blue"), 0).as_deref(),
        Some("api-blue")
    );
    assert_eq!(
        pool(&key("api", 1, "api-blue"), u32::MAX).as_deref(),
        Some("api-green")
    );
    // Out of place (a table of another config): found by name.
    assert_eq!(
        pool(&key("api", 7, "api-blue"), u32::MAX).as_deref(),
        Some("api-green")
    );
    assert_eq!(pool(&key("/", 1, "web"), 0).as_deref(), Some("web"));
    // A route this table does not know: its pool in the file.
    assert_eq!(
        pool(&key("new", 2, "web-next"), 0).as_deref(),
        Some("web-next")
    );
    assert_eq!(pool(&key("new", 2, "gone"), 0), None);
}

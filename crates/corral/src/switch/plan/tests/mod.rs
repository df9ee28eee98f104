//! The switch plan on a hand-moved clock: no process, socket or sleep. Each test plays the
//! runner: it feeds requests, observations and check results at chosen times and reads the
//! actions back. Here the steps up to the flip; `window.rs` what comes after it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::{Config, Traffic};
use corral_control::{Answer, Refusal, Reply};

use super::{Action, Event, Observation, PoolSeen, Stage, Switches, FLIP_GRACE};

mod routes;
mod window;

/// blue (active) and green, 3 workers each, green with a 10 s `start_timeout`;
/// `routing` and `green` are extra lines of their tables.
fn config(routing: &str, green: &str) -> Arc<Config> {
    let text = format!(
        "[routing]\nactive = \"blue\"\n{routing}\n\n\
         [pools.blue]\ncommand = [\"app\", \"{{port}}\"]\nworkers = 3\n\n\
         [pools.green]\ncommand = [\"app\", \"{{port}}\"]\nworkers = 3\nstart_timeout = \"10s\"\n{green}\n"
    );
    Arc::new(corral_config::parse(Path::new("corral.toml"), &text).expect("valid config"))
}

/// The plan with its clock, playing the runner.
struct Run {
    switches: Switches,
    start: Instant,
    now: Instant,
}

impl Run {
    fn new() -> Run {
        let start = Instant::now();
        Run {
            switches: Switches::default(),
            start,
            now: start,
        }
    }

    /// Moves the clock to `ms` after the start.
    fn at(&mut self, ms: u64) -> &mut Run {
        self.now = self.start + Duration::from_millis(ms);
        self
    }

    fn event(&mut self, event: Event) -> Vec<Action> {
        self.switches.on_event(event, self.now)
    }

    /// Request `id`: from `from` to `to` under `config`.
    fn request(
        &mut self,
        id: u64,
        config: &Arc<Config>,
        from: Traffic,
        to: Traffic,
    ) -> Vec<Action> {
        self.event(Event::Requested {
            id,
            config: config.clone(),
            now: vec![(String::new(), from)],
            route: None,
            to,
        })
    }

    /// The routing table says `traffic`; the pools are as `pools` say.
    fn see(&mut self, traffic: &Traffic, pools: &[PoolSeen]) -> Vec<Action> {
        self.event(Event::Observed(Observation {
            traffic: traffic.clone(),
            pools: pools.to_vec(),
        }))
    }

    fn checked(&mut self, result: Result<(), &str>) -> Vec<Action> {
        self.event(Event::Checked(result.map_err(str::to_string)))
    }

    /// Request 1, blue to green, with every worker of green ready and its checks passing;
    /// returns the actions of the observation that finds the flip in the table.
    fn switched(&mut self, config: &Arc<Config>, to: &Traffic) -> Vec<Action> {
        self.request(1, config, blue(), to.clone());
        self.see(&blue(), &[green(3, 3)]);
        let routed = self.checked(Ok(()));
        assert!(
            routed.contains(&Action::Route {
                route: String::new(),
                to: to.clone(),
                why: "switch"
            }),
            "{routed:?}"
        );
        self.see(to, &[green(3, 3)])
    }
}

fn blue() -> Traffic {
    Traffic::to("blue")
}

fn to_green() -> Traffic {
    Traffic::to("green")
}

/// green as the runner sees it: `desired` wanted, `ready` in the table, all in rotation.
fn green(desired: u32, ready: usize) -> PoolSeen {
    PoolSeen {
        name: "green".into(),
        desired,
        failed: None,
        ready,
        in_rotation: ready > 0,
        answered: (0, 0),
    }
}

/// green with its answer counts.
fn green_answered(total: u64, errors: u64) -> PoolSeen {
    PoolSeen {
        answered: (total, errors),
        ..green(3, 3)
    }
}

/// The reply of request `id` among `actions`.
fn reply(actions: &[Action], id: u64) -> Option<&Reply> {
    actions.iter().find_map(|a| match a {
        Action::Answer { id: i, reply } if *i == id => Some(reply),
        _ => None,
    })
}

/// The refusal's one message among `actions`.
fn refusal(actions: &[Action], id: u64) -> String {
    match reply(actions, id) {
        Some(Err(Refusal::Refused(errors))) if errors.len() == 1 => errors[0].clone(),
        other => panic!("expected a refusal, got {other:?} in {actions:?}"),
    }
}

fn stops(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StopPool(p) => Some(p.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pool_not_ready_by_its_start_timeout_plus_5s_is_refused_and_stopped_again() {
    let mut run = Run::new();
    let started = run.request(1, &config("", ""), blue(), to_green());
    assert_eq!(started, vec![Action::StartPool("green".into())]);
    assert!(run.at(1_000).see(&blue(), &[green(3, 2)]).is_empty());
    assert!(run.at(14_999).see(&blue(), &[green(3, 2)]).is_empty());
    let refused = run.at(15_000).see(&blue(), &[green(3, 2)]);
    assert_eq!(
        refusal(&refused, 1),
        "switch to green refused: 2 of 3 workers of green ready after 15s; traffic stays with blue"
    );
    assert_eq!(stops(&refused), ["green"]);
    assert!(refused.contains(&Action::Count("refused")));
    assert!(!refused.iter().any(|a| matches!(a, Action::Route { .. })));
    assert!(!run.switches.busy());
}

#[test]
fn a_failing_health_check_refuses_the_switch() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    let check = run.see(&blue(), &[green(3, 3)]);
    assert!(matches!(check.as_slice(), [Action::Check(Stage::Health, p)] if p.name == "green"));
    let refused = run.checked(Err("health check GET / on green worker 4: 503"));
    assert!(refusal(&refused, 1).contains("health check GET / on green worker 4: 503"));
    assert_eq!(stops(&refused), ["green"]);
    assert!(!run.switches.busy());
}

#[test]
fn smoke_checks_run_after_the_health_checks_and_a_failing_one_refuses() {
    let mut run = Run::new();
    let smoke = "smoke = [{ path = \"/ping\", status = 200 }]";
    run.request(1, &config("", smoke), blue(), to_green());
    run.see(&blue(), &[green(3, 3)]);
    let next = run.checked(Ok(()));
    assert!(matches!(next.as_slice(), [Action::Check(Stage::Smoke, p)] if p.smoke.len() == 1));
    let refused = run.checked(Err(
        "smoke check GET /ping on green worker 5 answered 500, expected 200",
    ));
    assert!(refusal(&refused, 1).contains("answered 500, expected 200"));
    assert_eq!(stops(&refused), ["green"]);
}

#[test]
fn a_pool_without_smoke_checks_flips_after_its_health_checks() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    run.see(&blue(), &[green(3, 3)]);
    assert_eq!(
        run.checked(Ok(())),
        vec![Action::Route {
            route: String::new(),
            to: to_green(),
            why: "switch"
        }]
    );
}

#[test]
fn the_flip_answers_once_the_table_shows_it_then_the_old_pool_drains_after_the_grace() {
    let mut run = Run::new();
    let config = config("", "");
    run.request(1, &config, blue(), to_green());
    run.at(400).see(&blue(), &[green(3, 3)]);
    run.at(500).checked(Ok(()));
    // The table does not show it yet: no answer.
    assert!(run.at(550).see(&blue(), &[green(3, 3)]).is_empty());
    let flipped = run.at(600).see(&to_green(), &[green(3, 3)]);
    let Some(Ok(Answer::Switched(s))) = reply(&flipped, 1) else {
        panic!("{flipped:?}");
    };
    assert_eq!(
        (s.from.as_str(), s.to.as_str(), s.workers, s.took_ms),
        ("blue", "green", 3, 600)
    );
    assert_eq!(
        (s.left.clone(), s.previous.as_str()),
        (vec!["blue".to_string()], "draining, then stopped")
    );
    assert!(flipped.contains(&Action::Count("switched")));
    assert!(flipped.contains(&Action::Record {
        route: String::new(),
        config,
        to: to_green(),
        why: "switch"
    }));
    // Requests that read the old table get the grace to claim a blue worker.
    assert!(stops(&run.at(700).see(&to_green(), &[green(3, 3)])).is_empty());
    let grace = 600 + FLIP_GRACE.as_millis() as u64;
    assert_eq!(
        stops(&run.at(grace).see(&to_green(), &[green(3, 3)])),
        ["blue"]
    );
    assert!(!run.switches.busy());
}

#[test]
fn a_flip_the_table_never_shows_is_answered_after_5s() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    run.see(&blue(), &[green(3, 3)]);
    run.checked(Ok(()));
    assert!(run.at(4_999).see(&blue(), &[green(3, 3)]).is_empty());
    assert!(matches!(
        reply(&run.at(5_000).see(&blue(), &[green(3, 3)]), 1),
        Some(Ok(_))
    ));
}

#[test]
fn a_reload_during_the_wait_that_lowers_the_count_lets_the_switch_go_on_with_the_new_count() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    assert!(run.at(1_000).see(&blue(), &[green(3, 2)]).is_empty());
    // The reload set green's workers to 2: the supervisor now wants 2, and has them.
    let check = run.at(1_500).see(&blue(), &[green(2, 2)]);
    assert!(
        matches!(check.as_slice(), [Action::Check(Stage::Health, _)]),
        "{check:?}"
    );
    run.checked(Ok(()));
    let flipped = run.see(&to_green(), &[green(2, 2)]);
    assert!(matches!(reply(&flipped, 1), Some(Ok(Answer::Switched(s))) if s.workers == 2));
}

/// Issue 37: `corral scale green 1` on a stopped standby pool, then `corral switch green`,
/// waited for the 3 configured workers and was refused.
#[test]
fn switch_to_a_standby_pool_scaled_to_1_waits_for_1_worker_not_the_configured_3() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    let check = run.at(100).see(&blue(), &[green(1, 1)]);
    assert!(
        matches!(check.as_slice(), [Action::Check(Stage::Health, _)]),
        "{check:?}"
    );
    run.checked(Ok(()));
    let flipped = run.see(&to_green(), &[green(1, 1)]);
    assert!(matches!(reply(&flipped, 1), Some(Ok(Answer::Switched(s))) if s.workers == 1));
}

#[test]
fn a_pool_still_stopped_in_the_snapshot_is_not_ready_even_with_old_backends() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    // The snapshot has not caught up with the start yet (desired 0).
    assert!(run.see(&blue(), &[green(0, 3)]).is_empty());
}

#[test]
fn a_failed_pool_unknown_pools_and_no_change_are_refused_at_once() {
    let config = config("", "");
    let mut run = Run::new();
    run.request(1, &config, blue(), to_green());
    let mut failed = green(3, 0);
    failed.failed = Some("start limit reached".into());
    let refused = run.see(&blue(), &[failed]);
    assert!(refusal(&refused, 1).contains("pool green failed: start limit reached"));
    let unknown = run.request(2, &config, blue(), Traffic::to("nope"));
    assert!(refusal(&unknown, 2).contains("nope"), "{unknown:?}");
    let same = run.request(3, &config, blue(), blue());
    assert_eq!(refusal(&same, 3), "traffic already goes to blue");
    assert!(!run.switches.busy());
}

//! After the flip: the rollback window, keep_previous, weights, and what arrives meanwhile
//! (a second switch, a stop).

use super::*;

const ROLLBACK: &str =
    "rollback_window = \"60s\"\nrollback_error_rate = 0.05\nrollback_min_requests = 20";

#[test]
fn too_many_5xx_since_the_flip_roll_back_and_the_new_pool_stops() {
    let mut run = Run::new();
    let config = config(ROLLBACK, "");
    run.request(1, &config, blue(), to_green());
    run.see(&blue(), &[green(3, 3)]);
    run.checked(Ok(()));
    assert!(run.switches.counting());
    let flipped = run.see(&to_green(), &[green_answered(100, 10)]);
    let Some(Ok(Answer::Switched(s))) = reply(&flipped, 1) else {
        panic!("{flipped:?}");
    };
    assert_eq!(
        s.previous,
        "kept warm for the 60s rollback window, then stopped"
    );
    // 10 answers since the flip, all 5xx, but fewer than rollback_min_requests: no verdict.
    assert!(run
        .at(1_000)
        .see(&to_green(), &[green_answered(110, 20)])
        .is_empty());
    // 30 since the flip, 2 of them 5xx (6.7% > 5%).
    let back = run.at(2_000).see(&to_green(), &[green_answered(130, 12)]);
    assert!(
        back.contains(&Action::Route {
            route: String::new(),
            to: blue(),
            why: "rollback"
        }),
        "{back:?}"
    );
    assert!(back.contains(&Action::Record {
        route: String::new(),
        config,
        to: blue(),
        why: "rollback"
    }));
    assert!(back.contains(&Action::Count("rolled_back")));
    // The pool rolled back from stops after the grace; blue keeps running.
    assert_eq!(
        stops(&run.at(2_250).see(&blue(), &[green(3, 3)])),
        ["green"]
    );
    assert!(!run.switches.busy());
}

#[test]
fn losing_every_backend_in_rotation_rolls_back() {
    let mut run = Run::new();
    run.switched(&config(ROLLBACK, ""), &to_green());
    let mut sick = green(3, 3);
    sick.in_rotation = false;
    let back = run.at(3_000).see(&to_green(), &[sick]);
    assert!(
        back.contains(&Action::Route {
            route: String::new(),
            to: blue(),
            why: "rollback"
        }),
        "{back:?}"
    );
}

#[test]
fn the_window_passing_lets_the_switch_stand_and_retires_the_old_pool() {
    let mut run = Run::new();
    let flipped = run.switched(&config(ROLLBACK, ""), &to_green());
    // Kept warm through the window.
    assert!(stops(&flipped).is_empty());
    assert!(run.at(59_999).see(&to_green(), &[green(3, 3)]).is_empty());
    let passed = run.at(60_000).see(&to_green(), &[green(3, 3)]);
    assert!(
        !passed.iter().any(|a| matches!(a, Action::Route { .. })),
        "{passed:?}"
    );
    assert_eq!(
        stops(&run.at(60_250).see(&to_green(), &[green(3, 3)])),
        ["blue"]
    );
    assert!(!run.switches.busy());
}

#[test]
fn keep_previous_leaves_the_old_pool_and_a_refused_target_running() {
    let keep = config("keep_previous = true", "");
    let mut run = Run::new();
    let flipped = run.switched(&keep, &to_green());
    let Some(Ok(Answer::Switched(s))) = reply(&flipped, 1) else {
        panic!("{flipped:?}");
    };
    assert_eq!(s.previous, "kept warm");
    assert!(!run.switches.busy(), "nothing left to do");
    let mut run = Run::new();
    run.request(1, &keep, blue(), to_green());
    run.see(&blue(), &[green(3, 3)]);
    let refused = run.checked(Err("health check failed"));
    assert!(refusal(&refused, 1).contains("health check failed"));
    assert!(stops(&refused).is_empty(), "{refused:?}");
}

#[test]
fn weights_check_only_the_pools_that_gain_and_a_rollback_restores_the_split_from_before() {
    let config = config(ROLLBACK, "");
    let canary = Traffic::parse_weights("blue=90,green=10").expect("weights");
    let mut run = Run::new();
    let started = run.request(1, &config, blue(), canary.clone());
    assert_eq!(started, vec![Action::StartPool("green".into())]);
    assert_eq!(run.switches.watched(), ["green"]);
    let flipped = {
        run.see(&blue(), &[green(3, 3)]);
        run.checked(Ok(()));
        run.see(&canary, &[green(3, 3)])
    };
    let Some(Ok(Answer::Switched(s))) = reply(&flipped, 1) else {
        panic!("{flipped:?}");
    };
    assert_eq!(
        (s.to.as_str(), s.left.len(), s.previous.as_str()),
        ("blue=90,green=10", 0, "every pool keeps a share")
    );
    let back = run.at(1_000).see(&canary, &[green_answered(40, 40)]);
    assert!(
        back.contains(&Action::Route {
            route: String::new(),
            to: blue(),
            why: "rollback"
        }),
        "{back:?}"
    );
    // The canary loses its share: it stops; blue never does.
    assert_eq!(
        stops(&run.at(1_250).see(&blue(), &[green(3, 3)])),
        ["green"]
    );
}

#[test]
fn a_second_switch_during_the_window_is_refused_and_the_first_goes_on() {
    let mut run = Run::new();
    let config = config(ROLLBACK, "");
    run.switched(&config, &to_green());
    let second = run.at(5_000).request(2, &config, to_green(), blue());
    assert_eq!(refusal(&second, 2), "a switch is already under way");
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(run.switches.busy());
    assert_eq!(
        stops(&run.at(60_000).see(&to_green(), &[green(3, 3)])),
        Vec::<&str>::new()
    );
    assert_eq!(
        stops(&run.at(60_250).see(&to_green(), &[green(3, 3)])),
        ["blue"]
    );
    // Once it is over, a switch may begin again.
    let third = run.at(61_000).request(3, &config, to_green(), blue());
    assert_eq!(third, vec![Action::StartPool("blue".into())]);
}

#[test]
fn sigterm_during_a_switch_tells_its_caller_corral_is_stopping_and_does_nothing_more() {
    let mut run = Run::new();
    run.request(1, &config("", ""), blue(), to_green());
    run.see(&blue(), &[green(3, 1)]);
    let stopping = run.event(Event::Stopping);
    assert_eq!(
        stopping,
        vec![Action::Answer {
            id: 1,
            reply: Err(Refusal::Stopping)
        }]
    );
    assert!(!run.switches.busy());
    assert!(run.see(&blue(), &[green(3, 3)]).is_empty());
    // During a rollback window the caller has its answer: nothing to say, nothing to undo.
    let mut run = Run::new();
    run.switched(&config(ROLLBACK, ""), &to_green());
    assert!(run.event(Event::Stopping).is_empty());
}

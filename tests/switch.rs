//! `corral switch` between two pools of the test app: under load with no failed request,
//! refused (with the reason, the old pool keeping all traffic) when the target's health or
//! smoke checks fail, rolled back on 5xx, split by weight (a canary), and kept across a
//! reload and a restart of corral until the file's routing changes.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Two pools, `blue` active and `green`, with `green_extra` lines in green's table.
fn blue_green(routing_extra: &str, green_extra: &str) -> String {
    let pool = |name: &str| testapp_pool(2, "").replace("[pools.web]", &format!("[pools.{name}]"));
    format!(
        "[routing]\nactive = \"blue\"\n{routing_extra}\n\n{}\n{}{green_extra}\n",
        pool("blue"),
        pool("green")
    )
}

/// The pids of the ready workers of `pool`, from `/status`.
fn pool_pids(corral: &Corral, pool: &str) -> BTreeSet<u64> {
    let status = corral.status().unwrap_or_default();
    let pools = status["pools"].as_array().cloned().unwrap_or_default();
    pools
        .iter()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
        .filter(|w| w["state"] == "ready")
        .filter_map(|w| w["pid"].as_u64())
        .collect()
}

/// corral on `body`, once both pools have their 2 workers ready.
fn start_both(body: &str, server_extra: &str) -> Corral {
    let corral = Corral::start(body, server_extra, 2);
    wait_for("green ready", Duration::from_secs(20), || {
        (pool_pids(&corral, "green").len() == 2).then_some(())
    });
    corral
}

/// The pids that answer 30 requests.
fn answering(corral: &Corral) -> BTreeSet<u64> {
    (0..30)
        .map(|_| {
            let (status, body) = get(&client(), &corral.url("/")).expect("request");
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).expect("JSON");
            v["pid"].as_u64().expect("pid")
        })
        .collect()
}

#[test]
fn a_switch_under_load_fails_no_request_and_leaves_only_the_new_pool_answering() {
    let corral = start_both(&blue_green("", ""), "graceful_timeout = \"5s\"");
    let blue = pool_pids(&corral, "blue");
    let green = pool_pids(&corral, "green");
    assert_eq!((blue.len(), green.len()), (2, 2), "{blue:?} {green:?}");
    // Requests that take a while, so some are in flight on blue when it is told to drain.
    let load = Load::start(&corral.url("/sleep?ms=50"), 16, Duration::from_secs(60));
    load.wait_more(100, Duration::from_secs(20));
    let (code, out, err) = corral.cli(&["switch", "green"]);
    assert_eq!(code, 0, "{out}{err}");
    println!("{}", out.trim());
    assert!(out.contains("switched from blue to green"), "{out}");
    load.wait_more(200, Duration::from_secs(20));
    let result = load.stop();
    println!("{} requests across the switch", result.ok);
    result.assert_no_failures(&corral.logs());
    let served = answering(&corral);
    assert!(
        served.is_subset(&green),
        "{served:?} not all green {green:?}"
    );
    // Blue drained its requests in flight and stopped.
    wait_for("blue stopped", Duration::from_secs(20), || {
        pool_pids(&corral, "blue").is_empty().then_some(())
    });
    let exits: Vec<Value> = corral
        .log_events()
        .into_iter()
        .filter(|e| e["event"] == "worker_exited" && e["pool"] == "blue")
        .collect();
    assert_eq!(exits.len(), 2, "{exits:#?}");
    assert!(exits.iter().all(|e| e["reason"] == "scale"), "{exits:#?}");
    assert!(corral.log_events().iter().any(|e| e["event"] == "switched"));
    let status = corral.status().expect("status");
    assert_eq!(status["active_pool"], "green", "{status}");
    assert_eq!(status["active_because"], "switch", "{status}");
    assert!(
        status["active_for_seconds"].as_f64() < Some(60.0),
        "{status}"
    );
    assert_eq!(corral.metric("corral_active_pool{pool=\"green\"}"), 1.0);
    assert_eq!(corral.metric("corral_active_pool{pool=\"blue\"}"), 0.0);
    assert_eq!(
        corral.metric("corral_switches_total{result=\"switched\"}"),
        1.0
    );
    // Switching to the active pool is refused, and says so.
    let (code, _, err) = corral.cli(&["switch", "green"]);
    assert_ne!(code, 0);
    assert!(err.contains("traffic already goes to green"), "{err}");
}

#[test]
fn a_switch_to_a_pool_failing_its_health_check_is_refused_and_the_old_pool_keeps_traffic() {
    // Ready by TCP, but its health path answers 500.
    let pool = |name: &str| testapp_pool(2, "").replace("[pools.web]", &format!("[pools.{name}]"));
    let green = pool("green").replace("ready = \"http\"", "ready = \"tcp\"");
    let body = format!(
        "[routing]\nactive = \"blue\"\n\n{}\n{green}\n[pools.green.health]\npath = \"/status/500\"\n",
        pool("blue")
    );
    let corral = start_both(&body, "");
    let blue = pool_pids(&corral, "blue");
    let (code, out, err) = corral.cli(&["switch", "green"]);
    println!("{err}");
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("switch to green refused"), "{err}");
    assert!(
        err.contains("health check GET /status/500 on green worker"),
        "{err}"
    );
    assert!(err.contains("answered 500"), "{err}");
    assert!(answering(&corral).is_subset(&blue));
    let failed = corral.wait_event("switch_failed", Duration::from_secs(5));
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("green")),
        "{failed}"
    );
    assert_eq!(
        corral.metric("corral_switches_total{result=\"refused\"}"),
        1.0
    );
    assert_eq!(corral.status().expect("status")["active_because"], "config");
    // Not kept warm: green drains away.
    wait_for("green stopped", Duration::from_secs(20), || {
        pool_pids(&corral, "green").is_empty().then_some(())
    });
}

#[test]
fn failing_smoke_checks_refuse_the_switch_and_keep_previous_keeps_the_target_warm() {
    let smoke = "smoke = [{ path = \"/health\", status = 200 }, { path = \"/status/503\", status = 200 }]\n";
    let body = blue_green("keep_previous = true", smoke);
    let corral = start_both(&body, "");
    let (blue, green) = (pool_pids(&corral, "blue"), pool_pids(&corral, "green"));
    let (code, out, err) = corral.cli(&["switch", "green"]);
    println!("{err}");
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("smoke check GET /status/503 on green worker"),
        "{err}"
    );
    assert!(err.contains("answered 503, expected 200"), "{err}");
    assert!(answering(&corral).is_subset(&blue));
    // keep_previous: green stays up, warm, for the next try.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pool_pids(&corral, "green"), green);
}

#[test]
fn a_new_pool_answering_too_many_5xx_is_rolled_back_within_the_window() {
    let pool = |name: &str, extra: &str| {
        testapp_pool(2, extra).replace("[pools.web]", &format!("[pools.{name}]"))
    };
    let body = format!(
        "[routing]\nactive = \"blue\"\nrollback_window = \"20s\"\nrollback_error_rate = 0.2\nrollback_min_requests = 20\n\n{}\n{}",
        pool("blue", ""),
        pool("green", ", \"--fail-every\", \"2\"")
    );
    let corral = start_both(&body, "");
    let blue = pool_pids(&corral, "blue");
    let load = Load::start(&corral.url("/"), 8, Duration::from_secs(60));
    load.wait_more(50, Duration::from_secs(20));
    let (code, out, err) = corral.cli(&["switch", "green"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rollback window"), "{out}");
    let rolled = corral.wait_event("rolled_back", Duration::from_secs(20));
    println!("{rolled}");
    let reason = rolled["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("answers 5xx"), "{rolled}");
    assert_eq!(rolled["to"], "blue", "{rolled}");
    let during = load.stop();
    println!(
        "{} ok and {} failed while green served",
        during.ok,
        during.failures.len()
    );
    // Blue was kept warm through the window: the same workers serve again, and nothing fails.
    assert_eq!(pool_pids(&corral, "blue"), blue);
    let after = Load::start(&corral.url("/"), 8, Duration::from_secs(60));
    after.wait_more(200, Duration::from_secs(20));
    after.stop().assert_no_failures(&corral.logs());
    assert!(answering(&corral).is_subset(&blue));
    assert_eq!(
        corral.metric("corral_switches_total{result=\"rolled_back\"}"),
        1.0
    );
    assert_eq!(corral.status().expect("status")["active_pool"], "blue");
}

/// How many of `n` requests each pool's workers answered.
fn split_of(
    corral: &Corral,
    n: usize,
    blue: &BTreeSet<u64>,
    green: &BTreeSet<u64>,
) -> (usize, usize) {
    let agent = client();
    let (mut to_blue, mut to_green) = (0, 0);
    for _ in 0..n {
        let (status, body) = get(&agent, &corral.url("/")).expect("request");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let pid = v["pid"].as_u64().expect("pid");
        if blue.contains(&pid) {
            to_blue += 1;
        } else if green.contains(&pid) {
            to_green += 1;
        } else {
            panic!("pid {pid} is in neither pool");
        }
    }
    (to_blue, to_green)
}

#[test]
fn weights_send_each_pool_its_share_and_a_failing_canary_is_rolled_back() {
    let pool = |name: &str, extra: &str| {
        testapp_pool(2, extra).replace("[pools.web]", &format!("[pools.{name}]"))
    };
    let body = format!(
        "[routing]\nweights = {{ blue = 90, green = 10 }}\nrollback_window = \"20s\"\nrollback_error_rate = 0.2\nrollback_min_requests = 20\n\n{}\n{}",
        pool("blue", ""),
        pool("green", "")
    );
    let corral = start_both(&body, "");
    let (blue, green) = (pool_pids(&corral, "blue"), pool_pids(&corral, "green"));
    let (to_blue, to_green) = split_of(&corral, 2000, &blue, &green);
    println!("weights blue=90,green=10 over 2000 requests: blue {to_blue}, green {to_green}");
    assert!(
        (140..=260).contains(&to_green),
        "green got {to_green} of 2000"
    );
    let status = corral.status().expect("status");
    assert_eq!(status["active_pool"], "blue", "{status}");
    assert_eq!(status["weights"]["green"], 10, "{status}");
    assert!((corral.metric("corral_traffic_share{pool=\"green\"}") - 0.1).abs() < 1e-9);
    let (_, table, _) = corral.cli(&["status"]);
    assert!(table.contains("pool blue (active, weight 90)"), "{table}");
    assert!(table.contains("pool green (weight 10)"), "{table}");

    // A canary set at run time, with a green that fails every second request: the split
    // goes back to what it was.
    corral.rewrite_config(&format!(
        "[routing]\nweights = {{ blue = 90, green = 10 }}\nrollback_window = \"20s\"\nrollback_error_rate = 0.2\nrollback_min_requests = 20\n\n{}\n{}",
        pool("blue", ""),
        pool("green", ", \"--fail-every\", \"2\"")
    ));
    let (code, out, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("both pools replaced", Duration::from_secs(30), || {
        let (b, g) = (pool_pids(&corral, "blue"), pool_pids(&corral, "green"));
        (b.len() == 2 && g.len() == 2 && b.is_disjoint(&blue) && g.is_disjoint(&green))
            .then_some(())
    });
    let load = Load::start(&corral.url("/"), 8, Duration::from_secs(60));
    load.wait_more(50, Duration::from_secs(20));
    let (code, out, err) = corral.cli(&["switch", "--weights", "blue=50,green=50"]);
    assert_eq!(code, 0, "{out}{err}");
    println!("{}", out.trim());
    assert!(out.contains("to blue=50,green=50"), "{out}");
    let rolled = corral.wait_event("rolled_back", Duration::from_secs(20));
    println!("{rolled}");
    assert_eq!(rolled["to"], "blue=90,green=10", "{rolled}");
    assert!(
        rolled["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("green:"),
        "{rolled}"
    );
    load.stop();
    let status = corral.status().expect("status");
    assert_eq!(status["weights"]["green"], 10, "{status}");
    assert_eq!(status["active_because"], "rollback", "{status}");
}

#[test]
fn a_run_time_switch_survives_a_reload_and_a_restart_until_the_file_changes_active() {
    let state = tempfile::tempdir().expect("state dir");
    let server = format!("state_dir = {:?}", state.path().display().to_string());
    let body = blue_green("", "");
    let mut corral = start_both(&body, &server);
    let (code, out, err) = corral.cli(&["switch", "green"]);
    assert_eq!(code, 0, "{out}{err}");
    let record = state.path().join("routing.json");
    assert!(record.exists(), "the switch is recorded in the state dir");
    // A reload with the file unchanged keeps green.
    corral.signal(nix::sys::signal::Signal::SIGHUP);
    corral.wait_event("config_applied", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(corral.status().expect("status")["active_pool"], "green");
    // A restart of corral keeps green too.
    corral.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(corral.wait_exit(Duration::from_secs(20)).success());
    drop(corral);
    let corral = start_both(&body, &server);
    let status = corral.status().expect("status");
    assert_eq!(status["active_pool"], "green", "{status}");
    assert_eq!(status["active_because"], "restored", "{status}");
    let green = pool_pids(&corral, "green");
    assert!(answering(&corral).is_subset(&green));
    corral.wait_event("routing_restored", Duration::from_secs(5));
    // Editing routing.active in the file wins, and the record is dropped.
    corral.rewrite_config(&body.replace("active = \"blue\"", "active = \"green\""));
    let (code, out, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    corral.rewrite_config(&body);
    let (code, out, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("blue active again", Duration::from_secs(10), || {
        (corral.status()?["active_pool"] == "blue").then_some(())
    });
    assert!(
        !record.exists(),
        "the file's new routing dropped the record"
    );
    let status = corral.status().expect("status");
    assert_eq!(status["active_because"], "config", "{status}");
    wait_for("only blue answers", Duration::from_secs(20), || {
        answering(&corral)
            .is_subset(&pool_pids(&corral, "blue"))
            .then_some(())
    });
}

/// Issue 37: `corral scale blue 1` on a stopped standby pool started one worker, and the
/// `corral switch blue` after it waited for the configured count and was refused. A switch
/// now waits for the count the supervisor wants of the pool, the one `scale` set.
#[test]
fn switch_to_a_stopped_standby_pool_scaled_to_1_succeeds_with_its_1_worker() {
    // A short start_timeout, so the old wait for 2 workers gives up in 8 s, not 15.
    let pool = |name: &str| {
        testapp_pool(2, "")
            .replace("[pools.web]", &format!("[pools.{name}]"))
            .replace("start_timeout = \"10s\"", "start_timeout = \"3s\"")
    };
    let body = format!(
        "[routing]\nactive = \"blue\"\n\n{}\n{}",
        pool("blue"),
        pool("green")
    );
    let corral = start_both(&body, "");
    let (code, out, err) = corral.cli(&["switch", "green"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("blue stopped", Duration::from_secs(20), || {
        pool_pids(&corral, "blue").is_empty().then_some(())
    });
    let (code, out, err) = corral.cli(&["scale", "blue", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = corral.cli(&["switch", "blue"]);
    assert_eq!(code, 0, "{out}{err}\n{}", corral.logs());
    assert!(
        out.contains("switched from green to blue (1 workers checked"),
        "{out}"
    );
    let blue = pool_pids(&corral, "blue");
    assert_eq!(blue.len(), 1, "{blue:?}");
    let served = answering(&corral);
    assert_eq!(served, blue);
}

/// A stop during a switch ends it where it is: the caller still waiting hears at once that
/// corral is stopping, traffic never moved, and corral stops as usual.
#[test]
fn sigterm_during_a_switch_tells_the_waiting_caller_corral_is_stopping() {
    // green listens only after a minute: the switch waits for it.
    let pool = |name: &str, extra: &str| {
        testapp_pool(2, extra).replace("[pools.web]", &format!("[pools.{name}]"))
    };
    let body = format!(
        "[routing]\nactive = \"blue\"\n\n{}\n{}",
        pool("blue", ""),
        pool("green", ", \"--startup-delay-ms\", \"60000\"")
    );
    let mut corral = Corral::start(&body, "", 2);
    let (socket, bin) = (corral.socket(), corral_bin());
    let switch = std::thread::spawn(move || {
        std::process::Command::new(bin)
            .args(["switch", "green", "--socket"])
            .arg(socket)
            .output()
            .expect("corral switch")
    });
    wait_for("the switch under way", Duration::from_secs(20), || {
        corral
            .log_events()
            .iter()
            .any(|e| e["event"] == "switch_started")
            .then_some(())
    });
    let asked = std::time::Instant::now();
    corral.signal(nix::sys::signal::Signal::SIGTERM);
    let out = switch.join().expect("the switch thread");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("corral is stopping"), "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert!(corral.wait_exit(Duration::from_secs(30)).success());
    let events = corral.log_events();
    assert!(!events
        .iter()
        .any(|e| e["event"] == "switched" || e["event"] == "traffic_routed"));
}

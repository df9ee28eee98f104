//! Workers that die: killed under load, crashing with output, failing to start.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{client, get, testapp_pool, wait_for, Corral};

#[test]
fn kill_9_of_a_worker_under_load_fails_no_request() {
    let mut corral = Corral::start(&testapp_pool(4, ""), "", 4);
    let before = corral.ready_pids();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let url = corral.url("/sleep?ms=5");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, done, failures, url) =
                (stop.clone(), done.clone(), failures.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = client();
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match get(&agent, &url) {
                        Ok((200, _)) => {}
                        Ok((status, body)) => {
                            *failures
                                .lock()
                                .expect("lock")
                                .entry(format!("{status} {body}"))
                                .or_default() += 1
                        }
                        Err(e) => *failures.lock().expect("lock").entry(e).or_default() += 1,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for("load to run", Duration::from_secs(10), || {
        (done.load(Ordering::Relaxed) > 200).then_some(())
    });

    let victim = before[1];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill -9 the worker");
    let killed_at = Instant::now();
    let after = wait_for(
        "a replacement worker to be ready",
        Duration::from_secs(10),
        || {
            let pids = corral.ready_pids();
            (pids.len() == 4 && !pids.contains(&victim)).then_some(pids)
        },
    );
    let replaced_in = killed_at.elapsed();
    let at_replacement = done.load(Ordering::Relaxed);
    wait_for(
        "load after the replacement",
        Duration::from_secs(10),
        || (done.load(Ordering::Relaxed) > at_replacement + 200).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }

    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "failed requests: {failures:?}\n{}",
        corral.logs()
    );
    assert!(
        replaced_in < Duration::from_secs(3),
        "replacement took {replaced_in:?}"
    );
    assert_eq!(
        after.iter().filter(|p| before.contains(p)).count(),
        3,
        "only the victim was replaced"
    );
    let exit = corral.wait_log("the victim's exit", Duration::from_secs(10), |e| {
        e["event"] == "worker_exited" && e["pid"] == victim
    });
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    assert_eq!(exit["reason"], "crash", "{exit}");
    let metrics = corral.metrics();
    assert!(
        metrics.contains("corral_worker_restarts_total{pool=\"web\",reason=\"crash\"} 1"),
        "{metrics}"
    );
    println!(
        "requests: {}, replacement ready in {replaced_in:?}",
        done.load(Ordering::Relaxed)
    );
}

#[test]
fn a_crash_is_logged_with_exit_code_and_last_stderr_lines() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let before = corral.ready_pids();
    // POST is not idempotent: corral must not replay it on the other worker.
    let response = client()
        .post(&corral.url("/crash"))
        .send("x")
        .expect("request");
    assert_eq!(response.status().as_u16(), 502);
    let exit = wait_for("the crash to be logged", Duration::from_secs(10), || {
        corral
            .log_events()
            .into_iter()
            .find(|e| e["event"] == "worker_exited" && e["reason"] == "crash")
    });
    assert_eq!(exit["exit_code"], 3, "{exit}");
    assert_eq!(exit["level"], "ERROR");
    let tail = exit["stderr_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("crashing as asked by POST /crash"), "{exit}");
    // The exit is logged just before /status is republished: wait for the state itself.
    let crashed = exit["pid"].as_u64().expect("pid") as u32;
    let after = wait_for("a replacement", Duration::from_secs(10), || {
        let pids = corral.ready_pids();
        (pids.len() == 2 && !pids.contains(&crashed)).then_some(pids)
    });
    assert!(before.contains(&crashed));
    assert_eq!(
        after.iter().filter(|p| before.contains(p)).count(),
        1,
        "exactly one worker crashed"
    );
    // Worker stderr is re-emitted as log events.
    corral.wait_log("a worker stderr line", Duration::from_secs(10), |e| {
        e["target"] == "corral::worker" && e["stream"] == "stderr"
    });
}

#[test]
fn a_worker_that_exits_at_start_is_retried_with_growing_delays() {
    let pool = format!(
        "{}start_limit_burst = 50\n",
        testapp_pool(1, ", \"--exit-at-start\", \"2\"")
    );
    let corral = Corral::start(&pool, "", 0);
    let spawns = wait_for("several attempts", Duration::from_secs(15), || {
        let spawns: Vec<f64> = corral
            .log_events()
            .into_iter()
            .filter(|e| e["event"] == "worker_spawned")
            .filter_map(|e| e["timestamp"].as_str().map(str::to_string))
            .filter_map(|t| seconds_of(&t))
            .collect();
        (spawns.len() >= 5).then_some(spawns)
    });
    let gaps: Vec<f64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
    // 0, 100 ms, 200 ms, 400 ms...: each gap at least the backoff, and growing.
    assert!(gaps[2] >= 0.15 && gaps[3] >= 0.35, "gaps {gaps:?}");
    assert!(gaps[3] > gaps[1], "gaps {gaps:?}");
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 503);
}

/// Seconds within the day of an RFC 3339 timestamp.
fn seconds_of(ts: &str) -> Option<f64> {
    let time = ts.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

#[test]
fn a_crash_loop_stops_at_the_start_limit_and_recovers_on_reload() {
    let failing = |extra: &str| {
        format!(
            "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"{extra}]\nworkers = 1\nstart_limit_burst = 4\nstart_limit_interval = \"30s\"\n",
            support::testapp_bin().display().to_string()
        )
    };
    let mut corral = Corral::start(&failing(", \"--exit-at-start\", \"1\""), "", 0);
    let failed = corral.wait_event("pool_failed", Duration::from_secs(20));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("4 failed starts"),
        "{failed}"
    );
    let (status, body) = get(&client(), &corral.admin_url("/readyz")).expect("readyz");
    assert_eq!(status, 503);
    assert!(body.contains("pool web failed"), "{body}");
    assert!(corral.status().expect("status")["pools"][0]["failed"].is_string());
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 503);

    // No more attempts, and the master idles: under 5% of a core over 2 s.
    let spawns = |c: &Corral| {
        c.log_events()
            .iter()
            .filter(|e| e["event"] == "worker_spawned")
            .count()
    };
    let before = spawns(&corral);
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
    };
    let ticks_before = cpu(corral.pid());
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu(corral.pid()) - ticks_before;
    let share = ticks as f64 / 100.0 / measured.elapsed().as_secs_f64();
    assert!(
        share < 0.05,
        "corral used {:.1}% of a core while the pool was failed",
        share * 100.0
    );
    assert_eq!(spawns(&corral), before, "no restart attempts while failed");

    // Fix the command and reload: the pool recovers.
    corral.rewrite_config(&failing(""));
    corral.signal(Signal::SIGHUP);
    corral.wait_ready(1, Duration::from_secs(10));
    assert_eq!(
        get(&client(), &corral.admin_url("/readyz"))
            .expect("readyz")
            .0,
        200
    );
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

#[test]
fn a_command_that_does_not_exist_fails_the_pool_cleanly() {
    let text = "[pools.web]\ncommand = [\"/nonexistent/corral-test-app\", \"{port}\"]\nworkers = 2\nstart_limit_burst = 3\n";
    let corral = Corral::start(text, "", 0);
    let failed = corral.wait_event("pool_failed", Duration::from_secs(20));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("failed starts"),
        "{failed}"
    );
    let spawn_error = corral.wait_event("worker_spawn_failed", Duration::from_secs(10));
    assert!(
        spawn_error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("No such file"),
        "{spawn_error}"
    );
    assert_eq!(
        get(&client(), &corral.admin_url("/readyz"))
            .expect("readyz")
            .0,
        503
    );
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 503);
    assert!(
        corral.metric("corral_worker_restarts_total{pool=\"web\",reason=\"spawn_failed\"}") >= 3.0
    );
}

/// Regression: a restart timer named its pool by position. A reload that removed an earlier
/// pool shifted the positions, and the timer then restarted the wrong pool or indexed past
/// the end (a panic, which with `panic = "abort"` takes the master and every worker down).
#[test]
fn a_restart_timer_outlives_a_reload_that_removes_another_pool() {
    let app = support::testapp_bin().display().to_string();
    // Pools are kept in name order: legacy (removed) comes first, unstable (in backoff) last.
    let pools = |with_old: bool| {
        let old = if with_old {
            format!("[pools.legacy]\ncommand = [{app:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nready = \"tcp\"\n\n")
        } else {
            String::new()
        };
        format!(
            "[routing]\nactive = \"main\"\n\n{old}[pools.main]\ncommand = [{app:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nready = \"tcp\"\n\n\
             [pools.unstable]\ncommand = [{app:?}, \"--port\", \"{{port}}\", \"--exit-at-start\", \"1\"]\nworkers = 1\n\
             start_limit_burst = 1000\nstart_limit_interval = \"10s\"\n"
        )
    };
    let mut corral = Corral::start(&pools(true), "", 1);
    // Pool unstable's slot waits 800 ms or more before its next start.
    corral.wait_log(
        "a long backoff of pool unstable",
        Duration::from_secs(20),
        |e| {
            e["event"] == "worker_backoff"
                && e["pool"] == "unstable"
                && e["delay_ms"].as_u64() >= Some(800)
        },
    );
    let spawns = |c: &Corral| {
        c.log_events()
            .iter()
            .filter(|e| e["event"] == "worker_spawned" && e["pool"] == "unstable")
            .count()
    };
    corral.rewrite_config(&pools(false));
    corral.signal(Signal::SIGHUP);
    corral.wait_log("pool legacy's worker gone", Duration::from_secs(10), |e| {
        e["event"] == "worker_exited" && e["pool"] == "legacy"
    });
    // Every timer set before the reload has fired by now.
    std::thread::sleep(Duration::from_secs(3));
    let after_timers = spawns(&corral);
    wait_for(
        "pool unstable to be restarted again",
        Duration::from_secs(10),
        || (spawns(&corral) > after_timers).then_some(()),
    );
    // The supervisor still answers: one worker more for main.
    corral.signal(Signal::SIGTTIN);
    corral.wait_ready(2, Duration::from_secs(10));
    let stderr = std::fs::read_to_string(&corral.stderr).unwrap_or_default();
    assert!(!stderr.contains("panicked"), "{}", corral.logs());
    let status = corral.status().expect("status");
    let names: Vec<&str> = status["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["main", "unstable"], "{status}");
    corral.signal(Signal::SIGTERM);
    assert!(corral.wait_exit(Duration::from_secs(20)).success());
}

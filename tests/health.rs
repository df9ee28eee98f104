//! Health of ready workers, end to end with the test app: active checks take a worker whose
//! health path fails out of rotation and replace it; passive ejection takes out a worker that
//! refuses connections; no request fails meanwhile; `/status` and `/metrics` show each step.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The pid that answered `GET path` (the test app answers `{"worker":..,"pid":N}`).
fn answering_pid(corral: &Corral, path: &str) -> u64 {
    let (status, body) = get(&client(), &corral.url(path)).expect("request");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    v["pid"].as_u64().expect("pid")
}

/// The `/status` entry of the worker with `pid`.
fn worker_with(corral: &Corral, pid: u64) -> Option<Value> {
    corral
        .workers()
        .into_iter()
        .find(|w| w["pid"].as_u64() == Some(pid))
}

#[test]
fn a_worker_failing_its_health_checks_leaves_the_rotation_and_is_replaced_without_a_failed_request()
{
    let body = format!(
        "{}\n[pools.web.health]\ninterval = \"200ms\"\ntimeout = \"1s\"\nunhealthy = 3\nhealthy = 2\n",
        testapp_pool(2, "")
    );
    let mut corral = Corral::start(&body, "", 2);
    let load = Load::start(&corral.url("/"), 4, Duration::from_secs(60));
    load.wait_more(50, Duration::from_secs(20));
    let sick = answering_pid(&corral, "/sick");
    let marked = Instant::now();
    let unhealthy = corral.wait_event("worker_unhealthy", Duration::from_secs(10));
    let took = marked.elapsed();
    println!("unhealthy after {took:?}: {unhealthy}");
    assert_eq!(unhealthy["pid"].as_u64(), Some(sick), "{unhealthy}");
    // Three checks 200 ms apart, with a generous margin for a busy machine.
    assert!(took < Duration::from_secs(3), "{took:?}");
    let health = worker_with(&corral, sick).map(|w| w["health"].clone());
    if let Some(h) = &health {
        assert_eq!(h["healthy"], false, "{h}");
        assert!(h["checks_failed_in_a_row"].as_u64() >= Some(3), "{h}");
    }
    // No new request reaches it (it answers until its replacement is ready, then drains).
    let served: BTreeSet<u64> = (0..40).map(|_| answering_pid(&corral, "/")).collect();
    assert!(
        !served.contains(&sick),
        "{served:?} includes the unhealthy {sick}"
    );
    let exited = wait_for(
        "the unhealthy worker replaced",
        Duration::from_secs(20),
        || {
            corral
                .log_events()
                .into_iter()
                .find(|e| e["event"] == "worker_exited" && e["pid"].as_u64() == Some(sick))
        },
    );
    assert_eq!(exited["reason"], "unhealthy", "{exited}");
    corral.wait_ready(2, Duration::from_secs(20));
    load.wait_more(50, Duration::from_secs(20));
    let result = load.stop();
    result.assert_no_failures(&corral.logs());
    let metrics = corral.metrics();
    assert!(
        corral.metric("corral_health_checks_total{pool=\"web\",result=\"failed\"}") >= 3.0,
        "{metrics}"
    );
    assert!(
        corral.metric("corral_health_checks_total{pool=\"web\",result=\"passed\"}") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        corral.metric("corral_worker_restarts_total{pool=\"web\",reason=\"unhealthy\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        corral.metric("corral_backends{health=\"healthy\",pool=\"web\"}"),
        2.0,
        "{metrics}"
    );
}

#[test]
fn a_worker_that_recovers_before_it_would_be_replaced_serves_on() {
    // Out after 2 failed checks (0.6 s), replaced after 4 (1.2 s): /well comes in between.
    let body = format!(
        "{}\n[pools.web.health]\ninterval = \"300ms\"\nunhealthy = 2\nhealthy = 2\n",
        testapp_pool(1, "")
    );
    let corral = Corral::start(&body, "", 1);
    let sick = answering_pid(&corral, "/sick");
    corral.wait_event("worker_unhealthy", Duration::from_secs(10));
    // The only worker of its pool: out of rotation, it still takes what has nowhere else to go.
    assert_eq!(answering_pid(&corral, "/well"), sick);
    let back = corral.wait_event("worker_healthy", Duration::from_secs(10));
    assert_eq!(back["pid"].as_u64(), Some(sick), "{back}");
    let h = worker_with(&corral, sick).expect("still listed")["health"].clone();
    assert_eq!(h["healthy"], true, "{h}");
    assert_eq!(h["last_check_passed"], true, "{h}");
    // Past the time it would have been replaced: it is the same worker, never retired.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(answering_pid(&corral, "/"), sick);
    let events = corral.log_events();
    for gone in ["worker_still_unhealthy", "worker_retiring", "worker_exited"] {
        assert!(
            !events.iter().any(|e| e["event"] == gone),
            "{gone} in {events:#?}"
        );
    }
}

#[test]
fn a_worker_refusing_connections_is_ejected_and_its_requests_go_elsewhere() {
    let body = format!(
        "{}\n[pools.web.health]\nmax_fails = 2\neject_for = \"30s\"\n",
        testapp_pool(3, "")
    );
    let corral = Corral::start(&body, "", 3);
    let broken = answering_pid(&corral, "/unlisten");
    let load = Load::start(&corral.url("/"), 4, Duration::from_secs(60));
    let ejected = corral.wait_event("backend_ejected", Duration::from_secs(15));
    println!("{ejected}");
    assert_eq!(ejected["pid"].as_u64(), Some(broken), "{ejected}");
    assert_eq!(ejected["last_failure"], "connect", "{ejected}");
    let h = worker_with(&corral, broken).expect("listed")["health"].clone();
    assert!(h["ejected_for_seconds"].as_f64() > Some(20.0), "{h}");
    load.wait_more(200, Duration::from_secs(20));
    let result = load.stop();
    // Every request that met the refusing worker was retried on another (GET is idempotent).
    result.assert_no_failures(&corral.logs());
    let served: BTreeSet<u64> = (0..30).map(|_| answering_pid(&corral, "/")).collect();
    assert!(!served.contains(&broken), "{served:?}");
    assert_eq!(served.len(), 2, "{served:?}");
    let metrics = corral.metrics();
    assert_eq!(
        corral.metric("corral_backend_ejections_total{pool=\"web\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        corral.metric("corral_backends{health=\"ejected\",pool=\"web\"}"),
        1.0,
        "{metrics}"
    );
}

/// The `/status` health of the remote backend at `port`.
fn remote_health(corral: &Corral, port: u16) -> Option<Value> {
    let addr = format!("127.0.0.1:{port}");
    corral
        .workers()
        .into_iter()
        .find(|w| w["addr"].as_str() == Some(addr.as_str()))
        .map(|w| w["health"].clone())
}

#[test]
fn a_remote_pool_ejects_a_killed_upstream_serves_on_without_failures_and_takes_it_back() {
    let (first, second) = (App::start(free_port()), App::start(free_port()));
    let body = format!(
        "[pools.api]\nupstreams = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nconcurrency = 8\n\n[pools.api.health]\ninterval = \"200ms\"\nunhealthy = 2\nhealthy = 2\nmax_fails = 2\n",
        first.port, second.port
    );
    let corral = Corral::start(&body, "", 0);
    let both: BTreeSet<u64> = wait_for("both upstreams serving", Duration::from_secs(10), || {
        let seen: Option<BTreeSet<u64>> = (0..20)
            .map(|_| {
                let (status, body) = get(&client(), &corral.url("/")).ok()?;
                let v: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
                v["pid"].as_u64()
            })
            .collect();
        seen.filter(|s| s.len() == 2)
    });
    assert!(both.contains(&u64::from(second.pid())), "{both:?}");
    let h = remote_health(&corral, second.port).expect("listed in /status");
    assert_eq!(h["healthy"], true, "{h}");
    let pids: Vec<Value> = corral.workers().iter().map(|w| w["pid"].clone()).collect();
    assert!(
        pids.iter().all(Value::is_null),
        "remote backends have no pid: {pids:?}"
    );

    // Kill one: its checks fail (and its connections are refused) until it is out.
    let load = Load::start(&corral.url("/"), 4, Duration::from_secs(60));
    load.wait_more(20, Duration::from_secs(10));
    let port = second.port;
    drop(second);
    let killed = Instant::now();
    let out = wait_for(
        "the killed upstream out of rotation",
        Duration::from_secs(10),
        || {
            remote_health(&corral, port)
                .filter(|h| h["healthy"] == false || !h["ejected_for_seconds"].is_null())
        },
    );
    let took = killed.elapsed();
    println!("out of rotation after {took:?}: {out}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The active checks take it out too (two failed checks 200 ms apart).
    let unhealthy = wait_for("failed checks", Duration::from_secs(10), || {
        remote_health(&corral, port).filter(|h| h["healthy"] == false)
    });
    println!("unhealthy after {:?}: {unhealthy}", killed.elapsed());
    assert_eq!(unhealthy["last_check_passed"], false, "{unhealthy}");
    let before = load.stop();
    println!(
        "{} requests while it was killed, {} failed: {:?}",
        before.ok,
        before.failures.len(),
        before.failures
    );
    let after = Load::start(&corral.url("/"), 4, Duration::from_secs(60));
    after.wait_more(200, Duration::from_secs(20));
    after.stop().assert_no_failures(&corral.logs());
    assert_eq!(
        corral.metric("corral_backends{health=\"healthy\",pool=\"api\"}"),
        1.0
    );

    // It comes back on the same address: checks pass twice and it serves again.
    let again = App::start(port);
    let back = Instant::now();
    wait_for(
        "the upstream back in rotation",
        Duration::from_secs(10),
        || {
            remote_health(&corral, port)
                .filter(|h| h["healthy"] == true && h["last_check_passed"] == true)
        },
    );
    println!("back after {:?}", back.elapsed());
    // Passing checks end the passive ejection as well: it serves long before its 10 s are up.
    wait_for("requests reach it again", Duration::from_secs(5), || {
        (0..20)
            .any(|_| answering_pid(&corral, "/") == u64::from(again.pid()))
            .then_some(())
    });
    let events: Vec<Value> = corral
        .log_events()
        .into_iter()
        .filter(|e| {
            e["event"].as_str().is_some_and(|e| {
                e.contains("healthy") || e.contains("eject") || e.contains("upstream")
            })
        })
        .collect();
    for step in [
        "upstream_added",
        "backend_ejected",
        "worker_unhealthy",
        "worker_healthy",
    ] {
        assert!(
            events.iter().any(|e| e["event"] == step),
            "no {step} in {events:#?}"
        );
    }
}

#[test]
fn a_remote_upstream_that_hangs_gets_its_request_a_504_and_is_not_killed() {
    let app = App::start(free_port());
    let body = format!(
        "[pools.api]\nupstreams = [\"127.0.0.1:{}\"]\ntimeout = \"1s\"\n",
        app.port
    );
    let corral = Corral::start(&body, "", 0);
    wait_for("the upstream serving", Duration::from_secs(10), || {
        get(&client(), &corral.url("/"))
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    let start = Instant::now();
    let (status, _) = get(&client(), &corral.url("/sleep?ms=5000")).expect("request");
    assert_eq!(status, 504);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // No process of corral's: nothing is signalled, the server serves on.
    assert!(group_alive(app.pid()));
    let (status, _) = get(&client(), &corral.url("/")).expect("request after");
    assert_eq!(status, 200);
}

#[test]
fn health_events_of_a_worker_stop_with_its_exit() {
    // Regression: a worker's checks went on while anything still held its backend (here a
    // request whose client stalls mid-upload; in a soak, requests queued on an old table),
    // so `worker_unhealthy` was logged seconds after the worker had exited.
    use std::io::Write;
    let body = format!(
        "{}\n[pools.web.health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nunhealthy = 2\nhealthy = 2\n",
        testapp_pool(1, "")
    );
    let mut corral = Corral::start(&body, "", 1);
    let pid = corral.ready_pids()[0];
    let mut upload = std::net::TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    upload
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .expect("head");
    upload.write_all(&[b'x'; 70_000]).expect("part of the body");
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    corral.wait_log("the worker's exit", Duration::from_secs(10), |e| {
        e["event"] == "worker_exited" && e["pid"] == pid
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = upload.write_all(&[b'x'; 30_000]);
    drop(upload);
    let events = corral.log_events();
    let exit = events
        .iter()
        .position(|e| e["event"] == "worker_exited" && e["pid"] == pid)
        .expect("exit logged");
    let late: Vec<&Value> = events[exit..]
        .iter()
        .filter(|e| {
            e["pid"] == pid
                && e["event"]
                    .as_str()
                    .is_some_and(|name| name.starts_with("worker_") && name.contains("health"))
        })
        .collect();
    assert!(late.is_empty(), "health events after the exit: {late:?}");
}

//! SIGHUP: every worker replaced rolling with no failed request; a broken file changes
//! nothing; new code and new settings take effect.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{client, get, testapp_pool, wait_for, Corral, Load};

#[test]
fn twenty_sighups_under_load_fail_no_request_and_replace_every_worker() {
    let mut corral = Corral::start(&testapp_pool(4, ""), "", 4);
    let mut pids = corral.ready_pids();
    let load = Load::start(&corral.url("/sleep?ms=5"), 16, Duration::from_secs(120));
    load.wait_more(100, Duration::from_secs(10));
    for round in 0..20u64 {
        corral.signal(Signal::SIGHUP);
        let new = corral.wait_replaced(4, round + 2, &pids, Duration::from_secs(20));
        assert!(
            new.iter().all(|p| !pids.contains(p)),
            "round {round}: {new:?} vs {pids:?}"
        );
        pids = new;
    }
    load.wait_more(100, Duration::from_secs(10));
    let result = load.stop();
    result.assert_no_failures(&corral.logs());
    assert_eq!(corral.status().expect("status")["generation"], 21);
    assert_eq!(
        corral.metric("corral_config_reloads_total{result=\"ok\"}"),
        20.0
    );
    assert_eq!(
        corral.metric("corral_worker_restarts_total{pool=\"web\",reason=\"reload\"}"),
        80.0
    );
    println!("{} requests over 20 reloads, 0 failed", result.ok);
}

#[test]
fn broken_config_on_sighup_keeps_the_old_one_serving() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let pids = corral.ready_pids();
    let body = format!("{}timeout = \"soon\"\n", testapp_pool(2, ""));
    corral.rewrite_config(&body);
    let line = format!("{}{body}", corral.header)
        .lines()
        .position(|l| l.starts_with("timeout = \"soon\""))
        .expect("bad line")
        + 1;
    corral.signal(Signal::SIGHUP);
    let rejected = corral.wait_event("config_error", Duration::from_secs(10));
    let message = rejected["message"].as_str().unwrap_or_default();
    let expected = format!("corral.toml:{line}:11: pools.web.timeout: \"soon\" is not a duration");
    assert!(message.contains(&expected), "{expected} not in {rejected}");
    corral.wait_event("config_rejected", Duration::from_secs(10));
    assert_eq!(
        corral.metric("corral_config_reloads_total{result=\"error\"}"),
        1.0
    );
    for _ in 0..20 {
        assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
    }
    assert_eq!(corral.ready_pids(), pids, "workers untouched");
    assert_eq!(corral.status().expect("status")["generation"], 1);
}

#[test]
fn reload_serves_the_new_code_and_settings() {
    // A real Python app whose code changes between reloads.
    let app_dir = tempfile::tempdir().expect("dir");
    let app = app_dir.path().join("app.py");
    let write_app = |message: &str| {
        let code = format!(
            "import os, sys\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\nclass H(BaseHTTPRequestHandler):\n    protocol_version = 'HTTP/1.1'\n    def do_GET(self):\n        body = b'{message}'\n        self.send_response(200)\n        self.send_header('Content-Length', str(len(body)))\n        self.end_headers()\n        self.wfile.write(body)\n    def log_message(self, *a):\n        pass\nHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
        );
        std::fs::write(&app, code).expect("write app");
    };
    write_app("version one");
    let pool = |workers: u32| {
        format!("[pools.web]\ncommand = [\"python3\", {:?}, \"{{port}}\"]\nworkers = {workers}\nready = \"tcp\"\n", app.display().to_string())
    };
    let mut corral = Corral::start(&pool(2), "", 2);
    assert_eq!(
        get(&client(), &corral.url("/")).expect("request").1,
        "version one"
    );
    let old = corral.ready_pids();

    write_app("version two");
    corral.rewrite_config(&pool(3));
    corral.signal(Signal::SIGHUP);
    corral.wait_replaced(3, 2, &old, Duration::from_secs(20));
    for _ in 0..10 {
        assert_eq!(
            get(&client(), &corral.url("/")).expect("request").1,
            "version two"
        );
    }
    assert_eq!(corral.status().expect("status")["pools"][0]["desired"], 3);
}

#[test]
fn a_reload_during_a_reload_is_applied_not_lost() {
    // Workers take 700 ms to listen, so the second reload arrives while the first one's
    // replacements are still starting.
    let pool = |workers: u32| testapp_pool(workers, ", \"--startup-delay-ms\", \"700\"");
    let mut corral = Corral::start(&pool(2), "", 2);
    let first = corral.ready_pids();
    let load = Load::start(&corral.url("/sleep?ms=5"), 8, Duration::from_secs(60));
    let (code, _, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    wait_for("replacements starting", Duration::from_secs(5), || {
        corral
            .workers()
            .iter()
            .any(|w| w["state"] == "starting" && w["generation"] == 2)
            .then_some(())
    });
    corral.rewrite_config(&pool(3));
    let (code, out, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("generation 3"), "{out}");
    let last = corral.wait_replaced(3, 3, &first, Duration::from_secs(20));
    load.wait_more(50, Duration::from_secs(10));
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{:?}\n{}",
        result.failures,
        corral.logs()
    );
    assert_eq!(last.len(), 3);
    // The half-started generation-2 workers were stopped, not left behind.
    corral.wait_log("a reload exit", Duration::from_secs(10), |e| {
        e["event"] == "worker_exited" && e["reason"] == "reload"
    });
    assert!(corral.workers().iter().all(|w| w["generation"] == 3));
}

#[test]
fn new_code_that_cannot_start_never_replaces_the_serving_workers() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let pids = corral.ready_pids();
    let load = Load::start(&corral.url("/"), 4, Duration::from_secs(60));
    load.wait_more(50, Duration::from_secs(10));
    // A release whose workers die at start (an import error, say).
    corral.rewrite_config(
        "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"echo ImportError >&2; exit 3\"]\nworkers = 2\nconcurrency = 8\nstart_limit_burst = 3\n",
    );
    corral.signal(Signal::SIGHUP);
    corral.wait_event("config_reloaded", Duration::from_secs(10));
    corral.wait_event("pool_failed", Duration::from_secs(60));
    load.wait_more(50, Duration::from_secs(10));
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{} failed: {:?}\n{}",
        result.failures.len(),
        &result.failures[..result.failures.len().min(5)],
        corral.logs()
    );
    // They stay "retiring" (still taking traffic) until a release that starts replaces them.
    std::thread::sleep(Duration::from_secs(2));
    let status = corral.status().expect("status");
    let pool = &status["pools"][0];
    assert_eq!(pool["ready"], 2, "{status}");
    let serving: Vec<u64> = pool["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["pid"].as_u64())
        .collect();
    assert_eq!(
        serving,
        pids.iter().map(|p| u64::from(*p)).collect::<Vec<_>>(),
        "{status}"
    );
    for _ in 0..20 {
        assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
    }
}

#[test]
fn a_request_whose_body_arrives_across_a_reload_goes_to_a_worker_that_still_runs() {
    // Regression (found by bench/soak): a request kept the routing table of its arrival while
    // its body came in, then was sent to a worker that the reload had drained and stopped
    // meanwhile: 502 for a POST, which cannot be replayed.
    use std::io::{Read, Write};
    let mut corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let old = corral.ready_pids();
    let mut upload = std::net::TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    upload
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    upload
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n",
        )
        .expect("head");
    upload.write_all(&[b'x'; 10_000]).expect("half the body");
    corral.signal(Signal::SIGHUP);
    corral.wait_replaced(1, 2, &old, Duration::from_secs(20));
    corral.wait_log("the old worker's exit", Duration::from_secs(20), |e| {
        e["event"] == "worker_exited" && e["pid"] == old[0]
    });
    upload.write_all(&[b'x'; 10_000]).expect("the rest");
    let mut answer = String::new();
    let _ = upload.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}\n{}",
        answer.lines().next().unwrap_or("no answer"),
        corral.logs()
    );
}

//! Serving through the proxy: the bundled example, load spread over workers, access log,
//! forwarded headers, and 503 when nothing is ready.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::{client, free_port, get, repo_root, testapp_pool, Corral};

#[test]
fn bundled_example_serves_through_the_proxy() {
    // The shipped config as a user runs it, with the ports moved so tests can run in parallel:
    // $PORT overrides the listener (the platform convention), the admin port is rewritten.
    let text =
        std::fs::read_to_string(repo_root().join("config/example.toml")).expect("example config");
    let (port, admin) = (free_port(), free_port());
    let text = text.replace(
        "127.0.0.1:9901\"",
        &format!("127.0.0.1:{admin}\"\ncontrol_socket = \"{{dir}}/control.sock\""),
    );
    assert!(
        text.contains(&format!("127.0.0.1:{admin}")),
        "example config no longer has the admin line"
    );
    let port_text = port.to_string();
    let mut corral = Corral::spawn_with(&text, port, admin, &["run"], &[("PORT", &port_text)]);
    let pids = corral.wait_ready(4, Duration::from_secs(30));
    assert_eq!(pids.len(), 4);

    let (status, body) = get(&client(), &corral.url("/")).expect("request through corral");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("the app answers JSON");
    assert_eq!(answer["hello"], "from corral's example app");
    assert!(
        pids.contains(&(answer["pid"].as_u64().expect("pid") as u32)),
        "answer from a worker /status lists"
    );
    assert_eq!(answer["client"], "127.0.0.1");
    assert_eq!(answer["request_id"].as_str().map(str::len), Some(32));
    // The example app's `Server: ... Python/3.x` never reaches the client; the preset does.
    let raw = client()
        .get(&corral.url("/"))
        .call()
        .expect("request through corral");
    assert!(raw.headers().get("server").is_none(), "{:?}", raw.headers());
    assert_eq!(
        raw.headers()
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );

    let workers = corral.workers();
    assert_eq!(workers.len(), 4);
    assert!(workers.iter().all(|w| w["state"] == "ready"), "{workers:?}");
    let (status, body) = get(&client(), &corral.admin_url("/readyz")).expect("readyz");
    assert_eq!(
        (status, body.trim()),
        (200, "ready: 4 of 4 workers of pool web")
    );
    assert_eq!(
        get(&client(), &corral.admin_url("/healthz"))
            .expect("healthz")
            .0,
        200
    );
}

#[test]
fn load_spreads_over_all_workers_and_every_request_is_logged() {
    // One proxy thread: the current-thread runtime path (other tests use the default, one
    // thread per core).
    let corral = Corral::start(&testapp_pool(4, ""), "threads = 1", 4);
    let statuses = Arc::new(std::sync::Mutex::new(HashMap::<u16, usize>::new()));
    let by_pid = Arc::new(std::sync::Mutex::new(HashMap::<u64, usize>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let url = corral.url("/sleep?ms=2");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (statuses, by_pid, next, url) =
                (statuses.clone(), by_pid.clone(), next.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = client();
                while next.fetch_add(1, Ordering::Relaxed) < 1000 {
                    let (status, body) = get(&agent, &url).unwrap_or((0, String::new()));
                    *statuses.lock().expect("lock").entry(status).or_default() += 1;
                    if let Some(pid) = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["pid"].as_u64())
                    {
                        *by_pid.lock().expect("lock").entry(pid).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let statuses = statuses.lock().expect("lock").clone();
    assert_eq!(statuses, HashMap::from([(200, 1000)]), "{}", corral.logs());
    let by_pid = by_pid.lock().expect("lock").clone();
    assert_eq!(by_pid.len(), 4, "all four workers served: {by_pid:?}");
    for (pid, n) in &by_pid {
        assert!(
            *n >= 100,
            "worker {pid} served only {n} of 1000: {by_pid:?}"
        );
    }

    let access = support::wait_for("1000 access lines", Duration::from_secs(10), || {
        let lines: Vec<Value> = corral
            .log_events()
            .into_iter()
            .filter(|e| e["target"] == "corral::access")
            .collect();
        (lines.len() >= 1000).then_some(lines)
    });
    assert_eq!(access.len(), 1000);
    for line in &access {
        assert_eq!(line["status"], 200, "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
            "{line}"
        );
        assert_eq!(line["path"], "/sleep?ms=2");
        assert_eq!(line["pool"], "web");
    }
    let served: u64 = corral
        .workers()
        .iter()
        .map(|w| w["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(served, 1000, "/status counts every request");
    let metrics = corral.metrics();
    assert!(
        metrics.contains("corral_requests_total{pool=\"web\",status=\"2xx\"} 1000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("corral_workers{pool=\"web\",state=\"ready\"} 4"),
        "{metrics}"
    );
}

#[test]
fn forwarded_headers_from_clients_are_replaced() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let mut response = client()
        .get(&corral.url("/headers"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Real-IP", "6.6.6.6")
        .header("Forwarded", "for=6.6.6.6")
        .call()
        .expect("request");
    let headers: Value =
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-port"], corral.port.to_string());
    assert!(headers.get("forwarded").is_none(), "{headers}");
    assert_eq!(headers["x-request-id"].as_str().map(str::len), Some(32));
}

#[test]
fn no_ready_worker_answers_503_at_once() {
    // Workers that take 30 s to listen: the pool has no ready worker for the whole test.
    let corral = Corral::start(
        &testapp_pool(2, ", \"--startup-delay-ms\", \"30000\""),
        "",
        0,
    );
    support::wait_for("admin up", Duration::from_secs(10), || corral.status());
    support::expect_quick_503(&corral.url("/"), Duration::from_secs(2));
    let (status, _) = get(&client(), &corral.admin_url("/readyz")).expect("readyz");
    assert_eq!(status, 503);
    assert!(corral.metrics().contains("corral_no_ready_worker_total 1"));
}

#[test]
fn oversized_and_ambiguous_requests_are_refused() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let long = format!("/{}", "a".repeat(5000));
    assert_eq!(get(&client(), &corral.url(&long)).expect("request").0, 414);
    let mut request = client().get(&corral.url("/"));
    for i in 0..101 {
        request = request.header(format!("x-h{i}"), "v");
    }
    assert_eq!(request.call().expect("request").status().as_u16(), 431);
    let big = "v".repeat(9000);
    assert_eq!(
        client()
            .get(&corral.url("/"))
            .header("x-big", &big)
            .call()
            .expect("request")
            .status()
            .as_u16(),
        431
    );
    // Raw socket: Content-Length with Transfer-Encoding is a smuggling attempt.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").expect("write");
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[test]
fn a_port_in_use_is_a_clean_error_before_any_worker_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let text = format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"\"\ncontrol_socket = \"\"\n[log]\nformat = \"json\"\n\n{}", testapp_pool(2, ""));
    let mut corral = Corral::spawn_with(&text, port, 0, &["run"], &[]);
    let status = corral.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let stderr = std::fs::read_to_string(&corral.stderr).expect("stderr");
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{stderr}"
    );
    assert!(
        !corral
            .log_events()
            .iter()
            .any(|e| e["event"] == "worker_spawned"),
        "no worker may start"
    );
    let failed = corral
        .log_events()
        .into_iter()
        .find(|e| e["message"] == "corral failed")
        .expect("failure logged");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Address already in use"),
        "{failed}"
    );
}

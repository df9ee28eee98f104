//! The shipped Prometheus alert rules and Grafana dashboard (`config/`) use only metric names
//! a running corral serves on `/metrics`, and promtool accepts the rules where it is installed.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{client, get, repo_root, testapp_pool, wait_for, Corral};

/// Every `corral_*` name in `text`.
fn corral_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("corral_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        // `corral_*` in prose is no metric.
        if boundary && !text[start..end].ends_with('_') {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The metric names of a `/metrics` page (samples, not comments).
fn served_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn alert_rules_and_dashboard_use_only_served_metrics() {
    // Families with labels appear once they have a sample: exercise each one.
    let body = testapp_pool(2, "")
        + "\n[[rate_limits]]\nname = \"probe\"\nrate = \"1/m\"\nburst = 1\nmatch = { path_prefix = \"/limited\" }\n";
    let mut corral = Corral::start(&body, "", 2);
    let agent = client();
    for path in ["/", "/limited", "/limited"] {
        get(&agent, &corral.url(path)).expect("request");
    }
    let pids = corral.ready_pids();
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).expect("kill a worker");
    corral.signal(Signal::SIGHUP);
    corral.wait_event("config_reloaded", Duration::from_secs(10));
    let metrics = wait_for(
        "restart and rate limit samples",
        Duration::from_secs(20),
        || {
            let m = corral.metrics();
            (m.contains("corral_worker_restarts_total{")
                && m.contains("corral_rate_limited_total{"))
            .then_some(m)
        },
    );
    let served = served_names(&metrics);

    for file in ["config/alerts.yml", "config/grafana-dashboard.json"] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect("read");
        let used = corral_names(&text);
        assert!(used.len() >= 8, "{file} uses only {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics /metrics does not serve: {unknown:?}\nserved: {served:?}"
        );
    }
}

#[test]
fn the_dashboard_is_json_and_promtool_accepts_the_rules() {
    let text = std::fs::read_to_string(repo_root().join("config/grafana-dashboard.json"))
        .expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    let promtool = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo_root().join("config/alerts.yml"))
        .output();
    match promtool {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var_os("CORRAL_REQUIRE_APPS").is_none() => {
            eprintln!("skipped: promtool is not installed (Debian's prometheus package has it)");
        }
        Err(e) => panic!("promtool: {e} (cargo xtask setup test installs it)"),
    }
}

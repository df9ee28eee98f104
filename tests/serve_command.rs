//! `corral serve -- CMD`: the zero-config form runs like a config file would, with the same
//! JSON logs, admin API, control socket, reload and stop.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{client, free_port, get, Corral};

fn serve(workers: &str, extra_env: &[(&str, &str)]) -> Corral {
    serve_command(
        workers,
        &["python3", "examples/app.py", "--port", "{port}"],
        extra_env,
    )
}

fn serve_command(workers: &str, command: &[&str], extra_env: &[(&str, &str)]) -> Corral {
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let argv: Vec<String> = [
        "serve",
        "--workers",
        workers,
        "--port",
        &port.to_string(),
        "--admin",
        &format!("127.0.0.1:{admin}"),
        "--runtime-dir",
        &dir.path().display().to_string(),
        "--",
    ]
    .iter()
    .chain(command)
    .map(|a| a.to_string())
    .collect();
    Corral::spawn_args(dir, &argv, port, admin, extra_env)
}

#[test]
fn serve_runs_four_workers_of_the_example_like_a_config_file() {
    // $PORT and $WEB_CONCURRENCY are set, but the options given win over them.
    let mut corral = serve("4", &[("PORT", "1"), ("WEB_CONCURRENCY", "2")]);
    let pids = corral.wait_ready(4, Duration::from_secs(30));
    let agent = client();
    let (status, body) = get(&agent, &corral.url("/")).expect("GET / through corral");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from corral's example app"), "{body}");

    // The same admin API, JSON logs and control socket as `corral run -c`.
    let status = corral.status().expect("/status");
    assert_eq!(status["pools"][0]["name"], "web");
    assert_eq!(status["pools"][0]["desired"], 4);
    assert!(
        corral.metrics().contains("corral_requests_total"),
        "/metrics"
    );
    corral.wait_event("started", Duration::from_secs(5));
    let generated = corral
        .dir
        .path()
        .join(format!("serve-{}.toml", corral.pid()));
    let text = std::fs::read_to_string(&generated).expect("the generated config is readable");
    let (code, _, err) = support::check(&generated);
    assert_eq!(
        code, 0,
        "corral check accepts the generated file: {err}\n{text}"
    );
    let (code, out, err) = corral.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pool web (active): 4 of 4 ready"), "{out}");

    // SIGHUP reloads it: every worker is replaced.
    let (code, _, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    corral.wait_replaced(4, 2, &pids, Duration::from_secs(30));

    corral.signal(Signal::SIGTERM);
    assert!(corral.wait_exit(Duration::from_secs(30)).success());
    assert!(!generated.exists(), "the generated file is removed at exit");
}

#[test]
fn a_command_naming_a_socket_is_served_over_unix_sockets_without_bind() {
    let app = support::testapp_bin().display().to_string();
    let mut corral = serve_command("2", &[&app, "--unix", "{socket}"], &[]);
    corral.wait_ready(2, Duration::from_secs(30));
    let (status, body) = get(&client(), &corral.url("/")).expect("GET / through corral");
    assert_eq!(status, 200, "{body}");
    let status = corral.status().expect("/status");
    let workers = status["pools"][0]["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(workers.len(), 2, "{status}");
    for worker in &workers {
        let address = worker["addr"].as_str().unwrap_or_default();
        assert!(address.starts_with("unix:"), "{worker}");
    }
}

#[test]
fn a_bad_option_is_refused_before_anything_starts() {
    let mut corral = serve("0", &[]);
    let exit = corral.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(64), "{}", corral.logs());
    assert!(corral.logs().contains("workers"), "{}", corral.logs());
}

//! `corral status|reload|scale` talking to a running corral over its control socket.

mod support;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{client, corral_bin, get, testapp_pool, wait_for, Corral};

#[test]
fn status_shows_a_table_and_json() {
    let corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let (code, table, stderr) = corral.cli(&["status"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains("pool web (active): 2 of 2 ready"), "{table}");
    assert!(
        table.contains("WORKER") && table.matches(" ready ").count() == 2,
        "{table}"
    );
    let (code, json, _) = corral.cli(&["status", "--json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(status["pools"][0]["ready"], 2);
    // The control socket is not reachable over TCP: control requests only on the socket.
    let refused = client()
        .post(&corral.admin_url("/reload"))
        .send("")
        .expect("request");
    assert_eq!(refused.status().as_u16(), 404);
}

#[test]
fn scale_sets_the_worker_count() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let (code, out, err) = corral.cli(&["scale", "web", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    corral.wait_ready(4, Duration::from_secs(10));
    let (code, out, err) = corral.cli(&["scale", "web", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("one worker left", Duration::from_secs(15), || {
        (corral.workers().len() == 1).then_some(())
    });
    let (code, _, err) = corral.cli(&["scale", "nope", "3"]);
    assert_ne!(code, 0);
    assert!(err.contains("no pool is named \"nope\""), "{err}");
    assert_eq!(
        corral.metric("corral_worker_restarts_total{pool=\"web\",reason=\"scale\"}"),
        3.0
    );
}

#[test]
fn reload_replaces_workers_and_reports_a_broken_file() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let old = corral.ready_pids();
    let (code, out, err) = corral.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reloaded: generation 2"), "{out}");
    wait_for("new workers", Duration::from_secs(15), || {
        let pids = corral.ready_pids();
        (pids.len() == 2 && pids.iter().all(|p| !old.contains(p)) && corral.workers().len() == 2)
            .then_some(())
    });

    corral.rewrite_config(&format!(
        "{}workers = \"many\"\n",
        testapp_pool(2, "").replace("workers = 2\n", "")
    ));
    let (code, _, err) = corral.cli(&["reload"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("pools.web.workers: expected an integer or \"auto\""),
        "{err}"
    );
    assert!(err.contains("the running config is unchanged"), "{err}");
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

#[test]
fn clear_errors_when_nothing_runs_or_permission_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("control.sock");
    let out = Command::new(corral_bin())
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no corral is running with control socket"),
        "{err}"
    );

    // The socket is 0660 and owned by root: another user is refused, clearly.
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    // `nobody` must be able to reach the socket's directory to be refused by the socket itself.
    std::fs::set_permissions(
        corral.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let binary = std::env::temp_dir().join(format!("corral-cli-{}", std::process::id()));
    std::fs::copy(corral_bin(), &binary).expect("copy the binary where nobody can run it");
    let out = Command::new(&binary)
        .args(["status", "--socket"])
        .arg(corral.socket())
        .uid(65534)
        .gid(65534)
        .output()
        .expect("cli as nobody");
    let _ = std::fs::remove_file(&binary);
    assert_eq!(
        out.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied on control socket"));
}

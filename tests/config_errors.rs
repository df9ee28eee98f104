//! `corral check` and `corral run` on good and bad configs.

mod support;

use std::time::Duration;

use support::{check, free_port, repo_root, Corral};

/// A config with three mistakes: an unknown key, a wrong type, a bad duration.
const THREE_MISTAKES: &str = r#"[server]
listen = ["127.0.0.1:18080"]
graceful_timout = "5s"

[pools.web]
command = ["python3", "examples/app.py", "--port", "{port}"]
workers = "four"
start_timeout = "30"
"#;

#[test]
fn check_lists_every_mistake_with_line_column_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("corral.toml");
    std::fs::write(&path, THREE_MISTAKES).expect("write");
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 64, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let file = path.display().to_string();
    for expected in [
        format!("{file}:3:1: server.graceful_timout: unknown key; did you mean `graceful_timeout`?"),
        format!("{file}:7:11: pools.web.workers: expected an integer or \"auto\", found the string \"four\""),
        format!("{file}:8:17: pools.web.start_timeout: \"30\" is not a duration"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("3 errors"), "{stderr}");
}

#[test]
fn run_refuses_to_start_with_the_same_errors() {
    let port = free_port();
    let mut corral = Corral::spawn_with(THREE_MISTAKES, port, 0, &["run"], &[]);
    let status = corral.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(64));
    let stderr = std::fs::read_to_string(&corral.stderr).expect("stderr");
    assert!(
        stderr.contains(":3:1: server.graceful_timout: unknown key"),
        "{stderr}"
    );
    assert!(stderr.contains(":7:11: pools.web.workers"), "{stderr}");
    assert!(
        stderr.contains(":8:17: pools.web.start_timeout"),
        "{stderr}"
    );
    assert!(stderr.contains("not starting"), "{stderr}");
}

#[test]
fn every_shipped_config_is_valid() {
    // config/, the package's and the image's defaults, and every example's.
    let mut dirs = vec![
        repo_root().join("config"),
        repo_root().join("packaging"),
        repo_root().join("examples"),
    ];
    let mut checked = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("shipped dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                let (code, stdout, stderr) = check(&path);
                assert_eq!(code, 0, "{}:\n{stderr}", path.display());
                assert!(stdout.contains("[pools."), "{stdout}");
                checked.push(path);
            }
        }
    }
    assert!(checked.len() >= 10, "shipped configs: {checked:?}");
}

#[test]
fn syntax_errors_and_missing_files_are_clear() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "[server\nlisten = 1\n").expect("write");
    let (code, _, stderr) = check(&path);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("broken.toml:1:") && stderr.contains("TOML syntax error"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&dir.path().join("absent.toml"));
    assert_eq!(code, 64);
    assert!(stderr.contains("cannot read the config file"), "{stderr}");
}

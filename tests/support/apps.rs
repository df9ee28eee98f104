//! Real app servers (gunicorn, waitress, uvicorn, Granian, Django, Node.js) from the Python
//! venv that `cargo xtask test` prepares in `target/venv` (or `$CORRAL_VENV`), and the bundled
//! example configs of `examples/` started on free ports.
//!
//! A test skips when its server is not installed, unless `CORRAL_REQUIRE_APPS` is set (as
//! `cargo xtask test` and CI do): then a missing server is a failure, never a silent pass.

use std::path::PathBuf;

use super::{free_port, repo_root, Corral};

/// The venv holding the app servers, if it has `program`; `None` means skip this test.
pub fn venv_with(program: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("CORRAL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target").join("venv"));
    if venv.join("bin").join(program).exists() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("CORRAL_REQUIRE_APPS").is_none(),
        "{program} is not in {}: run `cargo xtask setup test`",
        venv.display()
    );
    eprintln!(
        "skipped: {program} is not in {} (`cargo xtask setup test` installs it)",
        venv.display()
    );
    None
}

/// Whether `program` is on `PATH`; else skip, or fail under `CORRAL_REQUIRE_APPS`.
pub fn on_path(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    assert!(
        found || std::env::var_os("CORRAL_REQUIRE_APPS").is_none(),
        "{program} is not on PATH: run `cargo xtask setup test`"
    );
    if !found {
        eprintln!("skipped: {program} is not on PATH");
    }
    found
}

/// Starts corral on `examples/<example>` as a user would (from the repository root), with
/// its listener and admin moved to free ports, a control socket, JSON logs, and `venv`'s
/// programs first on `PATH`; waits for `ready` workers.
pub fn start_example(example: &str, venv: Option<&PathBuf>, ready: usize) -> Corral {
    let path = repo_root().join("examples").join(example);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let (port, admin) = (free_port(), free_port());
    let text = text
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replacen(
            "[server]\n",
            "[log]\nformat = \"json\"\n\n[server]\ncontrol_socket = \"{dir}/control.sock\"\n",
            1,
        );
    let mut env = Vec::new();
    let path_var;
    if let Some(venv) = venv {
        let mut dirs = vec![venv.join("bin")];
        if let Some(p) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        path_var = std::env::join_paths(dirs)
            .expect("PATH")
            .to_string_lossy()
            .into_owned();
        env.push(("PATH", path_var.as_str()));
    }
    let mut corral = Corral::spawn_with(&text, port, admin, &["run"], &env);
    corral.wait_ready(ready, std::time::Duration::from_secs(60));
    corral
}

/// A WSGI app that writes down what its worker received, in `seen` beside it: a `head`
/// line when the worker hands it a request (method, `Content-Length` and
/// `Transfer-Encoding` as the worker read them, `-` for none), and a `whole` line with the
/// body's length once the body was read to its end. A body cut short never gets its
/// `whole` line (gunicorn raises inside `read()`).
pub const RECORDING_WSGI: &str = r#"
import os

SEEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seen")

def note(line):
    with open(SEEN, "a") as f:
        f.write(line + "\n")

def app(environ, start_response):
    note("head %s %s %s" % (environ["REQUEST_METHOD"], environ.get("CONTENT_LENGTH") or "-",
                            environ.get("HTTP_TRANSFER_ENCODING") or "-"))
    body = environ["wsgi.input"].read()
    note("whole %d" % len(body))
    out = b"%d\n" % len(body)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
"#;

/// corral in front of one `gunicorn -w 1` sync worker (`concurrency = 1`) running
/// [`RECORDING_WSGI`], with `pool_extra` in its pool and `server_extra` in `[server]`; the
/// app's directory (where `seen` is written) lives as long as the returned guard.
pub fn recording_gunicorn(
    pool_extra: &str,
    server_extra: &str,
) -> Option<(Corral, tempfile::TempDir)> {
    let venv = venv_with("gunicorn")?;
    let app = tempfile::tempdir().expect("app dir");
    std::fs::write(app.path().join("app.py"), RECORDING_WSGI).expect("write the app");
    let pool = format!(
        "[pools.web]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"app:app\"]\ncwd = {:?}\nworkers = 1\nconcurrency = 1\ntimeout = \"10s\"\nready = \"tcp\"\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n{pool_extra}",
        venv.join("bin").join("gunicorn").display().to_string(),
        app.path().display().to_string(),
    );
    let mut corral = Corral::start(&pool, server_extra, 0);
    corral.wait_ready(1, std::time::Duration::from_secs(30));
    Some((corral, app))
}

/// The lines [`RECORDING_WSGI`] wrote so far.
pub fn recorded(app: &tempfile::TempDir) -> Vec<String> {
    std::fs::read_to_string(app.path().join("seen"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

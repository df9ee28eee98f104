//! corral's own Python worker (`crates/corral-python/python/corral_worker`) behind the real
//! binary: pools whose `command` runs `python -m corral_worker.standalone` from the source
//! tree. The WSGI app of `tests/apps/pep3333.py` runs wrapped in `wsgiref.validate`, so a
//! PEP 3333 violation on either side is a 500 and a traceback in the log.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::raw::Raw;
use support::{apps, repo_root, Corral};

/// The Python package's directory, for `PYTHONPATH`.
fn package_dir() -> PathBuf {
    repo_root()
        .join("crates")
        .join("corral-python")
        .join("python")
}

/// A pool running `app` (`module:callable`, imported from `cwd`) in corral's worker.
fn worker_pool(
    venv: &Path,
    app: &str,
    interface: &str,
    cwd: &Path,
    workers: u32,
    extra: &str,
) -> String {
    let concurrency = if interface == "asgi" { 100 } else { 1 };
    format!(
        "[pools.web]\ncommand = [{python:?}, \"-m\", \"corral_worker.standalone\", \"--app\", {app:?}, \"--interface\", {interface:?}, \"--socket\", \"{{socket}}\"]\ncwd = {cwd:?}\nenv = {{ PYTHONPATH = {path:?} }}\nworkers = {workers}\nconcurrency = {concurrency}\nready = \"http\"\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n{extra}",
        python = venv.join("bin").join("python").display().to_string(),
        cwd = cwd.display().to_string(),
        path = package_dir().display().to_string(),
    )
}

fn test_apps() -> PathBuf {
    repo_root().join("tests").join("apps")
}

/// One request on a fresh raw connection.
fn exchange(port: u16, request: &[u8], head_only: bool) -> support::raw::Response {
    let mut raw = Raw::connect(port);
    raw.send(request);
    raw.response(head_only)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// What a validator or an app error would have left in corral's log of worker output.
fn assert_no_wsgi_errors(corral: &Corral) {
    let logs = format!(
        "{}{}",
        corral.stdout_text(),
        std::fs::read_to_string(&corral.stderr).unwrap_or_default()
    );
    for bad in [
        "AssertionError",
        "WSGIWarning",
        "Exception ignored",
        "Traceback",
    ] {
        assert!(!logs.contains(bad), "{bad} in the log:\n{logs}");
    }
}

#[test]
fn wsgi_worker_serves_pep3333_under_the_validator_with_keep_alive() {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    // Bodies stream to the worker as they come (a chunked upload stays chunked).
    let pool = worker_pool(
        &venv,
        "pep3333:app",
        "wsgi",
        &test_apps(),
        1,
        "request_buffering = false\n",
    );
    let corral = Corral::start(&pool, "", 1);
    let port = corral.port;

    // GET and HEAD on one kept-alive connection: corral's forwarded fields become the environ.
    let mut raw = Raw::connect(port);
    raw.send(
        b"GET /?a=1&b=%20 HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    );
    let get = raw.response(false);
    assert_eq!(get.status, 200, "{get:?}\n{}", corral.logs());
    let facts = json(&get.body);
    assert_eq!(facts["method"], "GET");
    assert_eq!(facts["query"], "a=1&b=%20");
    assert_eq!(
        facts["remote"], "127.0.0.1",
        "corral's peer, not the forged hop"
    );
    assert_eq!(facts["scheme"], "http");
    assert_eq!(facts["host"], "example.test");
    assert!(facts["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    raw.send(b"HEAD / HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let head = raw.response(true);
    assert_eq!(head.status, 200);
    // The length GET's body would have (the JSON says HEAD: one byte more than GET), and
    // no body: the next answer on this connection parses.
    let get_length: usize = get
        .header("content-length")
        .expect("length")
        .parse()
        .expect("number");
    assert_eq!(
        head.header("content-length"),
        Some((get_length - "a=1&b=%20".len() + 1).to_string().as_str()),
        "{head:?}"
    );
    raw.send(b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n");
    let written = raw.response(false);
    assert_eq!(written.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&written.body),
        "written by write()\nthen returned\n"
    );

    // Uploads: fixed length and chunked, read by the app in small pieces.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut fixed = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    )
    .into_bytes();
    fixed.extend_from_slice(&body);
    let up = exchange(port, &fixed, false);
    assert_eq!(up.status, 200, "{}\n{}", up.head, corral.logs());
    assert!(up.body == body, "the fixed-length upload came back changed");

    let mut chunked = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    for piece in body.chunks(70_001) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let up = exchange(port, &chunked, false);
    assert_eq!(up.status, 200, "{}\n{}", up.head, corral.logs());
    assert!(up.body == body, "the chunked upload came back changed");
    assert_eq!(
        up.header("x-chunked"),
        Some("True"),
        "the worker read it chunked"
    );

    let lines = exchange(
        port,
        b"POST /lines HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\nContent-Type: text/plain\r\n\r\none\ntwo\nthree\n",
        false,
    );
    assert_eq!(
        json(&lines.body)["lines"],
        serde_json::json!(["one\n", "two\n", "three\n"])
    );
    let lines = exchange(
        port,
        b"POST /readline HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\nContent-Type: text/plain\r\n\r\none\ntwo\nthree\n",
        false,
    );
    let lines = json(&lines.body);
    assert_eq!(lines["first"], "one\n");
    assert_eq!(lines["rest"], serde_json::json!(["two\n", "three\n"]));

    // A large answer streamed by a generator (no length: chunked to corral).
    let big = exchange(port, b"GET /big?64 HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 64 * 65536);
    assert!(big
        .body
        .chunks(256)
        .all(|c| c == (0..=255u8).collect::<Vec<_>>().as_slice()));

    // A generator with close(): called by the server.
    let closing = exchange(port, b"GET /closing HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(
        String::from_utf8_lossy(&closing.body),
        "part 0\npart 1\npart 2\n"
    );
    let closed = exchange(port, b"GET /closed HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(json(&closed.body)["closed"], 1);

    // wsgi.file_wrapper (iterated: the validator hides it from the server).
    let file = exchange(port, b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n", false);
    let source = std::fs::read(test_apps().join("pep3333.py")).expect("read the app");
    assert_eq!(file.status, 200);
    assert_eq!(file.body, source);

    let empty = exchange(port, b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(empty.status, 204);

    // exc_info: a second start_response before anything was sent replaces the answer.
    let replaced = exchange(port, b"GET /exc_info HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(replaced.status, 503);
    assert_eq!(String::from_utf8_lossy(&replaced.body), "replaced\n");

    assert_no_wsgi_errors(&corral);

    // An app that raises: 500, the traceback in the log, and the worker keeps serving.
    let failed = exchange(port, b"GET /error HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(failed.status, 500);
    corral.wait_log("the traceback", Duration::from_secs(10), |line| {
        line.to_string()
            .contains("raised on purpose before start_response")
    });
    let again = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(again.status, 200);
}

//! corral's own Python worker (`crates/corral-python/python/corral_worker`) behind the real
//! binary: pools whose `command` runs `python -m corral_worker.standalone` from the source
//! tree, and `app =` pools (workers forked from a template) for the PEP 3333 set and the
//! Flask and Django comparisons. The WSGI app of `tests/apps/pep3333.py` runs wrapped in `wsgiref.validate`, so a
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

/// The same as an `app =` pool: workers forked from a template that preloaded `app`.
fn app_pool(
    venv: &Path,
    app: &str,
    interface: &str,
    cwd: &Path,
    workers: u32,
    extra: &str,
) -> String {
    let concurrency = if interface == "asgi" { 100 } else { 1 };
    format!(
        "[pools.web]\napp = {app:?}\ninterface = {interface:?}\npython = {python:?}\ncwd = {cwd:?}\nworkers = {workers}\nconcurrency = {concurrency}\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n{extra}",
        python = venv.join("bin").join("python").display().to_string(),
        cwd = cwd.display().to_string(),
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
    serves_pep3333(&pool);
}

#[test]
fn wsgi_app_pool_serves_pep3333_under_the_validator() {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let pool = app_pool(
        &venv,
        "pep3333:app",
        "wsgi",
        &test_apps(),
        1,
        "request_buffering = false\n",
    );
    serves_pep3333(&pool);
}

/// The PEP 3333 test set against `pool`, which runs `tests/apps/pep3333.py` under the
/// validator with one worker.
fn serves_pep3333(pool: &str) {
    let corral = Corral::start(pool, "", 1);
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

/// Requests for the test-client comparison: (method, target).
const COMPARED: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/health"),
    ("HEAD", "/health"),
    ("POST", "/health"),
    ("GET", "/missing"),
    ("GET", "/%C3%A9?x=1"),
];

/// What the framework's own test client answers to [`COMPARED`] in `examples/NAME`.
fn test_client_answers(venv: &Path, name: &str) -> Vec<serde_json::Value> {
    let requests = serde_json::to_string(&COMPARED).expect("requests as JSON");
    let output = std::process::Command::new(venv.join("bin").join("python"))
        .arg(test_apps().join("test_client_answers.py"))
        .args([name, requests.as_str()])
        .current_dir(repo_root().join("examples").join(name))
        .output()
        .expect("run the test client");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).expect("answers as JSON")
}

/// The bundled example `name` served by corral's worker answers [`COMPARED`] as its test
/// client does: same status, same body, and every field the test client sets (but `Date`)
/// with the same value. `/` names the process and the client, so it is compared without them.
fn matches_test_client(name: &str, app: &str) {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let expected = test_client_answers(&venv, name);
    let cwd = repo_root().join("examples").join(name);
    // The shipped form: an `app =` pool (examples/NAME/preload.toml).
    let corral = Corral::start(&app_pool(&venv, app, "wsgi", &cwd, 2, ""), "", 2);
    for ((method, target), want) in COMPARED.iter().zip(&expected) {
        let got = exchange(
            corral.port,
            format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
            *method == "HEAD",
        );
        let what = format!("{method} {target}: {}", got.head);
        assert_eq!(u64::from(got.status), want["status"], "{what}");
        let body = String::from_utf8_lossy(&got.body).into_owned();
        let variable = *target == "/";
        if variable {
            let strip = |text: &str| {
                let mut v: serde_json::Value = serde_json::from_str(text).expect("JSON");
                for key in ["pid", "worker", "client"] {
                    v.as_object_mut().expect("object").remove(key);
                }
                v
            };
            assert_eq!(
                strip(&body),
                strip(want["body"].as_str().expect("body")),
                "{what}"
            );
        } else {
            assert_eq!(body, want["body"], "{what}");
        }
        for (field, value) in want["headers"].as_object().expect("headers") {
            if field == "date" || (variable && field == "content-length") {
                continue;
            }
            // Flask lists `Allow` from a set: its order changes from process to process.
            let set = |v: Option<&str>| {
                let mut items: Vec<String> = v
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                if field == "allow" {
                    items.sort();
                }
                items
            };
            assert_eq!(
                set(got.header(field)),
                set(value.as_str()),
                "{what}: field {field}"
            );
        }
    }
    assert_no_wsgi_errors(&corral);
}

#[test]
fn flask_example_answers_as_its_test_client_does() {
    matches_test_client("flask", "app:app");
}

#[test]
fn django_example_answers_as_its_test_client_does() {
    matches_test_client("django", "app:application");
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn ws_connect(url: &str, protocol: Option<&str>) -> Result<Ws, Box<tungstenite::Error>> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(Box::new)?;
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().expect("header value"));
    }
    let (socket, response) = tungstenite::connect(request).map_err(Box::new)?;
    if let Some(p) = protocol {
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(p)
        );
    }
    Ok(socket)
}

fn ws_read(ws: &mut Ws) -> tungstenite::Message {
    loop {
        match ws.read().expect("read a message") {
            tungstenite::Message::Frame(_) => continue,
            m => return m,
        }
    }
}

#[test]
fn asgi_worker_serves_lifespan_streams_and_websockets() {
    use tungstenite::Message;
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let pool = worker_pool(
        &venv,
        "asgi_raw:app",
        "asgi",
        &test_apps(),
        1,
        "request_buffering = false\n",
    );
    let corral = Corral::start(&pool, "", 1);
    let port = corral.port;

    let mut raw = Raw::connect(port);
    raw.send(b"GET /?x=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n");
    let got = raw.response(false);
    assert_eq!(got.status, 200, "{got:?}\n{}", corral.logs());
    let facts = json(&got.body);
    assert_eq!(facts["started"], true, "lifespan state reaches the request");
    assert_eq!(facts["client"], "127.0.0.1");
    assert_eq!(facts["query"], "x=1");
    assert!(facts["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    // Kept alive: a streamed answer on the same connection, chunked.
    raw.send(b"GET /stream?5 HTTP/1.1\r\nHost: x\r\n\r\n");
    let streamed = raw.response(false);
    assert_eq!(
        String::from_utf8_lossy(&streamed.body),
        "line 0\nline 1\nline 2\nline 3\nline 4\n"
    );

    // A chunked upload streamed to the app and echoed as it is read.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(30_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let echoed = exchange(port, &chunked, false);
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "the chunked upload came back changed");
    let mut fixed = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    fixed.extend_from_slice(&body);
    assert!(exchange(port, &fixed, false).body == body);

    // WebSocket: text, binary, ping, a large message, the app's close code.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut ws = ws_connect(&url, Some("chat")).expect("WebSocket handshake");
    ws.send(Message::text("hello")).expect("send");
    assert_eq!(ws_read(&mut ws), Message::text("echo: hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).expect("send");
    assert_eq!(ws_read(&mut ws), Message::binary(vec![3u8, 2, 1]));
    ws.send(Message::Ping(b"p".to_vec().into())).expect("ping");
    assert_eq!(ws_read(&mut ws), Message::Pong(b"p".to_vec().into()));
    let large = "é".repeat(150_000);
    ws.send(Message::text(large.clone())).expect("send");
    assert_eq!(ws_read(&mut ws), Message::text(format!("echo: {large}")));
    ws.send(Message::text("bye")).expect("send");
    match ws_read(&mut ws) {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "asked to");
        }
        other => panic!("expected the app's close, got {other:?}"),
    }
    // Closed before accept: the handshake is refused.
    match ws_connect(&format!("ws://127.0.0.1:{port}/refuse"), None) {
        Err(error) => match *error {
            tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), 403)
            }
            other => panic!("expected a 403, got {other:?}"),
        },
        Ok(_) => panic!("expected a 403, got a WebSocket"),
    }
    assert_no_wsgi_errors(&corral);

    // An app that raises: 500 and the traceback, and the worker keeps serving.
    let failed = exchange(port, b"GET /error HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(failed.status, 500);
    corral.wait_log("the traceback", Duration::from_secs(10), |line| {
        line.to_string()
            .contains("raised on purpose in an ASGI app")
    });
    assert_eq!(
        exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).status,
        200
    );
}

#[test]
fn fastapi_example_serves_http_and_its_websocket_route() {
    use tungstenite::Message;
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let cwd = repo_root().join("examples").join("fastapi");
    let corral = Corral::start(&worker_pool(&venv, "app:app", "asgi", &cwd, 2, ""), "", 2);
    let got = exchange(corral.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(got.status, 200, "{got:?}\n{}", corral.logs());
    let facts = json(&got.body);
    assert_eq!(facts["hello"], "fastapi");
    assert_eq!(facts["client"], "127.0.0.1");
    let missing = exchange(corral.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(missing.status, 404);
    assert_eq!(json(&missing.body)["detail"], "Not Found");

    let mut ws = ws_connect(&format!("ws://127.0.0.1:{}/ws", corral.port), None)
        .expect("WebSocket handshake");
    for text in ["one", "two", &"x".repeat(70_000)] {
        ws.send(Message::text(text)).expect("send");
        assert_eq!(ws_read(&mut ws), Message::text(text));
    }
    ws.close(None).expect("close");
    assert_no_wsgi_errors(&corral);
}

/// A worker run by hand (`standalone` on a TCP port, no corral), its output kept, killed
/// with its process group when dropped.
struct Standalone {
    child: std::process::Child,
    port: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Standalone {
    fn start(venv: &Path, app: &str, interface: &str, env: &[(&str, &str)]) -> Standalone {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = dir.path().join("stderr.log");
        let port = support::free_port();
        let child = std::process::Command::new(venv.join("bin").join("python"))
            .args([
                "-m",
                "corral_worker.standalone",
                "--app",
                app,
                "--interface",
                interface,
            ])
            .args(["--port", &port.to_string()])
            .env("PYTHONPATH", package_dir())
            .envs(env.iter().copied())
            .current_dir(test_apps())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .process_group(0)
            .spawn()
            .expect("start the worker");
        Standalone {
            child,
            port,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until it answers `GET /` (lifespan done, listening).
    fn wait_serving(&mut self) {
        let port = self.port;
        support::wait_for("the worker to answer", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            let mut raw = Raw::connect(port);
            raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            (raw.response(false).status == 200).then_some(())
        });
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the worker");
    }

    /// Its exit status, within `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        support::wait_for("the worker to exit", timeout, || {
            child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// SIGTERM: the request in flight is answered (with `Connection: close`), an idle
/// keep-alive connection is closed, and the worker exits 0.
fn sigterm_finishes_in_flight(app: &str, interface: &str) {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let mut worker = Standalone::start(&venv, app, interface, &[]);
    worker.wait_serving();
    let mut idle = Raw::connect(worker.port);
    idle.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.response(false).status, 200);

    let port = worker.port;
    let slow = std::thread::spawn(move || {
        let mut raw = Raw::connect(port);
        raw.send(b"GET /slow?1.5 HTTP/1.1\r\nHost: x\r\n\r\n");
        raw.response(false)
    });
    std::thread::sleep(Duration::from_millis(500));
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let answer = slow.join().expect("slow client");
    assert_eq!(answer.status, 200, "{answer:?}\n{}", worker.stderr());
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(idle.closed(), "the idle keep-alive connection was closed");
    let status = worker.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", worker.stderr());
}

#[test]
fn wsgi_worker_on_sigterm_finishes_the_request_in_flight_then_exits() {
    sigterm_finishes_in_flight("pep3333:app", "wsgi");
}

#[test]
fn asgi_worker_on_sigterm_finishes_the_request_in_flight_then_exits() {
    sigterm_finishes_in_flight("asgi_raw:app", "asgi");
}

#[test]
fn asgi_failed_lifespan_startup_exits_1_with_the_traceback() {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let mut worker = Standalone::start(&venv, "asgi_raw:app", "asgi", &[("FAIL_STARTUP", "1")]);
    let status = worker.wait_exit(Duration::from_secs(30));
    let stderr = worker.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lifespan startup failed"), "{stderr}");
    assert!(
        stderr.contains("RuntimeError: startup failed on purpose"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", worker.port)).is_err(),
        "nothing listens after a failed startup"
    );
}

#[test]
fn sigabrt_of_a_hung_worker_dumps_the_python_stack_where_it_hangs() {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let mut worker = Standalone::start(&venv, "pep3333:app", "wsgi", &[]);
    worker.wait_serving();
    let mut hung = Raw::connect(worker.port);
    hung.send(b"GET /slow?60 HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(500));
    worker.signal(nix::sys::signal::Signal::SIGABRT);
    let status = worker.wait_exit(Duration::from_secs(10));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT));
    let stderr = worker.stderr();
    assert!(stderr.contains("Fatal Python error: Aborted"), "{stderr}");
    assert!(
        stderr.contains("pep3333.py\", line") && stderr.contains("in inner"),
        "the stack names the app's hanging frame:\n{stderr}"
    );
}

#[test]
fn sigquit_ends_a_busy_worker_at_once() {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let mut worker = Standalone::start(&venv, "pep3333:app", "wsgi", &[]);
    worker.wait_serving();
    let mut busy = Raw::connect(worker.port);
    busy.send(b"GET /slow?60 HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    worker.signal(nix::sys::signal::Signal::SIGQUIT);
    worker.wait_exit(Duration::from_secs(5));
    assert!(busy.closed());
}

/// Behind a trusted proxy the client is the address corral worked out from the chain
/// (`X-Real-IP`), not the proxy that is the last `X-Forwarded-For` hop.
#[test]
fn remote_addr_is_the_client_corral_resolved_behind_a_trusted_proxy() {
    let Some(venv) = apps::venv_with("python") else {
        return;
    };
    let server = "trusted_proxies = [\"127.0.0.1/32\"]\n";
    let wsgi = worker_pool(&venv, "pep3333:app", "wsgi", &test_apps(), 1, "");
    let asgi = worker_pool(&venv, "asgi_raw:app", "asgi", &test_apps(), 1, "")
        .replace("[pools.web]", "[pools.ws]");
    let route = "[[routes]]\npath_prefix = \"/health\"\npools = [\"ws\"]\n\n[[routes]]\npools = [\"web\"]\n";
    let corral = Corral::start(&format!("{wsgi}\n{asgi}\n{route}"), server, 1);
    for (target, field) in [("/", "remote"), ("/health", "client")] {
        // The other pool may still be starting: its requests wait in its queue.
        let answer = support::wait_for("an answer", Duration::from_secs(30), || {
            let answer = exchange(
                corral.port,
                format!("GET {target} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n").as_bytes(),
                false,
            );
            (answer.status == 200).then_some(answer)
        });
        let facts = json(&answer.body);
        assert_eq!(facts[field], "203.0.113.9", "{target}: {facts}");
        assert_eq!(facts["scheme"], "https", "{target}: {facts}");
    }
}

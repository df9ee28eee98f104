//! Hostile and broken clients (issue 31): requests that once killed or held a worker, or
//! reached one in a form it could misread. Each test is named after the bug it pins.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::raw::Raw;
use support::{apps, client, get, testapp_pool, Corral};

/// The smallest WSGI app that reads its whole request body, as any app handling a `POST`
/// does: a chunked body whose last chunk never comes keeps it waiting.
const READING_APP: &str = r#"
def app(environ, start_response):
    body = environ["wsgi.input"].read()
    out = b"%d\n" % len(body)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
"#;

/// One gunicorn sync worker, one request at a time, with the pool's `timeout` at 3 s.
fn gunicorn_pool(venv: &Path, app_dir: &Path) -> String {
    format!(
        "[pools.web]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"app:app\"]\ncwd = {:?}\nworkers = 1\nconcurrency = 1\ntimeout = \"3s\"\nready = \"tcp\"\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n",
        venv.join("bin").join("gunicorn").display().to_string(),
        app_dir.display().to_string(),
    )
}

/// Sends `request` on a new connection and reads until corral closes it or `limit` passes:
/// the status answered (if any), whether it closed, and how long it took.
fn exchange(port: u16, request: &[u8], limit: Duration) -> (Option<u16>, bool, Duration, String) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let _ = stream.write_all(request);
    let mut got = Vec::new();
    let closed = loop {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) if start.elapsed() > limit => break false,
            Err(_) => {}
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, closed, start.elapsed(), text)
}

#[test]
fn an_empty_chunked_body_reaches_a_sync_worker_whole() {
    let Some(venv) = apps::venv_with("gunicorn") else {
        return;
    };
    let app = tempfile::tempdir().expect("app dir");
    std::fs::write(app.path().join("app.py"), READING_APP).expect("write the app");
    let mut corral = Corral::start(&gunicorn_pool(&venv, app.path()), "", 1);
    let pids = corral.wait_ready(1, Duration::from_secs(30));
    for (name, body) in [
        ("0", "0\r\n\r\n"),
        ("00", "00\r\n\r\n"),
        ("an extension", "0;ext=1\r\n\r\n"),
        ("a trailer", "0\r\nX-Trailer: 1\r\n\r\n"),
    ] {
        let request = format!(
            "POST /submit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        );
        let (status, _, took, text) =
            exchange(corral.port, request.as_bytes(), Duration::from_secs(10));
        assert_eq!(status, Some(200), "{name}: {text}\n{}", corral.logs());
        assert!(text.ends_with("\r\n0\n"), "{name}: {text}");
        assert!(took < Duration::from_secs(2), "{name} took {took:?}");
    }
    assert_eq!(corral.ready_pids(), pids, "{}", corral.logs());
    assert_eq!(corral.metric("corral_worker_restarts_total"), 0.0);
}

#[test]
fn a_body_that_stops_arriving_gets_408_and_a_close_at_body_timeout() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nheader_timeout = \"10s\"\nbody_timeout = \"1s\"",
        1,
    );
    for (name, request) in [
        (
            "no body at all",
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
        ),
        (
            "part of a body",
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        ),
        (
            "part of a chunk",
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ),
    ] {
        let (status, closed, took, text) =
            exchange(corral.port, request.as_bytes(), Duration::from_secs(8));
        assert_eq!(status, Some(408), "{name}: {text}\n{}", corral.logs());
        assert!(closed, "{name}: not closed");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(7),
            "{name}: {took:?}"
        );
    }
}

/// The worker's own count of requests it read (`/count`), asked of the worker directly.
fn worker_counts(corral: &Corral) -> Vec<u64> {
    corral
        .workers()
        .iter()
        .filter_map(|w| w["addr"].as_str().map(str::to_string))
        .map(|addr| {
            let (status, body) = get(&client(), &format!("http://{addr}/count")).expect("count");
            assert_eq!(status, 200);
            body.trim().parse().expect("a number")
        })
        .collect()
}

const WEBSOCKET_HEAD: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn an_upgrade_the_worker_never_answers_gets_504_at_the_pool_timeout() {
    let pool =
        testapp_pool(1, "").replace("concurrency = 8\n", "concurrency = 8\ntimeout = \"2s\"\n");
    let corral = Corral::start(&pool, "", 1);
    let request = format!("GET /hang HTTP/1.1\r\nHost: t\r\n{WEBSOCKET_HEAD}\r\n");
    let (status, _, took, text) =
        exchange(corral.port, request.as_bytes(), Duration::from_secs(15));
    assert_eq!(status, Some(504), "{text}\n{}", corral.logs());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn an_upgrade_is_never_sent_to_a_second_worker_after_the_first_closed() {
    let corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let before: u64 = worker_counts(&corral).iter().sum();
    let request = format!("GET /drop HTTP/1.1\r\nHost: t\r\n{WEBSOCKET_HEAD}\r\n");
    let (status, _, _, text) = exchange(corral.port, request.as_bytes(), Duration::from_secs(10));
    assert_eq!(status, Some(502), "{text}\n{}", corral.logs());
    let after: u64 = worker_counts(&corral).iter().sum();
    assert_eq!(
        after - before,
        1,
        "the upgrade went to more than one worker"
    );
}

#[test]
fn an_h2c_upgrade_is_stripped_and_served_as_http11() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    for request in [
        "GET /headers HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        // No `Connection` naming them: still never passed on.
        "GET /headers HTTP/1.1\r\nHost: t\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    ] {
        let mut raw = Raw::connect(corral.port);
        raw.send(request.as_bytes());
        let answer = raw.response(false);
        assert_eq!(answer.status, 200, "{answer:?}");
        let seen = String::from_utf8_lossy(&answer.body).to_ascii_lowercase();
        assert!(!seen.contains("h2c"), "{seen}");
        assert!(!seen.contains("http2-settings"), "{seen}");
        assert!(!seen.contains("\"upgrade\""), "{seen}");
        // The connection is still HTTP/1.1 and carries another request.
        raw.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(raw.response(false).status, 200);
    }
}

#[test]
fn a_content_length_with_leading_zeros_reaches_the_worker_in_its_shortest_form() {
    let corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let zeros = "0".repeat(5000);
    let mut raw = Raw::connect(corral.port);
    raw.send(
        format!("POST /headers HTTP/1.1\r\nHost: t\r\nContent-Length: {zeros}5\r\n\r\nhello")
            .as_bytes(),
    );
    let answer = raw.response(false);
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(seen["content-length"], "5", "{seen}");
    // Without a body, on the byte path.
    raw.send(
        format!("GET /headers HTTP/1.1\r\nHost: t\r\nContent-Length: {zeros}\r\n\r\n").as_bytes(),
    );
    let answer = raw.response(false);
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(seen["content-length"], "0", "{seen}");
}

#[test]
fn field_names_with_underscores_are_dropped_unless_kept() {
    let request = "GET /headers HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nX_Custom: 1\r\nX-Plain: 2\r\n\r\n";
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let mut raw = Raw::connect(corral.port);
    raw.send(request.as_bytes());
    let answer = raw.response(false);
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(seen["x-plain"], "2", "{seen}");
    assert!(seen.get("transfer_encoding").is_none(), "{seen}");
    assert!(seen.get("x_custom").is_none(), "{seen}");
    support::wait_for("the dropped fields counted", Duration::from_secs(5), || {
        (corral.metric("corral_underscore_fields_dropped_total") == 2.0).then_some(())
    });

    // `underscores_in_headers = true` keeps them, as nginx's setting of that name does.
    let corral = Corral::start(&testapp_pool(1, ""), "underscores_in_headers = true\n", 1);
    let mut raw = Raw::connect(corral.port);
    raw.send(request.as_bytes());
    let answer = raw.response(false);
    let seen: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(seen["x_custom"], "1", "{seen}");
}

/// A `POST` whose chunked body is `body_size` and one byte: 8 KiB chunks, then one of a byte.
fn chunked_just_over(body_size: usize) -> Vec<u8> {
    let mut request =
        b"POST /submit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..body_size / 8192 {
        request.extend_from_slice(b"2000\r\n");
        request.extend_from_slice(&[b'b'; 8192]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"1\r\nb\r\n0\r\n\r\n");
    request
}

#[test]
fn a_chunked_body_just_over_body_size_reaches_no_worker() {
    // Past the read-ahead of a streamed body (64 KiB) and past `body_buffer` (64 KiB): the
    // body is read into memory and a temp file before any worker is chosen.
    let Some((corral, app)) =
        apps::recording_gunicorn("", "[server.limits]\nbody_size = \"256KiB\"\n")
    else {
        return;
    };
    let request = chunked_just_over(256 * 1024);
    let (status, _, _, text) = exchange(corral.port, &request, Duration::from_secs(10));
    assert_eq!(status, Some(413), "{text}\n{}", corral.logs());
    // A request of the limit's size does reach the worker, so the record is being written.
    let mut at_limit = request.clone();
    at_limit.truncate(request.len() - b"1\r\nb\r\n0\r\n\r\n".len());
    at_limit.extend_from_slice(b"0\r\n\r\n");
    let (status, _, _, text) = exchange(corral.port, &at_limit, Duration::from_secs(10));
    assert_eq!(status, Some(200), "{text}\n{}", corral.logs());
    assert_eq!(
        apps::recorded(&app),
        ["head POST 262144 -", "whole 262144"],
        "the worker saw the refused body"
    );
}

#[test]
fn with_request_buffering_off_a_chunked_body_over_body_size_never_reaches_a_worker_whole() {
    // Streamed: the worker has the head and the first bytes before the end is known to be
    // over the limit; corral then answers 413 and closes the worker's connection with no
    // last chunk, so the worker never takes it for a whole request.
    let Some((mut corral, app)) = apps::recording_gunicorn(
        "request_buffering = false\n",
        "[server.limits]\nbody_size = \"256KiB\"\n",
    ) else {
        return;
    };
    let pids = corral.ready_pids();
    let (status, _, _, text) = exchange(
        corral.port,
        &chunked_just_over(256 * 1024),
        Duration::from_secs(10),
    );
    assert_eq!(status, Some(413), "{text}\n{}", corral.logs());
    // The same worker serves on; by then it has given up on the cut body.
    let small =
        b"POST /next HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (status, _, _, text) = exchange(corral.port, small, Duration::from_secs(10));
    assert_eq!(status, Some(200), "{text}\n{}", corral.logs());
    assert_eq!(
        apps::recorded(&app),
        ["head POST - chunked", "head POST 5 -", "whole 5"],
        "{}",
        corral.logs()
    );
    assert_eq!(corral.ready_pids(), pids);
    assert_eq!(corral.metric("corral_worker_restarts_total"), 0.0);
}

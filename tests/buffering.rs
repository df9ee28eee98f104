//! Slow clients never hold a worker (issue 32): one gunicorn sync worker (`concurrency = 1`)
//! behind corral, and real slow clients. corral reads the worker's answer as fast as the
//! worker sends it (memory, then an unlinked temp file), so the worker is free for the next
//! request while the slow client still reads; streams still reach the client piece by piece;
//! a client that takes nothing for `send_timeout` is dropped.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{apps, client, get, Corral};

/// `/upload` reads the request body and answers its length, whether it was byte k = k % 251
/// throughout, and when its first bytes were read. `/big?N` answers N bytes (byte k is k % 256) with a `Content-Length` (corral's plain
/// relay), `/chunked?N` the same without one (gunicorn sends it chunked: pingora's session),
/// `/events` 20 Server-Sent Events 300 ms apart, each with the time it was written, anything
/// else `ok`.
const APP: &str = r#"
import time

BLOCK = bytes(range(256)) * 256

def pieces(n):
    while n > 0:
        piece = BLOCK[:min(n, len(BLOCK))]
        n -= len(piece)
        yield piece

def events():
    for i in range(20):
        yield ("data: %d %.6f\n\n" % (i, time.time())).encode()
        time.sleep(0.3)

UPLOAD = bytes(range(251)) * (8 * 1024 * 1024 // 251 + 1)

def upload(environ, start_response):
    inp = environ["wsgi.input"]
    first = 0.0
    pieces = []
    while True:
        piece = inp.read(16384)
        if not piece:
            break
        if not pieces:
            first = time.time()
        pieces.append(piece)
    body = b"".join(pieces)
    out = b"%d %d %.6f\n" % (len(body), body == UPLOAD[:len(body)], first)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        return upload(environ, start_response)
    n = int(environ.get("QUERY_STRING") or 0)
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return pieces(n)
    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return pieces(n)
    if path == "/events":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return events()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
"#;

const BIG: usize = 32 << 20;

/// One gunicorn sync worker taking one request at a time; `extra` goes into the pool.
fn gunicorn_pool(venv: &Path, app_dir: &Path, extra: &str) -> String {
    format!(
        "[pools.web]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"app:app\"]\ncwd = {:?}\nworkers = 1\nconcurrency = 1\nqueue_timeout = \"20s\"\nready = \"tcp\"\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n{extra}",
        venv.join("bin").join("gunicorn").display().to_string(),
        app_dir.display().to_string(),
    )
}

/// corral in front of the app, its temp files in the test's directory (so a test can see
/// that none is ever visible there).
/// The temp dirs live as long as the test: gunicorn's worker loads the app after the
/// arbiter listens (when `ready = "tcp"` says ready).
fn start(pool_extra: &str, server_extra: &str) -> Option<(Corral, [tempfile::TempDir; 2])> {
    start_with(pool_extra, server_extra, "")
}

/// `start` with more keys of `[server.buffering]`.
fn start_with(
    pool_extra: &str,
    server_extra: &str,
    buffering: &str,
) -> Option<(Corral, [tempfile::TempDir; 2])> {
    let venv = apps::venv_with("gunicorn")?;
    let app = tempfile::tempdir().expect("app dir");
    std::fs::write(app.path().join("app.py"), APP).expect("write the app");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = format!(
        "{server_extra}\n[server.buffering]\ntemp_dir = {:?}\n{buffering}",
        dir.path().display().to_string()
    );
    let mut pool = gunicorn_pool(&venv, app.path(), pool_extra);
    if pool_extra.contains("workers =") {
        pool = pool.replacen("workers = 1\n", "", 1);
    }
    let mut corral = Corral::start(&pool, &server, 0);
    corral.wait_ready(1, Duration::from_secs(30));
    Some((corral, [dir, app]))
}

/// A client that sends `GET path` and reads nothing yet.
fn ask(corral: &Corral, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

/// Reads the whole answer (until corral closes) within `limit`: head and body, the body
/// de-chunked when it came chunked.
fn read_answer(stream: &mut TcpStream, limit: Duration) -> (String, Vec<u8>) {
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let body = all[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        (head, dechunk(&body))
    } else {
        (head, body)
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).expect("size"), 16)
            .expect("hex size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
}

fn assert_pattern(body: &[u8], len: usize, context: &str) {
    assert_eq!(body.len(), len, "{context}: length");
    if let Some(k) = (0..len).find(|&k| body[k] != (k % 256) as u8) {
        panic!("{context}: byte {k} is {} not {}", body[k], k % 256);
    }
}

/// The longest a quick request may take while a slow client holds on. Each test's slow
/// client holds on for longer than this (and most until the quick requests are done), so a
/// worker it held would fail the request; the bound leaves room for the stalls a loaded
/// machine gives any request.
const QUICK_MAX: Duration = Duration::from_secs(4);

/// Twenty requests to another path, one after another: each answered within [`QUICK_MAX`],
/// their median within 1 s (the issue's figure; on a quiet machine each takes milliseconds).
fn twenty_quick_requests(corral: &Corral, context: &str) {
    let agent = client();
    let mut took = Vec::new();
    for i in 0..20 {
        let start = Instant::now();
        let (status, body) = get(&agent, &corral.url("/fast")).expect("fast request");
        let elapsed = start.elapsed();
        assert_eq!(
            (status, body.as_str()),
            (200, "ok\n"),
            "{context}: request {i}"
        );
        assert!(
            elapsed < QUICK_MAX,
            "{context}: request {i} took {elapsed:?} while a slow client read\n{}",
            corral.logs()
        );
        took.push(elapsed);
    }
    took.sort();
    println!(
        "{context}: 20 quick requests, median {:?}, slowest {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(
        took[took.len() / 2] < Duration::from_secs(1),
        "{context}: the quick requests took {took:?}\n{}",
        corral.logs()
    );
}

#[test]
fn a_slow_reader_of_a_32_mib_answer_does_not_hold_the_sync_worker() {
    let Some((corral, [temp, _app])) = start("", "") else {
        return;
    };
    for path in ["/big", "/chunked"] {
        let mut slow = ask(&corral, &format!("{path}?{BIG}"));
        let asked = Instant::now();
        // The worker's 32 MiB are read off it at once, most into the temp file.
        std::thread::sleep(Duration::from_millis(300));
        twenty_quick_requests(&corral, path);
        // `/status`: the worker is free, its answer still on its way to the client.
        support::wait_for(
            "the worker free, delivering",
            Duration::from_secs(10),
            || {
                let workers = corral.workers();
                let worker = workers.first()?;
                (worker["in_flight"] == 0 && worker["delivering"] == 1).then_some(())
            },
        );
        assert!(
            corral.metric("corral_buffered_disk_bytes") > 0.0,
            "{path}: the answer spilled to a temp file\n{}",
            corral.metrics()
        );
        let names: Vec<_> = std::fs::read_dir(temp.path()).expect("dir").collect();
        assert!(
            names.is_empty(),
            "{path}: temp files have no name: {names:?}"
        );
        // The slow client read nothing for 5 s, then reads it all.
        std::thread::sleep(Duration::from_secs(5).saturating_sub(asked.elapsed()));
        let (head, body) = read_answer(&mut slow, Duration::from_secs(60));
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert_pattern(&body, BIG, path);
    }
    support::wait_for("buffers emptied", Duration::from_secs(5), || {
        (corral.metric("corral_buffered_disk_bytes") == 0.0
            && corral.metric("corral_buffered_memory_bytes") == 0.0)
            .then_some(())
    });
    assert!(corral.metric("corral_buffer_spills_total{kind=\"answer\"}") >= 2.0);
    assert!(corral.metric("corral_worker_freed_early_seconds_count") >= 2.0);
}

#[test]
fn with_response_buffering_off_a_slow_reader_holds_the_worker() {
    let Some((corral, _temp)) = start("response_buffering = false\n", "") else {
        return;
    };
    let slow = ask(&corral, &format!("/big?{BIG}"));
    std::thread::sleep(Duration::from_millis(300));
    let mut fast = ask(&corral, "/fast");
    fast.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    let answered = fast.read(&mut buf);
    assert!(
        answered.is_err(),
        "the worker was free although the pool opted out: {answered:?}"
    );
    assert_eq!(corral.metric("corral_buffered_disk_bytes"), 0.0);
    // Once the slow client is gone, the worker is free again.
    drop(slow);
    let (head, body) = read_answer(&mut fast, Duration::from_secs(30));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
}

/// Each event's number and how long after the app wrote it the client had it whole, from
/// the events complete in `text` (the answer as read so far, chunk framing and all, which
/// never comes between an event's lines). Takes the complete events out of `text`.
fn complete_events(text: &mut String, now: f64) -> Vec<(u32, f64)> {
    let mut events = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let event: String = text.drain(..end + 2).collect();
        let Some(line) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
            continue;
        };
        let mut fields = line.split(' ');
        let number = fields.next().and_then(|n| n.parse().ok()).expect("number");
        let written: f64 = fields.next().and_then(|t| t.parse().ok()).expect("time");
        events.push((number, now - written));
    }
    events
}

#[test]
fn server_sent_events_reach_the_client_one_by_one_with_buffering_on() {
    let Some((corral, _temp)) = start("", "") else {
        return;
    };
    let mut stream = ask(&corral, "/events");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut events = Vec::new();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while events.len() < 20 {
        let n = stream.read(&mut buf).expect("an event within 10 s");
        assert!(
            n > 0,
            "closed after {} events: {text}\n{}",
            events.len(),
            corral.logs()
        );
        let read_at = now();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        events.extend(complete_events(&mut text, read_at));
    }
    let numbers: Vec<u32> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>());
    // A buffer that waited to fill, or a write left unflushed, would hold an event until the
    // next one 300 ms later: each must come within 250 ms of the app writing it (room for a
    // loaded machine's stalls, which failed a 100 ms bound in a full run at load 16), and
    // their median within 100 ms (the issue's figure; 10 ms here on a quiet machine).
    let mut lags: Vec<f64> = events.iter().map(|(_, lag)| *lag).collect();
    lags.sort_by(f64::total_cmp);
    println!(
        "event lags: median {:.1} ms, slowest {:.1} ms",
        lags[lags.len() / 2] * 1000.0,
        lags[lags.len() - 1] * 1000.0
    );
    let late: Vec<_> = events.iter().filter(|(_, lag)| *lag >= 0.25).collect();
    assert!(late.is_empty(), "late events {late:?} of {events:?}");
    assert!(lags[lags.len() / 2] < 0.1, "events {events:?}");
}

#[test]
fn a_client_that_takes_nothing_is_dropped_after_send_timeout_and_holds_no_worker() {
    // A send_timeout past QUICK_MAX: a worker held until the client is dropped would fail
    // the quick requests.
    let Some((corral, _temp)) = start("", "[server.limits]\nsend_timeout = \"5s\"\n") else {
        return;
    };
    let mut slow = ask(&corral, &format!("/big?{BIG}"));
    let asked = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    twenty_quick_requests(&corral, "send_timeout");
    // Nothing read for well past send_timeout: corral has dropped the client.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(asked.elapsed()));
    support::wait_for("the buffers freed", Duration::from_secs(10), || {
        (corral.metric("corral_buffered_disk_bytes") == 0.0).then_some(())
    });
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    assert!(
        got.len() < BIG,
        "the client got {} bytes: not dropped",
        got.len()
    );
}

/// Sends `POST /upload` with `len` bytes (byte k = k % 251) in pieces of `piece` bytes,
/// `every` apart, on a thread; returns the stream once all is sent, and when that was.
fn slow_upload(
    corral: &Corral,
    len: usize,
    piece: usize,
    every: Duration,
) -> std::thread::JoinHandle<(TcpStream, f64)> {
    let mut stream = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    std::thread::spawn(move || {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("send the head");
        let body: Vec<u8> = (0..len).map(|k| (k % 251) as u8).collect();
        for part in body.chunks(piece) {
            std::thread::sleep(every);
            stream.write_all(part).expect("send a piece");
        }
        (stream, now())
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The upload's answer: length, whether every byte was right, when the app read the first.
fn upload_answer(stream: &mut TcpStream) -> (usize, bool, f64) {
    let (head, body) = read_answer(stream, Duration::from_secs(60));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let text = String::from_utf8(body).expect("text");
    let mut words = text.split_whitespace();
    let len = words.next().and_then(|w| w.parse().ok()).expect("a length");
    let right = words.next() == Some("1");
    let first = words.next().and_then(|w| w.parse().ok()).expect("a time");
    (len, right, first)
}

#[test]
fn a_slow_upload_is_read_whole_before_the_sync_worker_is_chosen() {
    let Some((corral, [temp, _app])) = start("", "") else {
        return;
    };
    // 1 MiB at 64 KiB/s: 16 KiB every 250 ms.
    let upload = slow_upload(&corral, 1 << 20, 16 << 10, Duration::from_millis(250));
    std::thread::sleep(Duration::from_millis(1000));
    twenty_quick_requests(&corral, "upload");
    // Past its 64 KiB in memory, the body goes on to a temp file.
    support::wait_for("the body in a temp file", Duration::from_secs(10), || {
        (corral.metric("corral_buffered_disk_bytes") > 0.0).then_some(())
    });
    let names: Vec<_> = std::fs::read_dir(temp.path()).expect("dir").collect();
    assert!(names.is_empty(), "temp files have no name: {names:?}");
    let (mut stream, sent) = upload.join().expect("the upload");
    let (len, right, first) = upload_answer(&mut stream);
    assert_eq!(
        (len, right),
        (1 << 20, true),
        "every byte reached the worker"
    );
    assert!(
        first >= sent - 0.05,
        "the worker read the body {:.3} s before it was all sent",
        sent - first
    );
    assert!(corral.metric("corral_buffer_spills_total{kind=\"body\"}") >= 1.0);
    support::wait_for("buffers emptied", Duration::from_secs(5), || {
        (corral.metric("corral_buffered_disk_bytes") == 0.0
            && corral.metric("corral_buffered_memory_bytes") == 0.0)
            .then_some(())
    });
}

#[test]
fn with_request_buffering_off_the_worker_reads_the_upload_as_it_comes() {
    let Some((corral, _temp)) = start("request_buffering = false\n", "") else {
        return;
    };
    // 256 KiB at 64 KiB/s.
    let upload = slow_upload(&corral, 256 << 10, 16 << 10, Duration::from_millis(250));
    let (mut stream, sent) = upload.join().expect("the upload");
    let (len, right, first) = upload_answer(&mut stream);
    assert_eq!((len, right), (256 << 10, true));
    assert!(
        first < sent - 1.0,
        "the worker saw the first bytes only {:.3} s before the upload ended",
        sent - first
    );
}

#[test]
fn a_body_that_stops_arriving_gets_408_and_never_holds_the_sync_worker() {
    // A body_timeout past QUICK_MAX: a worker held until the 408 would fail the quick
    // requests.
    let Some((corral, _temp)) = start("", "[server.limits]\nbody_timeout = \"5s\"\n") else {
        return;
    };
    let mut stalled = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    stalled
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .expect("send the head");
    stalled.write_all(&[7; 1000]).expect("send a little");
    let began = Instant::now();
    twenty_quick_requests(&corral, "stalled body");
    let (head, _) = read_answer(&mut stalled, Duration::from_secs(20));
    let took = began.elapsed();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(15),
        "408 after {took:?}"
    );
}

/// A child process killed when the test ends, passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `[server.tls]` on a free port with a self-signed certificate made in `dir`.
fn https_listener(dir: &Path) -> (String, u16) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let https = support::free_port();
    let server = format!(
        "[server.tls]\nlisten = [\"127.0.0.1:{https}\"]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
        cert.display().to_string(),
        key.display().to_string(),
    );
    (server, https)
}

#[test]
fn an_http2_client_reading_slowly_does_not_hold_the_sync_worker() {
    let certs = tempfile::tempdir().expect("dir");
    let (server, https) = https_listener(certs.path());
    let Some((corral, _temp)) = start("", &server) else {
        return;
    };
    let answer = certs.path().join("answer");
    let curl = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-k",
            "--limit-rate",
            "4M",
            "--max-time",
            "60",
        ])
        .args(["-w", "%{http_version} %{http_code}", "-o"])
        .arg(&answer)
        .arg(format!("https://127.0.0.1:{https}/big?{BIG}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    let mut curl = Reaped(curl);
    std::thread::sleep(Duration::from_millis(500));
    twenty_quick_requests(&corral, "HTTP/2");
    let status = curl.0.wait().expect("curl ran");
    let mut said = String::new();
    if let Some(out) = curl.0.stdout.as_mut() {
        let _ = out.read_to_string(&mut said);
    }
    assert!(status.success(), "curl: {said}\n{}", corral.logs());
    assert_eq!(said, "2 200");
    assert_pattern(&std::fs::read(&answer).expect("the answer"), BIG, "HTTP/2");
}

/// corral's peak resident memory (`VmHWM`) in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// corral's open files under `dir` (its temp files, unlinked: `dir/#inode (deleted)`).
fn open_files_under(pid: u32, dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Acceptance 3 scaled to this shared machine (the full 100 × 8 MiB against four workers is
/// `bench/slow_clients.sh`): 20 slow clients each pulling 8 MiB from two sync workers while
/// requests to another path go on: each is answered as `twenty_quick_requests` asks, corral's peak
/// RSS stays under its memory budget plus 64 MiB, every slow client gets its whole answer,
/// and no temp file is left once they are done.
#[test]
fn twenty_slow_clients_of_8_mib_cost_bounded_memory_and_leave_no_temp_file() {
    const CLIENTS: usize = 20;
    const SIZE: usize = 8 << 20;
    let budget_mib: usize = 32;
    let budget = format!("memory = \"{budget_mib}MiB\"\n");
    let Some((mut corral, [temp, _app])) = start_with("workers = 2\n", "", &budget) else {
        return;
    };
    corral.wait_ready(2, Duration::from_secs(30));
    let pid = corral.pid();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Arc::new(std::sync::Mutex::new(gate));
    let slow: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut stream = ask(&corral, &format!("/big?{SIZE}"));
            let gate = gate.clone();
            std::thread::spawn(move || {
                // Nothing read until told, then 64 KiB every 5 ms.
                let _ = gate.lock().map(|g| g.recv_timeout(Duration::from_secs(60)));
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("read timeout");
                let mut all = Vec::new();
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => all.extend_from_slice(&buf[..n]),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                all
            })
        })
        .collect();
    // Every answer is read off the workers while no client has read a byte.
    support::wait_for("the workers idle", Duration::from_secs(60), || {
        let workers = corral.workers();
        (workers.len() == 2 && workers.iter().all(|w| w["in_flight"] == 0)).then_some(())
    });
    assert!(
        open_files_under(pid, temp.path()) > 0,
        "the answers went to temp files"
    );
    let held = corral.metric("corral_buffered_memory_bytes");
    assert!(
        held <= ((budget_mib << 20) + CLIENTS * (64 << 10)) as f64,
        "{held} bytes in memory"
    );
    twenty_quick_requests(&corral, "20 slow clients");
    for _ in 0..CLIENTS {
        let _ = go.send(());
    }
    for (i, client) in slow.into_iter().enumerate() {
        let all = client.join().expect("a slow client");
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        assert_pattern(&all[split..], SIZE, &format!("slow client {i}"));
    }
    let peak_mib = peak_rss_kib(pid) / 1024;
    println!("corral's peak RSS: {peak_mib} MiB (budget {budget_mib} MiB)");
    assert!(
        peak_mib < budget_mib as u64 + 64,
        "peak RSS {peak_mib} MiB over the budget {budget_mib} MiB + 64"
    );
    support::wait_for("temp files closed", Duration::from_secs(10), || {
        (open_files_under(pid, temp.path()) == 0).then_some(())
    });
    assert!(std::fs::read_dir(temp.path())
        .expect("dir")
        .next()
        .is_none());
}

/// A chunked `POST /upload` of `len` pattern bytes, in 16 KiB chunks.
fn chunked_upload(len: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..len).map(|k| (k % 251) as u8).collect();
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for piece in body.chunks(16384) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

/// Sends `request` on a new connection; the answer's status line and body.
fn send_whole(corral: &Corral, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    stream.write_all(request).expect("send");
    read_answer(&mut stream, Duration::from_secs(20))
}

#[test]
fn a_buffered_chunked_body_reaches_the_sync_worker_with_a_content_length() {
    // 300 KiB: past `body_buffer`, so most of it comes back out of the temp file.
    let Some((corral, app)) = apps::recording_gunicorn("", "") else {
        return;
    };
    let (status, body) = send_whole(&corral, &chunked_upload(300 * 1024));
    assert!(status.contains(" 200 "), "{status}\n{}", corral.logs());
    assert_eq!(body, b"307200\n");
    assert_eq!(apps::recorded(&app), ["head POST 307200 -", "whole 307200"]);
}

#[test]
fn with_request_buffering_off_a_chunked_body_streams_chunked_unless_read_whole_ahead() {
    let Some((corral, app)) = apps::recording_gunicorn("request_buffering = false\n", "") else {
        return;
    };
    // Short enough to be read whole before the worker is chosen: its length is known.
    let (status, _) = send_whole(&corral, &chunked_upload(1000));
    assert!(status.contains(" 200 "), "{status}\n{}", corral.logs());
    // Longer than the read-ahead: it streams, still chunked.
    let (status, body) = send_whole(&corral, &chunked_upload(300 * 1024));
    assert!(status.contains(" 200 "), "{status}\n{}", corral.logs());
    assert_eq!(body, b"307200\n");
    assert_eq!(
        apps::recorded(&app),
        [
            "head POST 1000 -",
            "whole 1000",
            "head POST - chunked",
            "whole 307200"
        ]
    );
}

//! One connection: read requests, answer by path, keep the connection alive when asked.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use crate::Conn;

/// Requests this process has read (but `/count` itself), for tests that prove a request
/// never reached a worker.
static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where `--record` writes each request read.
pub(crate) static RECORD: std::sync::OnceLock<std::sync::Mutex<std::fs::File>> =
    std::sync::OnceLock::new();

/// One line for the record: the request's id, method and target.
fn record(request: &Request) {
    if let Some(file) = RECORD.get() {
        let id = header(request, "x-request-id").unwrap_or("-");
        let line = format!("{id} {} {}\n", request.method, request.path.escape_debug());
        if let Ok(mut file) = file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}
/// Set by `/sick`, cleared by `/well`: `/health` answers 500 while it is set.
static SICK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Memory held by `/alloc`, never freed, so RSS stays up.
static HELD: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// A request head as the app read it.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    pub(crate) close: bool,
}

pub fn handle<S: Conn + 'static>(mut conn: S) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let (request, consumed) = match read_head(&mut conn, &mut buf) {
            Ok(Some(r)) => r,
            _ => return,
        };
        buf.drain(..consumed);
        if request.path != "/count" {
            SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        record(&request);
        let chunked = header(&request, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            match read_chunked(&mut conn, &mut buf) {
                Some(body) => body,
                None => return,
            }
        } else {
            let length: usize = header(&request, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if !fill(&mut conn, &mut buf, length) {
                return;
            }
            let rest = buf.split_off(length);
            std::mem::replace(&mut buf, rest)
        };
        if request.path == "/ws" {
            websocket(conn, &request);
            return;
        }
        let n = number(&request, "n") as usize;
        if request.path == "/payload" {
            match crate::payload::answer(&mut conn, &request) {
                Ok(()) if !request.close => continue,
                _ => return,
            }
        }
        if let Some(result) = crate::shapes::answer(&mut conn, &request.path, n) {
            match result {
                Ok(true) if !request.close => continue,
                _ => return,
            }
        }
        if request.path == "/unlisten" {
            crate::unlisten();
        }
        if respond(&mut conn, &request, &body).is_err() || request.close || crate::unlistened() {
            return;
        }
    }
}

fn read_head<S: Read>(conn: &mut S, buf: &mut Vec<u8>) -> io::Result<Option<(Request, usize)>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let target = req.path.unwrap_or("/").to_string();
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (
                    p.to_string(),
                    q.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                None => (target, BTreeMap::new()),
            };
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let connection = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
                .map(|(_, v)| v.to_ascii_lowercase());
            let close = match req.version {
                Some(0) => connection.as_deref() != Some("keep-alive"),
                _ => connection.as_deref() == Some("close"),
            };
            let request = Request {
                method: req.method.unwrap_or("GET").to_string(),
                path,
                query,
                headers,
                close,
            };
            return Ok(Some((request, n)));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads from `conn` until `buf` holds at least `n` bytes; false when the peer is gone.
fn fill<S: Read>(conn: &mut S, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

/// Decodes a chunked body from the front of `buf` (reading more as needed), leaving what
/// follows it in `buf`. Trailers are skipped.
fn read_chunked<S: Read>(conn: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let have = buf.len();
            if !fill(conn, buf, have + 1) {
                return None;
            }
        };
        let line = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                if !fill(conn, buf, 2) {
                    return None;
                }
                let end = buf.windows(2).position(|w| w == b"\r\n");
                match end {
                    Some(0) => {
                        buf.drain(..2);
                        return Some(body);
                    }
                    Some(i) => {
                        buf.drain(..i + 2);
                    }
                    None => {
                        let have = buf.len();
                        if !fill(conn, buf, have + 1) {
                            return None;
                        }
                    }
                }
            }
        }
        if !fill(conn, buf, size + 2) {
            return None;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn number(request: &Request, key: &str) -> u64 {
    request
        .query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn identity() -> String {
    let worker = std::env::var("CORRAL_WORKER").unwrap_or_default();
    format!(
        "{{\"worker\":\"{worker}\",\"pid\":{}}}\n",
        std::process::id()
    )
}

fn respond<S: Write>(conn: &mut S, request: &Request, body: &[u8]) -> io::Result<()> {
    let (status, content_type, payload): (u16, &str, Vec<u8>) = match request.path.as_str() {
        "/health" if SICK.load(std::sync::atomic::Ordering::SeqCst) => {
            (500, "text/plain", b"sick\n".to_vec())
        }
        "/health" => (200, "text/plain", b"ok\n".to_vec()),
        "/sick" | "/well" | "/unlisten" => {
            if request.path != "/unlisten" {
                SICK.store(request.path == "/sick", std::sync::atomic::Ordering::SeqCst);
            }
            (200, "application/json", identity().into_bytes())
        }
        "/count" => (
            200,
            "text/plain",
            format!("{}\n", SEEN.load(std::sync::atomic::Ordering::SeqCst)).into_bytes(),
        ),
        "/sleep" => {
            std::thread::sleep(Duration::from_millis(number(request, "ms")));
            (200, "application/json", identity().into_bytes())
        }
        "/crash" => {
            eprintln!(
                "corral-testapp: crashing as asked by {} {}",
                request.method, request.path
            );
            std::process::exit(3);
        }
        "/hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "/headers" => {
            // Repeated fields are joined with ", ", so a duplicate shows.
            let mut map = serde_json::Map::new();
            for (k, v) in &request.headers {
                let joined = match map.get(&k.to_ascii_lowercase()) {
                    Some(serde_json::Value::String(before)) => format!("{before}, {v}"),
                    _ => v.clone(),
                };
                map.insert(k.to_ascii_lowercase(), serde_json::Value::String(joined));
            }
            (
                200,
                "application/json",
                serde_json::Value::Object(map).to_string().into_bytes(),
            )
        }
        "/bytes" => (
            200,
            "application/octet-stream",
            vec![b'x'; number(request, "n") as usize],
        ),
        "/echo" => (200, "application/octet-stream", body.to_vec()),
        "/env" => {
            let name = request.query.get("name").cloned().unwrap_or_default();
            (
                200,
                "text/plain",
                std::env::var(name).unwrap_or_default().into_bytes(),
            )
        }
        "/alloc" => {
            let mb = number(request, "mb") as usize;
            let block = vec![1u8; mb << 20];
            if let Ok(mut held) = HELD.lock() {
                held.push(block);
            }
            (200, "application/json", identity().into_bytes())
        }
        path if path.starts_with("/status/") => {
            let code = path["/status/".len()..].parse().unwrap_or(500);
            (code, "text/plain", format!("status {code}\n").into_bytes())
        }
        _ if crate::fails_now() => (500, "text/plain", b"failing as asked\n".to_vec()),
        _ => (200, "application/json", identity().into_bytes()),
    };
    let connection = if request.close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\nX-Worker-Pid: {}\r\nServer: corral-testapp/0.1 (Linux)\r\nX-Powered-By: rust/1.95\r\n\r\n",
        reason(status),
        payload.len(),
        std::process::id()
    );
    // One write: a head and body in two small writes meet Nagle and delayed ACK (40 ms).
    let mut out = head.into_bytes();
    if request.method != "HEAD" {
        out.extend_from_slice(&payload);
    }
    conn.write_all(&out)?;
    conn.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn websocket<S: Conn>(mut conn: S, request: &Request) {
    let Some(key) = header(request, "sec-websocket-key") else {
        let _ = conn.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut ws = WebSocket::from_raw_socket(conn, Role::Server, None);
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "fragments" => {
                endless_fragments(ws.get_mut());
                return;
            }
            Ok(Message::Text(t)) => {
                if ws.send(Message::Text(t)).is_err() {
                    return;
                }
            }
            Ok(Message::Binary(b)) => {
                if ws.send(Message::Binary(b)).is_err() {
                    return;
                }
            }
            Ok(Message::Close(_)) => {
                // tungstenite queued the close reply; send it before hanging up.
                let _ = ws.flush();
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One text message that never ends: fragments of 1000 bytes, each written in two halves
/// 10 ms apart, so a reader that cuts in at any moment is as likely inside a frame as
/// between two. Ends when the connection does.
fn endless_fragments<S: Write>(conn: &mut S) {
    let payload = [b'f'; 1000];
    for i in 0u64.. {
        let opcode = if i == 0 { 0x01 } else { 0x00 };
        let mut frame = vec![opcode, 126];
        frame.extend_from_slice(&1000u16.to_be_bytes());
        frame.extend_from_slice(&payload);
        let (first, second) = frame.split_at(500);
        for half in [first, second] {
            if conn.write_all(half).and_then(|()| conn.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

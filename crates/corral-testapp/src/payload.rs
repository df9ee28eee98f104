//! `/payload`: a body that compresses like real JSON, with the fields a compression test
//! varies. Query: `n` (bytes, default 102400), `type` (Content-Type, default
//! `application/json`), `encoding` (Content-Encoding), `cache` (Cache-Control), `etag`
//! (sent quoted, strong), `status` (206 adds a Content-Range), and `chunk` with `ms`: the
//! body sent chunked, `chunk` bytes every `ms` milliseconds (a slow stream).

use std::io::{self, Write};
use std::time::Duration;

use crate::http::Request;

/// The `n` bytes every `/payload` answer of that size carries, so a test can compare.
fn body(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    out.push(b'[');
    let mut i: u64 = 0;
    while out.len() < n {
        // A varying but repetitive record: compressible like an API's list answer.
        let score = (i * 7919) % 1000;
        let record = format!(
            "{{\"id\":{i},\"name\":\"user-{}\",\"score\":{score},\"active\":{}}},",
            i % 313,
            i.is_multiple_of(3)
        );
        out.extend_from_slice(record.as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

pub fn answer<S: Write>(conn: &mut S, request: &Request) -> io::Result<()> {
    let q = |key: &str| request.query.get(key).map(String::as_str);
    let n = q("n").and_then(|v| v.parse().ok()).unwrap_or(102_400);
    let status: u16 = q("status").and_then(|v| v.parse().ok()).unwrap_or(200);
    let content_type = q("type").unwrap_or("application/json").replace("%2F", "/");
    let mut head = format!("HTTP/1.1 {status} Payload\r\nContent-Type: {content_type}\r\n");
    if let Some(encoding) = q("encoding") {
        head.push_str(&format!("Content-Encoding: {encoding}\r\n"));
    }
    if let Some(cache) = q("cache") {
        head.push_str(&format!("Cache-Control: {cache}\r\n"));
    }
    if let Some(etag) = q("etag") {
        head.push_str(&format!("ETag: \"{etag}\"\r\n"));
    }
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes 0-{}/{}\r\n",
            n.max(1) - 1,
            n * 2
        ));
    }
    if request.close {
        head.push_str("Connection: close\r\n");
    }
    let body = body(n);
    let pace = q("chunk")
        .and_then(|c| c.parse::<usize>().ok())
        .zip(q("ms").and_then(|m| m.parse::<u64>().ok()));
    let Some((chunk, ms)) = pace.filter(|(chunk, _)| *chunk > 0) else {
        head.push_str(&format!("Content-Length: {n}\r\n\r\n"));
        let mut out = head.into_bytes();
        if request.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        conn.write_all(&out)?;
        return conn.flush();
    };
    head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    conn.write_all(head.as_bytes())?;
    conn.flush()?;
    for part in body.chunks(chunk) {
        let mut out = format!("{:x}\r\n", part.len()).into_bytes();
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
        conn.write_all(&out)?;
        conn.flush()?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    conn.write_all(b"0\r\n\r\n")?;
    conn.flush()
}

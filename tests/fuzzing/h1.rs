//! HTTP/1.1 cases: well-formed seeds of every framing, mutated.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{read_to_close, Rng, Tally};

/// Well-formed requests the mutations start from: every framing and the edge cases.
pub fn seeds() -> Vec<Vec<u8>> {
    let r = |s: &str| s.as_bytes().to_vec();
    vec![
        r("GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
        r("GET /headers?a=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\nConnection: close\r\n\r\n"),
        r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"),
        r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        r("GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /headers HTTP/1.1\r\nHost: t\r\n\r\n"),
        r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n\r\n\r\n"),
        r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2a\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n\r\n\r\n0\r\n\r\n"),
        r("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
        r("GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"),
        r("GET / HTTP/1.0\r\n\r\n"),
        r("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"),
        r("GET http://t/headers HTTP/1.1\r\nHost: t\r\n\r\n"),
        r("PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"),
        r("HEAD /bytes?n=10 HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\nX-Request-Id: forged\r\n\r\n"),
        r("GET /chunked HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: TE\r\n\r\n"),
    ]
}

/// Bytes that break parsers: delimiters, controls, high bytes, digits.
const NASTY: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b"\0",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"\x7f",
    b"\xff",
    b"\xc3\xa9",
    b"0",
    b"00000000000000000000",
    b"-1",
    b"ffffffffffffffff",
    b"chunked",
    b"Content-Length: 4\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer_Encoding: chunked\r\n",
    b"Host: x\r\n",
    b"\r\n\r\n",
    b"HTTP/1.1",
    b"/",
    b"*",
    b"%00",
    b"Upgrade: websocket\r\n",
];

/// One mutated request: a seed, or two glued, with a few random edits.
fn h1_case(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = rng.pick(seeds).clone();
    if rng.chance(15) {
        let more = rng.pick(seeds).clone();
        bytes.extend_from_slice(&more);
    }
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = at.min(bytes.len() - 1);
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let nasty = rng.pick(NASTY);
                bytes.splice(at..at, nasty.iter().copied());
            }
            2 if at < bytes.len() => {
                let end = (at + 1 + rng.below(8)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => {
                // A piece of the request repeated (a duplicated field, a second body).
                let start = rng.below(bytes.len());
                let end = (start + 1 + rng.below(40)).min(bytes.len());
                let piece = bytes[start..end].to_vec();
                bytes.splice(at..at, piece);
            }
            4 => bytes.truncate(at),
            _ => {
                let byte = (rng.next() & 0xff) as u8;
                bytes.insert(at.min(bytes.len()), byte);
            }
        }
    }
    bytes
}

pub fn run_h1(port: u16, rng: &mut Rng, seeds: &[Vec<u8>], tally: &Tally) {
    let bytes = h1_case(rng, seeds);
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        tally.refused_connect.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
    // In one write or split in two, the second a little later.
    let split = if rng.chance(30) {
        rng.below(bytes.len() + 1)
    } else {
        bytes.len()
    };
    let _ = stream.write_all(&bytes[..split]);
    if split < bytes.len() {
        std::thread::sleep(Duration::from_millis(20));
        let _ = stream.write_all(&bytes[split..]);
    }
    let mut got = Vec::new();
    if !read_to_close(&mut stream, &mut got) {
        tally.hung.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = tally.hangs.lock() {
            h.push(format!("{:?}", String::from_utf8_lossy(&bytes)));
        }
    }
    let text = String::from_utf8_lossy(&got);
    for part in text.split("HTTP/1.1 ").skip(1) {
        if let Some(status) = part.get(..3).and_then(|s| s.parse().ok()) {
            tally.status(status);
            tally.answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

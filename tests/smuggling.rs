//! Malformed and smuggling requests, case by case (RFC 9112 framing, field syntax, limits):
//! each is refused with its status and a closed connection, or just closed, and none
//! reaches a worker; requests just under each limit are served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{client, get, testapp_pool, Corral};

/// What corral did with one request: the status it answered, if any, and whether it closed
/// the connection afterwards.
#[derive(Debug)]
struct Outcome {
    status: Option<u16>,
    closed: bool,
    text: String,
}

fn send(port: u16, request: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    // A refusal may come before the whole request is written; that is fine.
    let _ = stream.write_all(request);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    Outcome {
        status,
        closed,
        text,
    }
}

fn count(corral: &Corral) -> u64 {
    let (status, body) = get(&client(), &corral.url("/count")).expect("count");
    assert_eq!(status, 200);
    body.trim().parse().expect("a number")
}

/// `(name, request, statuses allowed)`; an empty list means "closed without an answer".
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static [u16])> {
    let r = |s: &str| s.as_bytes().to_vec();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(4100));
    let many: String = (0..101).map(|i| format!("X-F{i}: v\r\n")).collect();
    let many_fields = format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n");
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(8200)
    );
    // Name, colon, space and value are 8190 bytes; the extra spaces make the line longer.
    let spaced_field = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big:    {}\r\n\r\n",
        "b".repeat(8190 - 7)
    );
    let big_body = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n{}",
        "c".repeat(2000)
    );
    let chunks: String = (0..4)
        .map(|_| format!("200\r\n{}\r\n", "d".repeat(512)))
        .collect();
    let big_chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n"
    );
    const BAD: &[u16] = &[400];
    vec![
        // Content-Length and Transfer-Encoding.
        ("CL and TE", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), BAD),
        ("TE and CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), BAD),
        ("conflicting CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), BAD),
        ("listed CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello"), BAD),
        ("repeated equal CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), BAD),
        ("CL with plus", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello"), BAD),
        ("negative CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n"), BAD),
        ("CL with letters", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nhello"), BAD),
        ("empty CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\n"), BAD),
        ("CL in hex", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello"), BAD),
        ("huge CL", r("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n"), &[400, 413]),
        // Transfer-Encoding.
        ("TE gzip only", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxx"), &[400, 501]),
        ("TE chunked then gzip", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), &[400, 501]),
        ("TE identity", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n"), &[400, 501]),
        ("TE xchunked", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"), &[400, 501]),
        ("TE chunked twice", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), &[400, 501]),
        ("TE with space before colon", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), BAD),
        ("TE in HTTP/1.0", r("POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), BAD),
        ("TE with a tab-folded value", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n"), BAD),
        // Chunked bodies.
        ("chunk size not hex", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), BAD),
        ("chunk size overflow", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), &[400, 413]),
        ("negative chunk size", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"), BAD),
        ("chunk without its CRLF", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n"), BAD),
        ("chunk size with space", r("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n"), BAD),
        // Field syntax.
        ("obs-fold", r("GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"), BAD),
        ("space before colon", r("GET / HTTP/1.1\r\nHost : t\r\n\r\n"), BAD),
        ("tab before colon", r("GET / HTTP/1.1\r\nHost\t: t\r\n\r\n"), BAD),
        ("CR inside a value", r("GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n"), BAD),
        ("NUL inside a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n".to_vec(), BAD),
        ("NUL inside a name", b"GET / HTTP/1.1\r\nHost: t\r\nX\0A: b\r\n\r\n".to_vec(), BAD),
        ("DEL inside a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n".to_vec(), BAD),
        ("empty field name", r("GET / HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n"), BAD),
        ("non-token name", r("GET / HTTP/1.1\r\nHost: t\r\nX@A: x\r\n\r\n"), BAD),
        ("two Hosts", r("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), BAD),
        ("no Host in HTTP/1.1", r("GET / HTTP/1.1\r\nX-A: a\r\n\r\n"), BAD),
        ("Host with a space", r("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), BAD),
        // Request line.
        ("bad version", r("GET / HTTP/1.x\r\nHost: t\r\n\r\n"), &[400, 505]),
        ("unknown version", r("GET / HTTP/3.0\r\nHost: t\r\n\r\n"), &[400, 505]),
        ("no version", r("GET /\r\nHost: t\r\n\r\n"), BAD),
        ("bad method", r("G@T / HTTP/1.1\r\nHost: t\r\n\r\n"), BAD),
        ("CONNECT", r("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"), &[400, 405]),
        // Request targets (RFC 9112 §3.2).
        ("asterisk without OPTIONS", r("GET * HTTP/1.1\r\nHost: t\r\n\r\n"), BAD),
        ("authority form", r("GET example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n"), BAD),
        ("no leading slash", r("GET foo/bar HTTP/1.1\r\nHost: t\r\n\r\n"), BAD),
        ("raw non-ASCII in the target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), BAD),
        ("a field line over header_size by its spaces", r(&spaced_field), &[431]),
        // An Upgrade request gets every check a normal one gets.
        ("upgrade with CL and TE", r("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), BAD),
        ("upgrade with two Hosts", r("GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), BAD),
        // Limits.
        ("request line too long", r(&long_line), &[414]),
        ("too many fields", r(&many_fields), &[431]),
        ("field too large", r(&big_field), &[431]),
        ("body too large", r(&big_body), &[413]),
        ("chunked body too large", r(&big_chunked), &[413]),
    ]
}

#[test]
fn malformed_and_smuggling_requests_are_refused_and_never_reach_a_worker() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nbody_size = \"1KiB\"",
        1,
    );
    let before = count(&corral);
    let cases = corpus();
    assert!(cases.len() >= 40);
    let mut wrong = Vec::new();
    for (name, request, allowed) in &cases {
        let outcome = send(corral.port, request);
        let ok = outcome.closed
            && match outcome.status {
                Some(status) => allowed.contains(&status),
                None => outcome.text.is_empty(),
            };
        if !ok {
            wrong.push(format!("{name}: {outcome:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n"),
        corral.logs()
    );
    assert_eq!(
        count(&corral),
        before,
        "a refused request reached the worker"
    );
    // corral goes on serving.
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

#[test]
fn requests_just_under_each_limit_are_served() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nbody_size = \"1KiB\"",
        1,
    );
    // "GET " + target + " HTTP/1.1" is exactly 4094 bytes.
    let target = format!("/{}", "a".repeat(4094 - 4 - 9 - 1));
    // With Host and Connection: 100 fields.
    let many: String = (0..98).map(|i| format!("X-F{i}: v\r\n")).collect();
    let field = format!("X-Big: {}", "b".repeat(8190 - 7));
    let body = "c".repeat(1024);
    let chunked: String = format!(
        "200\r\n{}\r\n200\r\n{}\r\n0\r\n\r\n",
        "d".repeat(512),
        "d".repeat(512)
    );
    for (name, request) in [
        ("request line of 4094 bytes", format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n")),
        ("100 fields", format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n")),
        ("a field of 8190 bytes", format!("GET / HTTP/1.1\r\nHost: t\r\n{field}\r\n\r\n")),
        ("a body of body_size", format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n{body}")),
        ("a chunked body of body_size", format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}")),
        ("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n".to_string()),
        ("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".to_string()),
        ("absolute form", "GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\n".to_string()),
        ("an empty line before the request line", "\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n".to_string()),
        ("bare LF line ends", "GET / HTTP/1.1\nHost: t\n\n".to_string()),
        ("a chunk extension", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;name=v\r\nhello\r\n0\r\n\r\n".to_string()),
    ] {
        let request = request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let outcome = send(corral.port, request.as_bytes());
        assert_eq!(outcome.status, Some(200), "{name}: {outcome:?}");
    }
}

/// pingora's parser percent-encodes a target with spaces or control bytes before corral
/// sees the head; corral judges the line as sent and refuses it (RFC 9112 §3.2), on the
/// first request of a connection and on a later or pipelined one, while a client that
/// encoded the same bytes is served.
#[test]
fn a_target_with_a_raw_space_nul_or_control_byte_is_refused_not_rewritten() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let before = count(&corral);
    for raw in [
        &b"GET /headers?a b HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /headers?a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n",
        // After a good request, on the same connection (pipelined).
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let outcome = send(corral.port, raw);
        assert!(outcome.closed, "{outcome:?}");
        assert!(outcome.text.contains("HTTP/1.1 400"), "{outcome:?}");
    }
    // Only the good pipelined request reached the worker.
    assert_eq!(count(&corral), before + 1);
    let outcome = send(
        corral.port,
        b"GET /headers?a%20b%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(outcome.status, Some(200), "{outcome:?}");
}

//! Answers as app servers really write them, through the proxy to a raw client: sized and
//! chunked bodies, hop-by-hop fields, heads split across writes, many fields, HTTP/1.0, a
//! worker closing after its answer, and bodies cut short or stalled by the worker. Plain
//! answers take corral's byte path; the others pingora's session; both on one connection.

mod support;

use std::time::{Duration, Instant};

use support::raw::Raw;
use support::{client, get, testapp_bin, testapp_pool, wait_for, Corral};

fn request(raw: &mut Raw, path: &str) -> support::raw::Response {
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let answer = raw.response(false);
    assert_eq!(answer.status, 200, "{path}: {answer:?}");
    answer
}

#[test]
fn answers_of_every_shape_reach_the_client_whole_on_one_connection() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let mut raw = Raw::connect(corral.port);

    let plain = request(&mut raw, "/bytes?n=5");
    assert_eq!(plain.body, b"xxxxx");
    assert_eq!(plain.header("connection"), Some("keep-alive"));
    assert!(
        plain.header("date").is_some_and(|d| d.ends_with("GMT")),
        "{plain:?}"
    );

    let chunked = request(&mut raw, "/chunked?n=5000");
    assert_eq!(chunked.body, vec![b'x'; 5000]);

    let hops = request(&mut raw, "/hop-fields");
    assert_eq!(hops.body, b"ok\n");
    assert_eq!(hops.header("x-kept"), Some("yes"));
    assert_eq!(hops.header("x-hop"), None, "{hops:?}");
    assert_eq!(hops.header("keep-alive"), None, "{hops:?}");
    assert_eq!(hops.header("connection"), Some("keep-alive"));

    // corral's own `Date` replaces the worker's, and `Keep-Alive` stays behind.
    let dated = request(&mut raw, "/dated");
    assert_eq!(
        dated.head.to_ascii_lowercase().matches("\r\ndate:").count(),
        1,
        "{dated:?}"
    );
    assert!(!dated.head.contains("1970"), "{dated:?}");
    assert_eq!(dated.header("keep-alive"), None, "{dated:?}");

    assert_eq!(request(&mut raw, "/split-head").body, b"split\n");

    let many = request(&mut raw, "/many-fields?n=80");
    assert_eq!(many.header("x-field-79"), Some("79"), "{many:?}");
    assert_eq!(many.body, b"ok\n");

    assert_eq!(request(&mut raw, "/http10").body, b"old\n");

    // A body the worker ends by closing reaches the client chunked, on a connection that stays.
    let until_close = request(&mut raw, "/until-close");
    assert_eq!(until_close.body, b"until close\n");
    assert_eq!(until_close.header("transfer-encoding"), Some("chunked"));

    // The worker closes its connection; the client's stays open.
    let closing = request(&mut raw, "/worker-close");
    assert_eq!(closing.body, b"bye\n");
    assert_eq!(closing.header("connection"), Some("keep-alive"));

    let large = request(&mut raw, "/bytes?n=300000");
    assert_eq!(large.body.len(), 300_000);

    // Pipelined: an answer that takes pingora's session, then a plain one, in order.
    raw.send(
        b"GET /chunked?n=10 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes?n=3 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(raw.response(false).body, vec![b'x'; 10]);
    assert_eq!(raw.response(false).body, b"xxx");

    // After every shape, the kept-open worker connections still serve.
    for _ in 0..5 {
        request(&mut raw, "/");
    }
}

#[test]
fn a_body_the_worker_cuts_short_ends_the_client_connection() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let mut raw = Raw::connect(corral.port);
    let start = Instant::now();
    raw.send(b"GET /truncate?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    while raw.fill() {}
    // Closed at once, not left open until the client gives up.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let text = String::from_utf8_lossy(&raw.buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    // Half the body, then the connection closes: the client sees the answer was cut.
    assert_eq!(body.len(), 500, "{head}");
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

#[test]
fn a_worker_that_stalls_mid_body_is_replaced() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nconcurrency = 1\ntimeout = \"1s\"\nkill_timeout = \"1s\"\n",
        testapp_bin().display().to_string()
    );
    let mut corral = Corral::start(&text, "", 1);
    let stalled = corral.ready_pids()[0];
    let mut raw = Raw::connect(corral.port);
    let start = Instant::now();
    raw.send(b"GET /stall?n=100 HTTP/1.1\r\nHost: t\r\n\r\n");
    while raw.fill() {}
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&raw.buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer head");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 200"),
        "{head}"
    );
    assert_eq!(body.len(), 100);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    let timeout = corral.wait_event("worker_timeout", Duration::from_secs(10));
    let request = timeout["request"].as_str().unwrap_or_default();
    assert!(
        request.starts_with("GET /stall?n=100 (request_id "),
        "{timeout}"
    );
    assert_eq!(timeout["pid"].as_u64(), Some(u64::from(stalled)));
    wait_for("a replacement", Duration::from_secs(10), || {
        let pids = corral.ready_pids();
        (pids.len() == 1 && pids[0] != stalled).then_some(())
    });
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

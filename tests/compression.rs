//! `[compression]` end to end: the test app's `/payload` answers through corral to curl
//! (which decodes gzip, Brotli and zstd itself) and to a raw client that sees the bytes on
//! the wire.

mod support;

use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::raw::{Raw, Response};
use support::{testapp_pool, Corral};

const ON: &str = "[compression]\nenabled = true\n";

fn start() -> Corral {
    start_with("")
}

fn start_with(server_extra: &str) -> Corral {
    Corral::start(&format!("{}{ON}", testapp_pool(2, "")), server_extra, 2)
}

/// One GET over a fresh raw connection with these extra head lines.
fn fetch(corral: &Corral, path: &str, extra: &str) -> Response {
    let mut raw = Raw::connect(corral.port);
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    raw.response(false)
}

/// curl's own decoding of `path` for `Accept-Encoding: accept`: the head and the body.
fn curl(corral: &Corral, path: &str, accept: &str) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let status = Command::new("curl")
        .args(["-sS", "--compressed", "-H"])
        .arg(format!("Accept-Encoding: {accept}"))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .arg(corral.url(path))
        .status()
        .expect("curl runs");
    assert!(status.success(), "curl {path} with {accept}: {status}");
    let head = std::fs::read_to_string(&head).expect("head");
    (
        head.to_ascii_lowercase(),
        std::fs::read(&body).expect("body"),
    )
}

#[test]
fn every_coding_reaches_curl_and_decodes_to_the_original() {
    let corral = start();
    let path = "/payload?n=102400&etag=v1";
    let original = fetch(&corral, path, "");
    assert_eq!(original.status, 200);
    assert_eq!(original.header("content-encoding"), None, "{original:?}");
    assert_eq!(original.header("content-length"), Some("102400"));
    assert_eq!(original.header("etag"), Some("\"v1\""));
    assert_eq!(original.body.len(), 102_400);
    assert!(original.body.starts_with(b"[{\"id\":0,\"name\":\"user-0\""));

    for coding in ["gzip", "br", "zstd"] {
        let (head, decoded) = curl(&corral, path, coding);
        assert!(
            head.contains(&format!("\r\ncontent-encoding: {coding}\r\n")),
            "{coding}: {head}"
        );
        assert!(head.contains("\r\nvary: accept-encoding\r\n"), "{head}");
        assert!(head.contains("\r\netag: w/\"v1\"\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(
            decoded == original.body,
            "{coding} did not decode to the original"
        );
        // On the wire it is compressed, and chunked.
        let wire = fetch(&corral, path, &format!("Accept-Encoding: {coding}\r\n"));
        assert_eq!(wire.header("transfer-encoding"), Some("chunked"));
        assert!(
            wire.body.len() < 102_400 / 4,
            "{coding}: {} bytes",
            wire.body.len()
        );
        println!("{coding}: 102400 -> {} bytes", wire.body.len());
    }

    // q-values and `*` choose; a client refusing identity gets even a small answer encoded.
    let chosen = |accept: &str, path: &str| {
        let answer = fetch(&corral, path, &format!("Accept-Encoding: {accept}\r\n"));
        answer.header("content-encoding").map(str::to_string)
    };
    let browser = "gzip, deflate, br, zstd";
    assert_eq!(chosen(browser, path).as_deref(), Some("zstd"));
    assert_eq!(chosen("gzip;q=1, br;q=0.5", path).as_deref(), Some("gzip"));
    assert_eq!(chosen("zstd;q=0, *", path).as_deref(), Some("br"));
    assert_eq!(chosen("*;q=0", path), None);
    assert_eq!(chosen("gzip", "/payload?n=100"), None);
    let refusing = chosen("gzip, identity;q=0", "/payload?n=100");
    assert_eq!(refusing.as_deref(), Some("gzip"));

    let metrics = corral.metrics();
    for coding in ["gzip", "br", "zstd"] {
        let line = |family: &str| {
            let prefix =
                format!("corral_compression_{family}_bytes_total{{algorithm=\"{coding}\"}} ");
            corral.metric(&prefix)
        };
        let (input, output) = (line("input"), line("output"));
        assert!(input >= 204_800.0, "{coding} input {input}\n{metrics}");
        assert!(
            output > 0.0 && output < input / 4.0,
            "{coding}: {input} -> {output}"
        );
    }
}

#[test]
fn answers_that_must_not_change_pass_untouched() {
    let corral = start();
    let gzip = "Accept-Encoding: gzip, br, zstd\r\n";
    for path in [
        "/payload?n=50000&type=image/png",
        "/payload?n=50000&type=video/mp4",
        "/payload?n=50000&type=application/octet-stream",
        "/payload?n=50000&encoding=gzip",
        "/payload?n=50000&cache=no-transform",
        "/payload?n=50000&status=206",
        "/payload?n=500",
    ] {
        let plain = fetch(&corral, path, "");
        let offered = fetch(&corral, path, gzip);
        assert_eq!(offered.status, plain.status, "{path}");
        assert_eq!(
            offered.header("content-encoding"),
            plain.header("content-encoding"),
            "{path}: {offered:?}"
        );
        assert_eq!(
            offered.header("content-length"),
            plain.header("content-length")
        );
        assert_eq!(offered.header("vary"), None, "{path}");
        assert!(offered.body == plain.body, "{path}: the body changed");
    }
    // An image streamed chunked stays as it is too.
    let chunked = fetch(
        &corral,
        "/payload?n=50000&type=image/png&chunk=9000&ms=1",
        gzip,
    );
    assert_eq!(chunked.header("content-encoding"), None);
    assert_eq!(chunked.body.len(), 50_000);

    // HEAD: the head the GET would have without compression, and no body.
    let mut raw = Raw::connect(corral.port);
    raw.send(format!("HEAD /payload?n=102400 HTTP/1.1\r\nHost: t\r\n{gzip}\r\n").as_bytes());
    let head = raw.response(true);
    assert_eq!(head.header("content-encoding"), None, "{head:?}");
    assert_eq!(head.header("content-length"), Some("102400"));
    // The connection goes on, with nothing left over from the HEAD.
    raw.send(format!("GET /payload?n=2000 HTTP/1.1\r\nHost: t\r\n{gzip}\r\n").as_bytes());
    let next = raw.response(false);
    assert_eq!(next.header("content-encoding"), Some("zstd"), "{next:?}");

    // HTTP/1.0 has no chunks to carry a body of unknown length: it gets the original.
    let mut old = Raw::connect(corral.port);
    old.send(b"GET /payload?n=5000 HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
    let old = old.response(false);
    assert_eq!(old.header("content-encoding"), None, "{old:?}");
    assert_eq!(old.body.len(), 5000);
}

/// corral's resident memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_slow_stream_is_compressed_as_it_comes_in_bounded_memory() {
    // One proxy thread: the answers share one malloc arena, so what a warmed-up thread
    // grows by is this answer's memory, not a fresh arena's.
    let corral = start_with("threads = 1");
    let pid = corral.pid();
    const N: usize = 10 << 20;
    // 160 pieces of 64 KiB, 15 ms apart: the worker takes at least 2.4 s.
    let path = format!("/payload?n={N}&chunk=65536&ms=15");
    let original = fetch(&corral, &format!("/payload?n={N}"), "").body;
    assert_eq!(original.len(), N);
    for coding in ["gzip", "br", "zstd"] {
        // A first small answer of this coding, so the baseline holds its encoder's tables.
        let warm = fetch(
            &corral,
            "/payload?n=200000&chunk=65536&ms=1",
            &format!("Accept-Encoding: {coding}\r\n"),
        );
        assert_eq!(warm.header("content-encoding"), Some(coding));
        let before = rss_kib(pid);
        let peak = Arc::new(AtomicU64::new(before));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done) = (peak.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let start = Instant::now();
        let mut raw = Raw::connect(corral.port);
        raw.send(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n")
                .as_bytes(),
        );
        let head = raw.response(true);
        assert_eq!(head.header("content-encoding"), Some(coding), "{head:?}");
        // The first compressed bytes come while the worker is still sending.
        while raw.buf.len() < 64 {
            assert!(raw.fill(), "the stream ended early");
        }
        let first = start.elapsed();
        let wire = raw.chunked_body();
        let total = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
        println!(
            "{coding}: first bytes after {first:?}, all {} bytes after {total:?}, RSS {before} KiB +{grew} KiB",
            wire.len()
        );
        assert!(total >= Duration::from_millis(2400), "{total:?}");
        assert!(first < total / 4, "first bytes {first:?} of {total:?}");
        // An encoder holds its window and tables (gzip ~0.3 MiB, Brotli level 4 and zstd
        // level 3 with a 512 KiB window 1.5-3 MiB), whatever the body's length, and the whole
        // process's RSS moves by a MiB or two on its own (other threads' arenas). A proxy
        // that held the 10 MiB body, or its input until the end, would grow by more than 6.
        let bound = 6 * 1024;
        assert!(
            grew < bound,
            "{coding}: RSS grew {grew} KiB of a {} KiB body",
            N >> 10
        );
        assert!(
            decode(coding, &wire) == original,
            "{coding}: not the original"
        );
    }
}

/// The body as a client decodes it.
fn decode(coding: &str, wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let result = match coding {
        "gzip" => flate2::read::GzDecoder::new(wire).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(wire, 4096).read_to_end(&mut out),
        _ => zstd::stream::read::Decoder::new(wire).and_then(|mut d| d.read_to_end(&mut out)),
    };
    result.expect("decodes");
    out
}

#[test]
fn server_sent_events_are_compressed_and_flushed_event_by_event() {
    let corral = start();
    // Ten 200-byte events, 300 ms apart.
    let path = "/payload?n=2000&chunk=200&ms=300&type=text/event-stream";
    let mut raw = Raw::connect(corral.port);
    let start = Instant::now();
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n").as_bytes());
    let head = raw.response(true);
    assert_eq!(head.header("content-encoding"), Some("gzip"), "{head:?}");
    // The first event's compressed bytes (a gzip header, a flushed block) come at once.
    while raw.buf.len() < 40 {
        assert!(raw.fill(), "the stream ended early");
    }
    let first = start.elapsed();
    let wire = raw.chunked_body();
    let total = start.elapsed();
    println!("first event after {first:?}, the stream after {total:?}");
    assert!(total >= Duration::from_millis(2700), "{total:?}");
    assert!(first < Duration::from_millis(1000), "{first:?}");
    assert_eq!(decode("gzip", &wire).len(), 2000);
}

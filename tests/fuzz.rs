//! A black-box network fuzzer: mutated HTTP/1.1 requests and abusive HTTP/2 connections
//! (over TLS, as corral offers HTTP/2) at the real binary, in front of test-app workers that
//! record every request they read (`--record`). After the round:
//! - corral is alive and answers `/healthz`;
//! - every request a worker read carries an `X-Request-Id` that corral logged in an access
//!   line (a request without one, or with one corral never issued, got past corral's
//!   parse: a desync), so no more requests reached workers than corral accepted;
//! - every connection ended (answered and closed, or closed) within the configured
//!   timeouts plus a margin: no hang.
//!
//! `cargo test --test fuzz` runs a short round with a fixed seed. The long round is one
//! command (`docs/operations.md`, "The edge"):
//! `CORRAL_FUZZ_H1=20000 CORRAL_FUZZ_H2=2000 cargo test --test fuzz mutated -- --nocapture`;
//! `CORRAL_FUZZ_SEED` picks another seed.

mod fuzzing;
mod support;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{testapp_bin, Corral};

use fuzzing::h1::{run_h1, seeds};
use fuzzing::h2::{certificate, h2_client_config, h2_frame, hpack, run_h2};
use fuzzing::{env_number, read_to_close, run_cases, Tally, HANG};

#[test]
fn mutated_http1_and_http2_traffic_never_crashes_desyncs_or_hangs_corral() {
    let h1_cases = env_number("CORRAL_FUZZ_H1", 1500);
    let h2_cases = env_number("CORRAL_FUZZ_H2", 150);
    let seed = env_number("CORRAL_FUZZ_SEED", 31);
    let record = tempfile::tempdir().expect("record dir");
    certificate(record.path());
    let tls_port = support::free_port();
    let pool = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\", \"--record\", {:?}]\nworkers = 2\nconcurrency = 16\ntimeout = \"3s\"\nready = \"http\"\nkill_timeout = \"3s\"\nstart_timeout = \"10s\"\n\n[websocket]\nidle_timeout = \"2s\"\n",
        testapp_bin().display().to_string(),
        record.path().display().to_string(),
    );
    let server = format!(
        "max_connections = 2000\n\n[server.limits]\nheader_timeout = \"2s\"\nbody_timeout = \"2s\"\nkeepalive_timeout = \"1s\"\nbody_size = \"64KiB\"\n\n[server.tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
        record.path().join("cert.pem").display().to_string(),
        record.path().join("key.pem").display().to_string(),
    );
    let mut corral = Corral::start(&pool, &server, 2);
    let started = Instant::now();
    let tally = Tally::default();
    let seeds = seeds();
    run_cases(h1_cases, 48, seed, |rng| {
        tally.cases.fetch_add(1, Ordering::Relaxed);
        run_h1(corral.port, rng, &seeds, &tally);
    });
    let h1_took = started.elapsed();
    let config = h2_client_config();
    run_cases(h2_cases, 24, seed ^ 0x22, |rng| {
        tally.cases.fetch_add(1, Ordering::Relaxed);
        run_h2(tls_port, rng, &config, &tally);
    });
    let took = started.elapsed();

    // corral is alive and serving.
    let crashed = corral
        .child
        .as_mut()
        .and_then(|c| c.try_wait().ok().flatten());
    assert!(
        crashed.is_none(),
        "corral exited: {crashed:?}\n{}",
        corral.logs()
    );
    let (status, _) = support::get(&support::client(), &corral.admin_url("/healthz"))
        .expect("healthz after the round");
    assert_eq!(status, 200);

    // Every request a worker read is one corral issued an id for and logged.
    std::thread::sleep(Duration::from_millis(500));
    let issued: HashSet<String> = corral
        .log_events()
        .iter()
        .filter(|e| e["target"] == "corral::access")
        .filter_map(|e| e["request_id"].as_str().map(str::to_string))
        .collect();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(record.path()).expect("records") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seen-"))
        {
            let text = std::fs::read_to_string(&path).expect("record");
            seen.extend(text.lines().map(str::to_string));
        }
    }
    let mut desyncs = Vec::new();
    let mut ids = HashSet::new();
    let mut replays = 0;
    // corral's own readiness probe is the one request without an id.
    for line in seen.iter().filter(|l| l.as_str() != "- GET /health") {
        let id = line.split(' ').next().unwrap_or("-");
        if !issued.contains(id) {
            desyncs.push(line.clone());
        } else if !ids.insert(id.to_string()) {
            replays += 1;
        }
    }
    let statuses = tally.statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let mut statuses: Vec<_> = statuses.into_iter().collect();
    statuses.sort();
    let hung = tally.hung.load(Ordering::Relaxed);
    println!(
        "fuzz seed {seed}: {h1_cases} HTTP/1.1 cases in {h1_took:?}, {h2_cases} HTTP/2 connections, {took:?} in all; \
         {} answers {statuses:?}; workers read {} requests ({replays} retried), corral logged {} ids; \
         crashes 0, desyncs {}, hangs {hung}, refused connects {}",
        tally.answered.load(Ordering::Relaxed),
        seen.len(),
        issued.len(),
        desyncs.len(),
        tally.refused_connect.load(Ordering::Relaxed),
    );
    let hangs = tally.hangs.lock().map(|h| h.clone()).unwrap_or_default();
    for hang in hangs.iter().take(10) {
        println!("hung: {hang}");
    }
    assert!(
        desyncs.is_empty(),
        "requests reached a worker without an id corral issued:\n{}",
        desyncs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let hangs = tally.hangs.lock().map(|h| h.clone()).unwrap_or_default();
    assert_eq!(
        hung,
        0,
        "connections open past {HANG:?}:\n{}",
        hangs
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(tally.refused_connect.load(Ordering::Relaxed), 0);
}

/// corral with HTTPS (and so HTTP/2) in front of one test-app worker.
fn https_corral(dir: &std::path::Path) -> (Corral, u16) {
    certificate(dir);
    let tls_port = support::free_port();
    let server = format!(
        "[server.limits]\nkeepalive_timeout = \"1s\"\n\n[server.tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    );
    (
        Corral::start(&support::testapp_pool(1, ""), &server, 1),
        tls_port,
    )
}

/// How long until corral closes an HTTP/2 connection that sent `frames` after the preface
/// and reads nothing.
fn h2_time_to_close(port: u16, frames: &[u8]) -> Option<Duration> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(250)))
        .expect("timeout");
    tcp.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let server = rustls::pki_types::ServerName::try_from("fuzz.test").expect("name");
    let conn = rustls::ClientConnection::new(h2_client_config(), server).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let start = Instant::now();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(frames);
    let _ = tls.write_all(&bytes).and_then(|()| tls.flush());
    // Read nothing until the flood is written: then wait for the close.
    let mut got = Vec::new();
    read_to_close(&mut tls, &mut got).then(|| start.elapsed())
}

#[test]
fn an_http2_client_that_never_reads_its_settings_acks_is_dropped_not_kept_forever() {
    let dir = tempfile::tempdir().expect("dir");
    let (corral, port) = https_corral(dir.path());
    let mut flood = h2_frame(4, 0, 0, &[]);
    for _ in 0..50_000 {
        flood.extend(h2_frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    }
    let took = h2_time_to_close(port, &flood);
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}\n{}",
        corral.logs()
    );
    // A valid request, answered, on a connection whose client then never answers the
    // closing PING: closed after keepalive_timeout and the close wait.
    let request = hpack(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":path", b"/"),
        (b":authority", b"fuzz.test"),
    ]);
    let mut frames = h2_frame(4, 0, 0, &[]);
    frames.extend(h2_frame(1, 0x5, 1, &request));
    let took = h2_time_to_close(port, &frames);
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
    // A preface followed by something other than SETTINGS is a protocol error.
    let took = h2_time_to_close(port, &h2_frame(6, 0, 0, &[0; 8]));
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "{took:?}");
}

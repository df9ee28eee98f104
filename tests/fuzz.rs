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

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{testapp_bin, Corral};

/// Past the longest configured timeout (3 s) with room for a loaded machine.
const HANG: Duration = Duration::from_secs(12);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: a small deterministic generator, one per case.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, case: u64) -> Rng {
        Rng(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Well-formed requests the mutations start from: every framing and the edge cases.
fn seeds() -> Vec<Vec<u8>> {
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

/// How one connection went.
#[derive(Default)]
struct Tally {
    cases: AtomicUsize,
    answered: AtomicUsize,
    hung: AtomicUsize,
    refused_connect: AtomicUsize,
    statuses: Mutex<HashMap<u16, usize>>,
    hangs: Mutex<Vec<String>>,
}

impl Tally {
    fn status(&self, status: u16) {
        if let Ok(mut s) = self.statuses.lock() {
            *s.entry(status).or_default() += 1;
        }
    }
}

/// Reads until the peer closes; false when it is still open after `HANG`.
fn read_to_close<S: Read>(stream: &mut S, got: &mut Vec<u8>) -> bool {
    let start = Instant::now();
    let mut chunk = [0u8; 16384];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
        if start.elapsed() > HANG {
            return false;
        }
    }
}

fn run_h1(port: u16, rng: &mut Rng, seeds: &[Vec<u8>], tally: &Tally) {
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

/// An HPACK block of literal fields without indexing (RFC 7541 §6.2.2), no Huffman.
fn hpack(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        let len = s.len().min(126);
        out.push(len as u8);
        out.extend_from_slice(&s[..len]);
    }
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        string(&mut out, name);
        string(&mut out, value);
    }
    out
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// One abusive HTTP/2 connection's bytes after the preface: a mix of valid requests and
/// frames out of order, floods, bad lengths and flipped bits.
fn h2_case(rng: &mut Rng, what: &mut Vec<String>) -> Vec<u8> {
    let mut out = Vec::new();
    if !rng.chance(5) {
        out.extend(h2_frame(4, 0, 0, &[]));
    }
    let paths: &[&[u8]] = &[b"/", b"/echo", b"/headers", b"*", b"foo", b"/bytes?n=5000"];
    let methods: &[&[u8]] = &[b"GET", b"POST", b"CONNECT", b"HEAD", b"G T"];
    let frames = 1 + rng.below(12);
    let mut stream = 1u32;
    for _ in 0..frames {
        match rng.below(11) {
            0..=3 => {
                what.push("request".into());
                let mut fields: Vec<(&[u8], &[u8])> = vec![
                    (b":method", *rng.pick(methods)),
                    (b":scheme", b"https"),
                    (b":path", *rng.pick(paths)),
                    (b":authority", b"fuzz.test"),
                ];
                if rng.chance(30) {
                    fields.push((
                        *rng.pick(&[
                            &b"connection"[..],
                            b"transfer-encoding",
                            b"x_under",
                            b"content-length",
                            b"te",
                        ]),
                        *rng.pick(&[&b"close"[..], b"chunked", b"1", b"99", b"trailers"]),
                    ));
                }
                if rng.chance(10) {
                    fields.swap(0, 3);
                }
                let end_stream = rng.chance(60);
                what.push(format!("{fields:?} end_stream {end_stream}").replace("\\", ""));
                let flags = 0x4 | if end_stream { 0x1 } else { 0 };
                out.extend(h2_frame(1, flags, stream, &hpack(&fields)));
                if !end_stream {
                    let body = vec![b'b'; rng.below(3000)];
                    out.extend(h2_frame(
                        0,
                        if rng.chance(70) { 1 } else { 0 },
                        stream,
                        &body,
                    ));
                }
                stream += 2;
            }
            4 => {
                what.push("settings flood".into());
                // A SETTINGS flood whose ACKs are never read.
                for _ in 0..rng.below(2000) {
                    out.extend(h2_frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]));
                }
            }
            5 => {
                what.push("ping flood".into());
                for _ in 0..rng.below(500) {
                    out.extend(h2_frame(6, 0, 0, &[0; 8]));
                }
            }
            6 => {
                what.push("rapid reset".into());
                // Rapid reset.
                for _ in 0..rng.below(300) {
                    let fields = hpack(&[
                        (b":method", b"GET"),
                        (b":scheme", b"https"),
                        (b":path", b"/"),
                        (b":authority", b"t"),
                    ]);
                    out.extend(h2_frame(1, 0x5, stream, &fields));
                    out.extend(h2_frame(3, 0, stream, &[0, 0, 0, 8]));
                    stream += 2;
                }
            }
            7 => {
                what.push("continuation".into());
                // Endless CONTINUATION.
                out.extend(h2_frame(1, 0, stream, &hpack(&[(b":method", b"GET")])));
                for _ in 0..rng.below(200) {
                    out.extend(h2_frame(
                        9,
                        0,
                        stream,
                        &hpack(&[(b"x-c", b"vvvvvvvvvvvvvvvv")]),
                    ));
                }
            }
            8 => out.extend(h2_frame(
                8,
                0,
                rng.below(4) as u32,
                &(rng.next() as u32).to_be_bytes(),
            )),
            9 => {
                let kind = rng.below(16) as u8;
                let payload: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                out.extend(h2_frame(
                    kind,
                    rng.next() as u8,
                    rng.below(8) as u32,
                    &payload,
                ));
            }
            _ => out.extend(h2_frame(7, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0])),
        }
    }
    // Flipped bits anywhere.
    if rng.chance(40) && !out.is_empty() {
        what.push("flipped".into());
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(out.len());
            out[at] ^= 1 << rng.below(8);
        }
    }
    out
}

/// Accepts any certificate: the fuzzer tests corral's HTTP/2, not its PKI.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn h2_client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

fn run_h2(port: u16, rng: &mut Rng, config: &Arc<rustls::ClientConfig>, tally: &Tally) {
    let mut what = Vec::new();
    let bytes = h2_case(rng, &mut what);
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        tally.refused_connect.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(250)));
    let _ = tcp.set_write_timeout(Some(HANG));
    let server = rustls::pki_types::ServerName::try_from("fuzz.test").expect("name");
    let conn = rustls::ClientConnection::new(config.clone(), server).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    if rng.chance(3) {
        let at = rng.below(preface.len());
        preface[at] ^= 0x20;
    }
    preface.extend_from_slice(&bytes);
    // A flood may fill the socket while corral refuses to read it: a failed write is an
    // answer too (corral closed).
    let _ = tls.write_all(&preface).and_then(|()| tls.flush());
    let mut got = Vec::new();
    if read_to_close(&mut tls, &mut got) {
        tally.answered.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.hung.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = tally.hangs.lock() {
            h.push(format!("h2: {} bytes: {what:?}", bytes.len()));
        }
    }
}

/// A self-signed certificate for the HTTPS listener.
fn certificate(dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fuzz.test",
            "-addext",
            "subjectAltName=DNS:fuzz.test",
        ])
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cases` in `threads` threads, each case with its own generator.
fn run_cases(cases: u64, threads: usize, seed: u64, case: impl Fn(&mut Rng) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= cases {
                    return;
                }
                case(&mut Rng::new(seed, i));
            });
        }
    });
}

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

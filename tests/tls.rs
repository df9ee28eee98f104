//! HTTPS: certificates by SNI, TLS 1.2 and 1.3 only, certificates swapped on SIGHUP while
//! open connections go on, a broken certificate refused at its place in the config, the
//! plain listener that redirects to HTTPS, and HTTP/2 (h2load, 504/503/431/413, GOAWAY on
//! SIGTERM). Certificates are made by `openssl` for the test; clients are curl,
//! `openssl s_client`, rustls, h2load and nghttp.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// A test CA and the certificates it signed, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=corral test CA",
        ]);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `NAME.pem` and `NAME.key`, an ECDSA P-256 (or RSA 2048) certificate for `names`.
    fn issue(&self, name: &str, names: &[&str], rsa: bool) {
        let key = format!("{name}.key");
        if rsa {
            self.openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ]);
        } else {
            self.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ]);
        }
        let csr = format!("{name}.csr");
        self.openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={}", names[0]),
        ]);
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\n",
                san.join(",")
            ),
        )
        .expect("write ext");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// The SHA-256 fingerprint of `NAME.pem`, as `openssl x509 -fingerprint` prints it.
    fn fingerprint(&self, name: &str) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(self.path(&format!("{name}.pem")))
            .output()
            .expect("openssl x509");
        fingerprint_of(&String::from_utf8_lossy(&out.stdout))
    }
}

/// `AB:CD:...` out of `sha256 Fingerprint=AB:CD:...`.
fn fingerprint_of(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.split_once("Fingerprint=")
                .map(|(_, f)| f.trim().to_string())
        })
        .unwrap_or_default()
}

/// The fingerprint of the certificate corral presents on `port` for `sni` (`None`: no SNI).
fn served_fingerprint(port: u16, sni: Option<&str>) -> String {
    let mut args = vec![
        "s_client".to_string(),
        "-connect".into(),
        format!("127.0.0.1:{port}"),
    ];
    match sni {
        Some(name) => args.extend(["-servername".to_string(), name.to_string()]),
        None => args.push("-noservername".into()),
    }
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl {} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            args.join(" ")
        ))
        .output()
        .expect("openssl s_client");
    fingerprint_of(&String::from_utf8_lossy(&shown.stdout))
}

/// Whether `openssl s_client` gets a TLS session with `flags` (e.g. `-tls1_1`).
fn handshake_succeeds(port: u16, flags: &[&str]) -> bool {
    Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "a.test",
        ])
        .args(flags)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl s_client")
        .success()
}

/// `curl --http1.1 --cacert` to `https://NAME:PORT/PATH`; (status, body).
fn curl(pki: &Pki, port: u16, name: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args([
            "-w",
            "\n%{http_code}",
            &format!("https://{name}:{port}{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A keep-alive HTTPS connection made with rustls, trusting the test CA.
struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Client {
    fn connect(pki: &Pki, port: u16, name: &str) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(pki.path("ca.pem")).expect("ca.pem");
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(config), server).expect("client");
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            tls: rustls::StreamOwned::new(conn, tcp),
        }
    }

    /// GET `path` on this connection; (status, body).
    fn get(&mut self, host: &str, path: &str) -> (u16, String) {
        write!(self.tls, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("write");
        self.tls.flush().expect("flush");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.tls.read_exact(&mut byte).expect("read head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.tls.read_exact(&mut body).expect("read body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// corral with HTTPS on a free port (and the redirect listener), certificates `a` (the
/// default) and `b`.
fn start(pki: &Pki) -> (Corral, u16, u16) {
    let (https, redirect) = (free_port(), free_port());
    let server = format!(
        "\n[server.tls]\nlisten = [\"127.0.0.1:{https}\"]\nredirect_http = \"127.0.0.1:{redirect}\"\ncertificates = [\n  {{ cert = {:?}, key = {:?} }},\n  {{ cert = {:?}, key = {:?} }},\n]\n",
        pki.path("a.pem").display().to_string(),
        pki.path("a.key").display().to_string(),
        pki.path("b.pem").display().to_string(),
        pki.path("b.key").display().to_string(),
    );
    let corral = Corral::start(&testapp_pool(2, ""), &server, 2);
    (corral, https, redirect)
}

fn pki_with_two_sites() -> Pki {
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    pki.issue("b", &["b.test", "*.b.test"], true);
    pki
}

#[test]
fn https_serves_by_sni_refuses_old_tls_and_redirects_plain_http() {
    let pki = pki_with_two_sites();
    let (corral, https, redirect) = start(&pki);
    let (status, body) = curl(&pki, https, "a.test", "/headers");
    assert_eq!(status, 200, "{body}\n{}", corral.logs());
    let headers: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(headers["x-forwarded-proto"], "https", "{body}");
    let (status, _) = curl(&pki, https, "b.test", "/");
    assert_eq!(status, 200, "the RSA certificate of b.test verifies too");
    let access = corral.wait_log("an HTTPS access line", Duration::from_secs(5), |e| {
        e["target"] == "corral::access" && e["path"] == "/headers"
    });
    assert_eq!(access["scheme"], "https", "{access}");
    assert_eq!(access["protocol"], "HTTP/1.1", "{access}");

    // Certificates by SNI, wildcards included; the first is the default.
    let (a, b) = (pki.fingerprint("a"), pki.fingerprint("b"));
    assert!(!a.is_empty() && a != b);
    assert_eq!(served_fingerprint(https, Some("a.test")), a);
    assert_eq!(served_fingerprint(https, Some("b.test")), b);
    assert_eq!(served_fingerprint(https, Some("api.b.test")), b);
    assert_eq!(served_fingerprint(https, Some("other.test")), a);
    assert_eq!(served_fingerprint(https, None), a);
    let loaded = corral.wait_event("certificate_loaded", Duration::from_secs(5));
    assert_eq!(loaded["fingerprint"], a.as_str(), "{loaded}");

    // TLS 1.2 and 1.3 only.
    assert!(handshake_succeeds(https, &["-tls1_3"]));
    assert!(handshake_succeeds(https, &["-tls1_2"]));
    let old = ["-cipher", "DEFAULT@SECLEVEL=0"];
    assert!(!handshake_succeeds(
        https,
        &[&["-tls1_1"][..], &old].concat()
    ));
    assert!(!handshake_succeeds(https, &[&["-tls1"][..], &old].concat()));
    let refused =
        corral.metric("corral_tls_handshakes_total{reason=\"protocol_version\",result=\"failed\"}");
    assert_eq!(refused, 2.0, "{}", corral.metrics());
    assert!(corral.metric("corral_tls_handshakes_total{reason=\"\",result=\"ok\"}") >= 9.0);
    assert!(corral.metric("corral_client_connections_total{protocol=\"https\"}") >= 9.0);

    // Plain HTTP on the redirect listener: 308 to the same host and path on HTTPS.
    let mut plain = TcpStream::connect(("127.0.0.1", redirect)).expect("connect");
    plain
        .write_all(b"GET /a/b?c=d HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = plain.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("location: https://a.test:{https}/a/b?c=d")),
        "{answer}"
    );
    // Plain HTTP on the HTTPS port is refused, and says why in the metrics.
    let mut wrong = TcpStream::connect(("127.0.0.1", https)).expect("connect");
    let _ = wrong.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let _ = wrong.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = wrong.read_to_end(&mut Vec::new());
    wait_for("not_tls counted", Duration::from_secs(5), || {
        (corral.metric("corral_tls_handshakes_total{reason=\"not_tls\",result=\"failed\"}") == 1.0)
            .then_some(())
    });
    // And the plain listener still serves plain HTTP.
    let (status, _) = get(&client(), &corral.url("/")).expect("plain request");
    assert_eq!(status, 200);
}

#[test]
fn sighup_swaps_certificates_for_new_connections_and_refuses_a_broken_one() {
    let pki = pki_with_two_sites();
    pki.issue("a2", &["a.test"], false);
    let (corral, https, _) = start(&pki);
    let mut open = Client::connect(&pki, https, "a.test");
    assert_eq!(open.get("a.test", "/").0, 200);
    let (a, a2) = (pki.fingerprint("a"), pki.fingerprint("a2"));
    assert_eq!(served_fingerprint(https, Some("a.test")), a);

    // New files under the same names, then SIGHUP.
    std::fs::copy(pki.path("a2.pem"), pki.path("a.pem")).expect("copy cert");
    std::fs::copy(pki.path("a2.key"), pki.path("a.key")).expect("copy key");
    corral.signal(Signal::SIGHUP);
    corral.wait_log("the new certificate loaded", Duration::from_secs(10), |e| {
        e["event"] == "certificate_loaded" && e["fingerprint"] == a2.as_str()
    });
    assert_eq!(served_fingerprint(https, Some("a.test")), a2);
    // The connection opened before goes on, with the certificate it was given.
    assert_eq!(open.get("a.test", "/").0, 200);
    let (status, _) = curl(&pki, https, "a.test", "/");
    assert_eq!(status, 200);

    // A broken certificate: the reload is refused, naming the file, and a2 stays.
    std::fs::write(pki.path("a.pem"), "not a certificate\n").expect("break");
    corral.signal(Signal::SIGHUP);
    let error = corral.wait_event("config_error", Duration::from_secs(10));
    let text = error["message"].as_str().unwrap_or_default().to_string();
    println!("{text}");
    assert!(
        text.contains(&pki.path("a.pem").display().to_string()),
        "{error}"
    );
    assert!(text.contains("no certificate in it"), "{error}");
    assert!(text.contains("server.tls.certificates[0]"), "{error}");
    assert_eq!(
        corral.metric("corral_config_reloads_total{result=\"error\"}"),
        1.0
    );
    assert_eq!(served_fingerprint(https, Some("a.test")), a2);
    assert_eq!(open.get("a.test", "/").0, 200);

    // A key that belongs to another certificate: corral check says so.
    std::fs::copy(pki.path("a2.pem"), pki.path("a.pem")).expect("copy cert");
    std::fs::copy(pki.path("b.key"), pki.path("a.key")).expect("copy wrong key");
    let (code, _, err) = check(&corral.dir.path().join("corral.toml"));
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("this key does not belong to the certificate"),
        "{err}"
    );
}

/// corral with HTTPS (HTTP/2 offered) on a free port, certificate `a`, the given pool.
fn start_h2(pki: &Pki, pool: &str, server_extra: &str) -> (Corral, u16) {
    let https = free_port();
    let server = format!(
        "{server_extra}\n[server.tls]\nlisten = [\"127.0.0.1:{https}\"]\ncert = {:?}\nkey = {:?}\n",
        pki.path("a.pem").display().to_string(),
        pki.path("a.key").display().to_string(),
    );
    let corral = Corral::start(pool, &server, 1);
    (corral, https)
}

/// `curl --http2` with extra args; (HTTP version, status, headers and body).
fn curl_h2(pki: &Pki, port: u16, path: &str, extra: &[&str]) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--http2", "--max-time", "20", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .args(extra)
        .args([
            "-w",
            "\n%{http_version} %{http_code}",
            &format!("https://a.test:{port}{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (version, code) = last.split_once(' ').unwrap_or(("0", "0"));
    (
        version.to_string(),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

#[test]
fn http2_streams_get_the_limits_timeouts_and_log_of_any_request() {
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    let pool = testapp_pool(2, "") + "timeout = \"1s\"\n\n[compression]\nenabled = true\n";
    let limits = "[server.limits]\nbody_size = \"1KiB\"\nheader_size = 4096\n";
    let (corral, https) = start_h2(&pki, &pool, limits);
    // Compression applies to a stream as to any request.
    let (_, status, text) = curl_h2(
        &pki,
        https,
        "/payload?n=20000&type=application/json",
        &["-H", "Accept-Encoding: gzip"],
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("content-encoding: gzip"), "{text}");
    assert!(text.len() < 20000, "compressed: {} bytes", text.len());
    let (version, status, text) = curl_h2(&pki, https, "/headers", &[]);
    assert_eq!(
        (version.as_str(), status),
        ("2", 200),
        "{text}\n{}",
        corral.logs()
    );
    assert!(text.contains("\"x-forwarded-proto\":\"https\""), "{text}");
    // `Host` comes from `:authority`, and cookie fields sent apart reach the worker as one.
    assert!(
        text.contains(&format!("\"host\":\"a.test:{https}\"")),
        "{text}"
    );
    let out = Command::new("nghttp")
        .args(["-H", "cookie: a=1", "-H", "cookie: b=2"])
        .arg(format!("https://127.0.0.1:{https}/headers"))
        .output()
        .expect("nghttp (nghttp2-client)");
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(headers.contains("\"cookie\":\"a=1; b=2\""), "{headers}");
    let access = corral.wait_log("an HTTP/2 access line", Duration::from_secs(5), |e| {
        e["target"] == "corral::access" && e["path"] == "/headers"
    });
    assert_eq!(access["protocol"], "HTTP/2.0", "{access}");

    // 100 concurrent streams over 4 connections.
    let out = Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "25"])
        .arg(format!("https://127.0.0.1:{https}/"))
        .output()
        .expect("h2load (nghttp2-client)");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        report.contains("2000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{report}"
    );
    assert!(report.contains("status codes: 2000 2xx"), "{report}");
    assert!(report.contains("Application protocol: h2"), "{report}");
    assert!(corral.metric("corral_client_connections_total{protocol=\"h2\"}") >= 5.0);

    // A hung worker: 504; an oversize field: 431; an oversize body: 413.
    let (_, status, text) = curl_h2(&pki, https, "/hang", &[]);
    assert_eq!(status, 504, "{text}");
    let big = format!("X-Big: {}", "x".repeat(5000));
    let (_, status, text) = curl_h2(&pki, https, "/", &["-H", &big]);
    assert_eq!(status, 431, "{text}");
    let body = "y".repeat(4096);
    let (_, status, text) = curl_h2(&pki, https, "/echo", &["--data-binary", &body]);
    assert_eq!(status, 413, "{text}");
    // A body within the limit streams through, chunked on the worker side.
    let (_, status, text) = curl_h2(&pki, https, "/echo", &["--data-binary", "hello over h2"]);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("hello over h2"), "{text}");
    // A body of no stated length (an upload from a pipe) reaches the worker chunked.
    let mut upload = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "20", "-T", "-", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("a.test:{https}:127.0.0.1")])
        .arg(format!("https://a.test:{https}/echo"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    if let Some(mut stdin) = upload.stdin.take() {
        std::io::Write::write_all(&mut stdin, b"streamed over h2").expect("write to curl");
    }
    let out = upload.wait_with_output().expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "streamed over h2");
}

#[test]
fn a_full_queue_answers_an_http2_stream_503_with_retry_after() {
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    let pool =
        testapp_pool(1, "").replace("concurrency = 8", "concurrency = 1") + "queue_size = 0\n";
    let (corral, https) = start_h2(&pki, &pool, "");
    let busy = {
        let ca = pki.path("ca.pem");
        std::thread::spawn(move || {
            Command::new("curl")
                .args(["-sS", "--http2", "--max-time", "20", "--cacert"])
                .arg(ca)
                .args(["--resolve", &format!("a.test:{https}:127.0.0.1")])
                .args(["-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("https://a.test:{https}/sleep?ms=3000"))
                .output()
                .expect("curl")
        })
    };
    wait_for("the worker busy", Duration::from_secs(10), || {
        (corral.metric("corral_requests_in_flight") >= 1.0).then_some(())
    });
    let (_, status, text) = curl_h2(&pki, https, "/", &[]);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    let first = busy.join().expect("curl thread");
    assert_eq!(String::from_utf8_lossy(&first.stdout), "200");
}

#[test]
fn sigterm_sends_goaway_and_lets_http2_streams_in_flight_finish() {
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    let (mut corral, https) = start_h2(&pki, &testapp_pool(2, ""), "graceful_timeout = \"10s\"");
    let client = std::thread::spawn(move || {
        Command::new("nghttp")
            .args(["-v", "-t", "20"])
            .arg(format!("https://127.0.0.1:{https}/sleep?ms=2000"))
            .output()
            .expect("nghttp (nghttp2-client)")
    });
    wait_for("the stream in flight", Duration::from_secs(10), || {
        (corral.metric("corral_requests_in_flight") >= 1.0).then_some(())
    });
    corral.signal(Signal::SIGTERM);
    let out = client.join().expect("nghttp thread");
    let trace = String::from_utf8_lossy(&out.stdout);
    assert!(trace.contains("recv GOAWAY frame"), "{trace}");
    assert!(trace.contains(":status: 200"), "{trace}");
    assert!(out.status.success(), "{trace}");
    assert!(corral.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn sigusr2_hands_the_https_listener_to_the_new_master() {
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    let (mut corral, https) = start_h2(&pki, &testapp_pool(2, ""), "");
    let (version, status, text) = curl_h2(&pki, https, "/", &[]);
    assert_eq!((version.as_str(), status), ("2", 200), "{text}");
    let old = corral.pid();
    corral.signal(Signal::SIGUSR2);
    assert!(
        corral.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        corral.logs()
    );
    let new = wait_for("the new master serving", Duration::from_secs(20), || {
        let pid = corral.status()?["pid"].as_u64()?;
        (pid != u64::from(old)).then_some(pid)
    });
    // The same HTTPS port, now the new master's, with the same certificate.
    let (version, status, text) = curl_h2(&pki, https, "/", &[]);
    assert_eq!((version.as_str(), status), ("2", 200), "{text}");
    assert_eq!(
        served_fingerprint(https, Some("a.test")),
        pki.fingerprint("a")
    );
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(new as i32), Signal::SIGTERM);
    wait_for("the new master to exit", Duration::from_secs(30), || {
        (!std::path::Path::new(&format!("/proc/{new}")).exists()
            || std::fs::read_to_string(format!("/proc/{new}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            }))
        .then_some(())
    });
}

#[test]
fn an_http2_stream_whose_client_closes_the_connection_at_a_slow_worker_gets_one_access_line() {
    // Regression: the connection's streams were dropped with it, so a request that had
    // reached a worker left no access line (HTTP/1.1 logs it).
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    let (corral, https) = start_h2(&pki, &testapp_pool(1, ""), "");
    let path = "/sleep?ms=2500&h2-client-gone";
    // curl gives up (and closes the connection) after 1 s, while the worker sleeps.
    let (_, status, _) = curl_h2(&pki, https, path, &["--max-time", "1"]);
    assert_eq!(status, 0, "curl was meant to give up");
    let line = corral.wait_log("the stream's access line", Duration::from_secs(10), |e| {
        e["message"] == "access" && e["path"] == path
    });
    println!("{line}");
    assert_eq!(line["protocol"], "HTTP/2.0", "{line}");
    std::thread::sleep(Duration::from_secs(3));
    let lines = corral
        .log_events()
        .into_iter()
        .filter(|e| e["message"] == "access" && e["path"] == path)
        .count();
    assert_eq!(lines, 1, "{}", corral.logs());
}

/// `curl` over TLS (`--http2` or `--http1.1`) with extra args: (HTTP version, status,
/// head, body bytes).
fn curl_file(
    pki: &Pki,
    port: u16,
    version: &str,
    path: &str,
    extra: &[&str],
) -> (String, u16, String, Vec<u8>) {
    let body = pki.path("body.out");
    let out = Command::new("curl")
        .args(["-sS", version, "--max-time", "20", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .args(["-D", "-", "-o"])
        .arg(&body)
        .args(extra)
        .args([
            "-w",
            "\n%{http_version} %{http_code}",
            &format!("https://a.test:{port}{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, last) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (v, code) = last.split_once(' ').unwrap_or(("0", "0"));
    let bytes = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    (
        v.to_string(),
        code.trim().parse().unwrap_or(0),
        head.to_ascii_lowercase(),
        bytes,
    )
}

#[test]
fn static_files_over_http2_and_tls() {
    let pki = Pki::new();
    pki.issue("a", &["a.test"], false);
    let files = tempfile::tempdir().expect("dir");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(files.path().join("big.bin"), &big).expect("big");
    std::fs::write(files.path().join("app.js"), "plain();").expect("js");
    std::fs::write(files.path().join("app.js.br"), "BROTLI-BYTES").expect("br");
    std::fs::write(files.path().join("app.js.gz"), "GZIP-BYTES").expect("gz");
    std::fs::write(files.path().join("small.txt"), "0123456789".repeat(30)).expect("small");
    let written = std::time::Instant::now();
    let body = format!(
        "[[routes]]\npath_prefix = \"/static\"\nstatic = {:?}\ncache_control = \"public, max-age=60\"\n\
         [[routes]]\npools = [\"web\"]\n{}",
        files.path().display().to_string(),
        testapp_pool(1, "")
    );
    let (corral, https) = start_h2(&pki, &body, "");
    for version in ["--http2", "--http1.1"] {
        let want = if version == "--http2" { "2" } else { "1.1" };
        let (v, status, head, bytes) = curl_file(&pki, https, version, "/static/big.bin", &[]);
        assert_eq!(
            (v.as_str(), status),
            (want, 200),
            "{head}\n{}",
            corral.logs()
        );
        assert!(
            bytes == big,
            "{version}: the file arrived changed ({} bytes)",
            bytes.len()
        );
        assert!(head.contains("cache-control: public, max-age=60"), "{head}");
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .expect("etag")
            .trim()
            .to_string();
        let inm = format!("If-None-Match: {etag}");
        let (_, status, head, bytes) =
            curl_file(&pki, https, version, "/static/big.bin", &["-H", &inm]);
        assert_eq!(status, 304, "{version}: {head}");
        assert!(bytes.is_empty());
        let (_, status, head, bytes) = curl_file(
            &pki,
            https,
            version,
            "/static/big.bin",
            &["-H", "Range: bytes=0-99"],
        );
        assert_eq!(status, 206, "{version}: {head}");
        assert_eq!(bytes[..], big[..100], "{version}");
        assert!(head.contains("content-range: bytes 0-99/300000"), "{head}");
        let (_, status, head, bytes) = curl_file(
            &pki,
            https,
            version,
            "/static/app.js",
            &["-H", "Accept-Encoding: gzip, br"],
        );
        assert_eq!(status, 200, "{version}: {head}");
        assert_eq!(bytes, b"BROTLI-BYTES", "{version}");
        assert!(head.contains("content-encoding: br"), "{head}");
        assert!(head.contains("vary: accept-encoding"), "{head}");
    }
    // A small file, once settled, is answered from memory (its first request keeps it):
    // the same over HTTP/2 and TLS, whole, by range and as 304.
    support::wait_for("small.txt to settle", Duration::from_secs(10), || {
        (written.elapsed() > Duration::from_millis(3200)).then_some(())
    });
    let small = "0123456789".repeat(30).into_bytes();
    for version in ["--http2", "--http1.1", "--http2", "--http1.1"] {
        let (_, status, head, bytes) = curl_file(&pki, https, version, "/static/small.txt", &[]);
        assert_eq!(status, 200, "{version}: {head}");
        assert_eq!(bytes, small, "{version}");
        assert!(head.contains("content-length: 300"), "{head}");
        assert!(head.contains("cache-control: public, max-age=60"), "{head}");
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .expect("etag")
            .trim()
            .to_string();
        let inm = format!("If-None-Match: {etag}");
        let (_, status, _, bytes) =
            curl_file(&pki, https, version, "/static/small.txt", &["-H", &inm]);
        assert_eq!((status, bytes.len()), (304, 0), "{version}");
        let (_, status, head, bytes) = curl_file(
            &pki,
            https,
            version,
            "/static/small.txt",
            &["-H", "Range: bytes=10-19"],
        );
        assert_eq!(status, 206, "{version}: {head}");
        assert_eq!(bytes, b"0123456789", "{version}");
    }
    let access = corral.wait_log(
        "an HTTP/2 static access line",
        Duration::from_secs(5),
        |e| {
            e["target"] == "corral::access"
                && e["path"] == "/static/app.js"
                && e["protocol"] == "HTTP/2.0"
        },
    );
    assert_eq!(access["pool"], "static", "{access}");
}

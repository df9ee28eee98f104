//! ACME (`[server.tls.acme]`) against Debian's `pebble`, an RFC 8555 test CA, with
//! `pebble-challtestsrv` answering DNS for every test name with 127.0.0.1: certificates
//! ordered over HTTP-01 and TLS-ALPN-01 and served by SNI (checked by a rustls client that
//! trusts pebble's root), plain requests served meanwhile, renewal of short-lived
//! certificates while an open connection keeps its own, a restart reusing the stored
//! certificate, the CA down during a renewal. Skipped (with a note) when pebble is not
//! installed, unless `CORRAL_REQUIRE_APPS` is set.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// Whether pebble is here; a machine that must run every test fails instead.
fn have_pebble() -> bool {
    apps::on_path("pebble") && apps::on_path("pebble-challtestsrv")
}

/// A process group killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// pebble and its DNS, set to check challenges on corral's ports.
struct Pebble {
    dir: tempfile::TempDir,
    port: u16,
    management: u16,
    dns: u16,
    http_port: u16,
    tls_port: u16,
    validity: u64,
    ca: Option<Proc>,
    _challtest: Proc,
}

impl Pebble {
    /// A CA checking HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, issuing
    /// certificates valid `validity` seconds.
    fn start(http_port: u16, tls_port: u16, validity: u64) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // pebble's own HTTPS (the directory): a certificate for 127.0.0.1 from a test CA.
        openssl(&[
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
            "/CN=pebble test CA",
        ]);
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "tls.key",
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.path().join("tls.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.pem",
            "-days",
            "2",
            "-extfile",
            "tls.ext",
        ]);
        let dns = free_port();
        let challtest = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start pebble-challtestsrv");
        let mut pebble = Pebble {
            dir,
            port: free_port(),
            management: free_port(),
            dns,
            http_port,
            tls_port,
            validity,
            ca: None,
            _challtest: Proc(challtest),
        };
        pebble.resume();
        pebble
    }

    /// Stops the CA (its DNS stays).
    fn stop(&mut self) {
        self.ca = None;
    }

    /// Starts (or starts again) the CA itself.
    fn resume(&mut self) {
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{}", "managementListenAddress": "127.0.0.1:{}", "certificate": "tls.pem", "privateKey": "tls.key", "httpPort": {}, "tlsPort": {}, "ocspResponderURL": "", "externalAccountBindingRequired": false, "certificateValidityPeriod": {}}}}}"#,
            self.port, self.management, self.http_port, self.tls_port, self.validity
        );
        std::fs::write(self.dir.path().join("pebble.json"), config).expect("pebble config");
        let log = std::fs::File::create(self.dir.path().join("pebble.log")).expect("log");
        let child = Command::new("pebble")
            .args([
                "-config",
                "pebble.json",
                "-dnsserver",
                &format!("127.0.0.1:{}", self.dns),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start pebble");
        self.ca = Some(Proc(child));
        wait_for("pebble's directory", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The PEM root pebble's own HTTPS is signed by (what corral's `directory_ca` names).
    fn tls_root(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root pebble issues under (fetched from its management endpoint, as it is made
    /// anew at every start of pebble).
    fn issuing_root(&self) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(self.tls_root())
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "pebble root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// corral with `[server.tls.acme]` on ports of its own.
struct Setup {
    http: u16,
    https: u16,
    admin: u16,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            http: free_port(),
            https: free_port(),
            admin: free_port(),
        }
    }

    /// The config: the plain and HTTPS listeners, a worker, and the ACME table.
    fn config(&self, pebble: &Pebble, challenge: &str, domains: &str, storage: &Path) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:{}\"\ncontrol_socket = \"{{dir}}/control.sock\"\nstate_dir = \"{{dir}}/state\"\n\n[server.tls]\nlisten = [\"127.0.0.1:{}\"]\n\n[server.tls.acme]\nemail = \"ops@example.com\"\ndomains = {domains}\ndirectory = \"{}\"\ndirectory_ca = \"{}\"\nchallenge = \"{challenge}\"\nstorage = \"{}\"\nretry = \"1s\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n\n{}",
            self.http,
            self.admin,
            self.https,
            pebble.directory(),
            pebble.tls_root().display(),
            storage.display(),
            testapp_pool(1, "")
        )
    }

    fn start(&self, config: &str) -> Corral {
        let mut corral = Corral::spawn_with(config, self.http, self.admin, &["run"], &[]);
        corral.wait_ready(1, Duration::from_secs(30));
        corral
    }
}

/// A rustls client trusting only `root`.
fn tls_config(root: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An HTTPS connection to `name` on `port`, verified against `root`.
struct Https {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Https {
    fn connect(root: &[u8], port: u16, name: &str) -> Result<Https, String> {
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let conn = rustls::ClientConnection::new(tls_config(root), server).expect("client");
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake with {name}: {e}"))?;
        }
        Ok(Https { tls })
    }

    /// The certificate the server presented (DER).
    fn fingerprint(&self) -> Vec<u8> {
        let certs = self
            .tls
            .conn
            .peer_certificates()
            .expect("peer certificates");
        certs[0].as_ref().to_vec()
    }

    /// GET `/` with `Connection: keep-alive`; the status.
    fn get(&mut self, host: &str) -> u16 {
        write!(self.tls, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("write");
        self.tls.flush().expect("flush");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.tls.read_exact(&mut byte).expect("read head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.tls.read_exact(&mut body).expect("body");
        head.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Waits until `name` is served on `port` with a certificate that `root` vouches for.
fn wait_served(root: &[u8], port: u16, name: &str, timeout: Duration) -> Https {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match Https::connect(root, port, name) {
            Ok(c) => return c,
            Err(e) => e,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "{name} not served within {timeout:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Orders over `challenge` for two certificates (one with two names), serves each by SNI,
/// and serves plain HTTP meanwhile.
fn issuance(challenge: &str) {
    if !have_pebble() {
        return;
    }
    let setup = Setup::new();
    let pebble = Pebble::start(setup.http, setup.https, 3600);
    let storage = tempfile::tempdir().expect("storage");
    let config = setup.config(
        &pebble,
        challenge,
        "[\"a.test\", [\"b.test\", \"www.b.test\"]]",
        storage.path(),
    );
    let corral = setup.start(&config);
    // The plain listener serves while the order runs.
    let agent = client();
    assert_eq!(get(&agent, &corral.url("/")).map(|r| r.0), Ok(200));
    let issued = corral.wait_log("two certificates issued", Duration::from_secs(90), |_| {
        corral
            .log_events()
            .iter()
            .filter(|e| e["event"] == "acme_certificate_issued")
            .count()
            >= 2
    });
    let _ = issued;
    let root = pebble.issuing_root();
    let mut a = wait_served(&root, setup.https, "a.test", Duration::from_secs(10));
    let b = wait_served(&root, setup.https, "www.b.test", Duration::from_secs(10));
    assert_ne!(
        a.fingerprint(),
        b.fingerprint(),
        "each name gets its own certificate"
    );
    assert_eq!(a.get("a.test"), 200);
    assert_eq!(get(&agent, &corral.url("/")).map(|r| r.0), Ok(200));
    // Stored for the owner only.
    use std::os::unix::fs::PermissionsExt;
    let keys: Vec<_> = walk(storage.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in keys {
        assert_eq!(
            std::fs::metadata(&k).expect("key").permissions().mode() & 0o777,
            0o600
        );
    }
    let days = corral.metric("corral_tls_certificate_days_left{certificate=\"a.test\"}");
    assert!(
        days > 0.0 && days < 1.0,
        "days left of a one-hour certificate: {days}"
    );
    eprintln!(
        "pebble log tail: {}",
        pebble
            .log()
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// The issued events of `corral` so far.
fn issued(corral: &Corral) -> Vec<serde_json::Value> {
    corral
        .log_events()
        .into_iter()
        .filter(|e| e["event"] == "acme_certificate_issued")
        .collect()
}

/// Renewal of a short-lived certificate: new connections get the new one, a connection
/// opened before keeps working on its own.
#[test]
fn a_short_lived_certificate_is_renewed_for_new_connections_while_an_open_one_goes_on() {
    if !have_pebble() {
        return;
    }
    let setup = Setup::new();
    // 30 s of validity: renewal is due 20 s after issuance.
    let pebble = Pebble::start(setup.http, setup.https, 30);
    let storage = tempfile::tempdir().expect("storage");
    let corral = setup.start(&setup.config(&pebble, "http-01", "[\"r.test\"]", storage.path()));
    corral.wait_event("acme_certificate_issued", Duration::from_secs(60));
    let root = pebble.issuing_root();
    let mut old = wait_served(&root, setup.https, "r.test", Duration::from_secs(10));
    assert_eq!(old.get("r.test"), 200);
    // The old connection is kept busy (an idle one would reach the keep-alive timeout).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while issued(&corral).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no renewal within 60 s"
        );
        assert_eq!(old.get("r.test"), 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(issued(&corral)[1]["reason"], "renewal");
    let new = wait_served(&root, setup.https, "r.test", Duration::from_secs(10));
    assert_ne!(
        new.fingerprint(),
        old.fingerprint(),
        "new connections get the renewed certificate"
    );
    assert_eq!(
        old.get("r.test"),
        200,
        "the connection opened before keeps working"
    );
    assert_eq!(issued(&corral).len(), 2);
}

/// The CA down when a renewal is due: the certificate in use stays, each failed attempt is
/// logged once with a growing wait, days left are exported; the CA back, it is renewed.
#[test]
fn the_ca_down_during_a_renewal_keeps_the_old_certificate_and_retries_with_back_off() {
    if !have_pebble() {
        return;
    }
    let setup = Setup::new();
    // 45 s of validity: renewal is due 30 s after issuance.
    let mut pebble = Pebble::start(setup.http, setup.https, 45);
    let storage = tempfile::tempdir().expect("storage");
    let corral = setup.start(&setup.config(&pebble, "http-01", "[\"down.test\"]", storage.path()));
    corral.wait_event("acme_certificate_issued", Duration::from_secs(60));
    let root = pebble.issuing_root();
    let first = wait_served(&root, setup.https, "down.test", Duration::from_secs(10)).fingerprint();
    pebble.stop();
    let failed = |c: &Corral| -> Vec<serde_json::Value> {
        c.log_events()
            .into_iter()
            .filter(|e| e["event"] == "acme_order_failed")
            .collect()
    };
    corral.wait_log("two failed attempts", Duration::from_secs(60), |_| {
        failed(&corral).len() >= 2
    });
    let failures = failed(&corral);
    assert_eq!(failures[0]["attempt"], 1, "{failures:?}");
    assert_eq!(
        failures[1]["attempt"], 2,
        "one line per attempt: {failures:?}"
    );
    assert!(
        failures[1]["retry_in_s"].as_u64() > failures[0]["retry_in_s"].as_u64(),
        "the wait grows: {failures:?}"
    );
    assert_eq!(failures[0]["serving_old"], true);
    let still = wait_served(&root, setup.https, "down.test", Duration::from_secs(5));
    assert_eq!(
        still.fingerprint(),
        first,
        "the old certificate is still served"
    );
    let days = corral.metric("corral_tls_certificate_days_left{certificate=\"down.test\"}");
    assert!(days > 0.0, "days left exported: {days}");
    // The CA back (a new pebble: a new root and no accounts): renewed.
    pebble.resume();
    corral.wait_log("the renewal", Duration::from_secs(60), |e| {
        e["event"] == "acme_certificate_issued" && e["reason"] == "renewal"
    });
    let root = pebble.issuing_root();
    let renewed = wait_served(&root, setup.https, "down.test", Duration::from_secs(10));
    assert_ne!(renewed.fingerprint(), first);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn http01_certificates_are_ordered_and_served_by_sni_while_plain_http_goes_on() {
    issuance("http-01");
}

#[test]
fn tls_alpn01_certificates_are_ordered_and_served_by_sni_while_plain_http_goes_on() {
    issuance("tls-alpn-01");
}

/// `corral check` on the ACME table: a directory that cannot be reached is a warning (the
/// config is valid); a bad email or name is an error at its place, with its key.
#[test]
fn check_warns_of_an_unreachable_directory_and_refuses_a_bad_email_or_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("corral.toml");
    let config = |acme: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\n\n[server.tls]\nlisten = [\"127.0.0.1:{}\"]\n\n[server.tls.acme]\n{acme}\n\n{}",
            free_port(),
            free_port(),
            testapp_pool(1, "")
        )
    };
    std::fs::write(
        &path,
        config("email = \"ops@example.com\"\ndomains = [\"example.com\", [\"www.example.com\", \"example.org\"]]\ndirectory = \"https://127.0.0.1:1/dir\""),
    )
    .expect("write");
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("server.tls.acme.directory")
            && stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(stdout.contains("challenge = \"http-01\""), "{stdout}");
    assert!(
        stdout.contains("domains = [[\"example.com\"], [\"www.example.com\", \"example.org\"]]"),
        "{stdout}"
    );
    std::fs::write(
        &path,
        config("email = \"not an address\"\ndomains = [\"example.com\", \"bad_name.example\", \"*.example.net\"]"),
    )
    .expect("write");
    let (code, _, stderr) = check(&path);
    assert_ne!(code, 0, "{stderr}");
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:8:9: server.tls.acme.email")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:9:27: server.tls.acme.domains[1]")),
        "{stderr}"
    );
    assert!(
        stderr.contains("server.tls.acme.domains[2]") && stderr.contains("DNS-01"),
        "{stderr}"
    );
}

/// Two corrals sharing a Redis: one account, one order, both serve the same certificate
/// (the CA checks HTTP-01 on the first host's port, whichever host ordered).
#[test]
fn two_hosts_sharing_a_redis_order_once_and_serve_the_same_certificate() {
    if !have_pebble() || !apps::on_path("redis-server") {
        return;
    }
    let redis_port = free_port();
    let redis = Command::new("redis-server")
        .args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("redis-server");
    let _redis = Proc(redis);
    wait_for("redis-server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", redis_port)).ok()
    });
    let a = Setup::new();
    let b = Setup::new();
    // The CA is down while both start, so both are up when the first order can go out.
    let mut pebble = Pebble::start(a.http, a.https, 3600);
    pebble.stop();
    let store = format!(
        "\n[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n"
    );
    let storage_a = tempfile::tempdir().expect("storage");
    let storage_b = tempfile::tempdir().expect("storage");
    let corral_a =
        a.start(&(a.config(&pebble, "http-01", "[\"shared.test\"]", storage_a.path()) + &store));
    let corral_b =
        b.start(&(b.config(&pebble, "http-01", "[\"shared.test\"]", storage_b.path()) + &store));
    pebble.resume();
    let both = [&corral_a, &corral_b];
    let count = |event: &str| -> usize {
        both.iter()
            .map(|c| {
                c.log_events()
                    .iter()
                    .filter(|e| e["event"] == event)
                    .count()
            })
            .sum()
    };
    wait_for("one issued, one shared", Duration::from_secs(90), || {
        (count("acme_certificate_issued") == 1 && count("acme_certificate_shared") == 1)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count("acme_certificate_issued"),
        1,
        "one order for both hosts"
    );
    assert_eq!(
        count("acme_account_created"),
        1,
        "one account for both hosts"
    );
    let root = pebble.issuing_root();
    let served_a =
        wait_served(&root, a.https, "shared.test", Duration::from_secs(10)).fingerprint();
    let served_b =
        wait_served(&root, b.https, "shared.test", Duration::from_secs(10)).fingerprint();
    assert_eq!(served_a, served_b, "both hosts serve the same certificate");
}

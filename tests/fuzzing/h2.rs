//! HTTP/2 cases: abusive connections over TLS (corral offers HTTP/2 by ALPN), a client that
//! accepts any certificate, and the listener's self-signed one.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{read_to_close, Rng, Tally, HANG};

/// An HPACK block of literal fields without indexing (RFC 7541 §6.2.2), no Huffman.
pub fn hpack(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
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

pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
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

pub fn h2_client_config() -> Arc<rustls::ClientConfig> {
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

pub fn run_h2(port: u16, rng: &mut Rng, config: &Arc<rustls::ClientConfig>, tally: &Tally) {
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
pub fn certificate(dir: &std::path::Path) {
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

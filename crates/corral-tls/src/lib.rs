//! HTTPS for corral's proxy. The certificates of `[server.tls]` are loaded and checked here
//! (every file readable, PEM, an X.509 chain, a key that belongs to it), at start, on reload
//! and by `corral check`, each problem reported at the place in the config that names the
//! file. The loaded set sits behind an `ArcSwap`: rustls asks [`Certificates`] for a
//! certificate once per handshake, so a reload changes what new connections get and leaves
//! open ones as they are.

mod challenge;
mod load;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, ServerName};

pub use challenge::{Challenges, RemoteLookup, ACME_TLS_ALPN, HTTP01_PREFIX};
pub use load::{from_pem, load};

/// One usable certificate chain with its key.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The chain's file, for logs.
    pub file: std::path::PathBuf,
    /// SHA-256 of the server's own certificate, as `openssl x509 -fingerprint -sha256`
    /// prints it, so an operator can tell which one a client got.
    pub fingerprint: String,
}

/// Every certificate of `[server.tls]`; the first is served when the client names no host,
/// or one no certificate is valid for.
#[derive(Debug)]
pub struct CertSet {
    entries: Vec<Loaded>,
}

impl CertSet {
    /// The certificates, in config order.
    pub fn entries(&self) -> &[Loaded] {
        &self.entries
    }

    /// The certificate for a client that asked for `host` (SNI): the first valid for it
    /// (wildcards included), else the default.
    pub fn pick(&self, host: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let default = self.entries.first().map(|e| &e.key);
        let Some(name) = host.and_then(|h| ServerName::try_from(h).ok()) else {
            return default;
        };
        if self.entries.len() < 2 {
            return default;
        }
        self.entries
            .iter()
            .find(|e| valid_for(&e.key.cert[0], &name))
            .map(|e| &e.key)
            .or(default)
    }
}

/// Whether the server certificate `cert` names `name`.
fn valid_for(cert: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|c| c.verify_is_valid_for_subject_name(name).is_ok())
}

/// The certificates new handshakes get: those of the files (swapped whole on reload by
/// [`Certificates::store`]) followed by those ordered over ACME (each swapped on its own by
/// [`Certificates::store_ordered`] when it is issued or renewed).
#[derive(Debug)]
pub struct Certificates {
    served: ArcSwap<CertSet>,
    parts: Mutex<Parts>,
    challenges: Arc<Challenges>,
}

#[derive(Debug, Default)]
struct Parts {
    files: Vec<Loaded>,
    ordered: Vec<(String, Loaded)>,
}

impl Parts {
    fn set(&self) -> CertSet {
        let mut entries = self.files.clone();
        entries.extend(self.ordered.iter().map(|(_, l)| l.clone()));
        CertSet { entries }
    }
}

impl Certificates {
    /// Serves `set` until the next [`Certificates::store`].
    pub fn new(set: CertSet) -> Arc<Certificates> {
        Arc::new(Certificates {
            served: ArcSwap::from_pointee(CertSet {
                entries: set.entries.clone(),
            }),
            parts: Mutex::new(Parts {
                files: set.entries,
                ordered: Vec::new(),
            }),
            challenges: Arc::default(),
        })
    }

    /// New connections get the certificates of `set` (the files) from now on, beside the
    /// ordered ones; open connections keep what they were given.
    pub fn store(&self, set: CertSet) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.files = set.entries;
        self.served.store(Arc::new(parts.set()));
    }

    /// New connections get `loaded` for the ACME certificate `id` (issued or renewed),
    /// in place of the one it had.
    pub fn store_ordered(&self, id: &str, loaded: Loaded) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        match parts.ordered.iter_mut().find(|(i, _)| i == id) {
            Some(slot) => slot.1 = loaded,
            None => parts.ordered.push((id.to_string(), loaded)),
        }
        self.served.store(Arc::new(parts.set()));
    }

    /// The set served now.
    pub fn current(&self) -> Arc<CertSet> {
        self.served.load_full()
    }

    /// The pending ACME challenges these certificates answer (TLS-ALPN-01) and the plain
    /// listeners answer (HTTP-01).
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A TLS-ALPN-01 check offers `acme-tls/1` alone (RFC 8737 section 3).
        if hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            return hello
                .server_name()
                .and_then(|name| self.challenges.tls_alpn01(name));
        }
        self.served.load().pick(hello.server_name()).cloned()
    }
}

/// The rustls server config of the HTTPS listeners: TLS 1.2 and 1.3 only, certificates
/// from `certificates` at each handshake, ALPN `h2` (with `http2`) and `http/1.1`, session
/// resumption by tickets and a session cache (as nginx does by default); `acme-tls/1` too
/// when `tls_alpn01` (TLS-ALPN-01 challenges are answered on these listeners).
pub fn server_config(
    certificates: Arc<Certificates>,
    http2: bool,
    tls_alpn01: bool,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if tls_alpn01 {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(10_240);
    Ok(Arc::new(config))
}

/// Why a handshake failed, as a short label for `corral_tls_handshakes_total{reason}`, from
/// the error's text: pingora hands the rustls error over only as its message.
pub fn failure_reason(message: &str) -> &'static str {
    const OLD_CLIENT: [&str; 4] = [
        "Tls12NotOffered",
        "SupportedVersionsExtensionRequired",
        "SignatureAlgorithmsExtensionRequired",
        "ProtocolVersion",
    ];
    let has = |needle: &str| message.contains(needle);
    if has("peer is incompatible") {
        if OLD_CLIENT.iter().any(|n| has(n)) {
            "protocol_version"
        } else if has("NoCipherSuitesInCommon") {
            "no_shared_cipher"
        } else {
            "incompatible"
        }
    } else if has("received fatal alert") {
        if has("BadCertificate") || has("UnknownCA") || has("CertificateUnknown") {
            "certificate_refused"
        } else {
            "alert"
        }
    } else if has("InvalidContentType") {
        "not_tls"
    } else if has("corrupt message") || has("inappropriate") {
        "malformed"
    } else if has("no certificates") {
        "no_certificate"
    } else if has("end of file") || has("eof") {
        "closed"
    } else if has("reset") {
        "reset"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::failure_reason;
    use rustls::{AlertDescription, Error, InvalidMessage, PeerIncompatible};

    /// The labels follow rustls's own wording of its errors, as pingora passes it on.
    #[test]
    fn failures_are_labelled_from_the_rustls_message() {
        let wrapped = |e: Error| {
            format!("TLS accept() failed:  TLSHandshakeFailure context: tls connect error: {e}")
        };
        for (error, reason) in [
            (
                Error::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired),
                "protocol_version",
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
                "protocol_version",
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
                "no_shared_cipher",
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon),
                "incompatible",
            ),
            (
                Error::AlertReceived(AlertDescription::UnknownCA),
                "certificate_refused",
            ),
            (
                Error::AlertReceived(AlertDescription::BadCertificate),
                "certificate_refused",
            ),
            (
                Error::AlertReceived(AlertDescription::HandshakeFailure),
                "alert",
            ),
            (
                Error::InvalidMessage(InvalidMessage::InvalidContentType),
                "not_tls",
            ),
            (
                Error::InvalidMessage(InvalidMessage::MissingData("x")),
                "malformed",
            ),
        ] {
            assert_eq!(failure_reason(&wrapped(error.clone())), reason, "{error}");
        }
        assert_eq!(
            failure_reason("tls stream error: unexpected end of file"),
            "closed"
        );
        assert_eq!(
            failure_reason("Connection reset by peer (os error 104)"),
            "reset"
        );
    }
}

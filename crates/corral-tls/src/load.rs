//! Reading the PEM files of `[server.tls]`, every problem named at its place in the config.

use std::path::Path;
use std::sync::Arc;

use corral_config::{Certificate, Config, ConfigError};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{CertSet, Loaded};

/// Loads every certificate of `config`'s `[server.tls]` (`None` without one), or every
/// problem with them.
pub fn load(config: &Config) -> Result<Option<CertSet>, Vec<ConfigError>> {
    let Some(tls) = &config.server.tls else {
        return Ok(None);
    };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for c in &tls.certificates {
        match one(c) {
            Ok(loaded) => entries.push(loaded),
            Err(message) => errors.push(c.place.error(&config.source, message)),
        }
    }
    if errors.is_empty() {
        Ok(Some(CertSet { entries }))
    } else {
        Err(errors)
    }
}

fn one(c: &Certificate) -> Result<Loaded, String> {
    let chain = chain(&read(&c.cert, "certificate")?, &c.cert)?;
    let key = private_key(&read(&c.key, "key")?, &c.key)?;
    certified(chain, key, c)
}

/// A certificate ordered over ACME, from the PEM texts of its chain and key as stored at
/// `cert` and `key` (the names in its errors and logs).
pub fn from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<Loaded, String> {
    let c = Certificate {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        place: corral_config::Place {
            line: 0,
            column: 0,
            key: String::new(),
        },
    };
    certified(chain(chain_pem, cert)?, private_key(key_pem, key)?, &c)
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    c: &Certificate,
) -> Result<Loaded, String> {
    webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
        format!(
            "{}: the first certificate is not a usable X.509 server certificate ({e})",
            c.cert.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{}: this key does not belong to the certificate in {}",
            c.key.display(),
            c.cert.display()
        ),
        other => format!(
            "{}: the key cannot be used ({other}); expected an RSA, ECDSA (P-256, P-384) or Ed25519 key",
            c.key.display()
        ),
    })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &certified.cert[0]);
    let fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(Loaded {
        key: Arc::new(certified),
        file: c.cert.clone(),
        fingerprint,
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read the {what}: {e}", path.display()))
}

fn chain(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in it; expected PEM blocks \"-----BEGIN CERTIFICATE-----\", the server's own first",
            path.display()
        ));
    }
    Ok(chain)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "{}: no private key in it; expected a PEM block \"-----BEGIN PRIVATE KEY-----\" (or RSA / EC PRIVATE KEY)",
            path.display()
        ),
        other => format!("{}: not a PEM key file ({other})", path.display()),
    })
}

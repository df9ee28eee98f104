//! What corral says about its certificates: each one loaded, with the fingerprint a client
//! sees, at start and on every reload that changes them.

use corral_tls::CertSet;

/// Logs every certificate of `set` (`certificate_loaded`, with its SHA-256 fingerprint).
pub fn announce(set: &CertSet) {
    for (i, c) in set.entries().iter().enumerate() {
        tracing::info!(
            event = "certificate_loaded",
            file = %c.file.display(),
            fingerprint = %c.fingerprint,
            default = i == 0,
            "TLS certificate loaded"
        );
    }
}

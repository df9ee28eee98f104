//! What a certificate says about itself: when it is valid, and for which names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The validity period and DNS names of a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Validity {
    /// Not valid before.
    pub not_before: SystemTime,
    /// Not valid after.
    pub not_after: SystemTime,
    /// Its DNS names (subject alternative names).
    pub names: Vec<String>,
}

impl Validity {
    /// When to renew: two thirds into the lifetime (Let's Encrypt's advice: 60 days into 90).
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + life * 2 / 3
    }

    /// Days left until expiry at `now` (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> f64 {
        match self.not_after.duration_since(now) {
            Ok(left) => left.as_secs_f64() / 86_400.0,
            Err(past) => -past.duration().as_secs_f64() / 86_400.0,
        }
    }
}

/// The validity of the first certificate of the PEM `chain`.
pub fn of_pem(chain: &[u8]) -> Option<Validity> {
    let der = CertificateDer::pem_slice_iter(chain).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let time = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Validity {
        not_before: time(cert.validity().not_before.timestamp()),
        not_after: time(cert.validity().not_after.timestamp()),
        names,
    })
}

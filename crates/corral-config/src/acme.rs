//! `[server.tls.acme]`: certificates corral orders itself from an ACME CA (Let's Encrypt by
//! default) for the names in `domains`. Only the table is read and checked here (names,
//! address, directory URL); ordering, storing and renewing are `corral-acme`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::model::Place;
use crate::reader::{as_string, kind, Reader, Table};

/// Let's Encrypt's production directory, used when `directory` is not given.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`directory = "letsencrypt-staging"`): untrusted
/// certificates, generous rate limits, for trying a setup out.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The first wait after a failed attempt (`retry`), doubled per failure up to an hour.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);

/// `[server.tls.acme]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Acme {
    /// `email`: the account's contact, told about expiry and problems by the CA.
    pub email: Option<String>,
    /// `domains`: one entry per certificate, each with its names (the first is the
    /// certificate's own name, the others its alternatives).
    pub domains: Vec<Vec<String>>,
    /// `directory`: the CA's RFC 8555 directory URL.
    pub directory: String,
    /// `directory_ca`: a PEM root the directory's HTTPS is checked against (a private CA);
    /// `None`: the system's roots.
    pub directory_ca: Option<PathBuf>,
    /// `challenge`: how the CA checks that corral answers for the names.
    pub challenge: AcmeChallenge,
    /// `eab`: the external account binding some CAs require (ZeroSSL, Google).
    pub eab: Option<Eab>,
    /// `storage`: where the account and certificates are kept; `None`: `state_dir/acme`.
    pub storage: Option<PathBuf>,
    /// `retry`: the wait after a first failed attempt; it doubles with each failure in a
    /// row, up to an hour.
    pub retry: Duration,
    /// Where the table is, for warnings found later (an unreachable directory).
    pub place: Place,
}

/// `challenge`: the ACME challenge corral answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// `http-01`: `GET /.well-known/acme-challenge/TOKEN` on port 80 (the plain listener).
    Http01,
    /// `tls-alpn-01`: a TLS handshake with ALPN `acme-tls/1` on port 443 (the HTTPS listener).
    TlsAlpn01,
}

impl AcmeChallenge {
    /// The name used in the config and logs.
    pub fn name(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// `eab = { kid = "...", hmac_key = "..." }`: the key id and the base64url HMAC key the CA
/// gave for binding the ACME account to an account of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Eab {
    /// The key identifier.
    pub kid: String,
    /// The HMAC key, decoded.
    pub hmac_key: Vec<u8>,
}

/// Reads `[server.tls.acme]` from `tls`, `None` when absent.
pub(crate) fn acme(r: &mut Reader, tls: &mut Table, base: &Path) -> Option<Acme> {
    let node = tls.get("acme")?;
    let place = r.place(node.span(), &tls.key_path("acme"));
    let mut t = tls.table(r, "acme");
    let email = email(r, &mut t);
    let domains = domains(r, &mut t);
    let directory = directory(r, &mut t);
    let directory_ca = t.string(r, "directory_ca").map(|p| base.join(p));
    let challenge = match t.choice(r, "challenge", &["http-01", "tls-alpn-01"]) {
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        _ => AcmeChallenge::Http01,
    };
    let eab = eab(r, &mut t);
    let storage = t.string(r, "storage").map(|p| base.join(p));
    let retry = t.positive_duration(r, "retry").unwrap_or(DEFAULT_RETRY);
    t.finish(r);
    Some(Acme {
        email,
        domains,
        directory,
        directory_ca,
        challenge,
        eab,
        storage,
        retry,
        place,
    })
}

fn email(r: &mut Reader, t: &mut Table) -> Option<String> {
    let path = t.key_path("email");
    let node = t.get("email")?;
    let text = as_string(r, node, &path)?;
    let address = text.strip_prefix("mailto:").unwrap_or(&text);
    if valid_email(address) {
        Some(address.to_string())
    } else {
        r.error(
            node.span(),
            &path,
            format!("{text:?} is not an email address; expected one like \"ops@example.com\""),
        );
        None
    }
}

/// A plausible address: one `@`, something before it, a host name after it.
fn valid_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, host)) => {
            !local.is_empty()
                && !local.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
                && host.contains('.')
                && valid_name(host).is_ok()
        }
        None => false,
    }
}

fn domains(r: &mut Reader, t: &mut Table) -> Vec<Vec<String>> {
    const EXPECTED: &str = "an array like [\"example.com\", [\"www.example.com\", \"example.org\"]] (a name, or several names sharing one certificate)";
    let Some((path, items)) = t.array(r, "domains", EXPECTED) else {
        r.error_nowhere(
            &t.key_path("domains"),
            "is missing; ACME needs the names to order certificates for, e.g. domains = [\"example.com\"]",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let names: Vec<(String, &crate::reader::Node)> = match item.get_ref() {
            DeValue::String(s) => vec![(s.to_string(), item)],
            DeValue::Array(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .filter_map(|(j, n)| as_string(r, n, &format!("{item_path}[{j}]")).map(|s| (s, n)))
                .collect(),
            other => {
                r.error(
                    item.span(),
                    &item_path,
                    format!(
                        "expected a name or a non-empty array of names, found {}",
                        kind(other)
                    ),
                );
                continue;
            }
        };
        let mut cert = Vec::new();
        for (name, node) in names {
            let name = name.to_ascii_lowercase();
            if let Err(why) = valid_name(&name) {
                r.error(node.span(), &item_path, format!("{name:?} {why}"));
            } else if seen.contains(&name) {
                r.error(node.span(), &item_path, format!("{name:?} is listed twice"));
            } else {
                seen.push(name.clone());
                cert.push(name);
            }
        }
        if !cert.is_empty() {
            out.push(cert);
        }
    }
    if items.is_empty() {
        r.error_nowhere(
            &path,
            "is empty; list at least one name to order a certificate for",
        );
    }
    out
}

/// Whether `name` is a DNS name an HTTP-01 or TLS-ALPN-01 challenge can prove.
fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.starts_with("*.") {
        return Err("is a wildcard; wildcard certificates need the DNS-01 challenge, which corral does not answer");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; ACME certificates here are for DNS names");
    }
    if name.is_empty() || name.len() > 253 {
        return Err("is not a DNS name (1 to 253 characters)");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("is not a DNS name; expected labels of letters, digits and '-' separated by dots, like \"www.example.com\"")
    }
}

fn directory(r: &mut Reader, t: &mut Table) -> String {
    let path = t.key_path("directory");
    let Some(node) = t.get("directory") else {
        return LETSENCRYPT.to_string();
    };
    let Some(text) = as_string(r, node, &path) else {
        return LETSENCRYPT.to_string();
    };
    match text.as_str() {
        "letsencrypt" => LETSENCRYPT.to_string(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_string(),
        url if url.starts_with("https://") && url.len() > "https://".len() => url.to_string(),
        _ => {
            r.error(
                node.span(),
                &path,
                format!("{text:?} is not an ACME directory; expected \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL"),
            );
            LETSENCRYPT.to_string()
        }
    }
}

fn eab(r: &mut Reader, t: &mut Table) -> Option<Eab> {
    let present = t.get("eab").is_some();
    let mut e = t.table(r, "eab");
    if !present {
        e.finish(r);
        return None;
    }
    let kid_path = e.key_path("kid");
    let kid = e.string(r, "kid");
    let key_path = e.key_path("hmac_key");
    let key_node = e.get("hmac_key");
    let key = key_node.and_then(|n| as_string(r, n, &key_path).map(|s| (s, n)));
    e.finish(r);
    let hmac_key = match key {
        Some((text, node)) => match base64url(&text) {
            Some(bytes) if !bytes.is_empty() => Some(bytes),
            _ => {
                r.error(
                    node.span(),
                    &key_path,
                    "is not base64url; paste the HMAC key as the CA gave it",
                );
                None
            }
        },
        None => {
            r.error_nowhere(
                &key_path,
                "is missing; external account binding needs kid and hmac_key",
            );
            None
        }
    };
    if kid.is_none() {
        r.error_nowhere(
            &kid_path,
            "is missing; external account binding needs kid and hmac_key",
        );
    }
    Some(Eab {
        kid: kid?,
        hmac_key: hmac_key?,
    })
}

/// Decodes base64url (padding optional), as CAs print EAB keys.
fn base64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{base64url, valid_email, valid_name};

    #[test]
    fn names_and_addresses_are_checked() {
        assert!(valid_name("www.example.com").is_ok());
        assert!(valid_name("a.test").is_ok());
        assert!(valid_name("*.example.com").is_err());
        assert!(valid_name("127.0.0.1").is_err());
        assert!(valid_name("bad_name.com").is_err());
        assert!(valid_name("-x.com").is_err());
        assert!(valid_name("a..com").is_err());
        assert!(valid_email("ops@example.com"));
        assert!(!valid_email("ops"));
        assert!(!valid_email("ops@localhost"));
        assert!(!valid_email("@example.com"));
        assert_eq!(base64url("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64url("a b"), None);
    }
}

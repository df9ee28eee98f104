//! `[server.tls]`: HTTPS listeners, their certificates (the first one is the default, the
//! others are chosen by SNI), and the plain listener that redirects to HTTPS. Only where the
//! files are is read here; the files themselves are loaded (and refused with their place in
//! this file) by `corral-tls`, at start, on reload and by `corral check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::DeValue;

use crate::model::{Certificate, Place, Tls};
use crate::reader::{Reader, Table};

/// Concurrent streams per HTTP/2 connection unless `max_streams` says otherwise (nginx's
/// `http2_max_concurrent_streams`).
pub const DEFAULT_H2_MAX_STREAMS: u32 = 128;

/// `[server.tls]`, or `None` when the table is absent. `taken` are the addresses the plain
/// and admin listeners already use.
pub(crate) fn tls(
    r: &mut Reader,
    server: &mut Table,
    taken: &[SocketAddr],
    base: &Path,
) -> Option<Tls> {
    let present = server.get("tls").is_some();
    let mut t = server.table(r, "tls");
    if !present {
        t.finish(r);
        return None;
    }
    let listen = t.addresses(r, "listen");
    let redirect_http = t.address(r, "redirect_http");
    let http2 = t.boolean(r, "http2").unwrap_or(true);
    let max_streams = t
        .integer(r, "max_streams", 1, 10_000)
        .map_or(DEFAULT_H2_MAX_STREAMS, |n| n as u32);
    let acme = crate::acme::acme(r, &mut t, base);
    let single = (t.get("cert"), t.get("key"));
    let single_cert = t.string(r, "cert");
    let single_key = t.string(r, "key");
    let mut certificates = Vec::new();
    let listed = t.get("certificates").is_some();
    if let Some((path, items)) = t.array(
        r,
        "certificates",
        "an array like [{ cert = \"site.pem\", key = \"site.key\" }]",
    ) {
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let DeValue::Table(table) = item.get_ref() else {
                r.error(
                    item.span(),
                    &item_path,
                    "expected a table like { cert = \"site.pem\", key = \"site.key\" }",
                );
                continue;
            };
            let mut c = Table::new(item_path.clone(), Some(table));
            let cert = c.string(r, "cert");
            let key = c.string(r, "key");
            c.finish(r);
            match (cert, key) {
                (Some(cert), Some(key)) => certificates.push(Certificate {
                    cert: base.join(cert),
                    key: base.join(key),
                    place: r.place(item.span(), &item_path),
                }),
                (cert, _) => {
                    let missing = if cert.is_none() { "cert" } else { "key" };
                    r.error(
                        item.span(),
                        &format!("{item_path}.{missing}"),
                        "is missing; a certificate needs the PEM file of its chain (cert) and of its key (key)",
                    );
                }
            }
        }
    }
    match (single_cert, single_key, single) {
        (Some(cert), Some(key), (Some(node), _)) => {
            if !certificates.is_empty() {
                r.error(node.span(), &t.key_path("cert"), "is given with certificates; list every certificate in certificates (the first is the default)");
            }
            let place = r.place(node.span(), &t.key_path("cert"));
            certificates.insert(
                0,
                Certificate {
                    cert: base.join(cert),
                    key: base.join(key),
                    place,
                },
            );
        }
        (Some(_), None, _) => r.error_nowhere(
            &t.key_path("key"),
            "is missing; cert needs the key file that goes with it",
        ),
        (None, Some(_), _) => r.error_nowhere(
            &t.key_path("cert"),
            "is missing; key needs the certificate file that goes with it",
        ),
        _ => {}
    }
    t.finish(r);
    if !listed && single.0.is_none() && single.1.is_none() && acme.is_none() {
        r.error_nowhere(
            "server.tls.cert",
            "is missing; HTTPS needs a certificate: cert = \"site.pem\" and key = \"site.key\", certificates = [...], or [server.tls.acme]",
        );
    }
    let listen = match listen {
        Some(list) if !list.is_empty() => list,
        Some(_) | None => {
            r.error_nowhere(
                "server.tls.listen",
                "needs at least one address for HTTPS, e.g. listen = [\"0.0.0.0:443\"]",
            );
            Vec::new()
        }
    };
    let mut seen: Vec<SocketAddr> = taken.to_vec();
    for addr in listen.iter().chain(redirect_http.iter()) {
        if seen.contains(addr) {
            r.error_nowhere(
                "server.tls",
                format!("{addr} is served twice; server.listen, server.admin, server.tls.listen and server.tls.redirect_http each need addresses of their own"),
            );
        }
        seen.push(*addr);
    }
    Some(Tls {
        listen,
        certificates,
        redirect_http,
        http2,
        max_streams,
        acme,
    })
}

/// The directory relative certificate paths are read from: the config file's.
pub(crate) fn base_dir(source: &Path) -> PathBuf {
    source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where a certificate is written, for the errors about its files.
impl Place {
    /// `file:line:column: key`, as config errors begin.
    pub fn error(&self, file: &Path, message: impl Into<String>) -> crate::ConfigError {
        crate::ConfigError {
            file: file.to_path_buf(),
            line: self.line,
            column: self.column,
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

//! Who the client is: one identity per connection, refined per request when the peer is a
//! trusted proxy. The forwarded fields, the access log and the rate limiter read only this,
//! so they cannot disagree.
//!
//! From a peer outside `server.trusted_proxies` the client is the peer, and whatever it
//! wrote in `X-Forwarded-*` or `Forwarded` is ignored (and removed, see `fields`). From a
//! trusted peer the client is the right-most address of the forwarding chain that is not
//! itself trusted: addresses to its left were written by the client and prove nothing.

use std::net::IpAddr;

use corral_config::Cidr;
use http::header::HeaderName;
use http::HeaderValue;
use pingora_http::RequestHeader;

/// The client of one request.
#[derive(Clone, Debug)]
pub(crate) struct ClientIdentity {
    /// The client's address for `X-Real-IP`.
    pub(crate) ip: Option<HeaderValue>,
    /// The same, as text for the access log.
    pub(crate) ip_text: String,
    /// `X-Forwarded-For` for the worker: the trusted chain with the peer appended.
    pub(crate) forwarded_for: Option<HeaderValue>,
    /// The port the client connected to, for `X-Forwarded-Port`.
    pub(crate) port: Option<HeaderValue>,
    /// The scheme the client spoke, for `X-Forwarded-Proto` (and HSTS).
    pub(crate) proto: &'static str,
    /// The host the client asked for, when a trusted proxy says so; else the `Host` field.
    pub(crate) host: Option<HeaderValue>,
    /// A request id a trusted proxy already gave the request.
    pub(crate) request_id: Option<String>,
    /// Whether the peer is a trusted proxy (its forwarded fields are believed).
    pub(crate) trusted_peer: bool,
}

/// The connection's own view of its peer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    /// The peer address (or the PROXY header's source).
    pub(crate) addr: Option<IpAddr>,
    /// The port the client connected to.
    pub(crate) local_port: Option<u16>,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
}

impl ClientIdentity {
    /// The identity of a connection from `peer`, before any request is read.
    pub(crate) fn of_peer(peer: Peer, trusted: &[Cidr]) -> ClientIdentity {
        let ip_text = peer
            .addr
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_default();
        let ip = HeaderValue::from_str(&ip_text)
            .ok()
            .filter(|_| peer.addr.is_some());
        ClientIdentity {
            forwarded_for: ip.clone(),
            ip,
            ip_text,
            port: peer.local_port.map(HeaderValue::from),
            proto: if peer.tls { "https" } else { "http" },
            host: None,
            request_id: None,
            trusted_peer: peer.addr.is_some_and(|ip| is_trusted(ip, trusted)),
        }
    }

    /// The identity of one request head from `peer`, as the proxy would resolve it; for
    /// `/status`, which tells its caller who corral takes it for.
    pub(crate) fn of_request(peer: Peer, head: &RequestHeader, trusted: &[Cidr]) -> Self {
        let conn = ClientIdentity::of_peer(peer, trusted);
        if conn.trusted_peer && ClientIdentity::refined_by(head) {
            conn.for_request(head, trusted)
        } else {
            conn
        }
    }

    /// Whether a request from a trusted peer carries any field that could change who its
    /// client is; without one the connection's identity stands (no allocation).
    pub(crate) fn refined_by(head: &RequestHeader) -> bool {
        FORWARDING
            .iter()
            .any(|name| head.headers.contains_key(HeaderName::from_static(name)))
    }

    /// The identity of one request from a trusted peer (`self`, the connection's identity),
    /// read from the request's forwarding fields.
    pub(crate) fn for_request(&self, head: &RequestHeader, trusted: &[Cidr]) -> ClientIdentity {
        let values = |name: &'static str| -> Vec<&str> {
            head.headers
                .get_all(HeaderName::from_static(name))
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        let fields = ForwardingFields {
            x_forwarded_for: values("x-forwarded-for"),
            forwarded: values("forwarded"),
            x_forwarded_proto: values("x-forwarded-proto"),
            x_forwarded_host: values("x-forwarded-host"),
            x_forwarded_port: values("x-forwarded-port"),
            request_id: values("x-request-id"),
        };
        resolve(self, &fields, trusted)
    }
}

/// The fields a trusted proxy may tell the client by.
const FORWARDING: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-request-id",
];

/// The forwarding fields of one request, every value in order.
#[derive(Debug, Default)]
pub(crate) struct ForwardingFields<'a> {
    pub(crate) x_forwarded_for: Vec<&'a str>,
    pub(crate) forwarded: Vec<&'a str>,
    pub(crate) x_forwarded_proto: Vec<&'a str>,
    pub(crate) x_forwarded_host: Vec<&'a str>,
    pub(crate) x_forwarded_port: Vec<&'a str>,
    pub(crate) request_id: Vec<&'a str>,
}

/// Whether `ip` is one of the trusted proxies.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The pure resolution: the connection's identity `conn` (whose peer is trusted) and the
/// request's forwarding fields give the request's client.
pub(crate) fn resolve(
    conn: &ClientIdentity,
    fields: &ForwardingFields,
    trusted: &[Cidr],
) -> ClientIdentity {
    let mut out = conn.clone();
    if !conn.trusted_peer {
        return out;
    }
    // The chain, left (farthest) to right (nearest): X-Forwarded-For, else Forwarded's for=.
    let chain: Vec<&str> = if fields.x_forwarded_for.is_empty() {
        forwarded_params(&fields.forwarded, "for").collect()
    } else {
        fields
            .x_forwarded_for
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut client: Option<IpAddr> = None;
    for entry in chain.iter().rev() {
        let Some(ip) = chain_address(entry) else {
            // Garbage ends the walk: the nearest address that could be checked stands.
            break;
        };
        client = Some(ip);
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    if let Some(ip) = client {
        out.ip_text = ip.to_string();
        out.ip = HeaderValue::from_str(&out.ip_text).ok();
    }
    let peer = conn
        .forwarded_for
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut joined: Vec<&str> = chain.clone();
    joined.push(peer);
    out.forwarded_for = HeaderValue::from_str(&joined.join(", ")).ok();
    let proto = last(&fields.x_forwarded_proto)
        .or_else(|| forwarded_params(&fields.forwarded, "proto").last())
        .and_then(|p| {
            if p.eq_ignore_ascii_case("https") {
                Some("https")
            } else if p.eq_ignore_ascii_case("http") {
                Some("http")
            } else {
                None
            }
        });
    if let Some(proto) = proto {
        out.proto = proto;
    }
    let host = last(&fields.x_forwarded_host)
        .or_else(|| forwarded_params(&fields.forwarded, "host").last())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
    if let Some(host) = host {
        out.host = HeaderValue::from_str(host).ok();
    }
    let port = last(&fields.x_forwarded_port)
        .and_then(|p| p.parse::<u16>().ok())
        .or_else(|| proto.map(|p| if p == "https" { 443 } else { 80 }));
    if let Some(port) = port {
        out.port = Some(HeaderValue::from(port));
    }
    out.request_id = last(&fields.request_id)
        .filter(|id| valid_request_id(id))
        .map(str::to_string);
    out
}

/// The last comma-separated element of the last value of a field.
fn last<'a>(values: &[&'a str]) -> Option<&'a str> {
    values.last()?.rsplit(',').next().map(str::trim)
}

/// The values of parameter `key` in RFC 7239 `Forwarded` fields, element by element.
fn forwarded_params<'a>(values: &'a [&'a str], key: &'a str) -> impl Iterator<Item = &'a str> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(move |element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().trim_matches('"'))
            })
        })
}

/// The address of one chain entry: `203.0.113.9`, `203.0.113.9:1234`, `2001:db8::1`,
/// `[2001:db8::1]:4711`; `None` for anything else (`unknown`, obfuscated names, garbage).
fn chain_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next()?.parse::<IpAddr>().ok();
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A request id worth keeping from a trusted proxy: 1 to 128 characters of letters, digits
/// and `-_.:`.
fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests;

//! Who the client is, worked out once per connection: its address, the port it reached and
//! the scheme. The forwarded fields, the access log and (later) the rate limiter all read
//! this one identity, so they cannot disagree.

use http::HeaderValue;
use pingora_core::protocols::Stream;

/// The client of one connection.
#[derive(Clone)]
pub(crate) struct ClientIdentity {
    /// The client's IP address for `X-Forwarded-For` and `X-Real-IP`.
    pub(crate) ip: Option<HeaderValue>,
    /// The same, as text for the access log.
    pub(crate) ip_text: String,
    /// The port the client connected to, for `X-Forwarded-Port`.
    pub(crate) port: Option<HeaderValue>,
    /// The scheme the client spoke, for `X-Forwarded-Proto`.
    pub(crate) proto: &'static str,
}

impl ClientIdentity {
    /// The identity of the peer of `stream`.
    pub(crate) fn of(stream: &Stream) -> ClientIdentity {
        let digest = stream.get_socket_digest();
        let peer = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        let port = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .map(|a| HeaderValue::from(a.port()));
        ClientIdentity {
            ip: peer
                .as_deref()
                .and_then(|ip| HeaderValue::from_str(ip).ok()),
            ip_text: peer.unwrap_or_default(),
            port,
            proto: "http",
        }
    }
}

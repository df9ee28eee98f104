//! A new client connection, before its first request: a place under
//! `server.max_connections`, the PROXY protocol header when the listener expects one, and
//! the connection's client identity.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::identity::{ClientIdentity, Peer};
use super::proxy_protocol::{self, Parse};
use super::Forwarder;
use crate::settings::ProxySettings;

/// What a connection over `max_connections` gets before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// One client connection's place under `max_connections`; freed when the last holder (the
/// connection loop, or the tunnel of an upgraded connection) drops it.
pub(crate) struct ConnectionSlot {
    count: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

#[cfg(test)]
impl ConnectionSlot {
    /// A place under `forwarder`'s `max_connections`, as an accepted connection holds.
    pub(super) fn for_tests(forwarder: &Forwarder) -> ConnectionSlot {
        forwarder.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionSlot {
            count: forwarder.connections.clone(),
            gauge: forwarder.metrics.connections.clone(),
        }
    }
}

/// What one client connection holds for its life.
pub(crate) struct Connection {
    pub(crate) identity: Arc<ClientIdentity>,
    pub(crate) slot: Arc<ConnectionSlot>,
    /// Its peer (after any PROXY header), to make its identity again after parking.
    pub(crate) peer: Peer,
}

impl Forwarder {
    /// Admits a new connection: its identity and any bytes read past a PROXY header, or
    /// `None` when it was refused (and closed).
    pub(super) async fn accept(
        &self,
        stream: &mut Stream,
        settings: &ProxySettings,
    ) -> Option<(Connection, Option<BytesMut>)> {
        self.metrics.connections.inc();
        let slot = ConnectionSlot {
            count: self.connections.clone(),
            gauge: self.metrics.connections.clone(),
        };
        if self.connections.fetch_add(1, Ordering::Relaxed) >= settings.max_connections {
            drop(slot);
            self.metrics.connections_refused.inc();
            tracing::debug!("max_connections reached; refusing a connection");
            let _ = stream.write_all(TOO_MANY).await;
            let _ = stream.flush().await;
            return None;
        }
        let digest = stream.get_socket_digest();
        let mut peer = Peer {
            addr: digest
                .as_ref()
                .and_then(|d| d.peer_addr())
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            local_port: digest
                .as_ref()
                .and_then(|d| d.local_addr())
                .and_then(|a| a.as_inet())
                .map(|a| a.port()),
            tls: self.tls.is_some(),
        };
        let mut rest = None;
        if settings.proxy_protocol {
            let (source, after) = read_proxy_header(stream, settings.limits.header_timeout).await?;
            if let Some(source) = source {
                peer.addr = Some(source);
            }
            rest = after;
        }
        let identity = Arc::new(ClientIdentity::of_peer(peer, &settings.trusted_proxies));
        let connection = Connection {
            identity,
            slot: Arc::new(slot),
            peer,
        };
        Some((connection, rest))
    }
}

/// Reads the PROXY header within `limit`; the source address it names, and the bytes read
/// past it. `None` (the connection is to be closed) when it is missing or malformed.
async fn read_proxy_header(
    stream: &mut Stream,
    limit: Duration,
) -> Option<(Option<IpAddr>, Option<BytesMut>)> {
    let mut buf = BytesMut::with_capacity(256);
    let read = async {
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(header) => {
                    let rest = buf.split_off(header.len);
                    let source = header.source.map(|s| s.ip());
                    return Ok((source, (!rest.is_empty()).then_some(rest)));
                }
                Err(Parse::Invalid(why)) => return Err(why),
                Err(Parse::Incomplete) if buf.len() >= proxy_protocol::V2_MAX => {
                    return Err("PROXY header too long")
                }
                Err(Parse::Incomplete) => {}
            }
            buf.reserve(256);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err("connection closed before its PROXY header"),
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(found)) => Some(found),
        Ok(Err(why)) => {
            tracing::debug!(
                reason = why,
                "closing a connection without a valid PROXY header"
            );
            None
        }
        Err(_) => {
            tracing::debug!("closing a connection whose PROXY header did not come in time");
            None
        }
    }
}

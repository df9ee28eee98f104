//! The TLS handshake of a connection to an HTTPS listener, made by the forwarder itself
//! rather than by pingora's listener: after the connection's place under `max_connections`
//! and its PROXY header, within `header_timeout`, and counted by result and reason.

use std::time::Duration;

use bytes::BytesMut;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;

use super::Forwarder;

impl Forwarder {
    /// The connection after its handshake, or `None` (counted, and closed) when the
    /// handshake failed or took longer than `limit`. `read` are bytes already read past a
    /// PROXY header: the start of the ClientHello.
    pub(super) async fn handshake(
        &self,
        acceptor: &Acceptor,
        stream: Stream,
        read: Option<BytesMut>,
        limit: Duration,
    ) -> Option<Stream> {
        // The listener is a plain TCP one: what it accepted is an L4 stream.
        let Ok(mut stream) = stream.into_any().downcast::<L4Stream>() else {
            self.metrics.tls.failed("other");
            return None;
        };
        if let Some(bytes) = read {
            stream.rewind(&bytes);
        }
        let metrics = &self.metrics.tls;
        match tokio::time::timeout(limit, acceptor.tls_handshake(*stream)).await {
            Ok(Ok(tls)) => {
                metrics.handshakes.inc();
                Some(Box::new(tls))
            }
            Ok(Err(e)) => {
                let reason = corral_tls::failure_reason(&e.to_string());
                metrics.failed(reason);
                tracing::debug!(reason, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics.failed("timeout");
                tracing::debug!("TLS handshake not complete within header_timeout");
                None
            }
        }
    }
}

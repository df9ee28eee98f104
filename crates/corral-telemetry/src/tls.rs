//! The TLS metric families: handshakes by result and reason of failure, and client
//! connections by protocol. A client that cannot connect never makes a request, so request
//! counts say nothing of it.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

/// Reasons a handshake is counted as failed under (see `corral_tls::failure_reason`).
pub const FAILURE_REASONS: [&str; 13] = [
    "protocol_version",
    "no_shared_cipher",
    "incompatible",
    "certificate_refused",
    "alert",
    "malformed",
    "no_certificate",
    "closed",
    "reset",
    "timeout",
    "io",
    "other",
    "not_tls",
];

/// The families and the handles the accept path uses, resolved once.
#[derive(Clone)]
pub struct TlsMetrics {
    failed: IntCounterVec,
    /// Handshakes completed.
    pub handshakes: IntCounter,
    connections: IntCounterVec,
    /// Plain HTTP client connections accepted.
    pub http: IntCounter,
    /// HTTPS client connections that completed their handshake.
    pub https: IntCounter,
    days_left: GaugeVec,
}

impl TlsMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let handshakes = IntCounterVec::new(
            Opts::new(
                "corral_tls_handshakes_total",
                "TLS handshakes on the HTTPS listeners, by result (ok, failed) and reason of failure",
            ),
            &["result", "reason"],
        )?;
        let connections = IntCounterVec::new(
            Opts::new(
                "corral_client_connections_total",
                "Client connections accepted, by protocol (http, https)",
            ),
            &["protocol"],
        )?;
        registry.register(Box::new(handshakes.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        let days_left = GaugeVec::new(
            Opts::new(
                "corral_tls_certificate_days_left",
                "Days until an ACME certificate expires, by certificate (its first name)",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(days_left.clone()))?;
        for reason in FAILURE_REASONS {
            handshakes.with_label_values(&["failed", reason]);
        }
        Ok(TlsMetrics {
            handshakes: handshakes.with_label_values(&["ok", ""]),
            failed: handshakes,
            http: connections.with_label_values(&["http"]),
            https: connections.with_label_values(&["https"]),
            connections,
            days_left,
        })
    }

    /// Records that the certificate `name` expires in `days`.
    pub fn days_left(&self, name: &str, days: f64) {
        self.days_left.with_label_values(&[name]).set(days);
    }

    /// Counts one failed handshake.
    pub fn failed(&self, reason: &str) {
        self.failed.with_label_values(&["failed", reason]).inc();
    }

    /// Counts a connection of a protocol without a handle of its own.
    pub fn connection(&self, protocol: &str) {
        self.connections.with_label_values(&[protocol]).inc();
    }
}

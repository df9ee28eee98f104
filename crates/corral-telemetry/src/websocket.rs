//! The WebSocket metric families: open connections, their lifetimes and bytes each way, per
//! pool. Upgraded connections live for minutes or hours, so request latency and counts say
//! nothing about them.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Lifetime buckets in seconds, from a refused handshake's echo to a working day.
const DURATION_BUCKETS: [f64; 12] = [
    0.1, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

/// The families, registered once.
pub(crate) struct WebSocketFamilies {
    open: IntGaugeVec,
    total: IntCounterVec,
    duration: HistogramVec,
    bytes: IntCounterVec,
    /// Upgrades answered 503 at `[websocket] max_connections`.
    pub(crate) refused: IntCounter,
}

/// One pool's handles, resolved once so a tunnel does no label lookup.
#[derive(Clone)]
pub struct PoolWebSocket {
    /// Upgraded connections open now.
    pub open: IntGauge,
    /// Upgraded connections ever opened.
    pub total: IntCounter,
    /// How long each lasted, observed when it closes.
    pub duration: Histogram,
    /// Bytes from the client to the worker.
    pub to_worker: IntCounter,
    /// Bytes from the worker to the client.
    pub to_client: IntCounter,
}

impl WebSocketFamilies {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new(
                "corral_websocket_connections",
                "WebSocket (upgraded) connections open now, by pool",
            ),
            &["pool"],
        )?;
        let total = IntCounterVec::new(
            Opts::new(
                "corral_websocket_connections_total",
                "WebSocket (upgraded) connections opened, by pool",
            ),
            &["pool"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "corral_websocket_connection_duration_seconds",
                "How long WebSocket connections stayed open, by pool",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["pool"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "corral_websocket_bytes_total",
                "Bytes relayed over WebSocket connections, by pool and direction (to_worker, to_client)",
            ),
            &["pool", "direction"],
        )?;
        let refused = IntCounter::new(
            "corral_websocket_refused_total",
            "WebSocket upgrades answered 503 at [websocket] max_connections",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(WebSocketFamilies {
            open,
            total,
            duration,
            bytes,
            refused,
        })
    }

    pub(crate) fn pool(&self, pool: &str) -> PoolWebSocket {
        PoolWebSocket {
            open: self.open.with_label_values(&[pool]),
            total: self.total.with_label_values(&[pool]),
            duration: self.duration.with_label_values(&[pool]),
            to_worker: self.bytes.with_label_values(&[pool, "to_worker"]),
            to_client: self.bytes.with_label_values(&[pool, "to_client"]),
        }
    }
}

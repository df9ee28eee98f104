//! Every Prometheus metric corral exports. Names are prefixed `corral_`; the process
//! collector adds the standard `process_*` family.

use crate::health::{HealthFamilies, PoolHealth};
use crate::routes::{RouteFamilies, RouteMetrics};
use crate::websocket::{PoolWebSocket, WebSocketFamilies};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from a fast cache hit to a slow report.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status classes counted separately; index = first digit - 1.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Worker states reported by `corral_workers`.
pub const WORKER_STATES: [&str; 3] = ["starting", "ready", "stopping"];

/// The registry and the metric families; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    websocket: WebSocketFamilies,
    health: HealthFamilies,
    routes: RouteFamilies,
    requests: IntCounterVec,
    latency: HistogramVec,
    workers: IntGaugeVec,
    restarts: IntCounterVec,
    queue_depth: IntGaugeVec,
    reloads: IntCounterVec,
    active_pool: IntGaugeVec,
    traffic_share: prometheus::GaugeVec,
    switches: IntCounterVec,
    /// Requests answered by corral itself because no worker of the pool was ready.
    pub no_ready_worker: IntCounter,
    /// Forwarding fields (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `X-Request-Id`, their
    /// underscore spellings, `SCRIPT_NAME`) removed from requests of untrusted peers.
    pub untrusted_forwarded_fields: IntCounter,
    /// Request fields with `_` in their name, dropped (`server.underscores_in_headers`).
    pub underscore_fields: IntCounter,
    /// Client connections refused at `server.max_connections`.
    pub connections_refused: IntCounter,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Idle keep-alive client connections parked now (a socket in the proxy thread's table,
    /// no task), a part of `connections`.
    pub connections_parked: IntGauge,
    /// Requests answered 429, by rule.
    pub rate_limited: IntCounterVec,
    /// Rate limit decisions the store (Redis) failed to make in time.
    pub rate_limit_store_errors: IntCounter,
    /// Requests in flight through the proxy right now.
    pub in_flight: IntGauge,
    /// Body bytes of compressed answers as the workers sent them, by algorithm.
    pub compression_input: IntCounterVec,
    /// Body bytes of compressed answers as the clients got them, by algorithm.
    pub compression_output: IntCounterVec,
    /// TLS handshakes and client connections by protocol.
    pub tls: crate::tls::TlsMetrics,
    /// What is held between workers and slow clients.
    pub buffer: crate::buffer::BufferMetrics,
}

/// The metric handles of one pool, resolved once so the request path does no label lookup.
#[derive(Clone)]
pub struct PoolMetrics {
    by_class: [IntCounter; 5],
    latency: Histogram,
    /// Requests waiting for a free worker of the pool.
    pub queue_depth: IntGauge,
    /// The pool's WebSocket connections.
    pub websocket: PoolWebSocket,
    /// The pool's health checks and ejections.
    pub health: PoolHealth,
}

impl PoolMetrics {
    /// Requests answered so far, and how many of them 5xx: what a rollback looks at.
    pub fn answered(&self) -> (u64, u64) {
        let total = self.by_class.iter().map(IntCounter::get).sum();
        (total, self.by_class[4].get())
    }

    /// Counts one finished request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "corral_requests_total",
                "Requests proxied, by pool and status class",
            ),
            &["pool", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "corral_request_duration_seconds",
                "Time from reading the request head to the end of the response, by pool",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["pool"],
        )?;
        let workers = IntGaugeVec::new(
            Opts::new("corral_workers", "Workers by pool and state"),
            &["pool", "state"],
        )?;
        let restarts = IntCounterVec::new(
            Opts::new(
                "corral_worker_restarts_total",
                "Workers replaced, by pool and reason (crash, start_timeout, spawn_failed, timeout, max_requests, max_memory, unhealthy, reload, scale)",
            ),
            &["pool", "reason"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "corral_queue_depth",
                "Requests waiting for a free worker, by pool",
            ),
            &["pool"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "corral_config_reloads_total",
                "Config reloads, by result (ok, error, refused)",
            ),
            &["result"],
        )?;
        let no_ready_worker = IntCounter::new(
            "corral_no_ready_worker_total",
            "Requests answered 503 because the pool had no ready worker",
        )?;
        let in_flight = IntGauge::new("corral_requests_in_flight", "Requests being proxied now")?;
        let untrusted_forwarded_fields = IntCounter::new(
            "corral_untrusted_forwarded_fields_total",
            "Forwarding fields removed from requests of peers not in server.trusted_proxies",
        )?;
        let underscore_fields = IntCounter::new(
            "corral_underscore_fields_dropped_total",
            "Request fields with an underscore in their name, dropped (server.underscores_in_headers)",
        )?;
        let connections_refused = IntCounter::new(
            "corral_connections_refused_total",
            "Client connections answered 503 and closed at server.max_connections",
        )?;
        let connections = IntGauge::new("corral_connections", "Client connections open now")?;
        let connections_parked = IntGauge::new(
            "corral_connections_parked",
            "Idle keep-alive client connections parked (a socket in its thread's table, no task), part of corral_connections",
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "corral_rate_limited_total",
                "Requests answered 429, by rate limit rule",
            ),
            &["rule"],
        )?;
        let rate_limit_store_errors = IntCounter::new(
            "corral_rate_limit_store_errors_total",
            "Rate limit decisions the store failed to make within its timeout",
        )?;
        let compression_input = IntCounterVec::new(
            Opts::new(
                "corral_compression_input_bytes_total",
                "Body bytes of answers corral compressed, before compression, by algorithm",
            ),
            &["algorithm"],
        )?;
        let compression_output = IntCounterVec::new(
            Opts::new(
                "corral_compression_output_bytes_total",
                "Body bytes of answers corral compressed, as sent, by algorithm",
            ),
            &["algorithm"],
        )?;
        let active_pool = IntGaugeVec::new(
            Opts::new(
                "corral_active_pool",
                "1 for the pool that receives new requests, 0 for the others",
            ),
            &["pool"],
        )?;
        let traffic_share = prometheus::GaugeVec::new(
            Opts::new(
                "corral_traffic_share",
                "The share of new requests each pool gets, 0 to 1 (below 1 during a canary)",
            ),
            &["pool"],
        )?;
        registry.register(Box::new(traffic_share.clone()))?;
        let switches = IntCounterVec::new(
            Opts::new(
                "corral_switches_total",
                "corral switch requests, by result (switched, refused), and automatic rollbacks (rolled_back)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(active_pool.clone()))?;
        registry.register(Box::new(switches.clone()))?;
        for result in ["switched", "refused", "rolled_back"] {
            switches.with_label_values(&[result]);
        }
        let build_info = IntGaugeVec::new(
            Opts::new("corral_build_info", "Always 1; labels carry the version"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(workers.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(no_ready_worker.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        for result in ["ok", "error", "refused"] {
            reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(untrusted_forwarded_fields.clone()))?;
        registry.register(Box::new(underscore_fields.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(connections_parked.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(rate_limit_store_errors.clone()))?;
        registry.register(Box::new(compression_input.clone()))?;
        registry.register(Box::new(compression_output.clone()))?;
        registry.register(Box::new(build_info))?;
        let websocket = WebSocketFamilies::register(&registry)?;
        let health = HealthFamilies::register(&registry)?;
        let routes = RouteFamilies::register(&registry)?;
        let tls = crate::tls::TlsMetrics::register(&registry)?;
        let buffer = crate::buffer::BufferMetrics::register(&registry)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            websocket,
            health,
            routes,
            requests,
            latency,
            workers,
            restarts,
            queue_depth,
            reloads,
            active_pool,
            traffic_share,
            switches,
            no_ready_worker,
            untrusted_forwarded_fields,
            underscore_fields,
            connections_refused,
            connections,
            connections_parked,
            rate_limited,
            rate_limit_store_errors,
            in_flight,
            compression_input,
            compression_output,
            tls,
            buffer,
        })
    }

    /// The handles for `pool`, to keep beside the pool's routing entry.
    pub fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            by_class: STATUS_CLASSES.map(|c| self.requests.with_label_values(&[pool, c])),
            latency: self.latency.with_label_values(&[pool]),
            queue_depth: self.queue_depth.with_label_values(&[pool]),
            websocket: self.websocket.pool(pool),
            health: self.health.pool(pool),
        }
    }

    /// The handles for the `[[routes]]` route named `route`, to keep beside its entry in
    /// the proxy's route table.
    pub fn route(&self, route: &str) -> RouteMetrics {
        self.routes.route(route)
    }

    /// Sets how many ready backends of `pool` are healthy, unhealthy and ejected.
    pub fn set_backends(&self, pool: &str, counts: [i64; 3]) {
        self.health.set_backends(pool, counts);
    }

    /// Counts an upgrade refused at `[websocket] max_connections`.
    pub fn websocket_refused(&self) {
        self.websocket.refused.inc();
    }

    /// Sets the number of workers of `pool` in each state.
    pub fn set_workers(&self, pool: &str, counts: [i64; 3]) {
        for (state, n) in WORKER_STATES.iter().zip(counts) {
            self.workers.with_label_values(&[pool, state]).set(n);
        }
    }

    /// Counts one worker replaced for `reason`.
    pub fn restart(&self, pool: &str, reason: &str) {
        self.restarts.with_label_values(&[pool, reason]).inc();
    }

    /// Marks whether `pool` is the one receiving new requests.
    pub fn set_active_pool(&self, pool: &str, active: bool) {
        self.active_pool
            .with_label_values(&[pool])
            .set(i64::from(active));
    }

    /// Sets the share (0 to 1) of new requests `pool` gets.
    pub fn set_traffic_share(&self, pool: &str, share: f64) {
        self.traffic_share.with_label_values(&[pool]).set(share);
    }

    /// Counts one automatic rollback.
    pub fn rolled_back(&self) {
        self.switches.with_label_values(&["rolled_back"]).inc();
    }

    /// Counts one `corral switch` with `result` `switched` or `refused`.
    pub fn switch(&self, result: &str) {
        self.switches.with_label_values(&[result]).inc();
    }

    /// Counts one config reload with `result` `ok` (applied), `error` (an invalid file) or
    /// `refused` (an app pool's new code did not import).
    pub fn reload(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_handles_feed_the_families() {
        let m = Metrics::new().expect("metrics");
        let web = m.pool("web");
        web.observe(200, 0.01);
        web.observe(503, 0.2);
        m.restart("web", "crash");
        m.set_workers("web", [1, 3, 0]);
        let text = m.render();
        assert!(
            text.contains("corral_requests_total{pool=\"web\",status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("corral_requests_total{pool=\"web\",status=\"5xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("corral_worker_restarts_total{pool=\"web\",reason=\"crash\"} 1"));
        assert!(text.contains("corral_workers{pool=\"web\",state=\"ready\"} 3"));
        assert!(text.contains("corral_request_duration_seconds_bucket"));
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}

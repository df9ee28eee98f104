//! One JSON line per request on the `corral::access` target.

use corral_telemetry::logging::ACCESS_TARGET;

/// What the access log records of one request.
pub struct AccessEntry<'a> {
    /// The request id sent upstream as `X-Request-Id`.
    pub request_id: &'a str,
    /// The client's address as seen by the proxy.
    pub client_ip: &'a str,
    /// `http` or `https`, as the client spoke to corral (or its trusted proxy).
    pub scheme: &'a str,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2.0`.
    pub protocol: &'static str,
    /// Request method.
    pub method: &'a str,
    /// Request path and query.
    pub path: &'a str,
    /// Status sent to the client (0 when none could be sent).
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: usize,
    /// Total time in milliseconds.
    pub duration_ms: f64,
    /// Time to the upstream's response head in milliseconds, if a worker answered.
    pub upstream_ms: Option<f64>,
    /// The pool that served it.
    pub pool: &'a str,
    /// The worker slot that served it.
    pub worker: Option<u32>,
    /// The worker's pid.
    pub pid: Option<u32>,
    /// The client's User-Agent.
    pub user_agent: &'a str,
    /// Why corral answered itself, when it did.
    pub refused: Option<&'static str>,
    /// Whether the request asked for a protocol upgrade (WebSocket).
    pub websocket: bool,
}

/// Emits the line.
pub fn write(e: &AccessEntry) {
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = e.request_id,
        client_ip = e.client_ip,
        scheme = e.scheme,
        protocol = e.protocol,
        method = e.method,
        path = e.path,
        status = e.status,
        bytes = e.bytes,
        duration_ms = to_microseconds(e.duration_ms),
        upstream_ms = e.upstream_ms.map(to_microseconds),
        pool = e.pool,
        worker = e.worker,
        pid = e.pid,
        user_agent = e.user_agent,
        refused = e.refused,
        websocket = e.websocket,
        "access"
    );
}

/// Milliseconds rounded to the microsecond: the clock's useful resolution here, and a
/// short number to print (`0.225`, not `0.22454199999999999`).
fn to_microseconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

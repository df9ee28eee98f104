//! One JSON line per request on the `corral::access` target: written directly when the
//! log takes JSON lines without a `RUST_LOG` filter, else as a tracing event.

use corral_telemetry::access::AccessLine;
use corral_telemetry::access_key;
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
    /// The pool that served it (`static` or `redirect` for such routes).
    pub pool: &'a str,
    /// The `[[routes]]` route it matched; `None` without routes.
    pub route: Option<&'a str>,
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

/// Emits the line: straight to the log writer when it may
/// ([`corral_telemetry::access`]), else as a tracing event.
pub fn write(e: &AccessEntry) {
    match corral_telemetry::access::sink() {
        Some(sink) => write_direct(e, sink),
        None => write_event(e),
    }
}

/// The same fields, in the same order, as [`write_event`]'s line; a field with no value is
/// left out, as tracing leaves out a `None`.
fn write_direct(e: &AccessEntry, sink: &corral_telemetry::writer::QueuedWriter) {
    let mut line = AccessLine::new();
    line.str(access_key!("request_id"), e.request_id);
    line.str(access_key!("client_ip"), e.client_ip);
    line.str(access_key!("scheme"), e.scheme);
    line.str(access_key!("protocol"), e.protocol);
    line.str(access_key!("method"), e.method);
    line.str(access_key!("path"), e.path);
    line.u64(access_key!("status"), u64::from(e.status));
    line.u64(access_key!("bytes"), e.bytes as u64);
    line.f64(access_key!("duration_ms"), to_microseconds(e.duration_ms));
    if let Some(ms) = e.upstream_ms {
        line.f64(access_key!("upstream_ms"), to_microseconds(ms));
    }
    line.str(access_key!("pool"), e.pool);
    if let Some(route) = e.route {
        line.str(access_key!("route"), route);
    }
    if let Some(worker) = e.worker {
        line.u64(access_key!("worker"), u64::from(worker));
    }
    if let Some(pid) = e.pid {
        line.u64(access_key!("pid"), u64::from(pid));
    }
    line.str(access_key!("user_agent"), e.user_agent);
    if let Some(refused) = e.refused {
        line.str(access_key!("refused"), refused);
    }
    line.bool(access_key!("websocket"), e.websocket);
    line.send(sink);
}

fn write_event(e: &AccessEntry) {
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
        route = e.route,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A `Write` the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        /// The one line written, from just after its timestamp; checked to be JSON.
        fn line(&self) -> String {
            let text = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            let text = String::from_utf8(text).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{e}: {text:?}"));
            text.split_once("Z\",")
                .map(|(_, rest)| rest.to_string())
                .unwrap_or(text)
        }
    }

    fn entry(upstream: Option<f64>, refused: Option<&'static str>) -> AccessEntry<'static> {
        AccessEntry {
            request_id: "rid",
            client_ip: "203.0.113.9",
            scheme: "https",
            protocol: "HTTP/2.0",
            method: "GET",
            path: "/a?b=\"c\"",
            status: 200,
            bytes: 17,
            duration_ms: 1.23456789,
            upstream_ms: upstream,
            pool: "web",
            route: None,
            worker: upstream.map(|_| 3),
            pid: upstream.map(|_| 4242),
            user_agent: "curl/8",
            refused,
            websocket: false,
        }
    }

    /// The direct line and the tracing event's line (the path for text lines and
    /// `RUST_LOG`) list the fields twice; they must say the same, in the same order.
    #[test]
    fn the_direct_line_is_the_tracing_line() {
        for e in [entry(Some(0.5), None), entry(None, Some("queue full"))] {
            let via_tracing = Shared::default();
            let out = via_tracing.clone();
            let subscriber = tracing_subscriber::fmt()
                .event_format(corral_telemetry::json::JsonLines)
                .with_writer(move || out.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || write_event(&e));

            let direct = Shared::default();
            let (queue, guard) = corral_telemetry::writer::spawn(Box::new(direct.clone()), 4)
                .unwrap_or_else(|e| panic!("writer thread: {e}"));
            write_direct(&e, &queue);
            drop(guard);

            assert_eq!(via_tracing.line(), direct.line());
        }
    }
}

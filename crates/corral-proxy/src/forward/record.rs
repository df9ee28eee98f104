//! What corral keeps of each request for its counters and its access line, and writing them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use corral_supervisor::routes::Report;
use corral_supervisor::{Backend, RoutingTable};
use http::header::USER_AGENT;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_http::RequestHeader;

use super::headers::is_upgrade;
use super::{ConnInfo, Forwarder};
use crate::access_log::{self, AccessEntry};
use crate::settings::ProxySettings;

/// What the log and the counters need of a request, gathered as it goes.
pub(super) struct Record {
    pub(super) start: Instant,
    pub(super) table: Arc<RoutingTable>,
    pub(super) request_id: String,
    pub(super) backend: Option<Arc<Backend>>,
    pub(super) upstream_start: Instant,
    pub(super) upstream_ms: Option<f64>,
}

/// Counts a request in `corral_requests_in_flight` for as long as it lives.
pub(super) struct InFlight(prometheus::IntGauge);

impl InFlight {
    pub(super) fn start(gauge: &prometheus::IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Forwarder {
    /// Counts the request, retires a worker at `max_requests`, writes the access line.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &self,
        client: &DownstreamSession,
        conn: &ConnInfo,
        settings: &ProxySettings,
        record: &Record,
        status: u16,
        refused: Option<&'static str>,
    ) {
        self.count(record, status);
        self.log_access(
            RequestLine::of(client.req_header()),
            conn,
            settings,
            record,
            status,
            client.body_bytes_sent(),
            refused,
        );
    }

    pub(super) fn count(&self, record: &Record, status: u16) {
        let route = &record.table.active;
        route
            .metrics
            .observe(status, record.start.elapsed().as_secs_f64());
        if let Some(b) = &record.backend {
            let served = b.served.fetch_add(1, Ordering::Relaxed) + 1;
            // Exactly one request sees the count reach the limit, so one report is sent.
            if served == b.max_requests {
                b.retiring.store(true, Ordering::Relaxed);
                self.reporter.send(Report::Retire {
                    worker: b.id,
                    reason: corral_supervisor::ExitReason::MaxRequests,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn log_access(
        &self,
        request: RequestLine<&str>,
        conn: &ConnInfo,
        settings: &ProxySettings,
        record: &Record,
        status: u16,
        bytes: usize,
        refused: Option<&'static str>,
    ) {
        if !settings.access_log {
            return;
        }
        access_log::write(&AccessEntry {
            request_id: &record.request_id,
            client_ip: &conn.ip_text,
            method: request.method,
            path: request.path,
            status,
            bytes,
            duration_ms: record.start.elapsed().as_secs_f64() * 1000.0,
            upstream_ms: record.upstream_ms,
            pool: &record.table.active.name,
            worker: record.backend.as_ref().map(|b| b.worker),
            pid: record.backend.as_ref().map(|b| b.pid),
            user_agent: request.user_agent,
            refused,
            websocket: request.websocket,
        });
    }
}

/// What the access log shows of a request, borrowed from its head (or owned, for a tunnel
/// that outlives the head).
pub(super) struct RequestLine<S> {
    method: S,
    path: S,
    user_agent: S,
    websocket: bool,
}

impl<'a> RequestLine<&'a str> {
    pub(super) fn of(head: &'a RequestHeader) -> Self {
        RequestLine {
            method: head.method.as_str(),
            path: head.uri.path_and_query().map_or("/", |p| p.as_str()),
            user_agent: head
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            websocket: is_upgrade(head),
        }
    }

    pub(super) fn to_owned(&self) -> RequestLine<String> {
        RequestLine {
            method: self.method.to_owned(),
            path: self.path.to_owned(),
            user_agent: self.user_agent.to_owned(),
            websocket: self.websocket,
        }
    }
}

impl RequestLine<String> {
    pub(super) fn as_ref(&self) -> RequestLine<&str> {
        RequestLine {
            method: &self.method,
            path: &self.path,
            user_agent: &self.user_agent,
            websocket: self.websocket,
        }
    }
}

//! The last phase of a request: the status corral answers itself on a [`Failure`], and
//! counting and logging the request however it ended.

use corral_routes::Report;
use corral_routes::{Backend, ExitReason, WorkerId};
use pingora_http::{RequestHeader, ResponseHeader};

use super::client::ClientSide;
use super::context::{Exchange, RequestLine};
use super::failure::Failure;
use super::Forwarder;
use crate::access_log::{self, AccessEntry};

/// Answers the client directly with an empty body.
pub(super) async fn respond<C: ClientSide>(
    client: &mut C,
    failure: &Failure,
    exchange: &Exchange,
) -> pingora_error::Result<()> {
    let keepalive = exchange.keepalive;
    let mut head = ResponseHeader::build(failure.status, Some(3))?;
    head.insert_header("content-length", "0")?;
    if let Some(secs) = failure.retry_after {
        head.insert_header("retry-after", secs.to_string())?;
    }
    for (name, value) in &failure.fields {
        head.insert_header(*name, value.as_str())?;
    }
    exchange
        .answer_rules()
        .apply(&mut head, &exchange.answer_context())?;
    // A refused head may have left unread bytes behind: reuse only where that cannot be.
    client.set_server_keepalive(if failure.keep_alive { keepalive } else { None });
    client.write_response_header(Box::new(head)).await?;
    client.finish_body().await
}

impl Forwarder {
    /// Counts the request, retires a worker at `max_requests`, writes the access line.
    pub(super) fn finish<C: ClientSide>(
        &self,
        client: &C,
        exchange: &Exchange,
        status: u16,
        refused: Option<&'static str>,
    ) {
        self.count(exchange, status);
        // The request line's fields are looked up only for a line to write.
        if exchange.settings.access_log {
            self.log_access(
                RequestLine::of(client.req_header()),
                exchange,
                status,
                client.body_bytes_sent(),
                refused,
            );
        }
    }

    /// Counts a finished request: its metrics, and one more served by its worker.
    pub(super) fn count(&self, exchange: &Exchange, status: u16) {
        self.count_request(exchange, status);
        if let Some(b) = &exchange.backend {
            self.count_served(b);
        }
    }

    /// Counts a request's outcome in the metrics and passive health, not in its worker's
    /// served count: an upgraded connection's is counted at its 101 ([`Forwarder::count_served`]).
    pub(super) fn count_request(&self, exchange: &Exchange, status: u16) {
        self.record_outcome(exchange, status);
        if exchange.forged > 0 {
            self.metrics
                .untrusted_forwarded_fields
                .inc_by(u64::from(exchange.forged));
            tracing::debug!(
                event = "untrusted_forwarded_fields",
                client_ip = %exchange.client.ip_text,
                request_id = %exchange.request_id,
                fields = exchange.forged,
                "forwarding fields from a peer that is not a trusted proxy were removed"
            );
        }
        if exchange.underscored > 0 {
            self.metrics
                .underscore_fields
                .inc_by(u64::from(exchange.underscored));
        }
        // A static or redirect route's answers are no pool's; static ones count as
        // `pool="static"`, as their access lines say.
        let seconds = exchange.start.elapsed().as_secs_f64();
        match exchange.served_by {
            None => exchange.route().metrics.observe(status, seconds),
            Some("static") => self
                .static_metrics
                .get_or_init(|| self.metrics.pool("static"))
                .observe(status, seconds),
            Some(_) => {}
        }
        if let Some(index) = exchange.route_index {
            exchange.settings.routes.observe(index, status, seconds);
        }
    }

    /// One more request served by the worker, toward its `max_requests`. A WebSocket counts
    /// when its 101 is through, as its slot is freed then: counted at its close instead, a
    /// worker whose open tunnels filled its cap would never be told to retire.
    pub(super) fn count_served(&self, b: &Backend) {
        let served = b.load.count_served();
        if b.info.max_requests > 0 {
            self.count_toward_limit(b, served);
        }
    }

    /// `max_requests`: halfway, the worker's rate says when its replacement must start to
    /// be ready at the limit; at that count the supervisor is told to start it; at the
    /// limit the worker is retiring. Each report is sent once.
    fn count_toward_limit(&self, b: &Backend, served: u64) {
        let max_requests = b.info.max_requests;
        if served == max_requests / 2 {
            let at = b
                .info
                .recycle
                .reckon(served, max_requests, std::time::Instant::now());
            b.load.plan_replacement(at);
        }
        if b.load.replacement_due(served, max_requests) {
            self.reporter
                .send(Report::StartReplacement { worker: b.info.id });
        }
        // Exactly one request sees the count reach the limit, so one report is sent.
        if served == max_requests {
            b.load.retire();
            self.reporter.send(Report::Retire {
                worker: b.info.id,
                reason: ExitReason::MaxRequests,
            });
        }
    }

    pub(super) fn log_access(
        &self,
        request: RequestLine<&str>,
        exchange: &Exchange,
        status: u16,
        bytes: usize,
        refused: Option<&'static str>,
    ) {
        if !exchange.settings.access_log {
            return;
        }
        access_log::write(&AccessEntry {
            request_id: &exchange.request_id,
            client_ip: &exchange.client.ip_text,
            scheme: exchange.client.proto,
            protocol: request.version,
            method: request.method,
            path: request.path,
            status,
            bytes,
            duration_ms: exchange.start.elapsed().as_secs_f64() * 1000.0,
            upstream_ms: exchange.upstream_ms,
            pool: exchange.served_by.unwrap_or(&exchange.route().name),
            route: exchange.route_name.as_deref(),
            worker: exchange.backend.as_ref().map(|b| b.info.worker),
            pid: exchange.backend.as_ref().map(|b| b.info.pid),
            user_agent: request.user_agent,
            refused,
            websocket: request.websocket,
        });
    }

    /// A sync worker (`concurrency = 1`) that let a request time out is stuck on it: ask the
    /// supervisor to kill and replace it, naming the request. A worker that takes several
    /// requests at once may just be slow on one; it is left alone.
    pub(super) fn report_hung(&self, head: &RequestHeader, worker: WorkerId, exchange: &Exchange) {
        if exchange.route().concurrency != 1 {
            return;
        }
        let request = format!(
            "{} {} (request_id {})",
            head.method,
            head.uri.path_and_query().map_or("/", |p| p.as_str()),
            exchange.request_id
        );
        self.reporter.send(Report::Hung { worker, request });
    }
}

//! The last phase of a request: what a failure means for the client (the status corral
//! answers itself), and counting and logging the request however it ended.

use corral_routes::Report;
use corral_routes::{Backend, ExitReason, WorkerId};
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};

use super::client::ClientSide;
use super::context::{Exchange, RequestLine};
use super::Forwarder;
use crate::access_log::{self, AccessEntry};

/// Why a request ended without a normal answer: what to tell the client and the log.
#[derive(Debug)]
pub(super) struct Failure {
    /// The status to answer; 0 when the client is gone or the answer had begun.
    pub(super) status: u16,
    /// Why corral answered itself (limits, queue, no worker), for the access log.
    pub(super) refused: Option<&'static str>,
    /// Seconds for `Retry-After`, when the client may try again.
    pub(super) retry_after: Option<u64>,
    /// Fields the refusal carries (the rate limit state of a 429).
    pub(super) fields: Vec<(&'static str, String)>,
    /// The rate limit rule that refused the request.
    pub(super) rate_limit: Option<std::sync::Arc<str>>,
    /// Whether the client connection may carry another request afterwards.
    pub(super) keep_alive: bool,
    /// The underlying error, logged at warn when corral or a worker failed.
    pub(super) error: Option<Box<Error>>,
}

impl Failure {
    /// corral refuses the request itself.
    pub(super) fn refused(status: u16, reason: &'static str) -> Failure {
        Failure {
            status,
            refused: Some(reason),
            retry_after: (status == 503).then_some(1),
            fields: Vec::new(),
            rate_limit: None,
            keep_alive: false,
            error: None,
        }
    }

    /// The worker failed the request.
    pub(super) fn worker(status: u16, error: Box<Error>) -> Failure {
        Failure {
            status,
            refused: None,
            retry_after: None,
            fields: Vec::new(),
            rate_limit: None,
            keep_alive: false,
            error: Some(error),
        }
    }

    /// The client went away or broke the protocol; nothing useful can be sent.
    pub(super) fn client(error: &Error) -> Failure {
        let status = match error.etype() {
            ErrorType::ReadTimedout => 408,
            ErrorType::InvalidHTTPHeader => 400,
            _ => 0,
        };
        Failure {
            status,
            refused: Some("client error"),
            retry_after: None,
            fields: Vec::new(),
            rate_limit: None,
            keep_alive: false,
            error: None,
        }
    }
}

/// Why one attempt on one worker failed.
pub(super) struct AttemptError {
    pub(super) failure: Failure,
    /// True when the worker gave no answer, so the request may go to another worker.
    pub(super) no_answer: bool,
}

impl AttemptError {
    /// The worker gave no answer: the request may go to another worker.
    pub(super) fn no_answer(error: Box<Error>) -> AttemptError {
        AttemptError {
            failure: Failure::worker(502, error),
            no_answer: true,
        }
    }

    /// A failure that ends the request.
    pub(super) fn ends(failure: Failure) -> AttemptError {
        AttemptError {
            failure,
            no_answer: false,
        }
    }
}

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
        .settings
        .answer
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
        self.log_access(
            RequestLine::of(client.req_header()),
            exchange,
            status,
            client.body_bytes_sent(),
            refused,
        );
    }

    pub(super) fn count(&self, exchange: &Exchange, status: u16) {
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
        let route = exchange.route();
        route
            .metrics
            .observe(status, exchange.start.elapsed().as_secs_f64());
        if let Some(b) = &exchange.backend {
            let served = b.load.count_served();
            if b.info.max_requests > 0 {
                self.count_toward_limit(b, served);
            }
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
            pool: &exchange.route().name,
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

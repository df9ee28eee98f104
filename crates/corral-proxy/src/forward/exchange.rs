//! One request through the proxy: refuse what breaks the limits, claim the least busy worker
//! (waiting in the pool's queue when all are busy), send the request with the forwarded
//! headers, stream the answer back, retry once elsewhere when a worker fails before
//! answering, and count and log the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_supervisor::routes::Report;
use corral_supervisor::WorkerId;
use http::header::{HeaderValue, TRANSFER_ENCODING};
use http::Method;
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::io::AsyncWriteExt;

use super::answer::{self, Answer, PlainAnswer};
use super::conns;
use super::headers::{
    ends_by_closing, expects_continue, plain_request_bytes, smuggled_length, strip_answer_hops,
    upstream_head,
};
use super::record::{InFlight, Record, RequestLine};
use super::replay::Replay;
use super::tunnel::Tunnel;
use super::{ConnInfo, Forwarder, Reusable};
use crate::limits;
use crate::request_id;
use crate::settings::ProxySettings;
use crate::upstream::{self, Claim, NoWorker};

/// Attempts per request: the first, and one more on another worker.
const MAX_TRIES: usize = 2;

/// Why a request ended without a normal answer: what to tell the client and the log.
#[derive(Debug)]
struct Failure {
    /// The status to answer; 0 when the client is gone or the answer had begun.
    status: u16,
    /// Why corral answered itself (limits, queue, no worker), for the access log.
    refused: Option<&'static str>,
    /// Whether to add `Retry-After: 1` (the client may try again soon).
    retry_after: bool,
    /// Whether the client connection may carry another request afterwards.
    keep_alive: bool,
    /// The underlying error, logged at warn when corral or a worker failed.
    error: Option<Box<Error>>,
}

impl Failure {
    fn refused(status: u16, reason: &'static str) -> Failure {
        Failure {
            status,
            refused: Some(reason),
            retry_after: status == 503,
            keep_alive: false,
            error: None,
        }
    }

    fn worker(status: u16, error: Box<Error>) -> Failure {
        Failure {
            status,
            refused: None,
            retry_after: false,
            keep_alive: false,
            error: Some(error),
        }
    }

    /// The client went away or broke the protocol; nothing useful can be sent.
    fn client(error: &Error) -> Failure {
        let status = match error.etype() {
            ErrorType::ReadTimedout => 408,
            ErrorType::InvalidHTTPHeader => 400,
            _ => 0,
        };
        Failure {
            status,
            refused: Some("client error"),
            retry_after: false,
            keep_alive: false,
            error: None,
        }
    }
}

/// How a forwarded request ended.
enum Done {
    /// The answer was relayed; the client connection may be reused.
    Answered,
    /// The worker switched protocols: relay bytes both ways from now on.
    Upgraded(Box<UpstreamSession>, Claim),
    /// The worker's answer is plain: relay it as bytes (see `answer`).
    Plain(Box<PlainRelay>),
}

/// A plain answer's head, with what relaying its body takes.
struct PlainRelay {
    answer: PlainAnswer,
    worker: pingora_core::protocols::Stream,
    claim: Claim,
    timeout: Option<Duration>,
}

/// The request head for the worker: ready bytes (the common case), or a header for
/// pingora's session to write when the body, `HEAD` or an upgrade needs it to know the request.
enum Outgoing {
    Bytes(bytes::BytesMut),
    Head(Box<RequestHeader>),
}

/// Why one attempt on one worker failed.
struct AttemptError {
    failure: Failure,
    /// True when the worker gave no answer and the request may go to another worker.
    retry: bool,
}

impl Forwarder {
    /// Serves the request `client` has just read. Returns the connection when it may carry
    /// another request.
    pub(super) async fn serve(
        self: &Arc<Self>,
        mut client: DownstreamSession,
        conn: &ConnInfo,
        stopping: bool,
    ) -> Option<Reusable> {
        let in_flight = InFlight::start(&self.metrics.in_flight);
        let settings = self.settings.load_full();
        let start = Instant::now();
        let mut record = Record {
            start,
            table: self.routes.load_full(),
            request_id: String::new(),
            backend: None,
            upstream_start: start,
            upstream_ms: None,
        };
        // HTTP/1.0 without `keep-alive`, or `Connection: close`, already turned reuse off.
        let keepalive = (!stopping && client.will_keepalive()).then(|| settings.keepalive_secs());
        let result = self
            .forward(&mut client, conn, &settings, keepalive, &mut record)
            .await;
        match result {
            Ok(Done::Answered) => {
                let status = client.response_written().map_or(0, |h| h.status.as_u16());
                self.finish(&client, conn, &settings, &record, status, None);
                reuse(client).await
            }
            Ok(Done::Plain(relay)) => {
                self.relay_plain(client, conn, &settings, keepalive, &record, *relay)
                    .await
            }
            Ok(Done::Upgraded(worker, claim)) => {
                // The tunnel runs as a task of its own holding only what it needs, so an
                // idle WebSocket does not keep this request's state machine alive.
                let request = RequestLine::of(client.req_header()).to_owned();
                let tunnel = Tunnel::open(client, *worker);
                let (forwarder, conn) = (self.clone(), conn.clone());
                tokio::spawn(async move {
                    let bytes = match tunnel.run().await {
                        Ok(bytes) => bytes as usize,
                        Err(e) => {
                            tracing::debug!(error = %e, "upgraded connection ended with an error");
                            0
                        }
                    };
                    drop(claim);
                    forwarder.log_access(
                        request.as_ref(),
                        &conn,
                        &settings,
                        &record,
                        101,
                        bytes,
                        None,
                    );
                    forwarder.count(&record, 101);
                    drop(in_flight);
                });
                None
            }
            Err(failure) => {
                let answered = client
                    .response_written()
                    .is_some_and(|h| h.status.as_u16() >= 200);
                if failure.status > 0 && !answered {
                    if let Err(e) = respond(&mut client, &failure, keepalive).await {
                        tracing::debug!(error = %e, "cannot send the error response");
                    }
                }
                if let Some(e) = &failure.error {
                    tracing::warn!(request_id = %record.request_id, status = failure.status, error = %e, "request failed");
                }
                let status = match client.response_written() {
                    Some(h) if h.status.as_u16() >= 200 => h.status.as_u16(),
                    _ => failure.status,
                };
                self.finish(&client, conn, &settings, &record, status, failure.refused);
                // The refusal was answered whole; the connection may go on.
                if failure.keep_alive && client.response_written().is_some() {
                    reuse(client).await
                } else {
                    None
                }
            }
        }
    }

    /// Relays a plain answer straight to the client's connection, which it takes out of
    /// pingora's session first, and counts and logs the request.
    async fn relay_plain(
        &self,
        mut client: DownstreamSession,
        conn: &ConnInfo,
        settings: &ProxySettings,
        keepalive: Option<u64>,
        record: &Record,
        relay: PlainRelay,
    ) -> Option<Reusable> {
        let PlainRelay {
            answer,
            worker,
            claim,
            timeout,
        } = relay;
        let status = answer.status;
        let worker_id = claim.backend().id;
        // The request head outlives the session, for the access line and a hung-worker report.
        let request = std::mem::replace(
            client.req_header_mut(),
            RequestHeader::from(http::Request::new(()).into_parts().0),
        );
        let (mut stream, pipelined) = match keepalive {
            Some(_) => {
                client.set_server_keepalive(keepalive);
                match client.reuse().await {
                    Ok(Some(reusable)) => reusable.into_parts(),
                    // The client's side broke before the answer could go out.
                    _ => {
                        self.count(record, 0);
                        let line = RequestLine::of(&request);
                        let refused = Some("client error");
                        self.log_access(line, conn, settings, record, 0, 0, refused);
                        return None;
                    }
                }
            }
            None => (client.into_inner(), None),
        };
        let release = move |kept: Option<pingora_core::protocols::Stream>| {
            if let Some(kept) = kept {
                conns::of(claim.backend()).put(kept);
            }
            drop(claim);
        };
        let relayed = answer
            .relay(worker, &mut stream, keepalive.is_some(), timeout, release)
            .await;
        if let Some((e, timed_out)) = &relayed.worker_error {
            if *timed_out {
                self.report_hung(&request, worker_id, record);
            }
            tracing::warn!(request_id = %record.request_id, status, error = %e, "request failed");
        }
        self.count(record, status);
        self.log_access(
            RequestLine::of(&request),
            conn,
            settings,
            record,
            status,
            relayed.bytes,
            None,
        );
        if relayed.complete && keepalive.is_some() {
            return Some((stream, pipelined));
        }
        pingora_core::protocols::Shutdown::shutdown(&mut *stream).await;
        None
    }

    /// Checks, claims and forwards; retries once on another worker when allowed.
    async fn forward(
        &self,
        client: &mut DownstreamSession,
        conn: &ConnInfo,
        settings: &ProxySettings,
        keepalive: Option<u64>,
        record: &mut Record,
    ) -> Result<Done, Failure> {
        if let Some(refusal) =
            limits::check(client.req_header(), &settings.limits).or_else(|| smuggled_length(client))
        {
            return Err(Failure::refused(refusal.status, refusal.reason));
        }
        if client.req_header().method == http::Method::CONNECT {
            return Err(Failure::refused(405, "CONNECT is not proxied"));
        }
        record.request_id = request_id::next();
        let upgrade = client.is_upgrade_req();
        let replayable = client.req_header().method.is_idempotent() && client.is_body_empty();
        let spread = upstream::spread_seed();
        let mut tried = [0u32; MAX_TRIES];
        let mut failed = 0;
        // A kept-open connection the worker has closed meanwhile fails a request before any
        // answer; a replayable request then gets one more try, on a checked connection.
        let mut stale_retried = false;
        loop {
            let claim =
                match upstream::claim(&self.routes, &mut record.table, &tried[..failed], spread)
                    .await
                {
                    Ok(claim) => claim,
                    Err(NoWorker::Exhausted) if failed == 0 => {
                        self.metrics.no_ready_worker.inc();
                        let mut failure = Failure::refused(503, "no ready worker");
                        failure.keep_alive = true;
                        return Err(failure);
                    }
                    Err(NoWorker::Exhausted) => {
                        return Err(Failure::refused(502, "no worker left to retry on"))
                    }
                    Err(NoWorker::QueueFull) => return Err(Failure::refused(503, "queue full")),
                    Err(NoWorker::QueueTimeout) => {
                        return Err(Failure::refused(503, "queue timeout"))
                    }
                };
            let backend = claim.backend().clone();
            record.backend = Some(backend.clone());
            let last = failed + 1 == MAX_TRIES;
            // Only a replayable request may skip checking a recently used connection.
            let checked = !replayable || stale_retried;
            let (worker, reused) = match conns::of(&backend).get(&backend.addr, checked).await {
                Ok(worker) => worker,
                Err(e) => {
                    let e = Error::because(
                        ErrorType::ConnectError,
                        format!("worker {}", backend.addr),
                        e,
                    );
                    if last {
                        return Err(Failure::worker(502, e));
                    }
                    tracing::warn!(worker = %backend.addr, error = %e, "cannot connect to worker; trying another");
                    tried[failed] = backend.pid;
                    failed += 1;
                    continue;
                }
            };
            let head = match plain_request_bytes(client, conn, &record.request_id) {
                Some(bytes) => Outgoing::Bytes(bytes),
                None => Outgoing::Head(
                    upstream_head(client, conn, &record.request_id, upgrade)
                        .map_err(|e| Failure::worker(500, e))?,
                ),
            };
            let timeout = (!upgrade).then_some(record.table.active.timeout);
            record.upstream_start = Instant::now();
            match self
                .attempt(
                    client, worker, head, timeout, claim, settings, keepalive, record,
                )
                .await
            {
                Ok(done) => return Ok(done),
                Err(AttemptError { retry: true, .. }) if replayable && reused && !stale_retried => {
                    tracing::debug!(worker = %backend.addr, "kept-open connection was closed by the worker; trying again");
                    stale_retried = true;
                }
                Err(AttemptError { failure, retry }) if retry && replayable && !last => {
                    if let Some(e) = &failure.error {
                        tracing::warn!(worker = %backend.addr, error = %e, "worker failed before answering; trying another");
                    }
                    tried[failed] = backend.pid;
                    failed += 1;
                }
                Err(AttemptError { failure, .. }) => return Err(failure),
            }
        }
    }

    /// Sends the request to one worker and relays its answer.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        client: &mut DownstreamSession,
        worker: pingora_core::protocols::Stream,
        head: Outgoing,
        timeout: Option<Duration>,
        claim: Claim,
        settings: &ProxySettings,
        keepalive: Option<u64>,
        record: &mut Record,
    ) -> Result<Done, AttemptError> {
        let before_answer = |e: Box<Error>| AttemptError {
            failure: Failure::worker(502, e),
            retry: true,
        };
        let mut worker = worker;
        // The request goes out here, unless the answer to it must be framed by pingora's
        // session knowing the request (`HEAD`, upgrades): then it goes out further down.
        let mut pending_head = None;
        match head {
            Outgoing::Bytes(bytes) => {
                // A request head fits an idle connection's send buffer: no write waits here.
                let written = async {
                    worker.write_all(&bytes).await?;
                    worker.flush().await
                };
                written.await.map_err(|e| {
                    before_answer(Error::because(
                        ErrorType::WriteError,
                        "while writing the request head",
                        e,
                    ))
                })?;
            }
            Outgoing::Head(head)
                if !client.is_upgrade_req() && client.req_header().method != Method::HEAD =>
            {
                let mut upstream = UpstreamSession::new(worker);
                // A worker that does not take the request for `timeout` is stuck.
                upstream.write_timeout = timeout;
                self.send_request(client, &mut upstream, head, settings)
                    .await?;
                worker = upstream.into_inner();
                worker.flush().await.map_err(|e| AttemptError {
                    failure: Failure::worker(
                        502,
                        Error::because(ErrorType::WriteError, "while sending the request", e),
                    ),
                    retry: false,
                })?;
            }
            Outgoing::Head(head) => pending_head = Some(head),
        }
        if pending_head.is_none() {
            // The whole request is sent: the answer comes next.
            match answer::read_head(&mut worker, timeout).await {
                Ok(Answer::Plain(answer)) => {
                    record.upstream_ms =
                        Some(record.upstream_start.elapsed().as_secs_f64() * 1000.0);
                    return Ok(Done::Plain(Box::new(PlainRelay {
                        answer,
                        worker,
                        claim,
                        timeout,
                    })));
                }
                Ok(Answer::Other(read)) => worker = Replay::stream(read, worker),
                Err(e) => return Err(self.worker_error(e, client, &claim, record, true)),
            }
        }
        let mut upstream = UpstreamSession::new(worker);
        // A worker that neither answers nor takes the request for `timeout` is stuck.
        upstream.read_timeout = timeout;
        upstream.write_timeout = timeout;
        if let Some(head) = pending_head {
            self.send_request(client, &mut upstream, head, settings)
                .await?;
        }
        // The answer head; informational answers (103) are relayed as they come.
        loop {
            if let Err(e) = upstream.read_response().await {
                return Err(self.worker_error(e, client, &claim, record, true));
            }
            let status = upstream.resp_header().map_or(0, |h| h.status.as_u16());
            if !(100..200).contains(&status) || status == 101 {
                break;
            }
            // 100 Continue was corral's to send (it took the `Expect`); others pass.
            if let Some(head) = upstream.resp_header().filter(|_| status != 100) {
                let _ = client.write_response_header(Box::new(head.clone())).await;
            }
        }
        record.upstream_ms = Some(record.upstream_start.elapsed().as_secs_f64() * 1000.0);
        let Some(answer) = upstream.resp_header() else {
            let e = Error::explain(ErrorType::InvalidHTTPHeader, "worker sent no response head");
            return Err(before_answer(e));
        };
        let mut answer = Box::new(answer.clone());
        let upgraded = upstream.was_upgraded();
        strip_answer_hops(&mut answer);
        if !upgraded && ends_by_closing(&answer, client.req_header()) {
            // A body the worker ends by closing goes to an HTTP/1.1 client chunked (as nginx
            // does), so the client's connection outlives the worker's.
            answer
                .insert_header(TRANSFER_ENCODING, HeaderValue::from_static("chunked"))
                .map_err(|e| AttemptError {
                    failure: Failure::worker(502, e),
                    retry: false,
                })?;
        }
        client.set_server_keepalive(keepalive);
        client
            .write_response_header(answer)
            .await
            .map_err(|e| AttemptError {
                failure: Failure::client(&e),
                retry: false,
            })?;
        if upgraded {
            return Ok(Done::Upgraded(Box::new(upstream), claim));
        }
        loop {
            match upstream.read_body_ref().await {
                Ok(Some([])) => {}
                Ok(Some(chunk)) => {
                    if let Err(e) = client.write_body(chunk).await {
                        return Err(AttemptError {
                            failure: Failure::client(&e),
                            retry: false,
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.worker_error(e, client, &claim, record, false)),
            }
        }
        // The worker is done: give its slot and connection back before the client's last write.
        upstream.respect_keepalive();
        if upstream.will_keepalive() {
            if let Some(stream) = upstream.reuse().await.and_then(Replay::unwrap) {
                conns::of(claim.backend()).put(stream);
            }
        }
        drop(claim);
        client.finish_body().await.map_err(|e| AttemptError {
            failure: Failure::client(&e),
            retry: false,
        })?;
        Ok(Done::Answered)
    }

    /// Writes the request head and streams its body, if any, through pingora's session.
    async fn send_request(
        &self,
        client: &mut DownstreamSession,
        upstream: &mut UpstreamSession,
        head: Box<RequestHeader>,
        settings: &ProxySettings,
    ) -> Result<(), AttemptError> {
        upstream
            .write_request_header(head)
            .await
            .map_err(|e| AttemptError {
                failure: Failure::worker(502, e),
                retry: true,
            })?;
        if !client.is_body_empty() {
            self.send_body(client, upstream, settings).await?;
        }
        Ok(())
    }

    /// Streams the request body to the worker, refusing it past `body_size`.
    async fn send_body(
        &self,
        client: &mut DownstreamSession,
        upstream: &mut UpstreamSession,
        settings: &ProxySettings,
    ) -> Result<(), AttemptError> {
        let client_error = |e: Box<Error>| AttemptError {
            failure: Failure::client(&e),
            retry: false,
        };
        if expects_continue(client.req_header()) {
            client
                .write_continue_response()
                .await
                .map_err(client_error)?;
        }
        let mut sent: u64 = 0;
        while let Some(chunk) = client.read_body_bytes().await.map_err(client_error)? {
            if chunk.is_empty() {
                // An empty chunk would end a chunked body early.
                continue;
            }
            sent += chunk.len() as u64;
            if sent > settings.limits.body_size {
                return Err(AttemptError {
                    failure: Failure::refused(413, "body too large"),
                    retry: false,
                });
            }
            upstream
                .write_body(&chunk)
                .await
                .map_err(|e| AttemptError {
                    failure: Failure::worker(502, e),
                    retry: false,
                })?;
        }
        upstream.finish_body().await.map_err(|e| AttemptError {
            failure: Failure::worker(502, e),
            retry: false,
        })?;
        Ok(())
    }

    /// Turns a worker's read error into the answer: 504 when it said nothing within
    /// `timeout` (and a stuck sync worker is reported), 502 otherwise.
    fn worker_error(
        &self,
        e: Box<Error>,
        client: &DownstreamSession,
        claim: &Claim,
        record: &Record,
        before_answer: bool,
    ) -> AttemptError {
        if e.etype() == &ErrorType::ReadTimedout {
            self.report_hung(client.req_header(), claim.backend().id, record);
            return AttemptError {
                failure: Failure::worker(504, e),
                retry: false,
            };
        }
        AttemptError {
            failure: Failure::worker(if before_answer { 502 } else { 0 }, e),
            retry: before_answer,
        }
    }

    /// A sync worker (`concurrency = 1`) that let a request time out is stuck on it: ask the
    /// supervisor to kill and replace it, naming the request. A worker that takes several
    /// requests at once may just be slow on one; it is left alone.
    fn report_hung(&self, head: &RequestHeader, worker: WorkerId, record: &Record) {
        if record.table.active.concurrency != 1 {
            return;
        }
        let request = format!(
            "{} {} (request_id {})",
            head.method,
            head.uri.path_and_query().map_or("/", |p| p.as_str()),
            record.request_id
        );
        self.reporter.send(Report::Hung { worker, request });
    }
}

/// The connection and any pipelined bytes, when the session may carry another request.
async fn reuse(client: DownstreamSession) -> Option<Reusable> {
    match client.reuse().await {
        Ok(Some(reusable)) => Some(reusable.into_parts()),
        _ => None,
    }
}

/// Answers the client directly with an empty body.
async fn respond(
    client: &mut DownstreamSession,
    failure: &Failure,
    keepalive: Option<u64>,
) -> pingora_error::Result<()> {
    let mut head = ResponseHeader::build(failure.status, Some(3))?;
    head.insert_header("content-length", "0")?;
    if failure.retry_after {
        head.insert_header("retry-after", "1")?;
    }
    // A refused head may have left unread bytes behind: reuse only where that cannot be.
    client.set_server_keepalive(if failure.keep_alive { keepalive } else { None });
    client.write_response_header(Box::new(head)).await?;
    client.finish_body().await.map(|_| ())
}

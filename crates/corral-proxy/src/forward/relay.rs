//! Relaying the worker's answer to the client: a plain answer as the worker's own bytes
//! (`answer`), anything else through pingora's sessions: informational answers as they
//! come, the answer rules of [`fields`], a close-delimited body turned chunked, compression
//! ([`compress`]); the body itself is buffered for a slow client ([`pump`](super::pump),
//! or the plain relay's own), so the worker's connection goes back to its pool, and its
//! slot is free, as soon as the body is read.

use std::sync::Arc;
use std::time::Duration;

use corral_compress::Encoder;
use http::header::{HeaderValue, TRANSFER_ENCODING};
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};

use super::answer::{self, Answer, PlainAnswer};
use super::buffer::Delivering;
use super::client::ClientSide;
use super::compress;
use super::conns::WorkerConns;
use super::context::{Exchange, RequestLine};
use super::failure::{AttemptError, Failure};
use super::headers::ends_by_closing;
use super::replay::Replay;
use super::static_files::StaticAnswer;
use super::{send, Forwarder, Reusable};
use crate::upstream::Claim;
use corral_routes::WorkerId;

/// How a relayed answer ended.
pub(super) enum Done {
    /// The answer was relayed; the client connection may be reused.
    Answered,
    /// The worker switched protocols: relay bytes both ways from now on.
    Upgraded(Box<UpstreamSession>, Claim),
    /// The worker's answer is plain: relay it as bytes (see `answer`).
    Plain(Box<PlainRelay>),
    /// A static route's answer, to write as bytes on the connection (HTTP/1.x).
    Static(Box<StaticAnswer>),
}

/// A plain answer's head, with what relaying its body takes.
pub(super) struct PlainRelay {
    answer: PlainAnswer,
    worker: Stream,
    home: Arc<WorkerConns>,
    claim: Claim,
    timeout: Option<Duration>,
}

/// The request as far as it went before the answer: the connection it went out on, its
/// head when pingora's session is to send it (`HEAD`, upgrades), and the pool's `timeout`.
pub(super) struct Sent {
    pub(super) worker: Stream,
    /// The worker's connection set, where `worker` goes back after a whole answer.
    pub(super) home: Arc<WorkerConns>,
    pub(super) pending: Option<Box<RequestHeader>>,
    pub(super) timeout: Option<Duration>,
}

impl Forwarder {
    /// Reads the answer to a request already sent (or, with `pending`, still to be sent
    /// through pingora's session) and relays it: a plain answer is left to the caller as
    /// bytes; anything else goes through the session, in three steps: the answer head
    /// ([`Forwarder::answer_head`]), its preparation for the client ([`prepare`]) and the
    /// body pump ([`Forwarder::pump`], buffered for a slow client).
    pub(super) async fn relay<C: ClientSide>(
        &self,
        client: &mut C,
        sent: Sent,
        claim: Claim,
        exchange: &mut Exchange,
    ) -> Result<Done, AttemptError> {
        let Sent {
            mut worker,
            home,
            pending,
            timeout,
        } = sent;
        if pending.is_none() && C::RAW_ANSWER {
            // The whole request is sent: the answer comes next.
            let compression = exchange.compression();
            let rules = exchange.answer_rules();
            match answer::read_head(&mut worker, timeout, rules, compression).await {
                Ok(Answer::Plain(answer)) => {
                    exchange.answer_began();
                    return Ok(Done::Plain(Box::new(PlainRelay {
                        answer,
                        worker,
                        home,
                        claim,
                        timeout,
                    })));
                }
                Ok(Answer::Other(read)) => worker = Replay::stream(read, worker),
                Err(e) => {
                    return Err(self.worker_error(
                        e,
                        client.req_header(),
                        claim.backend().info.id,
                        exchange,
                        true,
                    ))
                }
            }
        }
        let mut upstream = UpstreamSession::new(worker);
        // A worker that neither answers nor takes the request for `timeout` is stuck.
        upstream.read_timeout = timeout;
        upstream.write_timeout = timeout;
        if let Some(head) = pending {
            let settings = &exchange.settings;
            send::send_request(client, &mut upstream, head, &mut exchange.body, settings).await?;
        }
        if let Err(e) = self.answer_head(client, &mut upstream).await {
            return Err(self.worker_error(
                e,
                client.req_header(),
                claim.backend().info.id,
                exchange,
                true,
            ));
        }
        exchange.answer_began();
        let upgraded = upstream.was_upgraded();
        let (answer, encoder) = prepare(client, &upstream, exchange, upgraded)?;
        client.set_server_keepalive(exchange.keepalive);
        client
            .write_response_header(answer)
            .await
            .map_err(client_error)?;
        if upgraded {
            return Ok(Done::Upgraded(Box::new(upstream), claim));
        }
        self.pump(client, upstream, (claim, home), encoder, exchange)
            .await
    }

    /// Reads the worker's answer head, relaying informational answers (103) as they come.
    async fn answer_head<C: ClientSide>(
        &self,
        client: &mut C,
        upstream: &mut UpstreamSession,
    ) -> Result<(), Box<Error>> {
        loop {
            upstream.read_response().await?;
            let status = upstream.resp_header().map_or(0, |h| h.status.as_u16());
            if !(100..200).contains(&status) || status == 101 {
                return Ok(());
            }
            // 100 Continue was corral's to send (it took the `Expect`); others pass.
            if let Some(head) = upstream.resp_header().filter(|_| status != 100) {
                let _ = client.write_response_header(Box::new(head.clone())).await;
            }
        }
    }

    /// Relays a plain answer straight to the client's connection, which it takes out of
    /// pingora's session first, and counts and logs the request.
    pub(super) async fn relay_plain(
        &self,
        mut client: Box<DownstreamSession>,
        exchange: &Exchange,
        relay: PlainRelay,
    ) -> Option<Reusable> {
        let PlainRelay {
            mut answer,
            worker,
            home,
            claim,
            timeout,
        } = relay;
        answer.add_fields(exchange.answer_rules(), &exchange.answer_context());
        let status = answer.status;
        let worker_id = claim.backend().info.id;
        let keepalive = exchange.keepalive;
        // The request head outlives the session, for the access line and a hung-worker report.
        let request = std::mem::replace(
            client.req_header_mut(),
            RequestHeader::from(http::Request::new(()).into_parts().0),
        );
        let (mut stream, pipelined) = match keepalive {
            Some(_) => {
                client.set_server_keepalive(keepalive);
                match (*client).reuse().await {
                    Ok(Some(reusable)) => reusable.into_parts(),
                    // The client's side broke before the answer could go out. The worker
                    // served the request all the same: it counts toward its `max_requests`
                    // cap as it does in `served`.
                    _ => {
                        claim.answered();
                        self.count(exchange, 0);
                        let line = RequestLine::of(&request);
                        self.log_access(line, exchange, 0, 0, Some("client error"));
                        return None;
                    }
                }
            }
            None => ((*client).into_inner(), None),
        };
        let release = move |kept: Option<Stream>, delivering: bool| {
            match kept {
                Some(kept) => home.put(kept),
                None => home.not_kept(),
            }
            // An answer still on its way to the client shows on the worker in `/status`.
            let delivering = delivering.then(|| Delivering::begin(claim.backend().clone()));
            (claim.answered(), delivering)
        };
        let relayed = answer
            .relay(
                worker,
                &mut stream,
                keepalive.is_some(),
                timeout,
                exchange.buffered(&self.metrics.buffer),
                release,
            )
            .await;
        if let Some((e, timed_out)) = &relayed.worker_error {
            if *timed_out {
                self.report_hung(&request, worker_id, exchange);
            }
            tracing::warn!(request_id = %exchange.request_id, status, error = %e, "request failed");
        }
        self.count(exchange, status);
        // The request line's fields are looked up only for a line to write.
        if exchange.settings.access_log {
            self.log_access(
                RequestLine::of(&request),
                exchange,
                status,
                relayed.bytes,
                None,
            );
        }
        if relayed.complete && keepalive.is_some() {
            return Some((stream, pipelined));
        }
        pingora_core::protocols::Shutdown::shutdown(&mut *stream).await;
        None
    }

    /// Turns a worker's read error into the answer: 504 when it said nothing within
    /// `timeout` (and a stuck sync worker is reported), 502 otherwise.
    pub(super) fn worker_error(
        &self,
        e: Box<Error>,
        head: &RequestHeader,
        worker: WorkerId,
        exchange: &Exchange,
        before_answer: bool,
    ) -> AttemptError {
        if e.etype() == &ErrorType::ReadTimedout {
            self.report_hung(head, worker, exchange);
            return AttemptError::ends(Failure::worker(504, e));
        }
        AttemptError {
            failure: Failure::worker(if before_answer { 502 } else { 0 }, e),
            no_answer: before_answer,
        }
    }
}

/// The worker's answer head as the client gets it: the answer rules applied, compression
/// begun (with its encoder), and a body the worker ends by closing turned chunked.
fn prepare<C: ClientSide>(
    client: &C,
    upstream: &UpstreamSession,
    exchange: &Exchange,
    upgraded: bool,
) -> Result<(Box<ResponseHeader>, Option<Encoder>), AttemptError> {
    let Some(answer) = upstream.resp_header() else {
        let e = Error::explain(ErrorType::InvalidHTTPHeader, "worker sent no response head");
        return Err(AttemptError::no_answer(e));
    };
    let worker_error = |e| AttemptError::ends(Failure::worker(502, e));
    let mut answer = Box::new(answer.clone());
    exchange
        .answer_rules()
        .apply(&mut answer, &exchange.answer_context())
        .map_err(worker_error)?;
    let encoder = match exchange.compression() {
        Some((compressor, choice)) if !upgraded => {
            compress::begin(compressor, choice, &mut answer).map_err(worker_error)?
        }
        _ => None,
    };
    if !upgraded && ends_by_closing(&answer, client.req_header()) {
        // A body the worker ends by closing goes to an HTTP/1.1 client chunked (as nginx
        // does), so the client's connection outlives the worker's.
        answer
            .insert_header(TRANSFER_ENCODING, HeaderValue::from_static("chunked"))
            .map_err(worker_error)?;
    }
    Ok((answer, encoder))
}

/// A failed write to the client: the client is gone or broke the protocol.
fn client_error(e: Box<Error>) -> AttemptError {
    AttemptError::ends(Failure::client(&e))
}

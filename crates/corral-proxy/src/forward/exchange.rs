//! One request through the proxy, phase by phase in the order a request meets them:
//! [`admit`](super::admit) (limits, smuggling), the client identity (resolved per
//! connection, in [`identity`](super::identity)), the place for rate limits (in `admit`),
//! choosing a worker (here, with [`retry`](super::retry)'s rule and the pool's queue),
//! [`send`](super::send), [`relay`](super::relay), and the [`outcome`](super::outcome):
//! what corral answers itself, counters and the access line.

use std::sync::Arc;
use std::time::Instant;

use http::Method;
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_error::{Error, ErrorType};
use tokio::io::AsyncWriteExt;

use super::accept::Connection;
use super::admit::admit;
use super::body;
use super::client::ClientSide;
use super::compress;
use super::conns::Conn;
use super::context::{Exchange, RequestLine};
use super::failure::{AttemptError, Failure};
use super::identity::ClientIdentity;
use super::linger;
use super::outcome::respond;
use super::relay::{Done, Sent};
use super::retry::{self, Failed, Next, Tries, MAX_TRIES};
use super::send::{self, Outgoing};
use super::tunnel::Tunnel;
use super::{Forwarder, Reusable};
use crate::request_id;
use crate::upstream::{self, Claim, NoWorker};
use corral_routes::WorkerId;

impl Forwarder {
    /// Serves the request `client` has just read. Returns the connection when it may carry
    /// another request.
    pub(super) async fn serve(
        self: &Arc<Self>,
        mut client: Box<DownstreamSession>,
        connection: &Connection,
        stopping: bool,
    ) -> Option<Reusable> {
        let (exchange, result) = self.exchange(&mut *client, connection, stopping).await;
        match result {
            Ok(Done::Answered) => {
                let status = client.response_written().map_or(0, |h| h.status.as_u16());
                self.finish(&*client, &exchange, status, None);
                reuse(client).await
            }
            Ok(Done::Plain(relay)) => self.relay_plain(client, &exchange, *relay).await,
            Ok(Done::Static(answer)) => self.send_static(client, &exchange, *answer).await,
            Ok(Done::Upgraded(worker, claim)) => {
                let request = RequestLine::of(client.req_header()).to_owned();
                let tunnel = Tunnel::open(*client, *worker);
                self.spawn_tunnel(tunnel, claim, exchange, request, connection.slot.clone());
                None
            }
            Err(failure) => {
                // The refusal was answered whole; the connection may go on.
                if self.fail(&mut *client, &exchange, failure).await {
                    reuse(client).await
                } else {
                    linger::close(client).await;
                    None
                }
            }
        }
    }

    /// One request from its head to the end of the worker's part: every phase in order,
    /// for either kind of client. What is left (the plain relay, a tunnel, reuse of the
    /// connection) is the caller's, as it depends on the client's protocol.
    pub(super) async fn exchange<C: ClientSide>(
        self: &Arc<Self>,
        client: &mut C,
        connection: &Connection,
        stopping: bool,
    ) -> (Exchange, Result<Done, Failure>) {
        let settings = self.settings.load_full();
        // From a trusted proxy, each request says who its client is; else the peer is.
        let head = client.req_header();
        let identity = if connection.identity.trusted_peer && ClientIdentity::refined_by(head) {
            Arc::new(
                connection
                    .identity
                    .for_request(head, &settings.trusted_proxies),
            )
        } else {
            connection.identity.clone()
        };
        // HTTP/1.0 without `keep-alive`, or `Connection: close`, already turned reuse off.
        let keepalive = (!stopping && client.will_keepalive()).then(|| settings.keepalive_secs());
        let mut exchange = Exchange::new(
            identity,
            settings,
            keepalive,
            self.routes.load_full(),
            &self.metrics.in_flight,
        );
        exchange.request_id = match &exchange.client.request_id {
            Some(kept) => kept.clone(),
            None => request_id::next(),
        };
        if let Some(compressor) = &exchange.settings.compression {
            exchange.encoding = compress::accepted(compressor, client.req_header());
        }
        let result = match self.admit_and_read(client, &mut exchange).await {
            Ok(()) => self.forward(client, &mut exchange).await,
            Err(refused) => Err(refused),
        };
        (exchange, result)
    }

    /// The phases before a worker is chosen: the checks, then the start of any body.
    async fn admit_and_read<C: ClientSide>(
        &self,
        client: &mut C,
        exchange: &mut Exchange,
    ) -> Result<(), Failure> {
        admit(client, &exchange.settings)?;
        if let Err(mut refused) = self.rate_limit(client, exchange).await {
            // The connection goes on when the request was read whole (no body): the next
            // bytes are then the next request, as after nginx's `limit_req`. A body not read
            // yet would be taken for one, so it closes (lingering) instead.
            refused.keep_alive = client.is_body_empty();
            return Err(refused);
        }
        if !client.is_body_empty() {
            // Read whole before a worker is chosen, unless the pool streams uploads.
            let settings = exchange.settings.clone();
            let ahead = if exchange.route().request_buffering {
                body::ReadAhead::Whole(&settings.buffering, &self.metrics.buffer)
            } else {
                body::ReadAhead::Start
            };
            exchange.body = body::read_start(client, settings.limits.body_size, ahead).await?;
        }
        Ok(())
    }

    /// Answers a failed request (unless an answer has begun), counts and logs it. True
    /// when the refusal was answered whole and the connection may go on.
    pub(super) async fn fail<C: ClientSide>(
        &self,
        client: &mut C,
        exchange: &Exchange,
        failure: Failure,
    ) -> bool {
        let answered = client
            .response_written()
            .is_some_and(|h| h.status.as_u16() >= 200);
        if failure.status > 0 && !answered {
            if let Err(e) = respond(client, &failure, exchange).await {
                tracing::debug!(error = %e, "cannot send the error response");
            }
        }
        if let Some(e) = &failure.error {
            tracing::warn!(request_id = %exchange.request_id, status = failure.status, error = %e, "request failed");
        }
        let status = match client.response_written() {
            Some(h) if h.status.as_u16() >= 200 => h.status.as_u16(),
            _ => failure.status,
        };
        self.finish(client, exchange, status, failure.refused);
        if let Some(rule) = &failure.rate_limit {
            tracing::debug!(request_id = %exchange.request_id, rule = &**rule, client_ip = %exchange.client.ip_text, "rate limited");
        }
        failure.keep_alive && client.response_written().is_some()
    }

    /// Chooses a worker and forwards; after a failed attempt, [`retry::next`] decides.
    async fn forward<C: ClientSide>(
        &self,
        client: &mut C,
        exchange: &mut Exchange,
    ) -> Result<Done, Failure> {
        if let Some(done) = self.route_request(client, exchange).await? {
            return Ok(done);
        }
        let upgrade = client.is_upgrade_req();
        if upgrade {
            self.admit_upgrade(exchange)?;
        }
        // An upgrade is never replayed: the worker may have acted on it (and switched).
        let replayable =
            client.req_header().method.is_idempotent() && !exchange.body.declared && !upgrade;
        let spread = upstream::spread_seed();
        let mut skipped = [WorkerId(0); MAX_TRIES];
        let mut tries = Tries::default();
        loop {
            let tried = &skipped[..tries.failed_workers];
            let claim = self.claim(exchange, tried, spread, tries).await?;
            let backend = claim.backend().clone();
            exchange.backend = Some(backend.clone());
            // Only a replayable request may skip checking a recently used connection.
            let checked = !replayable || tries.stale_retried;
            let one_at_a_time = claim.concurrency() == 1;
            let conns = if one_at_a_time {
                &self.conns
            } else {
                &self.own_conns
            };
            let outcome = match conns.get(&backend, checked, one_at_a_time).await {
                Ok(conn) => {
                    let reused = conn.reused;
                    self.attempt(client, conn, claim, exchange, upgrade)
                        .await
                        .map_err(|e| {
                            let failed = if e.no_answer {
                                Failed::NoAnswer { reused }
                            } else {
                                Failed::Other
                            };
                            (e.failure, failed)
                        })
                }
                Err(e) => {
                    self.record_connect_failure(exchange.route(), &backend);
                    let e = Error::because(
                        ErrorType::ConnectError,
                        format!("worker {}", backend.info.addr),
                        e,
                    );
                    Err((Failure::worker(502, e), Failed::Connect))
                }
            };
            let (failure, failed) = match outcome {
                Ok(done) => return Ok(done),
                Err(failed) => failed,
            };
            let next = retry::next(failed, replayable, tries);
            match next {
                Next::GiveUp => return Err(failure),
                Next::Again => {
                    tracing::debug!(worker = %backend.info.addr, "kept-open connection was closed by the worker; trying again");
                }
                Next::OtherWorker => {
                    if let Some(e) = &failure.error {
                        tracing::warn!(worker = %backend.info.addr, error = %e, "worker failed before answering; trying another");
                    }
                    skipped[tries.failed_workers] = backend.info.id;
                }
            }
            retry::record(&mut tries, next);
        }
    }

    /// Claims a worker of the routed pool, waiting in its queue while all are busy; a pool
    /// with no worker to take the request is answered at once.
    async fn claim(
        &self,
        exchange: &mut Exchange,
        tried: &[WorkerId],
        spread: usize,
        tries: Tries,
    ) -> Result<Claim, Failure> {
        // The table of now, not of the request's arrival: reading a body or asking Redis
        // takes time, and a worker drained and stopped meanwhile (a reload, a recycle) must
        // not be chosen. The ticket keeps the request in its pool of a split.
        exchange.table = self.routes.load_full();
        match upstream::claim(
            &self.routes,
            &mut exchange.table,
            exchange.ticket,
            exchange.lane.as_ref(),
            tried,
            spread,
        )
        .await
        {
            Ok(claim) => Ok(claim),
            Err(NoWorker::Exhausted) if tries.failed_workers == 0 => {
                self.metrics.no_ready_worker.inc();
                let mut failure = Failure::refused(503, "no ready worker");
                failure.keep_alive = true;
                Err(failure)
            }
            Err(NoWorker::Exhausted) => Err(Failure::refused(502, "no worker left to retry on")),
            Err(NoWorker::QueueFull) => Err(Failure::refused(503, "queue full")),
            Err(NoWorker::QueueTimeout) => Err(Failure::refused(503, "queue timeout")),
        }
    }

    /// Sends the request to one worker and relays its answer.
    async fn attempt<C: ClientSide>(
        &self,
        client: &mut C,
        conn: Conn,
        claim: Claim,
        exchange: &mut Exchange,
        upgrade: bool,
    ) -> Result<Done, AttemptError> {
        let Conn {
            stream: mut worker,
            home,
            spare_next,
            ..
        } = conn;
        let send = exchange.settings.forward_fields;
        let (head, [forged, underscored]) = Outgoing::of(
            client,
            &exchange.client,
            &exchange.request_id,
            upgrade,
            &exchange.body,
            send,
            exchange.rewritten,
        )
        .map_err(|e| AttemptError::ends(Failure::worker(500, e)))?;
        exchange.forged = forged;
        exchange.underscored = underscored;
        // The worker's answer to an upgrade is bounded like any other; the tunnel after it
        // has its own `idle_timeout`.
        let timeout = Some(exchange.route().timeout);
        exchange.upstream_start = Instant::now();
        // The request goes out here, unless the answer to it must be framed by pingora's
        // session knowing the request (`HEAD`, upgrades): then the relay sends it.
        let pending = match head {
            Outgoing::Bytes(bytes) => {
                send::write_bytes(&mut worker, &bytes, timeout).await?;
                None
            }
            Outgoing::Head(head) if !upgrade && client.req_header().method != Method::HEAD => {
                let mut upstream = UpstreamSession::new(worker);
                // A worker that does not take the request for `timeout` is stuck.
                upstream.write_timeout = timeout;
                let settings = &exchange.settings;
                send::send_request(client, &mut upstream, head, &mut exchange.body, settings)
                    .await?;
                worker = upstream.into_inner();
                worker.flush().await.map_err(|e| {
                    let e = Error::because(ErrorType::WriteError, "while sending the request", e);
                    AttemptError::ends(Failure::worker(502, e))
                })?;
                None
            }
            Outgoing::Head(head) => Some(head),
        };
        if spare_next {
            if let Some(backend) = &exchange.backend {
                home.open_spare(backend);
            }
        }
        let sent = Sent {
            worker,
            home,
            pending,
            timeout,
        };
        self.relay(client, sent, claim, exchange).await
    }
}

/// The connection and any pipelined bytes, when the session may carry another request.
async fn reuse(client: Box<DownstreamSession>) -> Option<Reusable> {
    match (*client).reuse().await {
        Ok(Some(reusable)) => Some(reusable.into_parts()),
        _ => None,
    }
}

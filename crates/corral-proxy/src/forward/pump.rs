//! The body of an answer that goes through pingora's sessions (chunked, close-delimited,
//! compressed, or to an HTTP/2 client): read off the worker as fast as it sends it (and
//! compressed as it passes) into a [`Spool`](super::buffer::Spool), written on to the client
//! at the client's pace. The worker's connection and its slot go back the moment its side
//! is read whole, not when the client has it; a client that takes nothing for
//! `send_timeout` is dropped.

use std::sync::Arc;
use std::time::Instant;

use corral_compress::Encoder;
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_error::{Error, ErrorType};

use super::buffer::{Delivering, Pulled, PullerGone};
use super::client::ClientSide;
use super::conns::WorkerConns;
use super::context::Exchange;
use super::failure::{AttemptError, Failure};
use super::relay::Done;
use super::replay::Replay;
use super::Forwarder;
use crate::upstream::Claim;

/// Why the worker's side of a body ended early.
enum WorkerSide {
    Read(Box<Error>),
    Encode(std::io::Error),
    ClientGone(PullerGone),
}

impl Forwarder {
    /// Relays the body of the answer whose head the client already has.
    pub(super) async fn pump<C: ClientSide>(
        &self,
        client: &mut C,
        mut upstream: UpstreamSession,
        (claim, home): (Claim, Arc<WorkerConns>),
        mut encoder: Option<Encoder>,
        exchange: &Exchange,
    ) -> Result<Done, AttemptError> {
        let buffered = exchange.buffered(&self.metrics.buffer);
        let spool = buffered.answer_spool();
        let worker = claim.backend().info.id;
        let worker_side = async {
            let mut compressed = Vec::new();
            let read = async {
                loop {
                    match upstream.read_body_ref().await {
                        Ok(Some([])) => {}
                        Ok(Some(chunk)) => {
                            let out = match &mut encoder {
                                Some(encoder) => {
                                    encoder
                                        .push(chunk, &mut compressed)
                                        .map_err(WorkerSide::Encode)?;
                                    &compressed[..]
                                }
                                None => chunk,
                            };
                            spool.push(out).await.map_err(WorkerSide::ClientGone)?;
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(WorkerSide::Read(e)),
                    }
                }
            };
            if let Err(e) = read.await {
                spool.fail();
                return Err(e);
            }
            // The worker is done: its slot and connection go back before the client has it all.
            upstream.respect_keepalive();
            if upstream.will_keepalive() {
                if let Some(stream) = upstream.reuse().await.and_then(Replay::unwrap) {
                    home.put(stream);
                }
            } else {
                home.not_kept();
            }
            // Until the client has it, the answer shows on the worker in `/status`.
            let delivering = Delivering::begin(claim.backend().clone());
            claim.answered();
            let freed = (Instant::now(), delivering);
            if let Some(encoder) = encoder {
                let coding = encoder.coding();
                let finished = encoder.finish(&mut compressed);
                let pushed = match finished {
                    Ok((read, written)) => {
                        if let Some((compressor, _)) = exchange.compression() {
                            compressor.count(coding, read, written);
                        }
                        spool
                            .push(&compressed)
                            .await
                            .map_err(WorkerSide::ClientGone)
                    }
                    Err(e) => Err(WorkerSide::Encode(e)),
                };
                if let Err(e) = pushed {
                    spool.fail();
                    return Err(e);
                }
            }
            spool.finish();
            Ok(freed)
        };
        let client_side = async {
            let send_timeout = buffered.send_timeout;
            let stalled = || {
                Error::explain(
                    ErrorType::WriteTimedout,
                    "client took nothing for send_timeout",
                )
            };
            loop {
                let (written, end) = match spool.pull().await {
                    Pulled::Piece(piece) => (
                        pingora_timeout::timeout(send_timeout, client.write_body(&piece)).await,
                        false,
                    ),
                    Pulled::End => (
                        pingora_timeout::timeout(send_timeout, client.finish_body()).await,
                        true,
                    ),
                    Pulled::Failed => return Ok(false),
                };
                match written {
                    Ok(Ok(())) if end => return Ok(true),
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        spool.puller_gone();
                        return Err(e);
                    }
                    Err(_) => {
                        spool.puller_gone();
                        return Err(stalled());
                    }
                }
            }
        };
        let (worker_result, client_result) = tokio::join!(worker_side, client_side);
        let failure = match worker_result {
            Err(WorkerSide::Read(e)) => {
                Some(self.worker_error(e, client.req_header(), worker, exchange, false))
            }
            Err(WorkerSide::Encode(e)) => {
                let e = Error::because(ErrorType::InternalError, "compressing the answer", e);
                Some(AttemptError::ends(Failure::worker(0, e)))
            }
            // The client's side says why.
            Err(WorkerSide::ClientGone(PullerGone)) => None,
            Ok((freed, _delivering)) => {
                if matches!(client_result, Ok(true)) {
                    buffered.freed(freed);
                }
                None
            }
        };
        match (client_result, failure) {
            (Err(e), _) => Err(AttemptError::ends(Failure::client(&e))),
            (Ok(_), Some(failure)) => Err(failure),
            (Ok(true), None) => Ok(Done::Answered),
            // The temp file could not be read back: the answer is not whole, and the
            // connection closes so the client cannot take it for whole.
            (Ok(false), None) => {
                let e = Error::explain(ErrorType::InternalError, "reading an answer's temp file");
                Err(AttemptError::ends(Failure::worker(0, e)))
            }
        }
    }
}

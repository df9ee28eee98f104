//! Relaying a plain answer's body: the worker's side reads it as fast as the worker sends it
//! into a spool ([`buffer`](super::super::buffer)), the client's side writes it out at the
//! client's pace, and the worker's connection goes back the moment its side is done.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora_core::protocols::http::date::get_cached_date;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType};

use super::{read, PlainAnswer, BODY_READ};
use crate::forward::buffer::{self, Buffered, Delivering, Pulled};
use crate::forward::fields::{AnswerContext, AnswerRules};

/// How relaying a plain answer ended.
pub(crate) struct Relayed {
    /// Body bytes the client was sent.
    pub(crate) bytes: usize,
    /// Why the answer did not reach the client whole: the worker's failure (and whether it
    /// fell silent past `timeout`), or `None` with `complete` false when the client left.
    pub(crate) worker_error: Option<(Box<Error>, bool)>,
    /// Whether the client got the whole answer.
    pub(crate) complete: bool,
}

impl PlainAnswer {
    /// Adds the fields corral sets on every answer (`[headers]`, the request id).
    pub(crate) fn add_fields(&mut self, rules: &AnswerRules, ctx: &AnswerContext) {
        for (name, value) in rules.added(self.preset_sent, ctx) {
            self.head.extend_from_slice(name.as_bytes());
            self.head.extend_from_slice(b": ");
            self.head.extend_from_slice(value);
            self.head.extend_from_slice(b"\r\n");
        }
    }

    /// Sends the answer to `client`, reading the rest of the body from `worker` as fast as
    /// the worker sends it into `buffered`'s spool, from which the client takes it at its
    /// own pace. `release` gets the worker's connection back (when it can carry another
    /// request) as soon as the body is read, before the client has it, and is called
    /// exactly once, told whether the answer is still on its way to the client; it says
    /// whether a queued request was woken to take the worker, and gives the guard that
    /// counts the delivery on the worker until the client is done.
    pub(crate) async fn relay(
        self,
        mut worker: Stream,
        client: &mut Stream,
        keep_alive: bool,
        timeout: Option<Duration>,
        buffered: Buffered<'_>,
        release: impl FnOnce(Option<Stream>, bool) -> (bool, Option<Delivering>),
    ) -> Relayed {
        let PlainAnswer {
            mut head,
            body,
            mut remaining,
            reusable,
            ..
        } = self;
        head.extend_from_slice(b"Date: ");
        head.extend_from_slice(get_cached_date().as_bytes());
        head.extend_from_slice(if keep_alive {
            b"\r\nConnection: keep-alive\r\n\r\n"
        } else {
            b"\r\nConnection: close\r\n\r\n"
        });
        head.extend_from_slice(&body);
        let send_timeout = buffered.send_timeout;
        if remaining == 0 {
            let (kept, closing) = split(worker, reusable);
            if release(kept, false).0 {
                // A queued request takes the worker: let it go out first, so the worker
                // finds it waiting instead of sleeping until this answer is written. (So
                // below, once a longer body is read whole.)
                tokio::task::yield_now().await;
            }
            drop(closing);
            let complete = write(client, &head, send_timeout).await;
            return Relayed::ended(body.len(), None, complete);
        }
        let spool = buffered.answer_spool();
        let worker_side = async {
            // Each read goes into `buf`; a full one leaves as a piece of its own, kept by the
            // spool as it is when it stays in memory, else written to the temp file and
            // dropped, and then `reserve` takes its room back.
            let mut buf = BytesMut::with_capacity(remaining.min(BODY_READ));
            let failed = loop {
                buf.reserve(remaining.min(BODY_READ));
                let n = match read(&mut worker, &mut buf, timeout, "while reading the body").await {
                    Ok(0) => {
                        let e = Error::explain(
                            ErrorType::ConnectionClosed,
                            format!("worker closed with {remaining} body bytes unsent"),
                        );
                        break Some((e, false));
                    }
                    Ok(n) => n,
                    Err(e) => {
                        let timed_out = e.etype() == &ErrorType::ReadTimedout;
                        break Some((e, timed_out));
                    }
                };
                let take = n.min(remaining);
                remaining -= take;
                // A read that filled most of its buffer leaves as it is; a short one is
                // copied, so a piece kept in memory never pins much more than its length.
                let pushed = if take * 2 >= buf.capacity() {
                    let piece = buf.split_to(take).freeze();
                    buf.clear();
                    spool.push_owned(piece).await
                } else {
                    let pushed = spool.push(&buf[..take]).await;
                    buf.clear();
                    pushed
                };
                if pushed.is_err() {
                    // The client is gone: the worker's connection is not reused.
                    break None;
                }
                if remaining == 0 {
                    // The whole body is read: the worker goes back before the client has it.
                    let (kept, closing) = split(worker, reusable && n == take);
                    let (queued, delivering) = release(kept, true);
                    if queued {
                        tokio::task::yield_now().await;
                    }
                    drop(closing);
                    spool.finish();
                    return (None, Some((Instant::now(), delivering)));
                }
            };
            spool.fail();
            release(None, false);
            (failed, None)
        };
        let client_side = async {
            if !write(client, &head, send_timeout).await {
                spool.puller_gone();
                return (0, false);
            }
            let mut sent = body.len();
            loop {
                match spool.pull().await {
                    Pulled::Piece(piece) => {
                        if !write(client, &piece, send_timeout).await {
                            spool.puller_gone();
                            return (sent, false);
                        }
                        sent += piece.len();
                    }
                    Pulled::End => return (sent, true),
                    Pulled::Failed => return (sent, false),
                }
            }
        };
        let ((worker_error, freed), (sent, complete)) = tokio::join!(worker_side, client_side);
        if let (Some((freed, _delivering)), true) = (freed, complete) {
            buffered.freed(freed);
        }
        Relayed::ended(sent, worker_error, complete)
    }
}

impl Relayed {
    fn ended(bytes: usize, worker_error: Option<(Box<Error>, bool)>, complete: bool) -> Self {
        Relayed {
            bytes,
            worker_error,
            complete,
        }
    }
}

/// Writes `bytes` to the client and flushes them, so a body the worker sends slowly reaches
/// the client as it comes; false when the client is gone or took nothing for
/// `send_timeout`.
async fn write(client: &mut Stream, bytes: &[u8], send_timeout: Duration) -> bool {
    match buffer::write_all(client, bytes, send_timeout).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "client went away during the answer");
            false
        }
    }
}

/// The worker's connection as `release` takes it (`Some` when it can carry another request)
/// and the one to close, which is closed only after `release`: the slot is freed (and a
/// queued request woken) without waiting for the close's system calls.
fn split(worker: Stream, reusable: bool) -> (Option<Stream>, Option<Stream>) {
    if reusable {
        (Some(worker), None)
    } else {
        (None, Some(worker))
    }
}

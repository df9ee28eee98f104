//! The rate limit phase: after the checks (so it keys on the resolved client identity,
//! never on a field an untrusted peer wrote) and before the body is read or a worker is
//! chosen. Over a limit: 429 with `Retry-After` and the `RateLimit` fields; within it, the
//! fields go on the answer and in-flight places are held until the request ends. A refused
//! request without a body leaves the connection open (`exchange.rs`).

use corral_ratelimit::{Request, Verdict};
use http::header::{HeaderValue, HOST, UPGRADE};

use super::client::ClientSide;
use super::context::Exchange;
use super::failure::Failure;
use super::Forwarder;

impl Forwarder {
    /// Applies every matching rule; the refusal to answer when one is over its limit.
    pub(super) async fn rate_limit<C: ClientSide>(
        &self,
        client: &C,
        exchange: &mut Exchange,
    ) -> Result<(), Failure> {
        if exchange.settings.limiter.is_empty() {
            return Ok(());
        }
        let settings = exchange.settings.clone();
        let head = client.req_header();
        let host = exchange
            .client
            .host
            .as_ref()
            .or_else(|| head.headers.get(HOST));
        let request = Request {
            path: head.raw_path(),
            method: head.method.as_str(),
            host: host.map(HeaderValue::as_bytes),
            websocket: head
                .headers
                .get(UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
            client_ip: &exchange.client.ip_text,
            headers: &head.headers,
        };
        match settings.limiter.check(&request).await {
            Verdict::Pass { fields, guards } => {
                exchange.rate_fields = fields;
                exchange.rate_guards = guards;
                Ok(())
            }
            Verdict::Limited {
                rule,
                retry_after,
                fields,
            } => {
                self.metrics.rate_limited.with_label_values(&[&*rule]).inc();
                let mut failure = Failure::refused(429, "rate limited");
                failure.retry_after = Some(retry_after);
                failure.fields = fields;
                failure.rate_limit = Some(rule);
                Err(failure)
            }
            Verdict::StoreDown => Err(Failure::refused(503, "rate limit store down")),
        }
    }
}

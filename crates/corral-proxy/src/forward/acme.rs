//! HTTP-01 challenges on the plain listeners: `GET /.well-known/acme-challenge/TOKEN` is
//! answered with the token's key authorization before any route, rate limit or worker, so
//! a CA can check the name while the app knows nothing of it. Only when `[server.tls.acme]`
//! is set; then one prefix comparison per request.

use std::sync::Arc;

use corral_tls::{Challenges, HTTP01_PREFIX};
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;

use super::{Forwarder, Reusable};

impl Forwarder {
    /// The challenges to answer `client`'s request from, when it asks for one.
    pub(super) fn acme_challenge(&self, client: &DownstreamSession) -> Option<Arc<Challenges>> {
        let challenges = self.challenges.as_ref()?;
        client
            .req_header()
            .uri
            .path()
            .starts_with(HTTP01_PREFIX)
            .then(|| challenges.clone())
    }

    /// Answers the challenge `client` asked for: 200 with the key authorization, or 404.
    pub(super) async fn answer_challenge(
        &self,
        mut client: Box<DownstreamSession>,
        challenges: Arc<Challenges>,
    ) -> Option<Reusable> {
        let path = client.req_header().uri.path().to_string();
        let answer = key_authorization(&challenges, &path).await;
        tracing::info!(
            event = "acme_challenge_answered",
            path = %path,
            found = answer.is_some(),
            "HTTP-01 challenge request"
        );
        let (status, body) = match answer {
            Some(text) => (200, text.into_bytes()),
            None => (404, Vec::new()),
        };
        let mut head = pingora_http::ResponseHeader::build(status, Some(3)).ok()?;
        head.insert_header("content-type", "text/plain").ok()?;
        head.insert_header("content-length", body.len().to_string())
            .ok()?;
        client.write_response_header(Box::new(head)).await.ok()?;
        client.write_body(&body).await.ok()?;
        client.finish_body().await.ok()?;
        match (*client).reuse().await {
            Ok(Some(reusable)) => Some(reusable.into_parts()),
            _ => None,
        }
    }
}

/// The key authorization for the challenge at `path`: this host's, else the shared store's.
pub(crate) async fn key_authorization(challenges: &Challenges, path: &str) -> Option<String> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    match challenges.http01(token) {
        Some(found) => Some(found),
        None => match challenges.remote() {
            Some(lookup) => lookup(token.to_string()).await,
            None => None,
        },
    }
}

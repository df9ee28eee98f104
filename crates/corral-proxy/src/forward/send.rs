//! Sending the request to the worker: as ready bytes in the common case, or through
//! pingora's session when a body, `HEAD` or an upgrade needs it to know the request.

use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use tokio::io::AsyncWriteExt;

use super::fields;
use super::headers::expects_continue;
use super::identity::ClientIdentity;
use super::outcome::{AttemptError, Failure};
use crate::settings::ProxySettings;

/// The request head for the worker.
pub(super) enum Outgoing {
    /// The whole request as bytes (no body): the common case.
    Bytes(bytes::BytesMut),
    /// A header for pingora's session to write, with the body streamed after it.
    Head(Box<RequestHeader>),
}

impl Outgoing {
    /// The head for the request `client` has read, by the rules of [`fields`], with the
    /// number of forged forwarding fields it left out.
    pub(super) fn of(
        client: &mut DownstreamSession,
        identity: &ClientIdentity,
        request_id: &str,
        upgrade: bool,
    ) -> pingora_error::Result<(Outgoing, u32)> {
        if client.is_body_empty() {
            let raw = client.get_headers_raw_bytes();
            if let Some(out) =
                fields::request_bytes(client.req_header(), &raw, identity, request_id)
            {
                return Ok((Outgoing::Bytes(out.head), out.forged));
            }
        }
        fields::request_head(client.req_header(), identity, request_id, upgrade)
            .map(|out| (Outgoing::Head(out.head), out.forged))
    }
}

/// Writes a request that is all bytes. A request head fits an idle connection's send
/// buffer: no write waits here.
pub(super) async fn write_bytes(worker: &mut Stream, bytes: &[u8]) -> Result<(), AttemptError> {
    let written = async {
        worker.write_all(bytes).await?;
        worker.flush().await
    };
    written.await.map_err(|e| {
        AttemptError::no_answer(Error::because(
            ErrorType::WriteError,
            "while writing the request head",
            e,
        ))
    })
}

/// Writes the request head and streams its body, if any, through pingora's session.
pub(super) async fn send_request(
    client: &mut DownstreamSession,
    upstream: &mut UpstreamSession,
    head: Box<RequestHeader>,
    settings: &ProxySettings,
) -> Result<(), AttemptError> {
    upstream
        .write_request_header(head)
        .await
        .map_err(AttemptError::no_answer)?;
    if !client.is_body_empty() {
        send_body(client, upstream, settings).await?;
    }
    Ok(())
}

/// Streams the request body to the worker, refusing it past `body_size`.
async fn send_body(
    client: &mut DownstreamSession,
    upstream: &mut UpstreamSession,
    settings: &ProxySettings,
) -> Result<(), AttemptError> {
    let client_error = |e: Box<Error>| AttemptError::ends(Failure::client(&e));
    let worker_error = |e: Box<Error>| AttemptError::ends(Failure::worker(502, e));
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
            return Err(AttemptError::ends(Failure::refused(413, "body too large")));
        }
        upstream.write_body(&chunk).await.map_err(worker_error)?;
    }
    upstream.finish_body().await.map_err(worker_error)?;
    Ok(())
}

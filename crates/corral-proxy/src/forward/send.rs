//! Sending the request to the worker: as ready bytes in the common case, or through
//! pingora's session when a body, `HEAD` or an upgrade needs it to know the request.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Version;
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::body::BodyStart;
use super::client::ClientSide;
use super::failure::{AttemptError, Failure};
use super::fields::{self, ForwardMask};
use super::identity::ClientIdentity;
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
    /// numbers of forged forwarding fields and of `_` fields it left out. `body` is what was
    /// read of the body so far: whether the head announced one (an empty chunked one
    /// included), and, when it was read to its end, its length (see [`with_length`]);
    /// `rewritten`: a route changed the head, so the bytes as read are not sent.
    pub(super) fn of<C: ClientSide>(
        client: &mut C,
        identity: &ClientIdentity,
        request_id: &str,
        upgrade: bool,
        body: &BodyStart,
        send: ForwardMask,
        rewritten: bool,
    ) -> pingora_error::Result<(Outgoing, [u32; 2])> {
        let empty = !body.declared;
        if empty && !rewritten {
            let raw = client.raw_head();
            let head = client.req_header();
            if let Some(out) =
                fields::request_bytes(head, raw.as_deref(), identity, request_id, send)
            {
                return Ok((Outgoing::Bytes(out.head), [out.forged, out.underscored]));
            }
        }
        let head = client.req_header();
        let mut out = fields::request_head(head, identity, request_id, upgrade, send)?;
        if body.declared && body.complete {
            with_length(&mut out.head, body.len)?;
        }
        if out.head.version == Version::HTTP_2 {
            // An HTTP/2 stream's body has no framing of its own in HTTP/1.1 unless its
            // length is known: the worker gets it chunked.
            out.head.set_version(Version::HTTP_11);
            if !empty && !out.head.headers.contains_key(CONTENT_LENGTH) {
                out.head.insert_header(TRANSFER_ENCODING, "chunked")?;
            }
        }
        Ok((Outgoing::Head(out.head), [out.forged, out.underscored]))
    }
}

/// A body read to its end before the request goes out (buffered, or short) is sent with
/// its `Content-Length` in place of `Transfer-Encoding: chunked`, as nginx sends a buffered
/// body: a sync WSGI server then reads a known length instead of decoding chunks (some
/// cannot read a chunked body at all). A transfer coding other than `chunked` is left as
/// it is (the bytes are still in it), and so is a body that was not read whole.
fn with_length(head: &mut RequestHeader, len: u64) -> pingora_error::Result<()> {
    let only_chunked = {
        let mut codings = head.headers.get_all(TRANSFER_ENCODING).iter();
        match (codings.next(), codings.next()) {
            (Some(one), None) => one.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"),
            (None, _) => !head.headers.contains_key(CONTENT_LENGTH),
            _ => false,
        }
    };
    if only_chunked {
        head.remove_header(&TRANSFER_ENCODING);
        head.insert_header(CONTENT_LENGTH, len.to_string())?;
    }
    Ok(())
}

/// Writes a request that is all bytes. A request head fits an idle connection's send
/// buffer, so the write waits only on a connection still being made (a spare begun ahead,
/// see `conns`), and never past `timeout`: a worker that takes no connection is stuck. The
/// timer is set only if the write has to wait.
pub(super) async fn write_bytes(
    worker: &mut Stream,
    bytes: &[u8],
    timeout: Option<Duration>,
) -> Result<(), AttemptError> {
    let written = async {
        worker.write_all(bytes).await?;
        worker.flush().await
    };
    let written = match timeout {
        Some(limit) => tokio::time::timeout(limit, written)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "worker took no request",
                ))
            }),
        None => written.await,
    };
    written.map_err(|e| {
        AttemptError::no_answer(Error::because(
            ErrorType::WriteError,
            "while writing the request head",
            e,
        ))
    })
}

/// Writes the request head and its body, if any, through pingora's session: the part read
/// ahead first (memory, then its temp file), then the rest as it comes, refused past
/// `body_size`.
pub(super) async fn send_request<C: ClientSide>(
    client: &mut C,
    upstream: &mut UpstreamSession,
    head: Box<RequestHeader>,
    body: &mut BodyStart,
    settings: &ProxySettings,
) -> Result<(), AttemptError> {
    upstream
        .write_request_header(head)
        .await
        .map_err(AttemptError::no_answer)?;
    if !body.declared {
        return Ok(());
    }
    let client_error = |e: Box<Error>| AttemptError::ends(Failure::client(&e));
    let worker_error = |e: Box<Error>| AttemptError::ends(Failure::worker(502, e));
    for chunk in &body.chunks {
        upstream.write_body(chunk).await.map_err(worker_error)?;
    }
    if let Some(file) = &body.file {
        for (at, len) in file.pieces() {
            let piece = file.read(at, len).map_err(|e| {
                let e = Error::because(
                    ErrorType::InternalError,
                    "reading a request body's temp file",
                    e,
                );
                AttemptError::ends(Failure::worker(500, e))
            })?;
            upstream.write_body(&piece).await.map_err(worker_error)?;
        }
    }
    if !body.complete {
        while let Some(chunk) = client.read_body_bytes().await.map_err(client_error)? {
            let limit = settings.limits.body_size;
            if body.count(&chunk, limit).map_err(AttemptError::ends)? {
                upstream.write_body(&chunk).await.map_err(worker_error)?;
            }
        }
    }
    upstream.finish_body().await.map_err(worker_error)?;
    Ok(())
}

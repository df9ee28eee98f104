//! A `static = DIR` route: files under the route's directory and never outside it, for
//! `GET` and `HEAD`, with validators (`ETag`, `Last-Modified`, `304`), one byte range
//! (`206`, `416`), precompressed siblings (`.br`, `.zst`, `.gz`) chosen by
//! `Accept-Encoding`, the type from the extension and the route's `Cache-Control`. No
//! directory listing: a directory answers its `index.html` or 404.
//!
//! The answer is decided in one synchronous step ([`decide`]): the path checked
//! ([`path`]), the file opened beneath the root ([`open`]), the request fields read
//! ([`fields`]). It then goes out one of two ways: over HTTP/1.x without a request body, as
//! bytes on the client's own connection ([`raw`]: the head and a small file in one write, a
//! large one by `sendfile` on a plain socket); otherwise (HTTP/2, a request with a body)
//! through the client's session, the file read in large pieces.

mod fields;
mod open;
mod path;
mod raw;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use bytes::BytesMut;
use http::header::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};

use super::client::ClientSide;
use super::context::Exchange;
use super::failure::Failure;
use fields::{ByteRange, Coding};
pub(super) use raw::StaticAnswer;

/// Bytes read from the file per write when it is copied (TLS, HTTP/2).
const PIECE: usize = 128 << 10;

/// A static route's directory (open), the prefix its URLs start with, and its
/// `Cache-Control` values, made once per config.
pub(crate) struct StaticRoot {
    root: open::Root,
    prefix: Box<str>,
    cache_control: Option<HeaderValue>,
    cache_control_hashed: Option<HeaderValue>,
}

impl StaticRoot {
    /// The route serving `root` (already canonical) under `prefix`, with the route's
    /// `cache_control` and `cache_control_hashed` (checked by the config).
    pub(crate) fn new(
        root: &Path,
        prefix: &str,
        cache_control: Option<&str>,
        cache_control_hashed: Option<&str>,
    ) -> StaticRoot {
        let value = |v: Option<&str>| v.and_then(|v| HeaderValue::from_str(v).ok());
        StaticRoot {
            root: open::Root::new(root),
            prefix: prefix.into(),
            cache_control: value(cache_control),
            cache_control_hashed: value(cache_control_hashed),
        }
    }

    /// The `Cache-Control` of the file at `relative`: the hashed one for a name with a
    /// content hash, when the route has one.
    fn cache_control_of(&self, relative: &Path) -> Option<&HeaderValue> {
        match &self.cache_control_hashed {
            Some(hashed) if fields::is_hashed(relative) => Some(hashed),
            _ => self.cache_control.as_ref(),
        }
    }
}

/// The bytes of a file to send: `len` from `start`.
pub(super) struct Body {
    file: File,
    start: u64,
    len: u64,
}

/// Answers a request of a static route: `Ok(Some)` leaves the answer to the caller to
/// write as bytes on the connection (HTTP/1.x, no request body); `Ok(None)` means it was
/// written here, through the client's session.
pub(super) async fn serve<C: ClientSide>(
    client: &mut C,
    exchange: &Exchange,
    root: &StaticRoot,
) -> Result<Option<Box<StaticAnswer>>, Failure> {
    let keep = client.is_body_empty();
    let answer = decide(client.req_header(), root).map_err(|mut f| {
        f.keep_alive = keep;
        f
    })?;
    if C::RAW_ANSWER && keep {
        return Ok(Some(Box::new(answer)));
    }
    let mut head = ResponseHeader::build(answer.status, Some(answer.fields.len() + 2))
        .map_err(|_| Failure::refused(500, "static"))?;
    for (name, value) in &answer.fields {
        head.insert_header(*name, value.clone())
            .map_err(|_| Failure::refused(500, "static"))?;
    }
    exchange
        .answer_rules()
        .apply(&mut head, &exchange.answer_context())
        .map_err(|_| Failure::refused(500, "static"))?;
    client.set_server_keepalive(if keep { exchange.keepalive } else { None });
    client
        .write_response_header(Box::new(head))
        .await
        .map_err(|e| Failure::client(&e))?;
    if let Some(body) = answer.body {
        copy_body(client, body).await?;
    }
    client
        .finish_body()
        .await
        .map_err(|e| Failure::client(&e))?;
    Ok(None)
}

/// The answer to `head` from `root`: its status, fields and the bytes to send, or the
/// refusal (400, 404, 405, 416).
fn decide(head: &RequestHeader, root: &StaticRoot) -> Result<StaticAnswer, Failure> {
    let head_only = head.method == http::Method::HEAD;
    if head.method != http::Method::GET && !head_only {
        let mut f = Failure::refused(405, "static: method");
        f.fields.push(("allow", "GET, HEAD".to_string()));
        return Err(f);
    }
    let relative = path::relative(head.uri.path(), &root.prefix)
        .map_err(|_| Failure::refused(400, "static: bad path"))?;
    let found = root
        .root
        .open(&relative)
        .ok_or_else(|| Failure::refused(404, "static: not found"))?;
    let modified = found.meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = fields::etag(found.meta.len(), modified, None);
    let range = fields::range(head, &etag);
    let content_type = fields::content_type(&found.relative);
    let cache_control = root.cache_control_of(&found.relative).cloned();
    // A range is of the file itself; a compressed sibling is for whole answers only.
    let (chosen, coding) = match range {
        None => choose_coding(&root.root, &found.relative, head),
        Some(_) => None,
    }
    .map_or((found, None), |(sibling, coding)| (sibling, Some(coding)));
    let len = chosen.meta.len();
    let modified = chosen.meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = match coding {
        Some(c) => fields::etag(len, modified, Some(c)),
        None => etag,
    };
    let mut answer = StaticAnswer {
        status: 200,
        fields: Vec::with_capacity(9),
        body: None,
    };
    answer.field("etag", HeaderValue::from_str(&etag).ok());
    answer.field(
        "last-modified",
        HeaderValue::from_str(&httpdate::fmt_http_date(modified)).ok(),
    );
    answer.field("vary", Some(HeaderValue::from_static("Accept-Encoding")));
    answer.field("accept-ranges", Some(HeaderValue::from_static("bytes")));
    answer.field("cache-control", cache_control);
    if fields::not_modified(head, &etag, modified) {
        answer.status = 304;
        return Ok(answer);
    }
    answer.field("content-type", Some(HeaderValue::from_static(content_type)));
    if let Some(c) = coding {
        answer.field(
            "content-encoding",
            Some(HeaderValue::from_static(c.token())),
        );
    }
    let (start, send) = match range.map(|r| r.within(len)) {
        None => (0, len),
        Some(None) => {
            let mut f = Failure::refused(416, "static: range");
            f.fields.push(("content-range", format!("bytes */{len}")));
            return Err(f);
        }
        Some(Some(ByteRange { start, end })) => {
            answer.status = 206;
            answer.field(
                "content-range",
                HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).ok(),
            );
            (start, end - start + 1)
        }
    };
    answer.field("content-length", Some(HeaderValue::from(send)));
    if !head_only && send > 0 {
        answer.body = Some(Body {
            file: chosen.file,
            start,
            len: send,
        });
    }
    Ok(answer)
}

/// The best precompressed sibling of `relative` the client accepts (`.br`, then `.zst`,
/// then `.gz`), if one exists under the root.
fn choose_coding(
    root: &open::Root,
    relative: &Path,
    head: &RequestHeader,
) -> Option<(open::Opened, Coding)> {
    for coding in fields::accepted(head) {
        let mut name = relative.as_os_str().to_owned();
        name.push(coding.suffix());
        if let Some(sibling) = root.open_file(Path::new(&name)) {
            return Some((sibling, coding));
        }
    }
    None
}

/// The error of a file that could not be read to the length its head promised: the
/// connection ends, as the answer cannot.
fn read_failed(e: std::io::Error) -> Failure {
    let mut f = Failure::refused(0, "static: read");
    f.error = Some(pingora_error::Error::because(
        pingora_error::ErrorType::ReadError,
        "reading a static file",
        e,
    ));
    f
}

/// Writes `body` through the client's session, in pieces of [`PIECE`] read with `pread`
/// into one buffer handed over whole (no copy into the session's frames).
async fn copy_body<C: ClientSide>(client: &mut C, body: Body) -> Result<(), Failure> {
    let Body {
        file,
        mut start,
        len,
    } = body;
    let mut left = len;
    while left > 0 {
        let want = PIECE.min(usize::try_from(left).unwrap_or(PIECE));
        let mut buf = BytesMut::zeroed(want);
        let n = file.read_at(&mut buf, start).map_err(read_failed)?;
        if n == 0 {
            return Err(read_failed(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.truncate(n);
        client
            .write_body_owned(buf.freeze())
            .await
            .map_err(|e| Failure::client(&e))?;
        start += n as u64;
        left -= n as u64;
    }
    Ok(())
}

//! A `static = DIR` route: files under the route's directory and never outside it, for
//! `GET` and `HEAD`, with validators (`ETag`, `Last-Modified`, `304`), one byte range
//! (`206`, `416`), precompressed siblings (`.br`, `.zst`, `.gz`) chosen by
//! `Accept-Encoding`, the type from the extension and the route's `Cache-Control`. No
//! directory listing: a directory answers its `index.html` or 404.
//!
//! The answer is decided in one synchronous step ([`decide`]): a small file kept in memory
//! and still unchanged on disk ([`cache`]), or else the path checked ([`path`]), the file
//! opened beneath the root ([`open`]) and, when small, kept; the request fields read
//! ([`fields`]). It then goes out one of two ways: over HTTP/1.x without a request body, as
//! bytes on the client's own connection ([`raw`]: the head and a small file in one write, a
//! large one by `sendfile` on a plain socket); otherwise (HTTP/2, a request with a body)
//! through the client's session, the file read in large pieces.

mod cache;
mod fields;
mod open;
mod path;
mod raw;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use bytes::{Bytes, BytesMut};
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
    /// Its small files, kept (`None` where files are not opened beneath the root).
    cache: Option<cache::FileCache>,
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
        let root = open::Root::new(root);
        StaticRoot {
            cache: root.dir().is_some().then(cache::FileCache::default),
            root,
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
    source: Source,
    start: u64,
    len: u64,
}

/// Where a file's bytes are: on disk, or kept in memory by the route's [`cache`].
pub(super) enum Source {
    File(File),
    Memory(Bytes),
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
/// refusal (400, 404, 405, 416). A small file the client takes as it is comes from the
/// route's [`cache`] while its file is unchanged, else from disk (and is then kept).
fn decide(head: &RequestHeader, root: &StaticRoot) -> Result<StaticAnswer, Failure> {
    let head_only = head.method == http::Method::HEAD;
    if head.method != http::Method::GET && !head_only {
        let mut f = Failure::refused(405, "static: method");
        f.fields.push(("allow", "GET, HEAD".to_string()));
        return Err(f);
    }
    let codings = fields::accepted(head);
    let cache = root.cache.as_ref().filter(|_| codings.is_empty());
    if let Some(hit) = cache.and_then(|c| c.get(&root.root, head.uri.path())) {
        return from_memory(head, head_only, &hit);
    }
    let relative = path::relative(head.uri.path(), &root.prefix)
        .map_err(|_| Failure::refused(400, "static: bad path"))?;
    let found = root
        .root
        .open(&relative)
        .ok_or_else(|| Failure::refused(404, "static: not found"))?;
    let cache_control = root.cache_control_of(&found.relative);
    if let Some(cache) = cache.filter(|_| found.meta.len() <= cache::MAX_FILE) {
        let path = head.uri.path();
        if let Some(kept) = cache.fill(
            &root.root,
            path,
            &found.relative,
            &found.file,
            cache_control,
        ) {
            return from_memory(head, head_only, &kept);
        }
    }
    let cache_control = cache_control.cloned();
    let modified = found.meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = fields::etag(found.meta.len(), modified, None);
    let range = fields::range(head, &etag);
    let content_type = fields::content_type(&found.relative);
    // A range is of the file itself; a compressed sibling is for whole answers only.
    let (chosen, coding) = match range {
        None => choose_coding(&root.root, &found.relative, &codings),
        Some(_) => None,
    }
    .map_or((found, None), |(sibling, coding)| (sibling, Some(coding)));
    let len = chosen.meta.len();
    let modified = chosen.meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = match coding {
        Some(c) => fields::etag(len, modified, Some(c)),
        None => etag,
    };
    let version = Version {
        etag: &etag,
        etag_value: HeaderValue::from_str(&etag).ok(),
        last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified)).ok(),
        modified,
        cache_control,
        content_type,
        coding,
        len,
        content_length: None,
    };
    answer(head, head_only, version, range, Source::File(chosen.file))
}

/// The answer from a kept file.
fn from_memory(
    head: &RequestHeader,
    head_only: bool,
    kept: &cache::Cached,
) -> Result<StaticAnswer, Failure> {
    let range = fields::range(head, &kept.etag);
    let version = Version {
        etag: &kept.etag,
        etag_value: Some(kept.etag_value.clone()),
        last_modified: Some(kept.last_modified.clone()),
        modified: kept.modified,
        cache_control: kept.cache_control.clone(),
        content_type: kept.content_type,
        coding: None,
        len: kept.bytes.len() as u64,
        content_length: Some(kept.content_length.clone()),
    };
    answer(
        head,
        head_only,
        version,
        range,
        Source::Memory(kept.bytes.clone()),
    )
}

/// What the answer's fields are made of: one version of a file (itself or a sibling).
struct Version<'a> {
    etag: &'a str,
    etag_value: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    modified: std::time::SystemTime,
    cache_control: Option<HeaderValue>,
    content_type: &'static str,
    coding: Option<Coding>,
    len: u64,
    /// The whole version's `Content-Length`, when made already.
    content_length: Option<HeaderValue>,
}

/// The answer of `version`, whose bytes are in `source`: 304, 206, 416 or 200.
fn answer(
    head: &RequestHeader,
    head_only: bool,
    version: Version<'_>,
    range: Option<fields::RangeAsk>,
    source: Source,
) -> Result<StaticAnswer, Failure> {
    let len = version.len;
    let mut answer = StaticAnswer {
        status: 200,
        fields: Vec::with_capacity(9),
        body: None,
    };
    answer.field("etag", version.etag_value);
    answer.field("last-modified", version.last_modified);
    answer.field("vary", Some(HeaderValue::from_static("Accept-Encoding")));
    answer.field("accept-ranges", Some(HeaderValue::from_static("bytes")));
    answer.field("cache-control", version.cache_control);
    if fields::not_modified(head, version.etag, version.modified) {
        answer.status = 304;
        return Ok(answer);
    }
    answer.field(
        "content-type",
        Some(HeaderValue::from_static(version.content_type)),
    );
    if let Some(c) = version.coding {
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
    let content_length = match version.content_length {
        Some(whole) if send == len => whole,
        _ => HeaderValue::from(send),
    };
    answer.field("content-length", Some(content_length));
    if !head_only && send > 0 {
        answer.body = Some(Body {
            source,
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
    codings: &[Coding],
) -> Option<(open::Opened, Coding)> {
    for &coding in codings {
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
        source,
        mut start,
        len,
    } = body;
    let file = match source {
        Source::File(file) => file,
        Source::Memory(bytes) => {
            let piece = bytes.slice(start as usize..(start + len) as usize);
            return client
                .write_body_owned(piece)
                .await
                .map_err(|e| Failure::client(&e));
        }
    };
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

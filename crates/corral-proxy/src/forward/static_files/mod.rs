//! A `static = DIR` route: files under the route's directory and never outside it, for
//! `GET` and `HEAD`, with validators (`ETag`, `Last-Modified`, `304`), one byte range
//! (`206`, `416`), precompressed siblings (`.br`, `.zst`, `.gz`) chosen by
//! `Accept-Encoding`, and the type from the extension. No directory listing: a directory
//! answers its `index.html` or 404. Files are read with tokio's fs (off the proxy
//! threads) in pieces, so a large file is streamed. The path checks are in [`path`], the
//! request fields in [`fields`].

mod fields;
mod path;

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use pingora_http::ResponseHeader;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::client::ClientSide;
use super::context::Exchange;
use super::failure::Failure;
use fields::{ByteRange, Coding};

/// Bytes read from the file per write to the client.
const PIECE: usize = 64 << 10;

/// A static route's directory (canonical) and the prefix its URLs start with.
pub(crate) struct StaticRoot {
    root: PathBuf,
    prefix: Box<str>,
}

impl StaticRoot {
    /// The route serving `root` (already canonical) under `prefix`.
    pub(crate) fn new(root: &Path, prefix: &str) -> StaticRoot {
        StaticRoot {
            root: root.to_path_buf(),
            prefix: prefix.into(),
        }
    }
}

/// One file chosen to answer with.
struct Chosen {
    path: PathBuf,
    len: u64,
    modified: std::time::SystemTime,
    coding: Option<Coding>,
}

/// Answers a request of a static route (the whole answer, head and body).
pub(super) async fn serve<C: ClientSide>(
    client: &mut C,
    exchange: &Exchange,
    root: &StaticRoot,
) -> Result<(), Failure> {
    let keep = client.is_body_empty();
    let refuse = |status: u16, why: &'static str| {
        let mut f = Failure::refused(status, why);
        f.keep_alive = keep;
        f
    };
    let head = client.req_header();
    let head_only = head.method == http::Method::HEAD;
    if head.method != http::Method::GET && !head_only {
        let mut f = refuse(405, "static: method");
        f.fields.push(("allow", "GET, HEAD".to_string()));
        return Err(f);
    }
    let relative = path::relative(head.uri.path(), &root.prefix)
        .map_err(|_| refuse(400, "static: bad path"))?;
    let file = path::resolve(&root.root, &relative)
        .await
        .ok_or_else(|| refuse(404, "static: not found"))?;
    let meta = tokio::fs::metadata(&file)
        .await
        .map_err(|_| refuse(404, "static: not found"))?;
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = fields::etag(meta.len(), modified, None);
    let last_modified = httpdate::fmt_http_date(modified);
    let content_type = fields::content_type(&file);
    let range = fields::range(head, &etag);
    // A range is of the file itself; a compressed sibling is for whole answers only.
    let chosen = match range {
        None => choose_coding(&root.root, &file, head).await,
        Some(_) => None,
    }
    .unwrap_or(Chosen {
        path: file,
        len: meta.len(),
        modified,
        coding: None,
    });
    let etag = match chosen.coding {
        Some(c) => fields::etag(chosen.len, chosen.modified, Some(c)),
        None => etag,
    };
    let mut answer = ResponseHeader::build(200, Some(8)).map_err(|_| refuse(500, "static"))?;
    let add = |a: &mut ResponseHeader, name: &'static str, value: &str| {
        a.insert_header(name, value)
            .map_err(|_| Failure::refused(500, "static"))
    };
    add(&mut answer, "etag", &etag)?;
    add(&mut answer, "last-modified", &last_modified)?;
    add(&mut answer, "vary", "Accept-Encoding")?;
    add(&mut answer, "accept-ranges", "bytes")?;
    let (status, start, len) = if fields::not_modified(head, &etag, chosen.modified) {
        (304, 0, 0)
    } else {
        add(&mut answer, "content-type", content_type)?;
        if let Some(c) = chosen.coding {
            add(&mut answer, "content-encoding", c.token())?;
        }
        match range.map(|r| r.within(chosen.len)) {
            None => (200, 0, chosen.len),
            Some(None) => {
                let mut f = refuse(416, "static: range");
                f.fields
                    .push(("content-range", format!("bytes */{}", chosen.len)));
                return Err(f);
            }
            Some(Some(ByteRange { start, end })) => {
                let whole = chosen.len;
                add(
                    &mut answer,
                    "content-range",
                    &format!("bytes {start}-{end}/{whole}"),
                )?;
                (206, start, end - start + 1)
            }
        }
    };
    answer
        .set_status(status)
        .map_err(|_| refuse(500, "static"))?;
    if status != 304 {
        add(&mut answer, "content-length", &len.to_string())?;
    }
    exchange
        .settings
        .answer
        .apply(&mut answer, &exchange.answer_context())
        .map_err(|_| refuse(500, "static"))?;
    client.set_server_keepalive(if keep { exchange.keepalive } else { None });
    client
        .write_response_header(Box::new(answer))
        .await
        .map_err(|e| Failure::client(&e))?;
    if !head_only && status != 304 {
        send_file(client, &chosen.path, start, len).await?;
    }
    client.finish_body().await.map_err(|e| Failure::client(&e))
}

/// The best precompressed sibling the client accepts (`.br`, then `.zst`, then `.gz`),
/// if one exists under the root.
async fn choose_coding(
    root: &Path,
    file: &Path,
    head: &pingora_http::RequestHeader,
) -> Option<Chosen> {
    for coding in fields::accepted(head) {
        let mut name = file.as_os_str().to_owned();
        name.push(coding.suffix());
        let Some(sibling) = path::inside(root, Path::new(&name)).await else {
            continue;
        };
        if let Ok(meta) = tokio::fs::metadata(&sibling).await {
            if meta.is_file() {
                return Some(Chosen {
                    path: sibling,
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(UNIX_EPOCH),
                    coding: Some(coding),
                });
            }
        }
    }
    None
}

/// Writes `len` bytes of `path` from `start`, a piece at a time.
async fn send_file<C: ClientSide>(
    client: &mut C,
    path: &Path,
    start: u64,
    len: u64,
) -> Result<(), Failure> {
    let gone = |e: std::io::Error| {
        let mut f = Failure::refused(0, "static: read");
        f.error = Some(pingora_error::Error::because(
            pingora_error::ErrorType::ReadError,
            "reading a static file",
            e,
        ));
        f
    };
    let mut file = tokio::fs::File::open(path).await.map_err(gone)?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(gone)?;
    }
    let mut left = len;
    let mut buf = vec![0u8; PIECE.min(len as usize).max(1)];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want]).await.map_err(gone)?;
        if n == 0 {
            // The file shrank under us: the head promised more; end the connection.
            return Err(Failure::refused(0, "static: file shrank"));
        }
        client
            .write_body(&buf[..n])
            .await
            .map_err(|e| Failure::client(&e))?;
        left -= n as u64;
    }
    Ok(())
}

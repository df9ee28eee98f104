//! The request and answer fields of a static answer: the validators (`ETag`,
//! `If-None-Match`, `If-Modified-Since`), one byte range, the precompressed codings a
//! client accepts, and the content type from the extension.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora_http::RequestHeader;

/// A precompressed sibling's coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Brotli,
    Zstd,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub(super) fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The sibling's suffix.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }
}

/// The codings `Accept-Encoding` allows (q above 0), best first.
pub(super) fn accepted(head: &RequestHeader) -> Vec<Coding> {
    let Some(value) = head
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    let allows = |token: &str| {
        value.split(',').any(|part| {
            let mut bits = part.split(';');
            let name = bits.next().unwrap_or("").trim();
            let refused = bits.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(token) && !refused
        })
    };
    [Coding::Brotli, Coding::Zstd, Coding::Gzip]
        .into_iter()
        .filter(|c| allows(c.token()))
        .collect()
}

/// A strong validator from the size and time of change (and the coding of a sibling).
pub(super) fn etag(len: u64, modified: SystemTime, coding: Option<Coding>) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match coding {
        Some(c) => format!("\"{len:x}-{nanos:x}-{}\"", c.token()),
        None => format!("\"{len:x}-{nanos:x}\""),
    }
}

/// Whether the client's copy is current: `If-None-Match` names `etag` (or `*`), or, without
/// it, `If-Modified-Since` is not before the file's time of change.
pub(super) fn not_modified(head: &RequestHeader, etag: &str, modified: SystemTime) -> bool {
    let field = |name| head.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(list) = field(http::header::IF_NONE_MATCH) {
        return list.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        });
    }
    let Some(since) =
        field(http::header::IF_MODIFIED_SINCE).and_then(|s| httpdate::parse_http_date(s).ok())
    else {
        return false;
    };
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs(modified) <= secs(since)
}

/// `Range: bytes=...`, one range only (more, or a bad one, is ignored: the whole file is
/// sent), unless `If-Range` names another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RangeAsk {
    /// `a-b` or `a-`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Last(u64),
}

/// Bytes `start` to `end`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteRange {
    pub(super) start: u64,
    pub(super) end: u64,
}

impl RangeAsk {
    /// The bytes of a file of `len` this asks for; `None` when none can be given (416).
    pub(super) fn within(self, len: u64) -> Option<ByteRange> {
        match self {
            RangeAsk::From(start, _) if start >= len => None,
            RangeAsk::From(start, end) => Some(ByteRange {
                start,
                end: end.map_or(len - 1, |e| e.min(len - 1)),
            }),
            RangeAsk::Last(0) => None,
            RangeAsk::Last(_) if len == 0 => None,
            RangeAsk::Last(n) => Some(ByteRange {
                start: len.saturating_sub(n),
                end: len - 1,
            }),
        }
    }
}

/// The range asked for, if it is one to honor.
pub(super) fn range(head: &RequestHeader, etag: &str) -> Option<RangeAsk> {
    let field = |name| head.headers.get(name).and_then(|v| v.to_str().ok());
    let spec = field(http::header::RANGE)?.trim().strip_prefix("bytes=")?;
    if field(http::header::IF_RANGE).is_some_and(|v| v.trim() != etag) {
        return None;
    }
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(RangeAsk::Last);
    }
    let start: u64 = a.parse().ok()?;
    let end: Option<u64> = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(RangeAsk::From(start, end))
}

/// Whether a file's name carries a content hash, so the bytes under that name never
/// change: a `.`-separated part between the stem and the extension of 8 to 64 hex
/// digits, with at least one digit and one letter (`app.3f2a1b9c4d5e.css` from Django's
/// `ManifestStaticFilesStorage`, `main.3f2a1b9c.js` from webpack's `[contenthash]`; not
/// `jquery.min.js`, not `v1.2.3`). Names hashed otherwise (Vite's `index-BXz3kqzv.js`) are
/// not recognised: a route of their own directory (`/assets`) with `cache_control` says it.
pub(super) fn is_hashed(relative: &Path) -> bool {
    let Some(name) = relative.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1].iter().any(|p| {
            (8..=64).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_hexdigit())
                && p.bytes().any(|b| b.is_ascii_digit())
                && p.bytes().any(|b| b.is_ascii_alphabetic())
        })
}

/// The `Content-Type` of a file, by its extension.
pub(super) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_and_bounded() {
        let at = |s: &str| {
            let mut h = RequestHeader::build("GET", b"/", None).expect("head");
            h.insert_header("range", s).expect("field");
            range(&h, "\"e\"")
        };
        assert_eq!(
            at("bytes=0-99").and_then(|r| r.within(1000)),
            Some(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            at("bytes=990-").and_then(|r| r.within(1000)),
            Some(ByteRange {
                start: 990,
                end: 999
            })
        );
        assert_eq!(
            at("bytes=-10").and_then(|r| r.within(1000)),
            Some(ByteRange {
                start: 990,
                end: 999
            })
        );
        assert_eq!(
            at("bytes=0-5000").and_then(|r| r.within(1000)),
            Some(ByteRange { start: 0, end: 999 })
        );
        assert_eq!(at("bytes=1000-").map(|r| r.within(1000)), Some(None));
        assert_eq!(at("bytes=5-1"), None);
        assert_eq!(at("bytes=0-1,5-6"), None);
        assert_eq!(at("items=0-1"), None);
    }

    #[test]
    fn hashed_names_are_recognised() {
        for name in [
            "css/app.3f2a1b9c4d5e.css",
            "main.3f2a1b9c.js",
            "app.3F2A1B9C.min.js",
            "admin/js/core.0123456789abcdef0123.js.gz",
        ] {
            assert!(is_hashed(Path::new(name)), "{name}");
        }
        for name in [
            "app.css",
            "jquery.min.js",
            "v1.2.3.tar",
            "logo.deadbeef",
            "x.12345678.css",
            "x.abcdefab.css",
            "index-BXz3kqzv.js",
            "3f2a1b9c.css",
        ] {
            assert!(!is_hashed(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn codings_follow_accept_encoding() {
        let mut h = RequestHeader::build("GET", b"/", None).expect("head");
        h.insert_header("accept-encoding", "gzip, br;q=0")
            .expect("field");
        assert_eq!(accepted(&h), vec![Coding::Gzip]);
        h.insert_header("accept-encoding", "br, zstd, gzip")
            .expect("field");
        assert_eq!(
            accepted(&h),
            vec![Coding::Brotli, Coding::Zstd, Coding::Gzip]
        );
    }
}

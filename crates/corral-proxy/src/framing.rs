//! RFC 9112 framing and syntax checks that pingora's parser leaves to us, on the request's
//! raw head and parsed fields: the request line's exact shape, one valid `Host` (required
//! in HTTP/1.1), one `Content-Length` only, and a `Transfer-Encoding` whose codings end in
//! one `chunked`. What pingora already refuses (field syntax, bad chunk sizes) it refuses;
//! a target with spaces or control bytes it percent-encodes before corral sees the head,
//! so such a request reaches the worker as one well-formed request line.
//! `tests/smuggling.rs` holds the whole set case by case.

use http::header::TRANSFER_ENCODING;
use http::Version;
use pingora_http::RequestHeader;

use crate::head_facts::HeadFacts;
use crate::limits::Refusal;

const fn bad(reason: &'static str) -> Option<Refusal> {
    Some(Refusal {
        status: 400,
        reason,
    })
}

/// Checks the request whose raw head is `raw`; `None` when it may pass. `facts` are `head`'s.
pub fn check(raw: &[u8], head: &RequestHeader, facts: &HeadFacts<'_>) -> Option<Refusal> {
    let raw = skip_empty_lines(raw);
    let line = lines(raw).next().unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !request_line_ok(line) {
        return bad("malformed request line");
    }
    if let Some(refusal) = check_target(head) {
        return Some(refusal);
    }
    check_fields(head, facts)
}

/// The lines of `raw`, split at each `\n` as `raw.split(|&b| b == b'\n')` splits them, with
/// the line ends found by `memchr` (a word at a time): every request's head is split so.
pub fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(raw);
    std::iter::from_fn(move || {
        let left = rest?;
        match memchr::memchr(b'\n', left) {
            Some(end) => {
                rest = Some(&left[end + 1..]);
                Some(&left[..end])
            }
            None => {
                rest = None;
                Some(left)
            }
        }
    })
}

/// A raw head without the empty lines a client may send before its request line (RFC 9112
/// §2.2: a server ignores at least one): what follows is the request.
pub fn skip_empty_lines(mut raw: &[u8]) -> &[u8] {
    loop {
        match raw {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => raw = rest,
            _ => return raw,
        }
    }
}

/// The request target's form (RFC 9112 §3.2): origin form (`/path?query`) or absolute form
/// (`http://host/path`), and the asterisk form only for `OPTIONS`. The authority form is
/// `CONNECT`'s alone, which is refused anyway; anything else (`foo/bar`) is no target.
pub fn check_target(head: &RequestHeader) -> Option<Refusal> {
    let target = head.raw_path();
    if head.method == http::Method::CONNECT {
        // Refused as a method (405) by `admit`.
        return None;
    }
    if target == b"*" {
        return if head.method == http::Method::OPTIONS {
            None
        } else {
            bad("asterisk target without OPTIONS")
        };
    }
    // pingora keeps the target as sent (`raw_path`); its `uri` holds only a path.
    let fits = target.first() == Some(&b'/')
        || {
            // Absolute form: `http://` or `https://` with a host.
            http::Uri::try_from(target).is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
                && uri.authority().is_some_and(|a| !a.host().is_empty())
        })
        };
    if fits {
        None
    } else {
        bad("request target not in origin or absolute form")
    }
}

/// The checks on the parsed fields alone: `Host`, `Content-Length` and `Transfer-Encoding`
/// (all a request without HTTP/1.x text, an HTTP/2 stream, can be checked on).
pub fn check_fields(head: &RequestHeader, facts: &HeadFacts<'_>) -> Option<Refusal> {
    match (facts.hosts, facts.host) {
        (2.., _) => return bad("more than one Host"),
        (_, Some(host)) if !authority_ok(host.as_bytes()) => return bad("malformed Host"),
        (_, None) if head.version == Version::HTTP_11 => {
            return bad("HTTP/1.1 request without Host")
        }
        _ => {}
    }
    if facts.content_lengths > 1 {
        return bad("more than one Content-Length");
    }
    if !facts.transfer_encoding {
        return None;
    }
    let mut codings = head
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .peekable();
    if codings.peek().is_some() {
        if head.version != Version::HTTP_11 {
            return bad("Transfer-Encoding in an HTTP/1.0 request");
        }
        let codings: Vec<&[u8]> = codings.collect();
        let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
        let times = codings.iter().filter(|c| chunked(c)).count();
        if !codings.last().is_some_and(|c| chunked(c)) || times > 1 {
            return Some(Refusal {
                status: 501,
                reason: "Transfer-Encoding does not end in one chunked",
            });
        }
    }
    None
}

/// `method SP request-target SP HTTP/1.x`, single spaces, a target of visible ASCII bytes
/// (no control byte, space or raw byte over 0x7e: RFC 3986 has them percent-encoded).
pub(crate) fn request_line_ok(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && !target.is_empty()
        && target.iter().all(|&b| b > 0x20 && b < 0x7f)
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

/// A `Host` value: `host[:port]` of the characters a URI authority may hold (RFC 3986);
/// empty is allowed (RFC 9110 7.2).
fn authority_ok(host: &[u8]) -> bool {
    host.iter().all(|&b| AUTHORITY[usize::from(b)])
}

/// The bytes a `Host` value may hold, as a table: one load a byte, where searching the
/// punctuation list cost a pass over it for each `.` and `:` of every request's `Host`.
const AUTHORITY: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"-._~!$&'()*+,;=:%[]";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_byte_table_is_the_authority_characters() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%[]".contains(&b);
            assert_eq!(authority_ok(&[b]), rfc, "byte {b:#04x}");
        }
        assert!(authority_ok(b"127.0.0.1:8080") && authority_ok(b"[::1]:80") && authority_ok(b""));
        assert!(!authority_ok(b"a b") && !authority_ok(b"a/b") && !authority_ok(b"a\x00"));
    }

    fn status(raw: &str) -> Option<u16> {
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut storage);
        let _ = parsed.parse(raw.as_bytes());
        let mut head = RequestHeader::build(
            parsed.method.unwrap_or("GET"),
            parsed.path.unwrap_or("/").as_bytes(),
            None,
        )
        .expect("head");
        if parsed.version == Some(0) {
            head.set_version(Version::HTTP_10);
        }
        for h in parsed.headers.iter().filter(|h| !h.name.is_empty()) {
            head.append_header(h.name.to_string(), h.value)
                .expect("field");
        }
        check(raw.as_bytes(), &head, &HeadFacts::of(&head)).map(|r| r.status)
    }

    #[test]
    fn well_formed_requests_pass() {
        assert_eq!(
            status("GET /a?b=c HTTP/1.1\r\nHost: example.org:8080\r\n\r\n"),
            None
        );
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), None);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            None
        );
    }

    #[test]
    fn each_kind_of_bad_framing_is_refused() {
        for (raw, expected) in [
            ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ] {
            assert_eq!(status(raw), Some(expected), "{raw:?}");
        }
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    fn target_status(method: &str, target: &[u8]) -> Option<u16> {
        let head = RequestHeader::build(method, target, None).expect("head");
        check_target(&head).map(|r| r.status)
    }

    #[test]
    fn targets_by_form() {
        assert_eq!(target_status("GET", b"/a?b"), None);
        assert_eq!(target_status("GET", b"http://t/"), None);
        assert_eq!(target_status("GET", b"https://t:8443/x?y"), None);
        assert_eq!(target_status("OPTIONS", b"*"), None);
        assert_eq!(target_status("GET", b"*"), Some(400));
        assert_eq!(target_status("GET", b"example.com:443"), Some(400));
        assert_eq!(target_status("GET", b"foo/bar"), Some(400));
        assert_eq!(target_status("GET", b"ftp://t/"), Some(400));
    }

    /// A head built from the request line and fields as pingora would parse them.
    fn head_of(raw: &[u8]) -> Option<RequestHeader> {
        let mut storage = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut storage);
        parsed.parse(raw).ok()?;
        let mut head = RequestHeader::build(parsed.method?, parsed.path?.as_bytes(), None).ok()?;
        for h in parsed.headers.iter() {
            head.append_header(h.name.to_string(), h.value).ok()?;
        }
        Some(head)
    }

    proptest::proptest! {
        /// Any request bytes: no panic, and the documented result: a target that is not
        /// origin, absolute or (with OPTIONS) asterisk form, or holds a byte over 0x7e,
        /// is refused.
        #[test]
        fn any_request_is_checked_without_panic(
            method in proptest::sample::select(vec!["GET", "OPTIONS", "POST", "CONNECT"]),
            target in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            prefix in proptest::sample::select(vec!["/", "*", "http://h/", "", "h:1", "\r\n"]),
            fields in "(X-[a-z]{1,3}: [ -~]{0,5}\r\n){0,3}",
        ) {
            let mut raw = format!("{method} {prefix}").into_bytes();
            raw.extend_from_slice(&target);
            raw.extend_from_slice(format!(" HTTP/1.1\r\nHost: h\r\n{fields}\r\n").as_bytes());
            let _ = skip_empty_lines(&raw);
            if let Some(head) = head_of(&raw) {
                let verdict = check(&raw, &head, &HeadFacts::of(&head));
                let t = head.raw_path();
                let high = t.iter().any(|&b| b > 0x7e);
                if high || (t == b"*" && method != "OPTIONS") {
                    proptest::prop_assert!(verdict.is_some() || method == "CONNECT");
                }
                if verdict.is_none() && method != "CONNECT" {
                    proptest::prop_assert!(t.starts_with(b"/") || t == b"*" || t.starts_with(b"http://"));
                }
            }
        }
    }
}

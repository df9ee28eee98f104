//! Request limits checked before a request reaches a worker (Gunicorn's defaults), and
//! framing that could smuggle a second request past a worker.

use corral_config::Limits;
use pingora_http::RequestHeader;

use crate::head_facts::HeadFacts;

/// Why a request is refused, as the status to answer and a reason for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status to answer.
    pub status: u16,
    /// A short reason for the log.
    pub reason: &'static str,
}

/// Checks the request head against `limits`; `None` when it may pass. `facts` are `head`'s.
pub fn check(head: &RequestHeader, facts: &HeadFacts<'_>, limits: &Limits) -> Option<Refusal> {
    // "METHOD SP target SP HTTP/1.1"
    // The target as the client sent it: no allocation on the request path.
    let line = head.method.as_str().len() + head.raw_path().len() + 10;
    if line > limits.request_line {
        return Some(Refusal {
            status: 414,
            reason: "request line too long",
        });
    }
    if head.headers.len() > limits.header_count {
        return Some(Refusal {
            status: 431,
            reason: "too many header fields",
        });
    }
    if facts.longest_field > limits.header_size {
        return Some(Refusal {
            status: 431,
            reason: "header field too large",
        });
    }
    let first = facts.content_length;
    if facts.transfer_encoding && first.is_some() {
        return Some(Refusal {
            status: 400,
            reason: "both Content-Length and Transfer-Encoding",
        });
    }
    if let Some(first) = first {
        if facts.content_lengths_differ {
            return Some(Refusal {
                status: 400,
                reason: "conflicting Content-Length",
            });
        }
        match content_length(first.as_bytes()) {
            None => {
                return Some(Refusal {
                    status: 400,
                    reason: "bad Content-Length",
                })
            }
            Some(n) if n > limits.body_size => {
                return Some(Refusal {
                    status: 413,
                    reason: "body too large",
                })
            }
            Some(_) => {}
        }
    }
    None
}

/// A `Content-Length` value: digits only (RFC 9110 8.6: no sign, no space), leading zeros
/// allowed; `None` when malformed or past `u64`.
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The field lines of a raw head against `header_size`, each counted whole as sent (name,
/// colon, spaces and value, without its line end), as Gunicorn and nginx count them.
pub fn check_raw_lines(raw: &[u8], limits: &Limits) -> Option<Refusal> {
    // No line is longer than the head: the usual head is not split at all.
    if raw.len() <= limits.header_size {
        return None;
    }
    let raw = crate::framing::skip_empty_lines(raw);
    let too_long = crate::framing::lines(raw)
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .any(|line| line.len() > limits.header_size);
    too_long.then_some(Refusal {
        status: 431,
        reason: "header field too large",
    })
}

/// Whether a raw request head has a `Content-Length` field. pingora drops that field when
/// `Transfer-Encoding` is also present (letting TE win); we refuse such requests instead, so
/// callers check the raw bytes whenever the parsed head has `Transfer-Encoding`.
pub fn raw_has_content_length(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length:";
    crate::framing::lines(raw).any(|line| {
        let line = line.strip_prefix(b" ").unwrap_or(line);
        line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> Limits {
        Limits {
            request_line: 100,
            header_count: 3,
            header_size: 50,
            body_size: 1000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(60),
        }
    }

    fn head(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut h = RequestHeader::build("GET", path.as_bytes(), None).expect("head");
        for (k, v) in headers {
            h.append_header(k.to_string(), *v).expect("header");
        }
        h
    }

    fn status(h: &RequestHeader) -> Option<u16> {
        check(h, &HeadFacts::of(h), &limits()).map(|r| r.status)
    }

    #[test]
    fn limits_map_to_gunicorn_statuses() {
        assert_eq!(status(&head("/", &[("host", "a")])), None);
        assert_eq!(
            status(&head(&format!("/{}", "a".repeat(100)), &[])),
            Some(414)
        );
        assert_eq!(
            status(&head(
                "/",
                &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
            )),
            Some(431)
        );
        assert_eq!(status(&head("/", &[("x", &"v".repeat(60))])), Some(431));
        assert_eq!(status(&head("/", &[("content-length", "1001")])), Some(413));
        assert_eq!(status(&head("/", &[("content-length", "10")])), None);
    }

    #[test]
    fn raw_content_length_is_found_in_any_case() {
        assert!(raw_has_content_length(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(raw_has_content_length(
            b"POST / HTTP/1.1\r\ncontent-LENGTH:5\r\n\r\n"
        ));
        assert!(!raw_has_content_length(
            b"POST / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n"
        ));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert_eq!(
            status(&head(
                "/",
                &[("content-length", "5"), ("transfer-encoding", "chunked")]
            )),
            Some(400)
        );
        assert_eq!(
            status(&head(
                "/",
                &[("content-length", "5"), ("content-length", "6")]
            )),
            Some(400)
        );
        assert_eq!(status(&head("/", &[("content-length", "five")])), Some(400));
        assert_eq!(status(&head("/", &[("content-length", "+5")])), Some(400));
        assert_eq!(status(&head("/", &[("content-length", "")])), Some(400));
    }

    #[test]
    fn content_length_is_digits_only_with_any_leading_zeros() {
        assert_eq!(content_length(b"5"), Some(5));
        assert_eq!(
            content_length(&[b"0".repeat(5000), b"5".to_vec()].concat()),
            Some(5)
        );
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(content_length(b"18446744073709551616"), None);
        for bad in [&b"+5"[..], b"-5", b" 5", b"5 ", b"0x5", b""] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// A field line is refused exactly when, counted whole, it is over `header_size`.
        #[test]
        fn field_lines_count_whole(lens in proptest::collection::vec(0usize..80, 0..5), spaces in 0usize..4) {
            let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
            let mut longest = 0;
            for (i, len) in lens.iter().enumerate() {
                let line = format!("X-{i}:{}{}", " ".repeat(spaces), "v".repeat(*len));
                longest = longest.max(line.len());
                raw.extend_from_slice(line.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            let refused = check_raw_lines(&raw, &limits()).is_some();
            proptest::prop_assert_eq!(refused, longest > limits().header_size);
        }

        #[test]
        fn any_content_length_text_never_panics(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30)) {
            if let Some(n) = content_length(&text) {
                proptest::prop_assert!(text.iter().all(u8::is_ascii_digit));
                let digits = std::str::from_utf8(&text).expect("digits");
                proptest::prop_assert_eq!(digits.trim_start_matches('0').parse::<u64>().unwrap_or(0), n);
            }
        }
    }
}

//! Which answers are compressed: what an answer's head says (gathered field by field, so
//! the proxy's byte path and header-map path ask the same question) and the rule.

/// Longer media types than this are not compressed (none registered comes close); it keeps
/// [`AnswerFacts`] off the heap.
const MAX_MEDIA_TYPE: usize = 96;

/// What decides whether an answer is compressed, read from its fields. Held on the stack:
/// gathering it costs the request path no allocation.
#[derive(Debug, Clone)]
pub struct AnswerFacts {
    /// The media type, lowercase, without parameters; `media_len` 0 when the answer has none.
    media_type: [u8; MAX_MEDIA_TYPE],
    media_len: usize,
    /// The worker encoded the body itself (any `Content-Encoding` but `identity`).
    encoded: bool,
    /// `Cache-Control: no-transform` (RFC 9111 5.2.2.6): no proxy may change the body.
    no_transform: bool,
    /// The answer is a range (`Content-Range`): compressing it would change what it covers.
    range: bool,
    /// The declared length, when there is one.
    length: Option<u64>,
}

impl Default for AnswerFacts {
    fn default() -> Self {
        AnswerFacts {
            media_type: [0; MAX_MEDIA_TYPE],
            media_len: 0,
            encoded: false,
            no_transform: false,
            range: false,
            length: None,
        }
    }
}

impl AnswerFacts {
    /// Notes one answer field (any case of name).
    pub fn observe(&mut self, name: &[u8], value: &[u8]) {
        // Every field that matters starts with a C: most fields cost one comparison.
        if !matches!(name.first(), Some(b'c' | b'C')) {
            return;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            let media = value.split(|&b| b == b';').next().unwrap_or_default();
            let media = media.trim_ascii();
            // Too long or not text: treated as no type, so never compressed.
            self.media_len = 0;
            if media.len() <= MAX_MEDIA_TYPE && media.is_ascii() {
                self.media_type[..media.len()].copy_from_slice(media);
                self.media_type[..media.len()].make_ascii_lowercase();
                self.media_len = media.len();
            }
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            let value = value.trim_ascii();
            self.encoded |= !value.is_empty() && !value.eq_ignore_ascii_case(b"identity");
        } else if name.eq_ignore_ascii_case(b"cache-control") {
            self.no_transform |= value
                .split(|&b| b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"));
        } else if name.eq_ignore_ascii_case(b"content-range") {
            self.range = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            self.length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
    }

    /// Whether the answer may be compressed at all, whatever corral's settings: it has a
    /// body of its own (not 1xx, 204, 304 or a 206 range), is not encoded already and does
    /// not forbid it.
    pub(crate) fn transformable(&self, status: u16) -> bool {
        status >= 200
            && !matches!(status, 204 | 206 | 304)
            && !self.encoded
            && !self.no_transform
            && !self.range
    }

    pub(crate) fn media_type(&self) -> &str {
        std::str::from_utf8(&self.media_type[..self.media_len]).unwrap_or_default()
    }

    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }
}

/// Whether `media_type` (lowercase, no parameters) matches `pattern`: `type/subtype`,
/// `type/*`, `type/*+suffix` or `*/*`.
pub(crate) fn type_matches(pattern: &str, media_type: &str) -> bool {
    let (Some((p_kind, p_sub)), Some((kind, sub))) =
        (pattern.split_once('/'), media_type.split_once('/'))
    else {
        return false;
    };
    if p_kind != "*" && p_kind != kind {
        return false;
    }
    match p_sub.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => sub.len() > suffix.len() && sub.ends_with(suffix),
        None => p_sub == sub,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(fields: &[(&str, &str)]) -> AnswerFacts {
        let mut facts = AnswerFacts::default();
        for (name, value) in fields {
            facts.observe(name.as_bytes(), value.as_bytes());
        }
        facts
    }

    #[test]
    fn fields_are_read_in_any_case() {
        let f = facts(&[
            ("Content-Type", "Application/JSON; charset=utf-8"),
            ("content-length", " 2048 "),
        ]);
        assert_eq!(
            (f.media_type(), f.length()),
            ("application/json", Some(2048))
        );
        assert!(f.transformable(200));
        assert!(f.transformable(404));
    }

    #[test]
    fn encoded_ranged_and_no_transform_answers_are_left_alone() {
        assert!(!facts(&[("Content-Encoding", "gzip")]).transformable(200));
        assert!(facts(&[("Content-Encoding", "identity")]).transformable(200));
        assert!(!facts(&[("Cache-Control", "public, No-Transform")]).transformable(200));
        assert!(facts(&[("Cache-Control", "no-cache")]).transformable(200));
        assert!(!facts(&[("Content-Range", "bytes 0-9/100")]).transformable(200));
        for status in [101, 204, 206, 304] {
            assert!(!facts(&[]).transformable(status), "{status}");
        }
    }

    #[test]
    fn patterns_match_types_wildcards_and_suffixes() {
        assert!(type_matches("text/*", "text/html"));
        assert!(type_matches(
            "application/*+json",
            "application/problem+json"
        ));
        assert!(!type_matches("application/*+json", "application/json"));
        assert!(!type_matches("application/*+json", "application/+json"));
        assert!(type_matches("application/json", "application/json"));
        assert!(!type_matches("application/json", "application/jsonx"));
        assert!(type_matches("*/*", "image/png"));
        assert!(!type_matches("text/*", ""));
    }
}

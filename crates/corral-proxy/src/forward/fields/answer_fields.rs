//! The answer side of the field rules: what a worker's answer loses on its way to the
//! client (connection fields, `Date`, what `[headers] remove` names) and gains (`set`, the
//! preset, the request's rate limit state, the request id).

use corral_config::{HeaderPreset, Headers};
use http::header::{HeaderName, HeaderValue, CONNECTION};
use pingora_http::ResponseHeader;

use super::named_in;

/// What becomes of one field of a worker's answer on its way to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::forward) enum AnswerField {
    /// Passed on as the worker wrote it.
    Keep,
    /// Left out: it describes the worker's connection, corral writes its own (`Connection`,
    /// `Date`, `X-Request-Id`, the `[headers] set` ones), or `[headers] remove` names it.
    Drop,
    /// It frames the body or the connection (`Transfer-Encoding`, `Upgrade`): pingora's
    /// session must handle the answer.
    Framing,
}

/// The fields of `preset = "strict"`: name, value, and whether only for https clients.
const STRICT: [(&str, &str, bool); 4] = [
    (
        "Strict-Transport-Security",
        "max-age=31536000; includeSubDomains",
        true,
    ),
    ("X-Content-Type-Options", "nosniff", false),
    ("X-Frame-Options", "DENY", false),
    ("Referrer-Policy", "strict-origin-when-cross-origin", false),
];

/// Fields of an answer that corral always leaves out.
const ANSWER_DROPPED: [&str; 7] = [
    "connection",
    "keep-alive",
    "date",
    "te",
    "trailer",
    "proxy-connection",
    "x-request-id",
];

/// A field the `[headers]` preset adds where the worker sent none.
#[derive(Debug, Clone)]
struct PresetField {
    name: HeaderName,
    /// The name as written on the wire.
    display: &'static str,
    value: HeaderValue,
    /// HSTS means nothing over plain HTTP (RFC 6797 7.2): only for https clients.
    https_only: bool,
}

/// The `[headers]` rules, made once per config: what every answer loses and gains.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerRules {
    /// Lower-case names the answer loses: `remove`, and the `set` names (replaced).
    removed: Vec<String>,
    /// Name as the config wrote it, and value.
    set: Vec<(String, HeaderValue)>,
    preset: Vec<PresetField>,
}

impl AnswerRules {
    /// The rules of a config's `[headers]` table (validated there).
    pub(crate) fn new(headers: &Headers) -> AnswerRules {
        let set: Vec<(String, HeaderValue)> = headers
            .set
            .iter()
            .filter(|(n, _)| HeaderName::from_bytes(n.as_bytes()).is_ok())
            .filter_map(|(n, v)| Some((n.clone(), HeaderValue::from_str(v).ok()?)))
            .collect();
        let mut removed: Vec<String> = headers
            .remove
            .iter()
            .chain(set.iter().map(|(n, _)| n))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        removed.sort_unstable();
        removed.dedup();
        let preset = match headers.preset {
            HeaderPreset::None => Vec::new(),
            HeaderPreset::Strict => STRICT
                .iter()
                .map(|&(display, value, https_only)| PresetField {
                    name: HeaderName::from_bytes(display.as_bytes())
                        .unwrap_or(HeaderName::from_static("x-preset")),
                    display,
                    value: HeaderValue::from_static(value),
                    https_only,
                })
                .filter(|p| !removed.iter().any(|r| r == p.name.as_str()))
                .collect(),
        };
        AnswerRules {
            removed,
            set,
            preset,
        }
    }

    /// The rule for the answer field `name` (the names `Connection` lists come on top).
    pub(in crate::forward) fn field(&self, name: &[u8]) -> AnswerField {
        let is = |n: &str| n.as_bytes().eq_ignore_ascii_case(name);
        if ANSWER_DROPPED.iter().any(|n| is(n)) || self.removed.iter().any(|n| is(n)) {
            AnswerField::Drop
        } else if is("transfer-encoding") || is("upgrade") {
            AnswerField::Framing
        } else {
            AnswerField::Keep
        }
    }

    /// Which preset field `name` is, if any: the worker's own then stands.
    pub(in crate::forward) fn preset_index(&self, name: &[u8]) -> Option<usize> {
        self.preset
            .iter()
            .position(|p| p.name.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The fields corral adds to an answer, in order: the `set` ones, the preset ones the
    /// worker did not send (`sent` has bit i for preset field i), the request's own (the
    /// rate limit state) and the request id.
    pub(in crate::forward) fn added<'a>(
        &'a self,
        sent: u32,
        ctx: &'a AnswerContext<'a>,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let set = self.set.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        let https = ctx.https;
        let preset = self
            .preset
            .iter()
            .enumerate()
            .filter(move |(i, p)| sent & (1 << i) == 0 && (https || !p.https_only))
            .map(|(_, p)| (p.display, p.value.as_bytes()));
        let extra = ctx.extra.iter().map(|(n, v)| (*n, v.as_bytes()));
        let id =
            (!ctx.request_id.is_empty()).then_some(("X-Request-Id", ctx.request_id.as_bytes()));
        set.chain(preset).chain(extra).chain(id)
    }

    /// Applies the rules to a header for pingora's session (which writes its own `Date`
    /// and `Connection`). A 101 keeps its handshake fields; it still loses what `remove`
    /// names and gets the request id.
    pub(in crate::forward) fn apply(
        &self,
        answer: &mut ResponseHeader,
        ctx: &AnswerContext,
    ) -> pingora_error::Result<()> {
        if answer.status != 101 {
            let connection: Vec<HeaderValue> =
                answer.headers.get_all(CONNECTION).iter().cloned().collect();
            for name in connection.iter().flat_map(|value| named_in(Some(value))) {
                answer.remove_header(name);
            }
            for name in ANSWER_DROPPED {
                answer.remove_header(name);
            }
        }
        for name in &self.removed {
            answer.remove_header(name.as_str());
        }
        let mut sent = 0;
        for (i, p) in self.preset.iter().enumerate() {
            if answer.headers.contains_key(&p.name) {
                sent |= 1 << i;
            }
        }
        for (name, value) in self.added(sent, ctx) {
            answer.insert_header(name.to_string(), value)?;
        }
        Ok(())
    }
}

/// What one request adds to its answer besides the config's fields.
pub(in crate::forward) struct AnswerContext<'a> {
    /// The client's scheme is https (HSTS applies).
    pub(in crate::forward) https: bool,
    pub(in crate::forward) request_id: &'a str,
    /// Fields of this request (the rate limit state).
    pub(in crate::forward) extra: &'a [(&'static str, String)],
}

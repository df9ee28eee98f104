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

/// The length class of a name of `len` bytes: bit n for n bytes, bit 63 for 63 or more. A
/// field whose class no rule's name has needs no comparison, the usual field's case.
const fn length_class(len: usize) -> u64 {
    1 << if len < 63 { len } else { 63 }
}

/// The rule for the answer field `name` that holds whatever the config: [`ANSWER_DROPPED`]
/// and the fields that frame the body or connection. By length first, then the first byte:
/// comparing every field with each name cost some 170 instructions a field.
fn fixed_rule(name: &[u8]) -> Option<AnswerField> {
    // Every arm's names are two bytes or more, and start with a letter.
    let is = |n: &[u8]| (name[0] | 0x20) == n[0] && name.eq_ignore_ascii_case(n);
    let drop = |yes: bool| yes.then_some(AnswerField::Drop);
    match name.len() {
        2 => drop(is(b"te")),
        4 => drop(is(b"date")),
        7 if is(b"upgrade") => Some(AnswerField::Framing),
        7 => drop(is(b"trailer")),
        10 => drop(is(b"connection") || is(b"keep-alive")),
        12 => drop(is(b"x-request-id")),
        16 => drop(is(b"proxy-connection")),
        17 if is(b"transfer-encoding") => Some(AnswerField::Framing),
        _ => None,
    }
}

/// The `[headers]` rules, made once per config: what every answer loses and gains.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerRules {
    /// Lower-case names the answer loses: `remove`, and the `set` names (replaced).
    removed: Vec<String>,
    /// The length classes of the names of `removed` and of the preset.
    classes: u64,
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
        let classes = removed
            .iter()
            .map(|n| n.as_str())
            .chain(preset.iter().map(|p| p.name.as_str()))
            .fold(0, |m, n| m | length_class(n.len()));
        AnswerRules {
            removed,
            classes,
            set,
            preset,
        }
    }

    /// The rule for the answer field `name` (the names `Connection` lists come on top).
    pub(in crate::forward) fn field(&self, name: &[u8]) -> AnswerField {
        let fixed = fixed_rule(name);
        if fixed == Some(AnswerField::Drop)
            || (self.classes & length_class(name.len()) != 0
                && self
                    .removed
                    .iter()
                    .any(|n| n.as_bytes().eq_ignore_ascii_case(name)))
        {
            return AnswerField::Drop;
        }
        fixed.unwrap_or(AnswerField::Keep)
    }

    /// Which preset field `name` is, if any: the worker's own then stands.
    pub(in crate::forward) fn preset_index(&self, name: &[u8]) -> Option<usize> {
        if self.preset.is_empty() || self.classes & length_class(name.len()) == 0 {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `field` and `preset_index` skip the comparisons for a name whose length no rule's name
    /// has: the verdicts must be those of comparing with every name.
    #[test]
    fn answer_field_verdicts_skip_no_name_they_should_catch() {
        let long = "x-a-name-longer-than-sixty-three-bytes-for-the-last-length-class-of-all";
        let other_long = "x-another-name-longer-than-sixty-three-bytes-in-the-same-last-class";
        let rules = AnswerRules::new(&Headers {
            preset: HeaderPreset::Strict,
            set: vec![("X-Set".into(), "1".into())],
            remove: vec!["Server".into(), long.into()],
        });
        let reference = |name: &str| {
            let is = |n: &str| n.eq_ignore_ascii_case(name);
            if ANSWER_DROPPED.iter().any(|n| is(n))
                || ["server", "x-set", long].iter().any(|n| is(n))
            {
                AnswerField::Drop
            } else if is("transfer-encoding") || is("upgrade") {
                AnswerField::Framing
            } else {
                AnswerField::Keep
            }
        };
        let names = ANSWER_DROPPED.into_iter().chain([
            "Content-Type",
            "X-Request-Id",
            "x-request-ie",
            "Date",
            "Dale",
            "TE",
            "Upgrade",
            "Transfer-Encoding",
            "Server",
            "Servet",
            "X-Set",
            "X-Frame-Options",
            "X-Frame-Optionz",
            "Strict-Transport-Security",
            long,
            other_long,
            "",
            "x",
            "Keep-Alive",
            "TRAILER",
            "Proxy-Connection",
            "1e",
            "@pgrade",
        ]);
        for name in names {
            assert_eq!(
                rules.field(name.as_bytes()),
                reference(name),
                "field({name:?})"
            );
            let preset = rules
                .preset
                .iter()
                .position(|p| p.name.as_str().eq_ignore_ascii_case(name));
            assert_eq!(
                rules.preset_index(name.as_bytes()),
                preset,
                "preset_index({name:?})"
            );
        }
        let plain = AnswerRules::default();
        assert_eq!(plain.field(b"Date"), AnswerField::Drop);
        assert_eq!(plain.field(b"upgrade"), AnswerField::Framing);
        assert_eq!(plain.field(b"Content-Type"), AnswerField::Keep);
    }
}

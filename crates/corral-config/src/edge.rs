//! Lowering the edge settings: `server.trusted_proxies`, `server.forward_fields` and the
//! `[headers]` table.

use crate::choices::Choices;
use crate::cidr::Cidr;
use crate::model::{ForwardedField, HeaderPreset, Headers};
use crate::reader::{as_string, Reader, Table};

/// Response fields removed when `[headers] remove` is not given: they tell versions.
pub const DEFAULT_REMOVED: [&str; 2] = ["Server", "X-Powered-By"];

/// `forward_fields = ["X-Forwarded-For", "X-Forwarded-Proto"]`: which of the six go to the
/// worker (all by default); names in any case, each once, errors at the entry.
pub(crate) fn forward_fields(r: &mut Reader, t: &mut Table) -> Vec<ForwardedField> {
    let choices = Choices {
        key: "forward_fields",
        expected: "an array of field names like [\"X-Forwarded-For\", \"X-Forwarded-Proto\"]",
        entry: "a field corral adds",
        all: &ForwardedField::ALL,
        name: ForwardedField::name,
        any_case: true,
    };
    choices
        .read(r, t)
        .map_or(ForwardedField::ALL.to_vec(), |(_, fields, _)| fields)
}

/// `trusted_proxies = ["10.0.0.0/8", "::1"]`: each entry checked, errors at the entry.
pub(crate) fn trusted_proxies(r: &mut Reader, t: &mut Table) -> Vec<Cidr> {
    let expected = "an array of address ranges like [\"10.0.0.0/8\", \"::1\"]";
    let Some((path, items)) = t.array(r, "trusted_proxies", expected) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        if let Some(text) = as_string(r, item, &item_path) {
            match text.parse::<Cidr>() {
                Ok(cidr) => out.push(cidr),
                Err(why) => r.error(
                    item.span(),
                    &item_path,
                    format!(
                        "{why}; write a range like \"10.0.0.0/8\" or an address like \"127.0.0.1\""
                    ),
                ),
            }
        }
    }
    out
}

/// `[headers]`: `preset`, `set` and `remove`, with names and values checked as HTTP allows.
pub(crate) fn headers(r: &mut Reader, top: &mut Table) -> Headers {
    let mut t = top.table(r, "headers");
    let preset = match t.choice(r, "preset", &["none", "strict"]) {
        Some("strict") => HeaderPreset::Strict,
        _ => HeaderPreset::None,
    };
    let set_path = t.key_path("set");
    let set = t.string_map(r, "set").unwrap_or_default();
    for (name, value) in &set {
        if !is_token(name) {
            r.error_nowhere(
                &format!("{set_path}.{name}"),
                "is not a valid header field name (letters, digits and !#$%&'*+-.^_`|~ only)",
            );
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            r.error_nowhere(
                &format!("{set_path}.{name}"),
                "the value has control characters, which a header field may not carry",
            );
        }
    }
    let remove_path = t.key_path("remove");
    let remove = match t.string_array(r, "remove") {
        Some(names) => {
            for (i, name) in names.iter().enumerate() {
                if !is_token(name) {
                    r.error_nowhere(
                        &format!("{remove_path}[{i}]"),
                        format!("{name:?} is not a valid header field name"),
                    );
                }
            }
            names
        }
        None => DEFAULT_REMOVED.iter().map(|n| n.to_string()).collect(),
    };
    t.finish(r);
    Headers {
        preset,
        set,
        remove,
    }
}

/// An HTTP token (RFC 9110 5.6.2), what a field name must be.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

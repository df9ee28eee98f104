//! A route's own edge settings, beside its match and target: `headers` (over `[headers]`),
//! `compression = false` (pool routes), and a static route's `cache_control` and
//! `cache_control_hashed`. Read once per config; the proxy resolves them into its route
//! table, never per request. [`render`] prints them back.

use crate::model::{HeaderPreset, RouteEdge, RouteHeaders, RouteTarget};
use crate::reader::{Reader, Table};

/// The edge keys of one `[[routes]]` table. `target` is the route's target when it was
/// valid: the keys that go with one kind of target are refused on the others.
pub(crate) fn edge(r: &mut Reader, t: &mut Table, target: Option<&RouteTarget>) -> RouteEdge {
    let headers = t.get("headers").is_some().then(|| headers(r, t));
    let compression = t.boolean(r, "compression");
    let cache_control = cache_control_value(r, t, "cache_control");
    let cache_control_hashed = cache_control_value(r, t, "cache_control_hashed");
    let is_static = matches!(target, Some(RouteTarget::Static(_)));
    let is_pools = matches!(target, Some(RouteTarget::Pools { .. }));
    if target.is_some() {
        for (key, given, fits, why) in [
            (
                "cache_control",
                cache_control.is_some(),
                is_static,
                "goes with static = \"DIR\"; on a pool route write headers = { set = { \"Cache-Control\" = \"...\" } }",
            ),
            (
                "cache_control_hashed",
                cache_control_hashed.is_some(),
                is_static,
                "goes with static = \"DIR\"",
            ),
            (
                "compression",
                compression.is_some(),
                is_pools,
                "goes with pools = [...]; a static route sends its precompressed siblings (.br, .zst, .gz) and compresses nothing on the fly",
            ),
        ] {
            if given && !fits {
                let span = t.get(key).map_or(0..0, |n| n.span());
                r.error(span, &t.key_path(key), why);
            }
        }
    }
    RouteEdge {
        headers,
        compression,
        cache_control,
        cache_control_hashed,
    }
}

/// `headers = { preset, set, remove }`, checked as `[headers]` is.
fn headers(r: &mut Reader, t: &mut Table) -> RouteHeaders {
    let mut h = t.table(r, "headers");
    let preset = match h.choice(r, "preset", &["none", "strict"]) {
        Some("strict") => Some(HeaderPreset::Strict),
        Some(_) => Some(HeaderPreset::None),
        None => None,
    };
    let set_path = h.key_path("set");
    let set = h.string_map(r, "set").unwrap_or_default();
    for (name, value) in &set {
        if !crate::edge::is_token(name) {
            r.error_nowhere(
                &format!("{set_path}.{name}"),
                "is not a valid header field name (letters, digits and !#$%&'*+-.^_`|~ only)",
            );
        }
        if has_control(value) {
            r.error_nowhere(
                &format!("{set_path}.{name}"),
                "the value has control characters, which a header field may not carry",
            );
        }
    }
    let remove_path = h.key_path("remove");
    let remove = h.string_array(r, "remove");
    for (i, name) in remove.iter().flatten().enumerate() {
        if !crate::edge::is_token(name) {
            r.error_nowhere(
                &format!("{remove_path}[{i}]"),
                format!("{name:?} is not a valid header field name"),
            );
        }
    }
    h.finish(r);
    RouteHeaders {
        preset,
        set,
        remove,
    }
}

/// A `Cache-Control` value: not empty, no control characters.
fn cache_control_value(r: &mut Reader, t: &mut Table, key: &'static str) -> Option<String> {
    let value = t.string(r, key)?;
    if value.trim().is_empty() || has_control(&value) {
        let span = t.get(key).map_or(0..0, |n| n.span());
        r.error(
            span,
            &t.key_path(key),
            format!("{value:?} is not a Cache-Control value; write e.g. \"public, max-age=3600\""),
        );
        return None;
    }
    Some(value)
}

fn has_control(value: &str) -> bool {
    value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Prints a route's edge keys (only those it sets) so they read back the same.
pub(crate) fn render(out: &mut String, edge: &RouteEdge) {
    use crate::render::Q;
    use std::fmt::Write;
    if let Some(on) = edge.compression {
        let _ = writeln!(out, "compression = {on}");
    }
    if let Some(v) = &edge.cache_control {
        let _ = writeln!(out, "cache_control = {:?}", Q(v));
    }
    if let Some(v) = &edge.cache_control_hashed {
        let _ = writeln!(out, "cache_control_hashed = {:?}", Q(v));
    }
    if let Some(h) = &edge.headers {
        let mut parts = Vec::new();
        if let Some(p) = h.preset {
            let name = match p {
                HeaderPreset::None => "none",
                HeaderPreset::Strict => "strict",
            };
            parts.push(format!("preset = {name:?}"));
        }
        if !h.set.is_empty() {
            let set: Vec<String> = h
                .set
                .iter()
                .map(|(k, v)| format!("{:?} = {:?}", Q(k), Q(v)))
                .collect();
            parts.push(format!("set = {{ {} }}", set.join(", ")));
        }
        if let Some(remove) = &h.remove {
            let names: Vec<String> = remove.iter().map(|n| format!("{:?}", Q(n))).collect();
            parts.push(format!("remove = [{}]", names.join(", ")));
        }
        let _ = writeln!(out, "headers = {{ {} }}", parts.join(", "));
    }
}

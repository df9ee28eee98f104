//! Lowering `[[rate_limits]]` and `[rate_limit_store]`.

use std::time::Duration;

use toml::de::DeValue;

use crate::model::{OnStoreError, RateKey, RateLimit, RateMatch, RateStore, StoreKind};
use crate::reader::{Reader, Table};

/// Keys the memory store tracks at most, by default (about 100 bytes each).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// `[[rate_limits]]`: every rule, each checked in full.
pub(crate) fn rules(r: &mut Reader, top: &mut Table) -> Vec<RateLimit> {
    let Some((path, items)) = top.array(r, "rate_limits", "[[rate_limits]] tables") else {
        return Vec::new();
    };
    let mut out: Vec<RateLimit> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let DeValue::Table(table) = item.get_ref() else {
            r.error(item.span(), &item_path, "expected a table");
            continue;
        };
        let mut t = Table::new(item_path.clone(), Some(table));
        if let Some(DeValue::String(name)) = table.get("name").map(|n| n.get_ref()) {
            if names.iter().any(|n| n == name.as_ref()) {
                r.error_nowhere(
                    &format!("{item_path}.name"),
                    format!("{name:?} names another rule already; give each rule its own name"),
                );
            }
            names.push(name.to_string());
        }
        out.extend(rule(r, &mut t, &item_path));
        t.finish(r);
    }
    out
}

fn rule(r: &mut Reader, t: &mut Table, path: &str) -> Option<RateLimit> {
    let name = t.string(r, "name");
    if name.is_none() {
        r.error_nowhere(
            &format!("{path}.name"),
            "is missing; every rule needs a name (it labels metrics and headers)",
        );
    }
    let matcher = matcher(r, t);
    let key_path = t.key_path("key");
    let key_node = t.get("key");
    let key = match t.string(r, "key") {
        None => Some(RateKey::ClientIp),
        Some(k) if k == "client_ip" => Some(RateKey::ClientIp),
        Some(k) if k == "global" => Some(RateKey::Global),
        Some(k) => match k.strip_prefix("header:") {
            Some(h)
                if !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) =>
            {
                Some(RateKey::Header(h.to_ascii_lowercase()))
            }
            _ => {
                r.error(key_node.map_or(0..0, |n| n.span()), &key_path, format!("{k:?} is not a key; write \"client_ip\", \"global\" or \"header:X-Api-Key\""));
                None
            }
        },
    };
    let rate_path = t.key_path("rate");
    let rate_node = t.get("rate");
    let rate = match t.string(r, "rate") {
        Some(text) => match parse_rate(&text) {
            Ok(rate) => Some(rate),
            Err(why) => {
                r.error(rate_node.map_or(0..0, |n| n.span()), &rate_path, why);
                None
            }
        },
        None => {
            r.error_nowhere(
                &rate_path,
                "is missing; write it like \"10/s\" or \"600/m\"",
            );
            None
        }
    };
    let burst = t.integer(r, "burst", 1, 1_000_000).map(|n| n as u32);
    let in_flight = t
        .integer(r, "in_flight", 0, 1_000_000)
        .map_or(0, |n| n as u32);
    let headers = t.boolean(r, "headers").unwrap_or(true);
    let (count, per) = rate?;
    Some(RateLimit {
        name: name?,
        matcher,
        key: key?,
        count,
        per,
        burst: burst.unwrap_or(count.max(1)),
        in_flight,
        headers,
    })
}

fn matcher(r: &mut Reader, t: &mut Table) -> RateMatch {
    let mut m = t.table(r, "match");
    let matcher = RateMatch {
        path_prefix: m.string(r, "path_prefix"),
        method: m.string(r, "method").map(|s| s.to_ascii_uppercase()),
        host: m.string(r, "host").map(|s| s.to_ascii_lowercase()),
        websocket: m.boolean(r, "websocket").unwrap_or(false),
    };
    m.finish(r);
    matcher
}

/// `"10/s"`, `"600/m"`, `"1000/h"`, `"5/2s"`: requests and the period they are spread over.
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let hint = "write it like \"10/s\", \"600/m\" or \"5/2s\"";
    let (count, per) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a rate; {hint}"))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: the count must be a whole number above 0; {hint}"))?;
    let per = per.trim();
    let unit = match per {
        "s" | "sec" | "second" => Some(Duration::from_secs(1)),
        "m" | "min" | "minute" => Some(Duration::from_secs(60)),
        "h" | "hour" => Some(Duration::from_secs(3600)),
        _ => crate::units::parse_duration(per).ok(),
    };
    match unit {
        Some(d) if !d.is_zero() => Ok((count, d)),
        _ => Err(format!("{text:?}: {per:?} is not a period; {hint}")),
    }
}

/// `[rate_limit_store]`.
pub(crate) fn store(r: &mut Reader, top: &mut Table) -> RateStore {
    let mut t = top.table(r, "rate_limit_store");
    let kind = t
        .choice(r, "kind", &["memory", "redis"])
        .unwrap_or("memory");
    let url = t.string(r, "url");
    let timeout = t
        .duration(r, "timeout")
        .unwrap_or(Duration::from_millis(50));
    let on_error = match t.choice(r, "on_error", &["allow", "deny"]) {
        Some("deny") => OnStoreError::Deny,
        _ => OnStoreError::Allow,
    };
    let max_keys = t
        .integer(r, "max_keys", 1_000, 100_000_000)
        .map_or(DEFAULT_MAX_KEYS, |n| n as usize);
    let kind = match kind {
        "redis" => match url {
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                StoreKind::Redis {
                    url,
                    timeout,
                    on_error,
                }
            }
            Some(url) => {
                r.error_nowhere(
                    &t.key_path("url"),
                    format!("{url:?} is not a Redis URL; write it like \"redis://127.0.0.1:6379\""),
                );
                StoreKind::Memory
            }
            None => {
                r.error_nowhere(
                    &t.key_path("url"),
                    "is missing; kind = \"redis\" needs url = \"redis://HOST:PORT\"",
                );
                StoreKind::Memory
            }
        },
        _ => StoreKind::Memory,
    };
    t.finish(r);
    RateStore { kind, max_keys }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_people_write_them() {
        assert_eq!(parse_rate("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(parse_rate("600/m"), Ok((600, Duration::from_secs(60))));
        assert_eq!(parse_rate("5/2s"), Ok((5, Duration::from_secs(2))));
        assert_eq!(parse_rate(" 3 / h "), Ok((3, Duration::from_secs(3600))));
        for bad in [
            "10",
            "0/s",
            "x/s",
            "10/fortnight",
            "10/0s",
            "-1/s",
            "1/0.0001ms",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any text: no panic; a rate accepted has a count above 0 and a period of at
        /// least a millisecond (a shorter one would limit nothing).
        #[test]
        fn any_rate_text_parses_or_is_refused(text in "[0-9 ]{0,6}/?[0-9.]{0,6}(ms|s|m|h|min|sec|x)?") {
            if let Ok((count, per)) = parse_rate(&text) {
                proptest::prop_assert!(count > 0);
                proptest::prop_assert!(per >= Duration::from_millis(1), "{:?}", per);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,20}") {
            let _ = parse_rate(&text);
        }
    }
}

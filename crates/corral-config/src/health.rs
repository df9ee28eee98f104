//! Lowering `[pools.NAME.health]`: the path probed for readiness, the active checks of ready
//! workers, and passive ejection on failures seen by the proxy.

use std::time::Duration;

use toml::de::DeValue;

use crate::model::{Health, Rollback, Smoke};
use crate::reader::{as_integer, Reader, Table};

/// Answers that count as a backend's failure when `fail_status` does not say: the gateway
/// statuses, which say the backend is broken or overloaded. A 500 usually says one request
/// hit a bug; ejecting workers for it would move a buggy endpoint's load onto fewer workers.
pub const DEFAULT_FAIL_STATUS: [u16; 3] = [502, 503, 504];

/// Reads the table; returns the health path and the rest.
pub(crate) fn health(r: &mut Reader, pool: &mut Table) -> (String, Health) {
    let mut t = pool.table(r, "health");
    let path_key = t.key_path("path");
    let path = t.string(r, "path").unwrap_or_else(|| "/health".into());
    if !path.starts_with('/') {
        r.error_nowhere(&path_key, format!("{path:?} must start with '/'"));
    }
    let interval = t.positive_duration(r, "interval");
    let timeout = t
        .positive_duration(r, "timeout")
        .unwrap_or(Duration::from_secs(2));
    let healthy = t.integer(r, "healthy", 1, 100).map_or(2, |n| n as u32);
    let unhealthy = t.integer(r, "unhealthy", 1, 100).map_or(3, |n| n as u32);
    let max_fails = t.integer(r, "max_fails", 0, 1000).map_or(3, |n| n as u32);
    let eject_for = t
        .positive_duration(r, "eject_for")
        .unwrap_or(Duration::from_secs(10));
    let fail_status = fail_status(r, &mut t);
    t.finish(r);
    (
        path,
        Health {
            interval,
            timeout,
            healthy,
            unhealthy,
            max_fails,
            fail_status,
            eject_for,
        },
    )
}

/// `fail_status = [502, 503, 504]`: statuses 500..599.
fn fail_status(r: &mut Reader, t: &mut Table) -> Vec<u16> {
    let Some((path, items)) = t.array(
        r,
        "fail_status",
        "an array of statuses like [502, 503, 504]",
    ) else {
        return DEFAULT_FAIL_STATUS.to_vec();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| as_integer(r, item, &format!("{path}[{i}]"), 500, 599))
        .map(|n| n as u16)
        .collect()
}

/// `smoke = [{ path = "/health", status = 200 }, ...]`: requests a pool must answer as
/// expected before `corral switch` sends it traffic.
pub(crate) fn smoke(r: &mut Reader, pool: &mut Table) -> Vec<Smoke> {
    let expected = "an array of checks like [{ path = \"/health\", status = 200 }]";
    let Some((path, items)) = pool.array(r, "smoke", expected) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let DeValue::Table(table) = item.get_ref() else {
            r.error(item.span(), &item_path, format!("expected {expected}"));
            continue;
        };
        let mut t = Table::new(item_path.clone(), Some(table));
        let target = t.string(r, "path");
        let status = t.integer(r, "status", 100, 599).map_or(200, |n| n as u16);
        t.finish(r);
        match target {
            Some(p) if p.starts_with('/') => out.push(Smoke { path: p, status }),
            Some(p) => r.error(
                item.span(),
                &format!("{item_path}.path"),
                format!("{p:?} must start with '/'"),
            ),
            None => r.error(
                item.span(),
                &format!("{item_path}.path"),
                "is missing; say which path to request",
            ),
        }
    }
    out
}

/// `rollback_window`, `rollback_error_rate`, `rollback_min_requests` of `[routing]`.
pub(crate) fn rollback(r: &mut Reader, routing: &mut Table) -> Option<Rollback> {
    let window = routing.positive_duration(r, "rollback_window");
    let rate_key = routing.key_path("rollback_error_rate");
    let error_rate = match routing.get("rollback_error_rate").map(|n| (n, n.get_ref())) {
        None => 0.05,
        Some((n, value)) => {
            let rate = match value {
                DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
                DeValue::Integer(i) => i.as_str().parse::<f64>().ok(),
                _ => None,
            };
            match rate {
                Some(rate) if rate > 0.0 && rate < 1.0 => rate,
                _ => {
                    r.error(
                        n.span(),
                        &rate_key,
                        "expected a share between 0 and 1, like 0.05 (5% of answers 5xx)",
                    );
                    0.05
                }
            }
        }
    };
    let min_requests = routing
        .integer(r, "rollback_min_requests", 1, 1_000_000_000)
        .map_or(20, |n| n as u64);
    window.map(|window| Rollback {
        window,
        error_rate,
        min_requests,
    })
}

//! Lowering `upstreams`: a pool of servers corral does not start, named `host:port` and
//! resolved again every `resolve_interval`. The keys about starting and stopping processes
//! mean nothing for such a pool, and saying one is an error rather than silently ignored.

use std::time::Duration;

use crate::model::Upstream;
use crate::reader::{as_string, Reader, Table};

/// How often names are resolved again when the file does not say.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// How often a remote pool's upstreams are checked when `health.interval` does not say: a
/// server corral does not supervise has no other sign of life.
pub const DEFAULT_REMOTE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Keys of supervised pools only.
const SUPERVISED_ONLY: [&str; 19] = [
    "command",
    "app",
    "interface",
    "python",
    "workers",
    "bind",
    "listen_fds_env",
    "ready",
    "cwd",
    "env",
    "start_timeout",
    "kill_timeout",
    "max_requests",
    "max_requests_jitter",
    "max_memory",
    "start_limit_burst",
    "start_limit_interval",
    "user",
    "group",
];

/// `upstreams = ["host:port", ...]`, or `None` when the pool has none (a supervised pool).
pub(crate) fn upstreams(r: &mut Reader, t: &mut Table) -> Option<Vec<Upstream>> {
    let expected = "an array of servers like [\"10.0.0.5:8000\", \"app.internal:8000\"]";
    let (path, items) = t.array(r, "upstreams", expected)?;
    if items.is_empty() {
        if let Some(node) = t.get("upstreams") {
            r.error(node.span(), &path, "is empty; name at least one server");
        }
        return Some(Vec::new());
    }
    let mut out: Vec<Upstream> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(text) = as_string(r, item, &item_path) else {
            continue;
        };
        match parse_upstream(&text) {
            Ok(u) if out.contains(&u) => r.error(
                item.span(),
                &item_path,
                format!("lists {text} a second time"),
            ),
            Ok(u) => out.push(u),
            Err(why) => r.error(
                item.span(),
                &item_path,
                format!("{text:?} {why}; write it like \"10.0.0.5:8000\" or \"app.internal:8000\""),
            ),
        }
    }
    Some(out)
}

/// Reports every supervised-only key the remote pool has.
pub(crate) fn refuse_supervised_keys(r: &mut Reader, t: &mut Table) {
    for key in SUPERVISED_ONLY {
        if let Some(node) = t.get(key) {
            r.error(
                node.span(),
                &t.key_path(key),
                "applies to workers corral starts; this pool has upstreams (servers it only forwards to)",
            );
        }
    }
}

/// `resolve_interval`, more than 0, and only where there are names to resolve.
pub(crate) fn resolve_interval(r: &mut Reader, t: &mut Table, remote: bool) -> Duration {
    match (
        t.positive_duration(r, "resolve_interval"),
        t.get("resolve_interval"),
    ) {
        (Some(_), Some(node)) if !remote => {
            r.error(
                node.span(),
                &t.key_path("resolve_interval"),
                "applies to pools with upstreams only",
            );
            DEFAULT_RESOLVE_INTERVAL
        }
        (Some(d), _) => d,
        _ => DEFAULT_RESOLVE_INTERVAL,
    }
}

/// `host:port`, `[v6]:port`.
fn parse_upstream(text: &str) -> Result<Upstream, &'static str> {
    let (host, port) = text.rsplit_once(':').ok_or("has no port")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err("has no host name or address");
    }
    if host.contains(':') && !text.starts_with('[') {
        return Err("is an IPv6 address without brackets");
    }
    let port: u16 = port.parse().map_err(|_| "has no valid port")?;
    if port == 0 {
        return Err("has port 0");
    }
    Ok(Upstream {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_are_read_and_bad_ones_say_why() {
        let u = |h: &str, p| Upstream {
            host: h.into(),
            port: p,
        };
        assert_eq!(parse_upstream("10.0.0.5:8000"), Ok(u("10.0.0.5", 8000)));
        assert_eq!(parse_upstream("app.internal:80"), Ok(u("app.internal", 80)));
        assert_eq!(parse_upstream("[::1]:8001"), Ok(u("::1", 8001)));
        assert_eq!(parse_upstream("app.internal"), Err("has no port"));
        assert_eq!(parse_upstream(":80"), Err("has no host name or address"));
        assert_eq!(
            parse_upstream("::1:80"),
            Err("is an IPv6 address without brackets")
        );
        assert_eq!(parse_upstream("h:http"), Err("has no valid port"));
        assert_eq!(parse_upstream("h:0"), Err("has port 0"));
    }
}

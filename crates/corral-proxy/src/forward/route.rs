//! `[[routes]]` at run time: the table made once per config (in [`ProxySettings`]) and the
//! one call of the exchange that resolves a request's route before a pool is chosen. A
//! pool route names its lane in the supervisor's routing table (its own active pool and
//! weights, which `corral switch` moves route by route); a redirect route answers 308; a static route answers from disk ([`static_files`](super::static_files)).
//! Matching reads the request head in place: no allocation, no parsing of config.
//!
//! [`ProxySettings`]: crate::settings::ProxySettings

use std::sync::Arc;

use corral_config::{Config, RouteEdge, RouteTarget};
use corral_routes::LaneKey;
use corral_telemetry::{Metrics, RouteMetrics};
use pingora_http::RequestHeader;

use super::client::ClientSide;
use super::context::Exchange;
use super::failure::Failure;
use super::fields::AnswerRules;
use super::relay::Done;
use super::static_files::StaticRoot;
use super::Forwarder;

/// Every route of the config, in the order they are tried: exact hosts first, then
/// `*.` hosts (longest first), then any host; within each, the longest prefix first.
#[derive(Default)]
pub(crate) struct RouteTable {
    entries: Vec<Entry>,
    /// Where the matching of a request may start and which entries it may skip whole.
    skip: Skip,
}

/// What lets a lookup skip the host groups a request's host cannot match, so a table of
/// many hosts costs a request for another host a few comparisons, not one per route.
#[derive(Default)]
struct Skip {
    /// Bit n set when an exact host of n bytes (63 for longer) is in the table.
    exact_lengths: u64,
    /// The first `*.` entry, and the first any-host entry (the groups are in this order).
    first_below: usize,
    first_any: usize,
    /// The shortest `*.` suffix: a host no longer than it matches none.
    shortest_below: usize,
}

struct Entry {
    /// The route's name, for the access line.
    name: Arc<str>,
    /// Its request counters and latency, resolved once per config.
    metrics: RouteMetrics,
    host: HostRule,
    prefix: Box<str>,
    /// The prefix's first bytes (up to 8) and their mask, so one compare of the path's
    /// first 8 bytes passes only entries whose prefix it can start with.
    head: PathHead,
    action: Action,
    /// The route's own edge settings, resolved once per config.
    edge: EntryEdge,
}

/// What a route changes of the settings every request gets (`headers`, `compression`).
#[derive(Default)]
struct EntryEdge {
    /// Its answer rules, when it has a `headers` table.
    rules: Option<Arc<AnswerRules>>,
    /// `compression = false`: its answers are never compressed on the fly.
    no_compression: bool,
}

impl EntryEdge {
    fn new(config: &Config, edge: &RouteEdge) -> EntryEdge {
        EntryEdge {
            rules: edge
                .headers
                .as_ref()
                .map(|h| Arc::new(AnswerRules::new(&h.over(&config.headers)))),
            no_compression: edge.compression == Some(false),
        }
    }

    /// Puts the route's settings on the request.
    fn apply(&self, exchange: &mut Exchange) {
        if let Some(rules) = &self.rules {
            exchange.route_rules = Some(rules.clone());
        }
        if self.no_compression {
            exchange.encoding = None;
        }
    }
}

/// Up to the first 8 bytes of a path prefix, as a number, and which of them count: a path
/// whose first bytes differ cannot start with the prefix. `/` (mask 0) passes every path.
struct PathHead {
    bytes: u64,
    mask: u64,
}

impl PathHead {
    fn of_prefix(prefix: &str) -> PathHead {
        if prefix == "/" {
            return PathHead { bytes: 0, mask: 0 };
        }
        let n = prefix.len().min(8);
        let mask = if n == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        PathHead {
            bytes: first_eight(prefix.as_bytes()) & mask,
            mask,
        }
    }

    fn may_start(&self, path_head: u64) -> bool {
        path_head & self.mask == self.bytes
    }
}

/// The first 8 bytes of `bytes` (zeros past its end), little-endian.
fn first_eight(bytes: &[u8]) -> u64 {
    let mut eight = [0u8; 8];
    let n = bytes.len().min(8);
    eight[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(eight)
}

enum HostRule {
    Exact(Box<str>),
    /// `*.example.com`, kept as `.example.com`.
    Below(Box<str>),
    Any,
}

/// What a matched route does.
pub(crate) enum Action {
    /// Workers of the route's lane in the routing table; with `strip`, the prefix is
    /// taken off the path.
    Pool {
        lane: LaneKey,
        strip: Option<Box<str>>,
    },
    /// Files from disk.
    Static(Arc<StaticRoot>),
    /// 308 to this template (`{path}`, `{host}`).
    Redirect(Box<str>),
}

impl RouteTable {
    /// The table of `config`'s routes; empty without `[[routes]]` (every request then
    /// goes by the routing table, as before routes existed).
    pub(crate) fn new(config: &Config, metrics: &Metrics) -> RouteTable {
        let lanes = config.lanes();
        let mut entries: Vec<Entry> = config
            .routes
            .iter()
            .map(|route| {
                let host = match route.host.as_deref() {
                    None => HostRule::Any,
                    Some(h) => match h.strip_prefix('*') {
                        Some(below) => HostRule::Below(below.into()),
                        None => HostRule::Exact(h.into()),
                    },
                };
                let action = match &route.target {
                    RouteTarget::Pools {
                        traffic,
                        strip_prefix,
                        ..
                    } => Action::Pool {
                        lane: LaneKey {
                            route: route.name.as_str().into(),
                            fallback: traffic.active.as_str().into(),
                            index: lanes
                                .iter()
                                .position(|l| l.route == route.name)
                                .unwrap_or(usize::MAX),
                        },
                        strip: (*strip_prefix && route.path_prefix != "/")
                            .then(|| route.path_prefix.as_str().into()),
                    },
                    RouteTarget::Static(dir) => Action::Static(Arc::new(StaticRoot::new(
                        dir,
                        &route.path_prefix,
                        route.edge.cache_control.as_deref(),
                        route.edge.cache_control_hashed.as_deref(),
                    ))),
                    RouteTarget::Redirect(to) => Action::Redirect(to.as_str().into()),
                };
                Entry {
                    name: route.name.as_str().into(),
                    metrics: metrics.route(&route.name),
                    host,
                    head: PathHead::of_prefix(&route.path_prefix),
                    prefix: route.path_prefix.as_str().into(),
                    action,
                    edge: EntryEdge::new(config, &route.edge),
                }
            })
            .collect();
        entries.sort_by_key(|e| {
            let host_rank = match &e.host {
                HostRule::Exact(_) => (0, 0),
                HostRule::Below(s) => (1, usize::MAX - s.len()),
                HostRule::Any => (2, 0),
            };
            (host_rank, usize::MAX - e.prefix.len())
        });
        let mut skip = Skip {
            first_below: entries.len(),
            first_any: entries.len(),
            shortest_below: usize::MAX,
            ..Skip::default()
        };
        for (i, e) in entries.iter().enumerate().rev() {
            match &e.host {
                HostRule::Exact(h) => skip.exact_lengths |= 1 << h.len().min(63),
                HostRule::Below(s) => {
                    skip.first_below = i;
                    skip.shortest_below = skip.shortest_below.min(s.len());
                }
                HostRule::Any => skip.first_any = i,
            }
        }
        skip.first_below = skip.first_below.min(skip.first_any);
        RouteTable { entries, skip }
    }

    /// The route of a request to `host` (no port, any case) for `path`; `None` without
    /// routes (the routing table decides) or when none matches.
    fn find(&self, host: &str, path: &str) -> Option<(usize, &Entry)> {
        let skip = &self.skip;
        let mut start = 0;
        if skip.exact_lengths & (1 << host.len().min(63)) == 0 {
            start = skip.first_below;
        }
        if start >= skip.first_below && host.len() <= skip.shortest_below {
            start = skip.first_any;
        }
        let path_head = first_eight(path.as_bytes());
        let entries = self.entries.get(start..).unwrap_or_default();
        entries.iter().enumerate().find_map(|(i, e)| {
            if !e.head.may_start(path_head) {
                return None;
            }
            let host_ok = match &e.host {
                HostRule::Any => true,
                HostRule::Exact(h) => host.eq_ignore_ascii_case(h),
                HostRule::Below(suffix) => {
                    host.len() > suffix.len()
                        && host.is_char_boundary(host.len() - suffix.len())
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                }
            };
            (host_ok && corral_config::prefix_matches(&e.prefix, path)).then_some((start + i, e))
        })
    }

    /// Counts a finished request of the route at `index` (as [`Exchange::route_index`]).
    ///
    /// [`Exchange::route_index`]: super::context::Exchange
    pub(crate) fn observe(&self, index: usize, status: u16, seconds: f64) {
        if let Some(entry) = self.entries.get(index) {
            entry.metrics.observe(status, seconds);
        }
    }

    /// The requests the route named `name` answered so far, and how many 5xx.
    pub(crate) fn answered(&self, name: &str) -> (u64, u64) {
        self.entries
            .iter()
            .find(|e| &*e.name == name)
            .map_or((0, 0), |e| e.metrics.answered())
    }

    /// Whether there are routes at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The request's host without its port: `Host`, else the URI's authority (HTTP/2).
fn host_of(head: &RequestHeader) -> &str {
    let text = head
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| head.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    text.rsplit_once(':').map_or(text, |(name, _)| name)
}

impl Forwarder {
    /// Resolves the request's route before a pool is chosen: pins the pool of a pool
    /// route (stripping its prefix if asked), or answers a static or redirect route
    /// itself (`Some`).
    pub(super) async fn route_request<C: ClientSide>(
        &self,
        client: &mut C,
        exchange: &mut Exchange,
    ) -> Result<Option<Done>, Failure> {
        let settings = exchange.settings.clone();
        if settings.routes.is_empty() {
            return Ok(None);
        }
        let head = client.req_header();
        let Some((index, entry)) = settings.routes.find(host_of(head), head.uri.path()) else {
            return Err(Failure::refused(404, "no route"));
        };
        exchange.route_name = Some(entry.name.clone());
        exchange.route_index = Some(index);
        entry.edge.apply(exchange);
        match &entry.action {
            Action::Pool { lane, strip } => {
                exchange.lane = Some(lane.clone());
                if let Some(prefix) = strip {
                    strip_prefix(client.req_header_mut(), prefix)?;
                    exchange.rewritten = true;
                }
                Ok(None)
            }
            Action::Redirect(template) => {
                exchange.served_by = Some("redirect");
                let head = client.req_header();
                let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
                let location = template
                    .replace("{path}", path)
                    .replace("{host}", host_of(head));
                let mut answer = Failure::refused(308, "redirect");
                answer.fields.push(("location", location));
                answer.keep_alive = client.is_body_empty();
                Err(answer)
            }
            Action::Static(root) => {
                exchange.served_by = Some("static");
                match super::static_files::serve(client, exchange, root).await? {
                    Some(answer) => Ok(Some(Done::Static(answer))),
                    None => Ok(Some(Done::Answered)),
                }
            }
        }
    }
}

/// Takes `prefix` off the request's path (`/api/x` → `/x`, `/api` → `/`) and says what
/// it was in `X-Forwarded-Prefix`.
fn strip_prefix(head: &mut RequestHeader, prefix: &str) -> Result<(), Failure> {
    let bad = |_| Failure::refused(400, "bad target");
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = target.strip_prefix(prefix).unwrap_or(target);
    let rest = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    };
    let uri: http::Uri = rest.parse().map_err(bad)?;
    head.set_uri(uri);
    head.insert_header("x-forwarded-prefix", prefix)
        .map_err(|_| Failure::refused(400, "bad target"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The skips (host lengths, `*.` suffix lengths, a prefix's first bytes) never change
    /// which route a request gets: each lookup is checked against a plain scan.
    #[test]
    fn lookups_with_skips_find_what_a_plain_scan_finds() {
        let mut text = String::from(
            "[pools.web]\ncommand = [\"app\", \"{port}\"]\n[[routes]]\npools = [\"web\"]\n",
        );
        for (i, host) in ["a.example.com", "EXAMPLE.com", "x.io"].iter().enumerate() {
            text.push_str(&format!(
                "[[routes]]\nhost = \"{host}\"\npath_prefix = \"/h{i}\"\nredirect = \"/\"\n"
            ));
        }
        for (i, host) in ["*.example.com", "*.b.example.com", "*.io"]
            .iter()
            .enumerate()
        {
            text.push_str(&format!(
                "[[routes]]\nhost = \"{host}\"\npath_prefix = \"/w{i}\"\nredirect = \"/\"\n"
            ));
        }
        for prefix in ["/api", "/api/v2", "/apix", "/s", "/static", "/section/sub"] {
            text.push_str(&format!(
                "[[routes]]\npath_prefix = \"{prefix}\"\nredirect = \"/\"\n"
            ));
        }
        let config =
            corral_config::parse(std::path::Path::new("corral.toml"), &text).expect("config");
        let metrics = Metrics::new().expect("metrics");
        let table = RouteTable::new(&config, &metrics);
        let plain = |host: &str, path: &str| {
            table.entries.iter().position(|e| {
                let host_ok = match &e.host {
                    HostRule::Any => true,
                    HostRule::Exact(h) => host.eq_ignore_ascii_case(h),
                    HostRule::Below(s) => {
                        host.len() > s.len() && host.to_ascii_lowercase().ends_with(&**s)
                    }
                };
                host_ok && corral_config::prefix_matches(&e.prefix, path)
            })
        };
        for host in [
            "",
            "a.example.com",
            "A.EXAMPLE.COM",
            "example.com",
            "b.example.com",
            "c.b.example.com",
            "x.io",
            "y.io",
            "io",
            "127.0.0.1",
            "a-very-long-host-name-that-is-longer-than-sixty-three-bytes.example.com",
        ] {
            for path in [
                "/",
                "/h0",
                "/h1/x",
                "/h2?q",
                "/w0",
                "/w1/y",
                "/w2",
                "/api",
                "/api/",
                "/api/v2/x",
                "/apix",
                "/apixy",
                "/s",
                "/st",
                "/static/a.css",
                "/section/sub/x",
                "/section",
                "/x",
                "",
            ] {
                assert_eq!(
                    table.find(host, path).map(|(i, _)| i),
                    plain(host, path),
                    "{host} {path}"
                );
            }
        }
    }
}

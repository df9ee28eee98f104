//! `[[routes]]`: which requests go where, by host and path prefix, when one corral serves
//! several apps, paths or static files. No `[[routes]]` means one route: every request to
//! `[routing]`'s pools, as before routes existed.

use std::path::PathBuf;

use crate::model::{HeaderPreset, Headers};
use crate::traffic::Traffic;

/// One `[[routes]]` table: what it matches and what serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Its name in access lines and metrics: `name`, else `host` + `path_prefix`.
    pub name: String,
    /// The host matched, lower case: exact (`example.com`), or `*.example.com` for any
    /// name below it (not the bare domain); `None` = any host.
    pub host: Option<String>,
    /// The path prefix matched on a segment boundary (`/api` matches `/api` and `/api/x`,
    /// not `/apix`), without a trailing `/` except `/` itself; the longest match wins.
    pub path_prefix: String,
    /// What answers the requests it matches.
    pub target: RouteTarget,
    /// What the route changes of the settings every request gets: headers, compression,
    /// the static files' `Cache-Control`.
    pub edge: RouteEdge,
}

/// A route's own edge settings (nginx's per-`location` directives, Traefik's middlewares
/// per router), each `None` where the route keeps the config-wide setting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteEdge {
    /// `headers = { preset, set, remove }`: the route's answers get `[headers]` with these
    /// keys over it ([`RouteHeaders::over`]).
    pub headers: Option<RouteHeaders>,
    /// `compression = false`: a pool route's answers are never compressed on the fly.
    pub compression: Option<bool>,
    /// `cache_control`: the `Cache-Control` of a static route's files.
    pub cache_control: Option<String>,
    /// `cache_control_hashed`: the `Cache-Control` of a static route's files whose name
    /// carries a content hash (`app.3f2a1b9c.css`), which never change under that name.
    pub cache_control_hashed: Option<String>,
}

/// A route's `headers` table: each key given stands over `[headers]`'s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteHeaders {
    /// Replaces `[headers] preset`.
    pub preset: Option<HeaderPreset>,
    /// Added to `[headers] set`; a name set in both takes the route's value.
    pub set: Vec<(String, String)>,
    /// Replaces `[headers] remove`.
    pub remove: Option<Vec<String>>,
}

impl RouteHeaders {
    /// The `[headers]` a route's answers get: `global` with this table's keys over it.
    pub fn over(&self, global: &Headers) -> Headers {
        let mut set: Vec<(String, String)> = global
            .set
            .iter()
            .filter(|(n, _)| !self.set.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
            .cloned()
            .collect();
        set.extend(self.set.iter().cloned());
        Headers {
            preset: self.preset.unwrap_or(global.preset),
            set,
            remove: self.remove.clone().unwrap_or_else(|| global.remove.clone()),
        }
    }
}

/// What serves a route's requests.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteTarget {
    /// Workers of the named pools.
    Pools {
        /// Every pool of the route (its blue/green set); no other route may name them.
        pools: Vec<String>,
        /// Where its requests go among them.
        traffic: Traffic,
        /// Whether the worker sees the path without the prefix (and the prefix in
        /// `X-Forwarded-Prefix`).
        strip_prefix: bool,
    },
    /// Files under this directory (absolute), by the path after the prefix.
    Static(PathBuf),
    /// A 308 to this target; `{path}` is replaced by the request's path and query.
    Redirect(String),
}

impl Route {
    /// Whether this route takes a request for `host` (lower case, no port) and `path`.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host_matches(host) && prefix_matches(&self.path_prefix, path)
    }

    /// Whether `host` (lower case, no port) is one this route serves.
    pub fn host_matches(&self, host: &str) -> bool {
        match self.host.as_deref() {
            None => true,
            Some(pattern) => match pattern.strip_prefix('*') {
                // `*.example.com`: something, then `.example.com`.
                Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
                None => host == pattern,
            },
        }
    }
}

/// Whether `path` starts with `prefix` on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

//! `[[routes]]`: which requests go where, by host and path prefix, when one corral serves
//! several apps, paths or static files. No `[[routes]]` means one route: every request to
//! `[routing]`'s pools, as before routes existed.

use std::path::PathBuf;

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

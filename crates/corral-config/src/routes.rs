//! Lowering `[[routes]]`: each route's match (host, path prefix) and its one target (pools,
//! a static directory or a redirect), then the checks across routes: no two with the same
//! host and prefix, no unknown pool, no pool in two routes. [`render`] prints them back.

use std::path::{Path, PathBuf};

use toml::de::DeValue;

use crate::model::{Pool, Route, RouteTarget};
use crate::reader::{Reader, Table};
use crate::traffic::Traffic;

/// `[[routes]]`, in file order; empty when the file has none.
pub(crate) fn routes(r: &mut Reader, top: &mut Table, pools: &[Pool], base: &Path) -> Vec<Route> {
    let Some((path, items)) = top.array(r, "routes", "[[routes]] tables") else {
        return Vec::new();
    };
    let mut out: Vec<Route> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let DeValue::Table(table) = item.get_ref() else {
            r.error(item.span(), &item_path, "expected a table");
            continue;
        };
        let mut t = Table::new(item_path.clone(), Some(table));
        let route = route(r, &mut t, pools, base);
        t.finish(r);
        let Some(route) = route else { continue };
        if let Some(other) = out
            .iter()
            .position(|o| o.host == route.host && o.path_prefix == route.path_prefix)
        {
            r.error(item.span(), &item_path, format!("matches the same host and path_prefix as routes[{other}]; one of them could never answer"));
        }
        if let RouteTarget::Pools { pools: mine, .. } = &route.target {
            for (j, o) in out.iter().enumerate() {
                if let RouteTarget::Pools { pools: theirs, .. } = &o.target {
                    if let Some(p) = mine.iter().find(|p| theirs.contains(p)) {
                        r.error(
                            item.span(),
                            &format!("{item_path}.pools"),
                            format!(
                                "{p:?} is a pool of routes[{j}] already; a pool serves one route"
                            ),
                        );
                    }
                }
            }
        }
        if out.iter().any(|o| o.name == route.name) {
            r.error(
                item.span(),
                &format!("{item_path}.name"),
                format!(
                    "{:?} names another route already; give each route its own name",
                    route.name
                ),
            );
        }
        out.push(route);
    }
    out
}

fn route(r: &mut Reader, t: &mut Table, pools: &[Pool], base: &Path) -> Option<Route> {
    let host = host(r, t);
    let path_prefix = path_prefix(r, t);
    let name = t.string(r, "name");
    let target = target(r, t, pools, base);
    let edge = crate::route_edge::edge(r, t, target.as_ref());
    let (host, path_prefix, target) = (host.ok()?, path_prefix?, target?);
    let name = name.unwrap_or_else(|| match &host {
        Some(h) if path_prefix == "/" => h.clone(),
        Some(h) => format!("{h}{path_prefix}"),
        None => path_prefix.clone(),
    });
    Some(Route {
        name,
        host,
        path_prefix,
        target,
        edge,
    })
}

/// `host`: a name of letters, digits, `-` and `.`, or `*.` and one; lower-cased.
fn host(r: &mut Reader, t: &mut Table) -> Result<Option<String>, ()> {
    let key = t.key_path("host");
    let node = t.get("host");
    let Some(text) = node.and_then(|n| crate::reader::as_string(r, n, &key)) else {
        return if node.is_some() { Err(()) } else { Ok(None) };
    };
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        let span = node.map_or(0..0, |n| n.span());
        r.error(span, &key, format!("{text:?} is not a host name; write e.g. \"example.com\" or \"*.example.com\" (no port, no scheme)"));
        return Err(());
    }
    Ok(Some(lower))
}

/// `path_prefix`: starts with `/`, no query, no `..` segment; a trailing `/` is dropped.
fn path_prefix(r: &mut Reader, t: &mut Table) -> Option<String> {
    let key = t.key_path("path_prefix");
    let node = t.get("path_prefix");
    let Some(node) = node else {
        return Some("/".to_string());
    };
    let text = crate::reader::as_string(r, node, &key)?;
    let bad = !text.starts_with('/')
        || text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"?#%".contains(&b))
        || text.split('/').any(|s| s == ".." || s == ".");
    if bad {
        r.error(node.span(), &key, format!("{text:?} is not a path prefix; write e.g. \"/api\" (it starts with '/', has no '?', '#', '%', spaces or '..')"));
        return None;
    }
    let trimmed = text.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// Exactly one of `pools`, `static` and `redirect`, with the keys that go with it.
fn target(r: &mut Reader, t: &mut Table, pools: &[Pool], base: &Path) -> Option<RouteTarget> {
    let pools_node = t.get("pools");
    let static_node = t.get("static");
    let redirect_node = t.get("redirect");
    let given = [pools_node, static_node, redirect_node]
        .iter()
        .flatten()
        .count();
    if given != 1 {
        let span = [pools_node, static_node, redirect_node]
            .iter()
            .flatten()
            .nth(1)
            .map_or(0..0, |n| n.span());
        let key = t.path.clone();
        let message = if given == 0 {
            "says nothing to serve; give it one of pools = [...], static = \"DIR\" or redirect = \"https://...\""
        } else {
            "gives more than one of pools, static and redirect; a route has one target"
        };
        r.error(span, &key, message);
        // Mark the other keys as known so they are not reported as unknown too.
        for k in ["active", "weights", "strip_prefix"] {
            t.get(k);
        }
        return None;
    }
    if pools_node.is_some() {
        return pool_target(r, t, pools);
    }
    for k in ["active", "weights", "strip_prefix"] {
        if let Some(node) = t.get(k) {
            let key = t.key_path(k);
            r.error(
                node.span(),
                &key,
                "goes with pools = [...]; a static or redirect route has no pools",
            );
        }
    }
    if let Some(node) = static_node {
        let key = t.key_path("static");
        let dir = crate::reader::as_string(r, node, &key)?;
        let dir = base.join(PathBuf::from(dir));
        return match std::fs::canonicalize(&dir) {
            Ok(real) if real.is_dir() => Some(RouteTarget::Static(real)),
            Ok(_) => {
                r.error(
                    node.span(),
                    &key,
                    format!("{} is not a directory", dir.display()),
                );
                None
            }
            Err(e) => {
                r.error(
                    node.span(),
                    &key,
                    format!("cannot open {}: {e}", dir.display()),
                );
                None
            }
        };
    }
    let node = redirect_node?;
    let key = t.key_path("redirect");
    let target = crate::reader::as_string(r, node, &key)?;
    let rest = target.replace("{path}", "").replace("{host}", "");
    let scheme_ok =
        target.starts_with("https://") || target.starts_with("http://") || target.starts_with('/');
    if !scheme_ok
        || rest.contains(['{', '}'])
        || rest.bytes().any(|b| b.is_ascii_control() || b == b' ')
    {
        r.error(node.span(), &key, format!("{target:?} is not a redirect target; write e.g. \"https://example.com{{path}}\" ({{path}}: the request's path and query, {{host}}: its host)"));
        return None;
    }
    Some(RouteTarget::Redirect(target))
}

/// `pools = [...]` with `active` and/or `weights`, and `strip_prefix`.
fn pool_target(r: &mut Reader, t: &mut Table, all: &[Pool]) -> Option<RouteTarget> {
    let pools_key = t.key_path("pools");
    let pools_node = t.get("pools")?;
    let names = t.string_array(r, "pools")?;
    let mut bad = false;
    if names.is_empty() {
        r.error(
            pools_node.span(),
            &pools_key,
            "is empty; name the pools of this route",
        );
        bad = true;
    }
    for name in &names {
        if let Some(message) = crate::pool::unknown_pool(name, all) {
            r.error(pools_node.span(), &pools_key, message);
            bad = true;
        }
    }
    let mine: Vec<Pool> = all
        .iter()
        .filter(|p| names.contains(&p.name))
        .cloned()
        .collect();
    let strip_prefix = t.boolean(r, "strip_prefix").unwrap_or(false);
    let active_key = t.key_path("active");
    let active_node = t.get("active");
    let active = t.string(r, "active");
    let weights = crate::lower::weights(r, t, &mine);
    if bad {
        return None;
    }
    let traffic = crate::lower::traffic(r, active, active_node, weights.ok()?, &mine, &active_key)?;
    Some(RouteTarget::Pools {
        pools: names,
        traffic,
        strip_prefix,
    })
}

/// The route `[routing]` steers (its `active`/`weights` stand for that route's): the pool route holding
/// `active`.
pub fn switched<'a>(routes: &'a [Route], active: &str) -> Option<&'a Route> {
    routes.iter().find(|r| matches!(&r.target, RouteTarget::Pools { pools, .. } if pools.iter().any(|p| p == active)))
}

/// With routes and no `[routing]` choice, `[routing]` steers the first pool route.
pub(crate) fn default_traffic(routes: &[Route]) -> Option<Traffic> {
    routes.iter().find_map(|r| match &r.target {
        RouteTarget::Pools { traffic, .. } => Some(traffic.clone()),
        _ => None,
    })
}

/// Prints `routes` as `[[routes]]` tables that read back the same.
pub(crate) fn render(out: &mut String, routes: &[Route]) {
    use crate::render::Q;
    use std::fmt::Write;
    for route in routes {
        let _ = writeln!(out, "\n[[routes]]\nname = {:?}", Q(&route.name));
        if let Some(host) = &route.host {
            let _ = writeln!(out, "host = {:?}", Q(host));
        }
        let _ = writeln!(out, "path_prefix = {:?}", Q(&route.path_prefix));
        match &route.target {
            RouteTarget::Pools {
                pools,
                traffic,
                strip_prefix,
            } => {
                let names: Vec<String> = pools.iter().map(|p| format!("{:?}", Q(p))).collect();
                let _ = writeln!(
                    out,
                    "pools = [{}]\nactive = {:?}\nstrip_prefix = {strip_prefix}",
                    names.join(", "),
                    Q(&traffic.active)
                );
                if !traffic.weights.is_empty() {
                    let parts: Vec<String> = traffic
                        .weights
                        .iter()
                        .map(|(p, w)| format!("{:?} = {w}", Q(p)))
                        .collect();
                    let _ = writeln!(out, "weights = {{ {} }}", parts.join(", "));
                }
            }
            RouteTarget::Static(dir) => {
                let _ = writeln!(out, "static = {:?}", Q(&dir.display().to_string()));
            }
            RouteTarget::Redirect(target) => {
                let _ = writeln!(out, "redirect = {:?}", Q(target));
            }
        }
        crate::route_edge::render(out, &route.edge);
    }
}

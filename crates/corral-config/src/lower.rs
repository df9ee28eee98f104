//! Lowers the spanned TOML tree into [`Config`], table by table, collecting every error:
//! `[server]` and `[routing]` here, the pools in `pool`, the other tables in their modules.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::model::{Buffering, Config, Limits, Pool, Route, Routing, Server};
use crate::reader::{Reader, Table};
use crate::traffic::Traffic;

/// Default public listener, like Gunicorn's `127.0.0.1:8000` but on the usual proxy port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener: loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
/// Most workers `"auto"` will choose.
pub const AUTO_WORKERS_CAP: u32 = 32;
/// Most workers a pool may have.
pub const MAX_WORKERS: i64 = 1024;

/// Reads the whole document; returns `None` if any error was recorded.
pub(crate) fn lower(r: &mut Reader, source: PathBuf, root: &DeTable) -> Option<Config> {
    let mut top = Table::new("", Some(root));
    let server = server(r, &mut top, &source);
    let log = crate::log::log(r, &mut top);
    let headers = crate::edge::headers(r, &mut top);
    let compression = crate::compression::compression(r, &mut top);
    let websocket = crate::websocket::websocket(r, &mut top);
    let rate_limits = crate::ratelimit::rules(r, &mut top);
    let rate_limit_store = crate::ratelimit::store(r, &mut top);
    let pools = crate::pool::pools(r, &mut top);
    let routes = crate::routes::routes(r, &mut top, &pools, &crate::tls::base_dir(&source));
    let routing = routing(r, &mut top, &pools, &routes);
    top.finish(r);
    if !r.errors.is_empty() {
        return None;
    }
    Some(Config {
        source,
        server,
        log,
        routing: routing?,
        headers,
        compression,
        websocket,
        rate_limits,
        rate_limit_store,
        routes,
        pools,
    })
}

fn server(r: &mut Reader, top: &mut Table, source: &std::path::Path) -> Server {
    let mut t = top.table(r, "server");
    let default_listen = DEFAULT_LISTEN.parse().map(|a| vec![a]).unwrap_or_default();
    let listen = match t.addresses(r, "listen") {
        Some(list) if list.is_empty() => {
            r.error_nowhere(&t.key_path("listen"), "needs at least one address");
            default_listen
        }
        Some(list) => list,
        None => default_listen,
    };
    let admin = match t.get("admin").map(|n| n.get_ref()) {
        Some(DeValue::String(s)) if s.is_empty() => None,
        Some(_) => t.address(r, "admin"),
        None => DEFAULT_ADMIN.parse().ok(),
    };
    if let Some(addr) = admin.filter(|a| listen.contains(a)) {
        if let Some(node) = t.get("admin") {
            r.error(node.span(), &t.key_path("admin"), format!("is {addr}, which server.listen also serves; the admin listener needs an address of its own"));
        } else if let Some(node) = t.get("listen") {
            r.error(node.span(), &t.key_path("listen"), format!("serves {addr}, the default server.admin; set server.admin to another address, or to \"\" for none"));
        }
    }
    let taken: Vec<_> = listen.iter().chain(admin.iter()).copied().collect();
    let tls = crate::tls::tls(r, &mut t, &taken, &crate::tls::base_dir(source));
    let accept_grace = t.duration(r, "accept_grace").unwrap_or(Duration::ZERO);
    let runtime_dir = t
        .string(r, "runtime_dir")
        .map_or_else(default_runtime_dir, PathBuf::from);
    // systemd's `StateDirectory=corral` sets `$STATE_DIRECTORY` (/var/lib/corral).
    let state_dir = t
        .string(r, "state_dir")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("STATE_DIRECTORY")
                .and_then(|v| {
                    v.to_str()
                        .and_then(|s| s.split(':').next())
                        .map(PathBuf::from)
                })
                .filter(|p| !p.as_os_str().is_empty())
        })
        .unwrap_or_else(|| runtime_dir.clone());
    let control_socket = match t.string(r, "control_socket") {
        Some(s) if s.is_empty() => None,
        Some(s) => Some(PathBuf::from(s)),
        None => Some(runtime_dir.join("control.sock")),
    };
    let graceful_timeout = t
        .duration(r, "graceful_timeout")
        .unwrap_or(Duration::from_secs(30));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = t
        .integer(r, "threads", 1, 256)
        .map_or(cores, |n| n as usize);
    let limits = limits(r, &mut t);
    let buffering = buffering(r, &mut t);
    let trusted_proxies = crate::edge::trusted_proxies(r, &mut t);
    let forward_fields = crate::edge::forward_fields(r, &mut t);
    let proxy_protocol = t.boolean(r, "proxy_protocol").unwrap_or(false);
    let underscores_in_headers = t.boolean(r, "underscores_in_headers").unwrap_or(false);
    let watch_config = t.boolean(r, "watch_config").unwrap_or(false);
    let max_connections = t
        .integer(r, "max_connections", 1, 1_000_000)
        .map_or(10_000, |n| n as usize);
    t.finish(r);
    Server {
        trusted_proxies,
        forward_fields,
        underscores_in_headers,
        proxy_protocol,
        watch_config,
        max_connections,
        listen,
        admin,
        graceful_timeout,
        accept_grace,
        tls,
        runtime_dir,
        state_dir,
        control_socket,
        threads,
        limits,
        buffering,
    }
}

fn limits(r: &mut Reader, server: &mut Table) -> Limits {
    let mut t = server.table(r, "limits");
    let limits = Limits {
        request_line: t
            .integer(r, "request_line", 64, 1 << 20)
            .map_or(4094, |n| n as usize),
        header_count: t
            .integer(r, "header_count", 1, 10_000)
            .map_or(100, |n| n as usize),
        header_size: t
            .integer(r, "header_size", 64, 1 << 20)
            .map_or(8190, |n| n as usize),
        body_size: t.size(r, "body_size").unwrap_or(10 << 20),
        header_timeout: t
            .duration(r, "header_timeout")
            .unwrap_or(Duration::from_secs(10)),
        body_timeout: t
            .positive_duration(r, "body_timeout")
            .unwrap_or(Duration::from_secs(60)),
        keepalive_timeout: t
            .duration(r, "keepalive_timeout")
            .unwrap_or(Duration::from_secs(5)),
        send_timeout: t
            .positive_duration(r, "send_timeout")
            .unwrap_or(Duration::from_secs(60)),
    };
    t.finish(r);
    limits
}

/// `[server.buffering]`, with nginx's size where it has one (`proxy_max_temp_file_size`) and
/// a per-answer buffer a little above its `proxy_buffers`.
fn buffering(r: &mut Reader, server: &mut Table) -> Buffering {
    let mut t = server.table(r, "buffering");
    let buffering = Buffering {
        memory: t.size(r, "memory").unwrap_or(DEFAULT_BUFFER_MEMORY),
        answer_buffer: t.size(r, "answer_buffer").unwrap_or(256 << 10),
        body_buffer: t.size(r, "body_buffer").unwrap_or(64 << 10),
        max_temp_file: t.size(r, "max_temp_file").unwrap_or(1 << 30),
        temp_dir: t.string(r, "temp_dir").map(PathBuf::from),
    };
    t.finish(r);
    buffering
}

/// `server.buffering.memory` when not given: room for a few hundred slow clients' buffers.
pub const DEFAULT_BUFFER_MEMORY: u64 = 128 << 20;

fn routing(r: &mut Reader, top: &mut Table, pools: &[Pool], routes: &[Route]) -> Option<Routing> {
    let mut t = top.table(r, "routing");
    let path = t.key_path("active");
    let node = t.get("active");
    let active = t.string(r, "active");
    let t_weights_span = t.get("weights").map(|n| n.span());
    let weights = weights(r, &mut t, pools);
    let keep_previous = t.boolean(r, "keep_previous").unwrap_or(false);
    let rollback = crate::health::rollback(r, &mut t);
    t.finish(r);
    let traffic = match (&active, &weights) {
        // With routes, `[routing]` steers the first pool route unless it says otherwise.
        (None, Ok(None)) if !routes.is_empty() => crate::routes::default_traffic(routes),
        _ => traffic(r, active, node, weights.ok()?, pools, &path),
    }?;
    if !routes.is_empty() && crate::routes::switched(routes, &traffic.active).is_none() {
        let span = node.map_or(0..0, |n| n.span());
        r.error(span, &path, format!("{:?} is in no route's pools; with [[routes]], [routing] steers the route that holds its pool (or leave it out to steer the first pool route)", traffic.active));
        return None;
    }
    if let Some(message) = crate::lanes::split_across_routes(routes, &traffic) {
        let span = t_weights_span.unwrap_or(0..0);
        r.error(span, &path.replace(".active", ".weights"), message);
        return None;
    }
    Some(Routing {
        active: traffic.active,
        weights: traffic.weights,
        keep_previous,
        rollback,
    })
}

/// Where traffic goes from `active` (read at `node`) and `weights`, among `pools`: the
/// only pool when there is one and neither is given.
pub(crate) fn traffic(
    r: &mut Reader,
    active: Option<String>,
    node: Option<&toml::Spanned<DeValue>>,
    weights: Option<Traffic>,
    pools: &[Pool],
    path: &str,
) -> Option<Traffic> {
    let weights_path = path.replace(".active", ".weights");
    Some(match (active, node, weights) {
        (Some(name), Some(node), split) => {
            if let Some(message) = crate::pool::unknown_pool(&name, pools) {
                r.error(node.span(), path, message);
                return None;
            }
            match split {
                Some(split) if split.share(&name) == 0.0 => {
                    let message = format!("{name:?} gets no share of {weights_path} ({split}); give it a weight or leave `active` out");
                    r.error(node.span(), path, message);
                    return None;
                }
                Some(split) => Traffic {
                    active: name,
                    weights: split.weights,
                },
                None => Traffic::to(&name),
            }
        }
        (None, Some(_), _) => return None,
        (_, None, Some(split)) => split,
        (_, None, None) => match pools {
            [only] => Traffic::to(&only.name),
            [] => return None,
            _ => {
                r.error_nowhere(path, "several pools are defined; say which one serves traffic, e.g. active = \"blue\"");
                return None;
            }
        },
    })
}

/// `weights = { blue = 90, green = 10 }`: integers 0 to 10000 naming pools, not all 0.
pub(crate) fn weights(
    r: &mut Reader,
    t: &mut Table,
    pools: &[Pool],
) -> Result<Option<Traffic>, ()> {
    let path = t.key_path("weights");
    let Some(node) = t.get("weights") else {
        return Ok(None);
    };
    let DeValue::Table(table) = node.get_ref() else {
        let message = format!(
            "expected a table like {{ blue = 90, green = 10 }}, found {}",
            crate::reader::kind(node.get_ref())
        );
        r.error(node.span(), &path, message);
        return Err(());
    };
    let mut weights = Vec::new();
    let mut bad = false;
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let key_path = format!("{path}.{name}");
        if let Some(message) = crate::pool::unknown_pool(&name, pools) {
            r.error(key.span(), &key_path, message);
            bad = true;
            continue;
        }
        match crate::reader::as_integer(r, value, &key_path, 0, 10_000) {
            Some(w) => weights.push((name, w as u32)),
            None => bad = true,
        }
    }
    if bad {
        return Err(());
    }
    match Traffic::split(&weights) {
        Some(split) => Ok(Some(split)),
        None => {
            r.error(
                node.span(),
                &path,
                "every weight is 0; give at least one pool a weight above 0",
            );
            Err(())
        }
    }
}

/// `$RUNTIME_DIRECTORY` (systemd sets it for `RuntimeDirectory=corral`, so a service running
/// as the `corral` user and root's `corral status` meet at `/run/corral`), else `/run/corral`
/// for root, else `$XDG_RUNTIME_DIR/corral`, else `/tmp/corral-UID`.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .map(PathBuf::from)
        })
        .filter(|p| !p.as_os_str().is_empty())
    {
        return dir;
    }
    let uid = real_uid();
    if uid == 0 {
        return PathBuf::from("/run/corral");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("corral"),
        None => PathBuf::from(format!("/tmp/corral-{uid}")),
    }
}

/// The real uid, read from /proc so this crate needs no libc binding.
fn real_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

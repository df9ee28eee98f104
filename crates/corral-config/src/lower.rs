//! Lowers the spanned TOML tree into [`Config`], table by table, collecting every error.
//! Over 400 lines because it is one flat list of every key with its default and range, read
//! top to bottom like the config reference; splitting it by table would scatter that list.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::model::{Bind, Config, Limits, Pool, Ready, Routing, RunAs, Server};
use crate::reader::{kind, Reader, Table};

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
    let server = server(r, &mut top);
    let log = crate::log::log(r, &mut top);
    let headers = crate::edge::headers(r, &mut top);
    let compression = crate::compression::compression(r, &mut top);
    let websocket = crate::websocket::websocket(r, &mut top);
    let rate_limits = crate::ratelimit::rules(r, &mut top);
    let rate_limit_store = crate::ratelimit::store(r, &mut top);
    let pools = pools(r, &mut top);
    let routing = routing(r, &mut top, &pools);
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
        pools,
    })
}

fn server(r: &mut Reader, top: &mut Table) -> Server {
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
    let accept_grace = t.duration(r, "accept_grace").unwrap_or(Duration::ZERO);
    let runtime_dir = t
        .string(r, "runtime_dir")
        .map_or_else(default_runtime_dir, PathBuf::from);
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
    let trusted_proxies = crate::edge::trusted_proxies(r, &mut t);
    let proxy_protocol = t.boolean(r, "proxy_protocol").unwrap_or(false);
    let watch_config = t.boolean(r, "watch_config").unwrap_or(false);
    let max_connections = t
        .integer(r, "max_connections", 1, 1_000_000)
        .map_or(10_000, |n| n as usize);
    t.finish(r);
    Server {
        trusted_proxies,
        proxy_protocol,
        watch_config,
        max_connections,
        listen,
        admin,
        graceful_timeout,
        accept_grace,
        runtime_dir,
        control_socket,
        threads,
        limits,
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
        keepalive_timeout: t
            .duration(r, "keepalive_timeout")
            .unwrap_or(Duration::from_secs(5)),
    };
    t.finish(r);
    limits
}

fn routing(r: &mut Reader, top: &mut Table, pools: &[Pool]) -> Option<Routing> {
    let mut t = top.table(r, "routing");
    let path = t.key_path("active");
    let node = t.get("active");
    let active = t.string(r, "active");
    let keep_previous = t.boolean(r, "keep_previous").unwrap_or(false);
    let rollback = crate::health::rollback(r, &mut t);
    t.finish(r);
    match (active, node) {
        (Some(name), Some(node)) => {
            if !pools.is_empty() && !pools.iter().any(|p| p.name == name) {
                let names: Vec<_> = pools.iter().map(|p| p.name.as_str()).collect();
                r.error(
                    node.span(),
                    &path,
                    format!(
                        "no pool is named {name:?}; the pools are: {}",
                        names.join(", ")
                    ),
                );
                return None;
            }
            Some(Routing {
                active: name,
                keep_previous,
                rollback,
            })
        }
        (None, Some(_)) => None,
        (_, None) => match pools {
            [only] => Some(Routing {
                active: only.name.clone(),
                keep_previous,
                rollback,
            }),
            [] => None,
            _ => {
                r.error_nowhere(&path, "several pools are defined; say which one serves traffic, e.g. active = \"blue\"");
                None
            }
        },
    }
}

fn pools(r: &mut Reader, top: &mut Table) -> Vec<Pool> {
    let path = top.key_path("pools");
    let node = top.get("pools");
    let mut out = Vec::new();
    match node.map(|n| (n, n.get_ref())) {
        None => r.error_nowhere(&path, "no pool is defined; add one, e.g. [pools.web] with command = [\"python3\", \"app.py\", \"--port\", \"{port}\"]"),
        Some((_, DeValue::Table(table))) => {
            let pools = Table::new(path, Some(table));
            for (name, span, value) in pools.entries() {
                let pool_path = pools.key_path(name);
                match value.get_ref() {
                    DeValue::Table(t) => {
                        if !valid_name(name) {
                            r.error(span, &pool_path, "a pool name may use letters, digits, '-' and '_' only");
                        }
                        out.extend(pool(r, name, &pool_path, t));
                    }
                    other => r.error(value.span(), &pool_path, format!("expected a table, found {}", kind(other))),
                }
            }
            if table.is_empty() {
                r.error(node.map_or(0..0, |n| n.span()), &pools.path, "no pool is defined under [pools]");
            }
        }
        Some((n, other)) => r.error(n.span(), &path, format!("expected a table of pools, found {}", kind(other))),
    }
    out
}

fn pool(r: &mut Reader, name: &str, path: &str, table: &DeTable) -> Option<Pool> {
    let mut t = Table::new(path, Some(table));
    let upstreams = crate::remote::upstreams(r, &mut t);
    let remote = upstreams.is_some();
    if remote {
        crate::remote::refuse_supervised_keys(r, &mut t);
    }
    let resolve_interval = crate::remote::resolve_interval(r, &mut t, remote);
    let command_path = t.key_path("command");
    let command_node = t.get("command");
    let command = if remote {
        None
    } else {
        t.string_array(r, "command")
    };
    match (&command, command_node) {
        _ if remote => {}
        (Some(c), Some(node)) if c.is_empty() => r.error(
            node.span(),
            &command_path,
            "is empty; name the program to run",
        ),
        (None, None) => r.error_nowhere(
            &command_path,
            "is missing; a pool needs the command that starts a worker, or upstreams (servers it forwards to)",
        ),
        _ => {}
    }
    let workers = match &upstreams {
        Some(list) => Some(list.len() as u32),
        None => workers(r, &mut t),
    };
    let bind = match t.choice(r, "bind", &["tcp", "fd", "unix"]) {
        Some("fd") => Bind::Fd,
        Some("unix") => Bind::Unix,
        _ => Bind::Tcp,
    };
    if let (Some(c), Some(node)) = (&command, command_node) {
        let uses = |p: &str| c.iter().any(|a| a.contains(p));
        if uses("{socket}") && bind != Bind::Unix {
            r.error(
                node.span(),
                &command_path,
                "uses {socket}, which only exists with bind = \"unix\"",
            );
        }
        if uses("{port}") && bind == Bind::Unix {
            r.error(
                node.span(),
                &command_path,
                "uses {port}, but with bind = \"unix\" the worker listens on {socket}",
            );
        }
    }
    let names_fd = command
        .as_ref()
        .is_some_and(|c| c.iter().any(|a| a.contains("fd://")));
    let listen_fds_env = match t.boolean(r, "listen_fds_env") {
        Some(set) if bind != Bind::Fd => {
            r.error_nowhere(
                &t.key_path("listen_fds_env"),
                format!("= {set} only applies with bind = \"fd\""),
            );
            set
        }
        Some(set) => set,
        None => !names_fd,
    };
    let ready = match t.choice(r, "ready", &["http", "tcp", "notify"]) {
        Some("tcp") => Ready::Tcp,
        Some("notify") => Ready::Notify,
        _ => Ready::Http,
    };
    let cwd = t.string(r, "cwd").map(PathBuf::from);
    let env = t.string_map(r, "env").unwrap_or_default();
    let start_timeout = t
        .duration(r, "start_timeout")
        .unwrap_or(Duration::from_secs(30));
    let kill_timeout = t
        .duration(r, "kill_timeout")
        .unwrap_or(Duration::from_secs(5));
    let concurrency = t
        .integer(r, "concurrency", 1, 100_000)
        .map_or(1, |n| n as u32);
    let queue_size = t
        .integer(r, "queue_size", 0, 1_000_000)
        .map_or(100, |n| n as u32);
    let queue_timeout = t
        .duration(r, "queue_timeout")
        .unwrap_or(Duration::from_secs(10));
    let timeout = t.duration(r, "timeout").unwrap_or(Duration::from_secs(30));
    let max_requests = t
        .integer(r, "max_requests", 0, i64::MAX)
        .map_or(0, |n| n as u64);
    let max_requests_jitter = t
        .integer(r, "max_requests_jitter", 0, i64::MAX)
        .map_or(0, |n| n as u64);
    let max_memory = t.size(r, "max_memory").filter(|n| *n > 0);
    let start_limit_burst = t
        .integer(r, "start_limit_burst", 1, 1000)
        .map_or(5, |n| n as u32);
    let start_limit_interval = t
        .duration(r, "start_limit_interval")
        .unwrap_or(Duration::from_secs(10));
    let run_as = run_as(r, &mut t);
    let smoke = crate::health::smoke(r, &mut t);
    let (health_path, mut health) = crate::health::health(r, &mut t);
    if remote {
        health.interval = health
            .interval
            .or(Some(crate::remote::DEFAULT_REMOTE_CHECK_INTERVAL));
    }
    t.finish(r);
    Some(Pool {
        name: name.to_string(),
        command: if remote {
            Vec::new()
        } else {
            command.filter(|c| !c.is_empty())?
        },
        upstreams: upstreams.unwrap_or_default(),
        resolve_interval,
        workers: workers?,
        bind,
        listen_fds_env,
        ready,
        health_path,
        smoke,
        health,
        cwd,
        env,
        start_timeout,
        kill_timeout,
        concurrency,
        queue_size,
        queue_timeout,
        timeout,
        max_requests,
        max_requests_jitter,
        max_memory,
        start_limit_burst,
        start_limit_interval,
        run_as,
    })
}

fn workers(r: &mut Reader, t: &mut Table) -> Option<u32> {
    let path = t.key_path("workers");
    match t.get("workers").map(|n| (n, n.get_ref())) {
        None => Some(1),
        Some((_, DeValue::String(s))) if s == "auto" => Some(auto_workers()),
        Some((n, DeValue::Integer(_))) => {
            crate::reader::as_integer(r, n, &path, 1, MAX_WORKERS).map(|n| n as u32)
        }
        Some((n, other)) => {
            r.error(
                n.span(),
                &path,
                format!("expected an integer or \"auto\", found {}", kind(other)),
            );
            None
        }
    }
}

/// `user` and `group`, resolved against this machine's user database.
fn run_as(r: &mut Reader, t: &mut Table) -> Option<RunAs> {
    let (user_path, group_path) = (t.key_path("user"), t.key_path("group"));
    let user_span = t.get("user").map(|n| n.span());
    let group_span = t.get("group").map(|n| n.span());
    let user = t.string(r, "user");
    let group = t.string(r, "group");
    let resolved_user = match (&user, user_span) {
        (Some(name), Some(span)) => match lookup_user(name) {
            Some(found) => Some(found),
            None => {
                r.error(
                    span,
                    &user_path,
                    format!("user {name:?} does not exist on this machine"),
                );
                return None;
            }
        },
        _ => None,
    };
    let resolved_group = match (&group, group_span.clone()) {
        (Some(name), Some(span)) => match lookup_group(name) {
            Some(gid) => Some(gid),
            None => {
                r.error(
                    span,
                    &group_path,
                    format!("group {name:?} does not exist on this machine"),
                );
                return None;
            }
        },
        _ => None,
    };
    match (user, resolved_user) {
        (Some(user), Some((uid, primary))) => Some(RunAs {
            group: group.unwrap_or_else(|| primary.to_string()),
            gid: resolved_group.unwrap_or(primary),
            user,
            uid,
        }),
        _ => {
            if group.is_some() {
                r.error(
                    group_span.unwrap_or(0..0),
                    &group_path,
                    "needs `user` too; corral drops privileges to a user and its group",
                );
            }
            None
        }
    }
}

/// (uid, primary gid) of a user name or number.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let user = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(uid.into()).ok().flatten(),
        Err(_) => nix::unistd::User::from_name(name).ok().flatten(),
    }?;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// The gid of a group name or number.
fn lookup_group(name: &str) -> Option<u32> {
    match name.parse::<u32>() {
        Ok(gid) => Some(gid),
        Err(_) => nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw()),
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

/// Gunicorn's rule of thumb, 2 x cores + 1, capped so big machines don't fork hundreds.
pub fn auto_workers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    (2 * cores + 1).min(AUTO_WORKERS_CAP)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

//! Lowering `[pools.NAME]`: the workers corral starts (or the upstreams it forwards to),
//! key by key with defaults and ranges, in the order of the config reference.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::lower::{AUTO_WORKERS_CAP, MAX_WORKERS};
use crate::model::{Bind, Pool, Ready, RunAs};
use crate::reader::{kind, Reader, Table};

pub(crate) fn pools(r: &mut Reader, top: &mut Table) -> Vec<Pool> {
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
    let app = if remote {
        None
    } else {
        crate::python::app(r, &mut t, command_node.map(|n| n.span()))
    };
    match (&command, command_node) {
        _ if remote || app.is_some() => {}
        (Some(c), Some(node)) if c.is_empty() => r.error(
            node.span(),
            &command_path,
            "is empty; name the program to run",
        ),
        (None, None) => r.error_nowhere(
            &command_path,
            "is missing; a pool needs the command that starts a worker, an app (a Python app corral preloads, e.g. app = \"mysite.wsgi:application\"), or upstreams (servers it forwards to)",
        ),
        _ => {}
    }
    let workers = match &upstreams {
        Some(list) => Some(list.len() as u32),
        None => workers(r, &mut t),
    };
    let uses = |p: &str| command.iter().flatten().any(|a| a.contains(p));
    let bind = match t.choice(r, "bind", &["tcp", "fd", "unix"]) {
        Some("fd") => Bind::Fd,
        Some("unix") => Bind::Unix,
        Some(_) => Bind::Tcp,
        // Not given: a command that names `{socket}` (and no `{port}`) says its worker
        // listens on a Unix socket, the cheaper way to reach it.
        None if uses("{socket}") && !uses("{port}") => Bind::Unix,
        // An app pool's sockets are bound by corral and handed over: Unix is cheaper.
        None if app.is_some() => Bind::Unix,
        None => Bind::Tcp,
    };
    if let (Some(_), Some(node)) = (&command, command_node) {
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
    let ready_span = t.get("ready").map(|n| n.span());
    let ready = match t.choice(r, "ready", &["http", "tcp", "notify"]) {
        Some("tcp") => Ready::Tcp,
        Some("notify") => Ready::Notify,
        _ => Ready::Http,
    };
    if let (Ready::Notify, Some(_), Some(span)) = (ready, &app, ready_span) {
        r.error(
            span,
            &t.key_path("ready"),
            "\"notify\" is for programs that speak sd_notify; an app pool's worker is ready when it answers: use \"http\" or \"tcp\"",
        );
    }
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
    let response_buffering = t.boolean(r, "response_buffering").unwrap_or(true);
    let request_buffering = t.boolean(r, "request_buffering").unwrap_or(true);
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
        command: if remote || app.is_some() {
            Vec::new()
        } else {
            command.filter(|c| !c.is_empty())?
        },
        app,
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
        response_buffering,
        request_buffering,
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

/// Why `name` is no pool of `pools`, or `None` when it is one (or there are none to check
/// against yet): for `routing.active`, `routing.weights` and `corral switch` alike.
pub fn unknown_pool(name: &str, pools: &[Pool]) -> Option<String> {
    if pools.is_empty() || pools.iter().any(|p| p.name == name) {
        return None;
    }
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    Some(format!(
        "no pool is named {name:?}; the pools are: {}",
        names.join(", ")
    ))
}

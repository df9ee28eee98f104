//! Prints the effective config back as TOML, for `corral check` (like `nginx -T`), that
//! loads back as the same config (`tests/roundtrip.rs`). A little over 400 lines: one
//! writer per table, kept in one place so a new key is printed beside its neighbours.

use std::fmt::Write;

use crate::model::{
    Bind, Config, HeaderPreset, LogFormat, OnStoreError, Pool, RateKey, Ready, StoreKind,
};
use crate::units::format_duration;

/// A TOML basic string, escaped by the toml crate: Rust's `{:?}` is not TOML (it writes
/// `\u{202e}` and `\0`, which no TOML reader takes). The one string writer of every file
/// corral writes (`corral check`'s print, `corral serve`'s config).
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A string value as `{:?}` writes it in this module: TOML, not Rust.
pub(crate) struct Q<'a>(pub(crate) &'a str);

impl std::fmt::Debug for Q<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&toml_string(self.0))
    }
}

/// A size as a TOML string of bytes: every `u64` reads back, where a TOML integer stops at
/// `i64::MAX`.
fn size(n: u64) -> String {
    format!("\"{n}\"")
}

/// The config after defaults and overrides, in the file's own syntax.
pub fn render(c: &Config) -> String {
    let mut out = String::new();
    let s = &c.server;
    let l = &s.limits;
    let list = |v: &[String]| {
        v.iter()
            .map(|x| toml_string(x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let listen: Vec<String> = s.listen.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(out, "# effective configuration of {}", c.source.display());
    let _ = writeln!(out, "[server]\nlisten = [{}]", list(&listen));
    let _ = writeln!(
        out,
        "admin = {:?}",
        Q(&s.admin.map(|a| a.to_string()).unwrap_or_default())
    );
    let _ = writeln!(
        out,
        "graceful_timeout = {:?}",
        format_duration(s.graceful_timeout)
    );
    let _ = writeln!(out, "accept_grace = {:?}", format_duration(s.accept_grace));
    let _ = writeln!(
        out,
        "runtime_dir = {:?}",
        Q(&s.runtime_dir.display().to_string())
    );
    let _ = writeln!(
        out,
        "state_dir = {:?}",
        Q(&s.state_dir.display().to_string())
    );
    let _ = writeln!(
        out,
        "control_socket = {:?}",
        Q(&s.control_socket
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default())
    );
    let _ = writeln!(out, "threads = {}", s.threads);
    let trusted: Vec<String> = s.trusted_proxies.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(out, "trusted_proxies = [{}]", list(&trusted));
    let fields: Vec<String> = s
        .forward_fields
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let _ = writeln!(out, "forward_fields = [{}]", list(&fields));
    let _ = writeln!(out, "underscores_in_headers = {}", s.underscores_in_headers);
    let _ = writeln!(out, "proxy_protocol = {}", s.proxy_protocol);
    let _ = writeln!(out, "max_connections = {}", s.max_connections);
    let _ = writeln!(out, "watch_config = {}", s.watch_config);
    if let Some(tls) = &s.tls {
        let addrs: Vec<String> = tls.listen.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "\n[server.tls]\nlisten = [{}]", list(&addrs));
        let _ = writeln!(
            out,
            "http2 = {}\nmax_streams = {}",
            tls.http2, tls.max_streams
        );
        if let Some(addr) = tls.redirect_http {
            let _ = writeln!(out, "redirect_http = \"{addr}\"");
        }
        let certs: Vec<String> = tls
            .certificates
            .iter()
            .map(|c| {
                format!(
                    "  {{ cert = {:?}, key = {:?} }},",
                    Q(&c.cert.display().to_string()),
                    Q(&c.key.display().to_string())
                )
            })
            .collect();
        let _ = writeln!(out, "certificates = [\n{}\n]", certs.join("\n"));
        if let Some(acme) = &tls.acme {
            render_acme(&mut out, acme, &s.state_dir);
        }
    }
    let _ = writeln!(out, "\n[server.limits]");
    let _ = writeln!(
        out,
        "request_line = {}\nheader_count = {}\nheader_size = {}",
        l.request_line, l.header_count, l.header_size
    );
    let _ = writeln!(out, "body_size = {}", size(l.body_size));
    let _ = writeln!(
        out,
        "header_timeout = {:?}",
        format_duration(l.header_timeout)
    );
    let _ = writeln!(out, "body_timeout = {:?}", format_duration(l.body_timeout));
    let _ = writeln!(
        out,
        "keepalive_timeout = {:?}",
        format_duration(l.keepalive_timeout)
    );
    let _ = writeln!(out, "send_timeout = {:?}", format_duration(l.send_timeout));
    let b = &c.server.buffering;
    let _ = writeln!(
        out,
        "\n[server.buffering]\nmemory = {}\nanswer_buffer = {}\nbody_buffer = {}\nmax_temp_file = {}",
        b.memory, b.answer_buffer, b.body_buffer, b.max_temp_file
    );
    match &b.temp_dir {
        Some(dir) => writeln!(out, "temp_dir = {:?}", dir.display().to_string()),
        None => writeln!(out, "# temp_dir: runtime_dir"),
    }
    .ok();
    let format = match c.log.format {
        LogFormat::Json => "json",
        LogFormat::Text => "text",
    };
    let _ = writeln!(
        out,
        "\n[log]\nformat = {format:?}\nlevel = {:?}\naccess = {}",
        Q(&c.log.level),
        c.log.access
    );
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let _ = writeln!(
        out,
        "file = {:?}",
        Q(&path(&c.log.file).unwrap_or_default())
    );
    let _ = writeln!(
        out,
        "access_file = {:?}",
        Q(&path(&c.log.access_file).unwrap_or_default())
    );
    let rotation = &c.log.rotation;
    let _ = writeln!(
        out,
        "max_size = {}\ndaily = {}\nkeep = {}",
        size(rotation.max_size.unwrap_or(0)),
        rotation.daily,
        rotation.keep
    );
    let preset = match c.headers.preset {
        HeaderPreset::None => "none",
        HeaderPreset::Strict => "strict",
    };
    let _ = writeln!(out, "\n[headers]\npreset = {preset:?}");
    let set: Vec<String> = c
        .headers
        .set
        .iter()
        .map(|(k, v)| format!("{:?} = {:?}", Q(k), Q(v)))
        .collect();
    let _ = writeln!(out, "set = {{ {} }}", set.join(", "));
    let _ = writeln!(out, "remove = [{}]", list(&c.headers.remove));
    let z = &c.compression;
    let tokens: Vec<String> = z.algorithms.iter().map(|a| a.token().to_string()).collect();
    let _ = writeln!(
        out,
        "\n[compression]\nenabled = {}\nalgorithms = [{}]\nlevel = {{ zstd = {}, br = {}, gzip = {} }}\nmin_size = {}\ntypes = [{}]",
        z.enabled,
        list(&tokens),
        z.levels[0],
        z.levels[1],
        z.levels[2],
        size(z.min_size),
        list(&z.types)
    );
    let w = &c.websocket;
    let _ = writeln!(out, "\n[websocket]");
    if let Some(n) = w.max_connections {
        let _ = writeln!(out, "max_connections = {n}");
    }
    let _ = writeln!(
        out,
        "idle_timeout = {:?}\ncounts_against_concurrency = {}",
        format_duration(w.idle_timeout),
        w.counts_against_concurrency
    );
    for rule in &c.rate_limits {
        let m = &rule.matcher;
        let mut conditions = Vec::new();
        if let Some(p) = &m.path_prefix {
            conditions.push(format!("path_prefix = {:?}", Q(p)));
        }
        if let Some(v) = &m.method {
            conditions.push(format!("method = {:?}", Q(v.as_ref())));
        }
        if let Some(h) = &m.host {
            conditions.push(format!("host = {:?}", Q(h)));
        }
        if m.websocket {
            conditions.push("websocket = true".into());
        }
        let key = match &rule.key {
            RateKey::ClientIp => "client_ip".to_string(),
            RateKey::Global => "global".to_string(),
            RateKey::Header(h) => format!("header:{h}"),
        };
        let _ = writeln!(
            out,
            "\n[[rate_limits]]\nname = {:?}\nmatch = {{ {} }}\nkey = {:?}\nrate = \"{}/{}\"\nburst = {}\nin_flight = {}\nheaders = {}",
            Q(&rule.name),
            conditions.join(", "),
            Q(&key),
            rule.count,
            format_duration(rule.per),
            rule.burst,
            rule.in_flight,
            rule.headers
        );
    }
    let store = &c.rate_limit_store;
    let _ = writeln!(out, "\n[rate_limit_store]");
    match &store.kind {
        StoreKind::Memory => {
            let _ = writeln!(out, "kind = \"memory\"");
        }
        StoreKind::Redis {
            url,
            timeout,
            on_error,
        } => {
            let on_error = match on_error {
                OnStoreError::Allow => "allow",
                OnStoreError::Deny => "deny",
            };
            let _ = writeln!(
                out,
                "kind = \"redis\"\nurl = {:?}\ntimeout = {:?}\non_error = {on_error:?}",
                Q(url),
                format_duration(*timeout)
            );
        }
    }
    let _ = writeln!(out, "max_keys = {}", store.max_keys);
    let _ = writeln!(
        out,
        "\n[routing]\nactive = {:?}\nkeep_previous = {}",
        Q(&c.routing.active),
        c.routing.keep_previous
    );
    if !c.routing.weights.is_empty() {
        let parts: Vec<String> = c
            .routing
            .weights
            .iter()
            .map(|(p, w)| format!("{:?} = {w}", Q(p)))
            .collect();
        let _ = writeln!(out, "weights = {{ {} }}", parts.join(", "));
    }
    if let Some(rb) = &c.routing.rollback {
        let _ = writeln!(
            out,
            "rollback_window = {:?}\nrollback_error_rate = {}\nrollback_min_requests = {}",
            format_duration(rb.window),
            rb.error_rate,
            rb.min_requests
        );
    }
    crate::routes::render(&mut out, &c.routes);
    for p in &c.pools {
        if !p.upstreams.is_empty() {
            render_remote(&mut out, p);
            continue;
        }
        match &p.app {
            Some(app) => {
                let _ = writeln!(
                    out,
                    "\n[pools.{}]\napp = {:?}\ninterface = {:?}\npython = {:?} # {}",
                    p.name,
                    Q(&app.target),
                    app.interface.as_str(),
                    Q(&app.python_written),
                    app.python.display()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "\n[pools.{}]\ncommand = [{}]",
                    p.name,
                    list(&p.command)
                );
            }
        }
        let _ = writeln!(out, "workers = {}", p.workers);
        let bind = match p.bind {
            Bind::Tcp => "tcp",
            Bind::Fd => "fd",
            Bind::Unix => "unix",
        };
        let ready = match p.ready {
            Ready::Tcp => "tcp",
            Ready::Http => "http",
            Ready::Notify => "notify",
        };
        let _ = writeln!(out, "bind = {bind:?}\nready = {ready:?}");
        if p.bind == Bind::Fd {
            let _ = writeln!(out, "listen_fds_env = {}", p.listen_fds_env);
        }
        if let Some(run_as) = &p.run_as {
            let _ = writeln!(
                out,
                "user = {:?}\ngroup = {:?}",
                Q(&run_as.user),
                Q(&run_as.group)
            );
        }
        if let Some(cwd) = &p.cwd {
            let _ = writeln!(out, "cwd = {:?}", Q(&cwd.display().to_string()));
        }
        let env: Vec<String> = p
            .env
            .iter()
            .map(|(k, v)| format!("{:?} = {:?}", Q(k), Q(v)))
            .collect();
        let _ = writeln!(out, "env = {{ {} }}", env.join(", "));
        let _ = writeln!(
            out,
            "start_timeout = {:?}",
            format_duration(p.start_timeout)
        );
        let _ = writeln!(out, "kill_timeout = {:?}", format_duration(p.kill_timeout));
        let _ = writeln!(
            out,
            "concurrency = {}\nqueue_size = {}",
            p.concurrency, p.queue_size
        );
        let _ = writeln!(
            out,
            "queue_timeout = {:?}",
            format_duration(p.queue_timeout)
        );
        let _ = writeln!(out, "timeout = {:?}", format_duration(p.timeout));
        let _ = writeln!(
            out,
            "max_requests = {}\nmax_requests_jitter = {}",
            p.max_requests, p.max_requests_jitter
        );
        let _ = writeln!(out, "max_memory = {}", size(p.max_memory.unwrap_or(0)));
        let _ = writeln!(out, "start_limit_burst = {}", p.start_limit_burst);
        let _ = writeln!(
            out,
            "start_limit_interval = {:?}",
            format_duration(p.start_limit_interval)
        );
        let _ = writeln!(
            out,
            "response_buffering = {}\nrequest_buffering = {}",
            p.response_buffering, p.request_buffering
        );
        render_health(&mut out, p);
    }
    out
}

/// A remote pool: its upstreams and the keys that apply to it.
fn render_remote(out: &mut String, p: &Pool) {
    let upstreams: Vec<String> = p
        .upstreams
        .iter()
        .map(|u| toml_string(&u.to_string()))
        .collect();
    let _ = writeln!(
        out,
        "\n[pools.{}]\nupstreams = [{}]\nresolve_interval = {:?}",
        p.name,
        upstreams.join(", "),
        format_duration(p.resolve_interval)
    );
    let _ = writeln!(
        out,
        "concurrency = {}\nqueue_size = {}\nqueue_timeout = {:?}\ntimeout = {:?}",
        p.concurrency,
        p.queue_size,
        format_duration(p.queue_timeout),
        format_duration(p.timeout)
    );
    let _ = writeln!(
        out,
        "response_buffering = {}\nrequest_buffering = {}",
        p.response_buffering, p.request_buffering
    );
    render_health(out, p);
}

/// `smoke` and `[pools.NAME.health]`.
fn render_health(out: &mut String, p: &Pool) {
    if !p.smoke.is_empty() {
        let checks: Vec<String> = p
            .smoke
            .iter()
            .map(|s| format!("{{ path = {:?}, status = {} }}", Q(&s.path), s.status))
            .collect();
        let _ = writeln!(out, "smoke = [{}]", checks.join(", "));
    }
    let h = &p.health;
    let _ = writeln!(
        out,
        "\n[pools.{}.health]\npath = {:?}",
        p.name,
        Q(&p.health_path)
    );
    if let Some(interval) = h.interval {
        let _ = writeln!(out, "interval = {:?}", format_duration(interval));
    }
    let statuses: Vec<String> = h.fail_status.iter().map(u16::to_string).collect();
    let _ = writeln!(
        out,
        "timeout = {:?}\nhealthy = {}\nunhealthy = {}\nmax_fails = {}\nfail_status = [{}]\neject_for = {:?}",
        format_duration(h.timeout),
        h.healthy,
        h.unhealthy,
        h.max_fails,
        statuses.join(", "),
        format_duration(h.eject_for)
    );
}

/// `[server.tls.acme]`, its storage resolved (the EAB key left out: it is a secret).
fn render_acme(out: &mut String, acme: &crate::Acme, state_dir: &std::path::Path) {
    let _ = writeln!(out, "\n[server.tls.acme]");
    if let Some(email) = &acme.email {
        let _ = writeln!(out, "email = {:?}", Q(email));
    }
    let domains: Vec<String> = acme
        .domains
        .iter()
        .map(|names| {
            let quoted: Vec<String> = names.iter().map(|n| format!("{:?}", Q(n))).collect();
            format!("[{}]", quoted.join(", "))
        })
        .collect();
    let _ = writeln!(out, "domains = [{}]", domains.join(", "));
    let _ = writeln!(out, "directory = {:?}", Q(&acme.directory));
    if let Some(ca) = &acme.directory_ca {
        let _ = writeln!(out, "directory_ca = {:?}", Q(&ca.display().to_string()));
    }
    let _ = writeln!(out, "challenge = \"{}\"", acme.challenge.name());
    let storage = acme
        .storage
        .clone()
        .unwrap_or_else(|| state_dir.join("acme"));
    let _ = writeln!(out, "storage = {:?}", Q(&storage.display().to_string()));
    let _ = writeln!(out, "retry = \"{}\"", crate::format_duration(acme.retry));
    if let Some(eab) = &acme.eab {
        let _ = writeln!(
            out,
            "eab = {{ kid = {:?}, hmac_key = \"(hidden)\" }}",
            Q(&eab.kid)
        );
    }
}

use std::path::Path;
use std::time::Duration;

use super::*;

mod python;
mod roundtrip;
mod routes;
mod traffic;

fn ok(text: &str) -> Config {
    match parse(Path::new("corral.toml"), text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<String> {
    match parse(Path::new("corral.toml"), text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const MINIMAL: &str = "[pools.web]\ncommand = [\"app\", \"--port\", \"{port}\"]\n";

#[test]
fn minimal_file_takes_every_default() {
    let c = ok(MINIMAL);
    assert_eq!(
        c.server.listen,
        vec!["127.0.0.1:8080".parse().expect("addr")]
    );
    assert_eq!(
        c.server.admin,
        Some("127.0.0.1:9901".parse().expect("addr"))
    );
    assert_eq!(c.server.graceful_timeout, Duration::from_secs(30));
    assert_eq!(c.server.limits.request_line, 4094);
    assert_eq!(c.server.limits.header_count, 100);
    assert_eq!(c.server.limits.header_size, 8190);
    assert_eq!(c.routing.active, "web");
    let p = &c.pools[0];
    assert_eq!((p.workers, p.bind, p.ready), (1, Bind::Tcp, Ready::Http));
    assert_eq!(p.health_path, "/health");
    assert_eq!(
        (p.concurrency, p.queue_size, p.max_requests, p.max_memory),
        (1, 100, 0, None)
    );
    assert_eq!(
        (p.timeout, p.queue_timeout),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    assert_eq!(c.server.accept_grace, Duration::ZERO);
}

#[test]
fn three_mistakes_are_all_reported_with_places() {
    let text = "[server]\nlisten = [\"127.0.0.1:8080\"]\ngraceful_timeot = \"5s\"\n\n[pools.web]\ncommand = [\"app\"]\nworkers = \"four\"\nstart_timeout = \"30\"\n";
    let e = errs(text);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e.iter().any(|m| m.starts_with("corral.toml:3:1: server.graceful_timeot: unknown key; did you mean `graceful_timeout`?")), "{e:#?}");
    assert!(
        e.iter().any(|m| m
            .starts_with("corral.toml:7:11: pools.web.workers: expected an integer or \"auto\"")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m
            .starts_with("corral.toml:8:17: pools.web.start_timeout: \"30\" is not a duration")),
        "{e:#?}"
    );
}

#[test]
fn syntax_errors_have_a_place() {
    let e = errs("[server\nlisten = 1\n");
    assert!(e[0].starts_with("corral.toml:1:"), "{e:#?}");
    assert!(e[0].contains("TOML syntax error"), "{e:#?}");
}

#[test]
fn missing_command_and_bad_choices() {
    let e = errs("[pools.web]\nbind = \"pipe\"\n");
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.command: is missing")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m
            .contains("pools.web.bind: \"pipe\" is not allowed; expected one of \"tcp\", \"fd\"")),
        "{e:#?}"
    );
}

#[test]
fn several_pools_need_an_active_one() {
    let text = "[pools.blue]\ncommand = [\"a\"]\n[pools.green]\ncommand = [\"b\"]\n";
    assert!(errs(text).iter().any(|m| m.contains("routing.active")));
    let c = ok(&format!("[routing]\nactive = \"green\"\n{text}"));
    assert_eq!(c.active_pool().map(|p| p.name.as_str()), Some("green"));
    let e = errs(&format!("[routing]\nactive = \"red\"\n{text}"));
    assert!(e[0].contains("no pool is named \"red\""), "{e:#?}");
}

#[test]
fn out_of_range_and_wrong_types() {
    let e = errs("[server.limits]\nheader_count = 0\nbody_size = \"ten\"\n[pools.web]\ncommand = \"app\"\nworkers = 5000\n");
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e
        .iter()
        .any(|m| m.contains("server.limits.header_count: 0 is out of range")));
    assert!(e
        .iter()
        .any(|m| m.contains("server.limits.body_size: \"ten\" is not a size")));
    assert!(e
        .iter()
        .any(|m| m.contains("pools.web.command: expected an array of strings")));
    assert!(e
        .iter()
        .any(|m| m.contains("pools.web.workers: 5000 is out of range")));
}

#[test]
fn env_overrides_port_host_and_workers() {
    let mut c = ok(MINIMAL);
    let env = |k: &str| match k {
        "PORT" => Some("5000".to_string()),
        "HOST" => Some("0.0.0.0".to_string()),
        "WEB_CONCURRENCY" => Some("7".to_string()),
        _ => None,
    };
    apply_env(&mut c, &env).expect("valid env");
    assert_eq!(c.server.listen[0], "0.0.0.0:5000".parse().expect("addr"));
    assert_eq!(c.pools[0].workers, 7);
}

#[test]
fn bad_env_is_named() {
    let mut c = ok(MINIMAL);
    let env = |k: &str| (k == "PORT").then(|| "eighty".to_string());
    let e = apply_env(&mut c, &env).expect_err("bad PORT");
    assert!(
        e.to_string()
            .contains("$PORT: \"eighty\" is not a port number"),
        "{e}"
    );
}

#[test]
fn lookup_order() {
    let explicit = locate(Some(Path::new("/x.toml")), Some("/y.toml")).expect("explicit");
    assert_eq!(explicit, Path::new("/x.toml"));
    let from_env = locate(None, Some("/y.toml")).expect("env");
    assert_eq!(from_env, Path::new("/y.toml"));
}

#[test]
fn rendered_config_reads_back_the_same() {
    let text = "[server]\nlisten = [\"127.0.0.1:8000\", \"[::1]:8001\"]\nadmin = \"\"\n[log]\nformat = \"text\"\n[pools.web]\ncommand = [\"app\", \"{port}\"]\nworkers = 3\nbind = \"fd\"\nready = \"tcp\"\nenv = { A = \"1\" }\ncwd = \"/srv\"\nconcurrency = 4\nmax_requests = 50\nmax_requests_jitter = 10\nmax_memory = \"64MiB\"\ntimeout = \"2s\"\n";
    let c = ok(text);
    let mut again = ok(&render(&c));
    again.source = c.source.clone();
    assert_eq!(again, c);
}

#[test]
fn a_socket_placeholder_means_unix_unless_bind_says_otherwise() {
    let c = ok("[pools.web]\ncommand = [\"app\", \"--unix\", \"{socket}\"]\n");
    assert_eq!(c.pools[0].bind, Bind::Unix);
    assert_eq!(ok(&render(&c)).pools[0].bind, Bind::Unix);
    let c = ok("[pools.web]\ncommand = [\"app\", \"--port\", \"{port}\"]\n");
    assert_eq!(c.pools[0].bind, Bind::Tcp);
    let e = errs("[pools.web]\ncommand = [\"app\", \"--unix\", \"{socket}\"]\nbind = \"tcp\"\n");
    assert!(
        e[0].starts_with("corral.toml:2:11: pools.web.command: uses {socket}"),
        "{e:#?}"
    );
    // Both placeholders: the command is wrong whichever way, and says so.
    let e = errs("[pools.web]\ncommand = [\"app\", \"{port}\", \"{socket}\"]\n");
    assert!(e[0].contains("uses {socket}"), "{e:#?}");
}

#[test]
fn users_and_groups_are_resolved_or_refused_with_a_place() {
    let c = ok("[pools.web]\ncommand = [\"app\"]\nuser = \"nobody\"\n");
    let run_as = c.pools[0].run_as.clone().expect("run_as");
    assert_eq!((run_as.uid, run_as.gid), (65534, 65534));
    let c = ok("[pools.web]\ncommand = [\"app\"]\nuser = \"0\"\ngroup = \"12\"\n");
    assert_eq!(
        c.pools[0].run_as.as_ref().map(|r| (r.uid, r.gid)),
        Some((0, 12))
    );
    let e = errs("[pools.web]\ncommand = [\"app\"]\nuser = \"no-such-user-here\"\n");
    assert!(
        e[0].starts_with(
            "corral.toml:3:8: pools.web.user: user \"no-such-user-here\" does not exist"
        ),
        "{e:#?}"
    );
    let e = errs("[pools.web]\ncommand = [\"app\"]\ngroup = \"nogroup\"\n");
    assert!(e[0].contains("pools.web.group: needs `user` too"), "{e:#?}");
}

#[test]
fn edge_settings_default_to_trusting_nobody_and_hiding_versions() {
    let c = ok(MINIMAL);
    assert!(c.server.trusted_proxies.is_empty());
    assert!(!c.server.proxy_protocol);
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.headers.preset, HeaderPreset::None);
    assert_eq!(c.headers.remove, ["Server", "X-Powered-By"]);
}

#[test]
fn forward_fields_default_to_all_six_and_take_a_subset_in_any_case() {
    assert_eq!(ok(MINIMAL).server.forward_fields, ForwardedField::ALL);
    let c = ok(&format!(
        "[server]\nforward_fields = [\"x-forwarded-proto\", \"X-Forwarded-For\"]\n{MINIMAL}"
    ));
    assert_eq!(
        c.server.forward_fields,
        [
            ForwardedField::XForwardedProto,
            ForwardedField::XForwardedFor
        ]
    );
    assert_eq!(
        ok(&render(&c)).server.forward_fields,
        c.server.forward_fields
    );
    let none = ok(&format!("[server]\nforward_fields = []\n{MINIMAL}"));
    assert!(none.server.forward_fields.is_empty());

    let bad = errs(&format!(
        "[server]\nforward_fields = [\"X-Forwarded-For\", \"Forwarded\", \"x-forwarded-for\"]\n{MINIMAL}"
    ));
    assert!(
        bad.iter().any(|e| e.contains("corral.toml:2:38: server.forward_fields[1]")
            && e.contains("\"Forwarded\" is not a field corral adds; expected one of X-Forwarded-For, X-Real-IP")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("server.forward_fields[2]") && e.contains("listed twice")),
        "{bad:?}"
    );
}

#[test]
fn edge_settings_are_read_and_checked() {
    let c = ok(&format!(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nproxy_protocol = true\nmax_connections = 50\n\
         [headers]\npreset = \"strict\"\nset = {{ \"Content-Security-Policy\" = \"default-src 'self'\" }}\nremove = []\n{MINIMAL}"
    ));
    let trusted: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(trusted, ["10.0.0.0/8", "::1/128"]);
    assert!(c.server.proxy_protocol);
    assert_eq!(c.headers.preset, HeaderPreset::Strict);
    assert_eq!(c.headers.set.len(), 1);
    assert!(c.headers.remove.is_empty());
    // The effective config reads back the same.
    assert_eq!(ok(&render(&c)).headers, c.headers);

    let bad = errs(&format!(
        "[server]\ntrusted_proxies = [\"10.0.0.0/33\", \"proxy.local\"]\n[headers]\npreset = \"paranoid\"\nset = {{ \"Bad Name\" = \"x\" }}\n{MINIMAL}"
    ));
    assert!(
        bad.iter().any(
            |e| e.contains("corral.toml:2:20: server.trusted_proxies[0]")
                && e.contains("prefix length")
        ),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("server.trusted_proxies[1]") && e.contains("not an IP address")),
        "{bad:?}"
    );
    assert!(bad.iter().any(|e| e.contains("headers.preset")), "{bad:?}");
    assert!(
        bad.iter().any(|e| e.contains("headers.set.Bad Name")),
        "{bad:?}"
    );
}

#[test]
fn rate_limits_are_read_checked_and_rendered_back() {
    let c = ok(&format!(
        "[[rate_limits]]\nname = \"api\"\nmatch = {{ path_prefix = \"/api\", method = \"get\" }}\nkey = \"header:X-Api-Key\"\nrate = \"10/s\"\nburst = 20\nin_flight = 2\n\
         [[rate_limits]]\nname = \"ws\"\nmatch = {{ websocket = true }}\nrate = \"5/s\"\n\
         [rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\non_error = \"deny\"\n{MINIMAL}"
    ));
    assert_eq!(c.rate_limits.len(), 2);
    let api = &c.rate_limits[0];
    assert_eq!(
        (api.count, api.per, api.burst, api.in_flight),
        (10, Duration::from_secs(1), 20, 2)
    );
    assert_eq!(api.key, RateKey::Header("x-api-key".into()));
    assert_eq!(api.matcher.method.as_deref(), Some("GET"));
    assert_eq!(
        c.rate_limits[1].burst, 5,
        "burst defaults to the rate's count"
    );
    assert!(matches!(
        c.rate_limit_store.kind,
        StoreKind::Redis {
            on_error: OnStoreError::Deny,
            ..
        }
    ));
    let again = ok(&render(&c));
    assert_eq!(again.rate_limits, c.rate_limits);
    assert_eq!(again.rate_limit_store, c.rate_limit_store);

    let bad = errs(&format!(
        "[[rate_limits]]\nname = \"a\"\nrate = \"10 per second\"\nkey = \"cookie\"\nmatch = {{ paht = \"/\" }}\n\
         [[rate_limits]]\nname = \"a\"\nrate = \"1/s\"\n[rate_limit_store]\nkind = \"redis\"\n{MINIMAL}"
    ));
    for expected in [
        "rate_limits[0].rate",
        "rate_limits[0].key",
        "rate_limits[0].match.paht",
        "rate_limits[1].name",
        "rate_limit_store.url",
    ] {
        assert!(
            bad.iter().any(|e| e.contains(expected)),
            "{expected} in {bad:?}"
        );
    }
}

#[test]
fn systemd_variables_are_set_unless_the_command_names_the_fd() {
    let fd = |command: &str, extra: &str| {
        ok(&format!(
            "[pools.web]\ncommand = {command}\nbind = \"fd\"\n{extra}"
        ))
        .pools[0]
            .listen_fds_env
    };
    assert!(fd("[\"gunicorn\", \"app:app\"]", ""));
    assert!(!fd(
        "[\"gunicorn\", \"--bind\", \"fd://3\", \"app:app\"]",
        ""
    ));
    assert!(fd(
        "[\"gunicorn\", \"--bind\", \"fd://3\", \"app:app\"]",
        "listen_fds_env = true\n"
    ));
    let e = errs(&format!("{MINIMAL}listen_fds_env = false\n"));
    assert!(
        e[0].contains("pools.web.listen_fds_env") && e[0].contains("bind = \"fd\""),
        "{e:?}"
    );
}

#[test]
fn compression_is_off_by_default_and_reads_every_key() {
    let c = ok(MINIMAL);
    assert!(!c.compression.enabled);
    assert_eq!(c.compression.algorithms, Coding::ALL.to_vec());
    assert_eq!(c.compression.levels, DEFAULT_LEVELS);
    assert_eq!(c.compression.min_size, 1024);
    assert_eq!(c.compression.types.len(), DEFAULT_TYPES.len());
    let text = format!(
        "{MINIMAL}[compression]\nenabled = true\nalgorithms = [\"gzip\", \"br\"]\nlevel = {{ gzip = 1, br = 11 }}\nmin_size = \"2KiB\"\ntypes = [\"Text/HTML\", \"application/*+json\"]\n"
    );
    let c = ok(&text);
    let z = &c.compression;
    assert!(z.enabled);
    assert_eq!(z.algorithms, vec![Coding::Gzip, Coding::Brotli]);
    assert_eq!(z.levels, [3, 11, 1]);
    assert_eq!(z.min_size, 2048);
    assert_eq!(z.types, vec!["text/html", "application/*+json"]);
    assert!(render(&c).contains("algorithms = [\"gzip\", \"br\"]"));
}

#[test]
fn compression_errors_name_the_entry() {
    let text = format!(
        "{MINIMAL}[compression]\nalgorithms = [\"gzip\", \"deflate\", \"gzip\"]\nlevel = {{ gzip = 12, lz4 = 1 }}\ntypes = [\"image/png\", \"text\", \"video/*\", \"image/svg+xml\"]\n"
    );
    let errors = errs(&text).join("\n");
    for expected in [
        "compression.algorithms[1]: \"deflate\" is not a coding corral applies",
        "compression.algorithms[2]: \"gzip\" is listed twice",
        "compression.level.gzip",
        "compression.level.lz4: unknown key",
        "compression.types[0]: \"image/png\" is compressed already",
        "compression.types[1]: \"text\" is not a media type",
        "compression.types[2]: \"video/*\" is compressed already",
    ] {
        assert!(
            errors.contains(expected),
            "{expected:?} missing from:\n{errors}"
        );
    }
    assert!(!errors.contains("types[3]"), "{errors}");
    let empty = format!("{MINIMAL}[compression]\nalgorithms = []\n");
    assert!(errs(&empty)[0].contains("needs at least one coding"));
}

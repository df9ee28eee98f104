//! How traffic reaches the pools: listeners bound once, `[websocket]`, health and ejection,
//! remote pools, smoke checks and rollback. Read, checked, rendered back.

use std::time::Duration;

use super::*;

#[test]
fn an_address_bound_twice_is_refused_where_it_is_written() {
    let twice = format!("[server]\nlisten = [\"127.0.0.1:8000\", \"127.0.0.1:8000\"]\n{MINIMAL}");
    let e = errs(&twice);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("corral.toml:2:29: server.listen[1]: lists 127.0.0.1:8000 a second time"),
        "{e:#?}"
    );
    let shared =
        format!("[server]\nlisten = \"127.0.0.1:8000\"\nadmin = \"127.0.0.1:8000\"\n{MINIMAL}");
    let e = errs(&shared);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with(
            "corral.toml:3:9: server.admin: is 127.0.0.1:8000, which server.listen also serves"
        ),
        "{e:#?}"
    );
    let default_admin = format!("[server]\nlisten = \"127.0.0.1:9901\"\n{MINIMAL}");
    let e = errs(&default_admin);
    assert!(
        e[0].starts_with(
            "corral.toml:2:10: server.listen: serves 127.0.0.1:9901, the default server.admin"
        ),
        "{e:#?}"
    );
    ok(&format!(
        "[server]\nlisten = \"127.0.0.1:9901\"\nadmin = \"\"\n{MINIMAL}"
    ));
}

#[test]
fn websocket_limits_default_read_back_and_refuse_a_zero_idle_timeout() {
    let c = ok(MINIMAL);
    assert_eq!(c.websocket.max_connections, None);
    assert_eq!(c.websocket.idle_timeout, Duration::from_secs(300));
    assert!(!c.websocket.counts_against_concurrency);
    let c = ok(&format!("[websocket]\nmax_connections = 200\nidle_timeout = \"2s\"\ncounts_against_concurrency = true\n{MINIMAL}"));
    assert_eq!(c.websocket.max_connections, Some(200));
    assert_eq!(c.websocket.idle_timeout, Duration::from_secs(2));
    assert!(c.websocket.counts_against_concurrency);
    assert_eq!(ok(&render(&c)).websocket, c.websocket);
    let e = errs(&format!(
        "[websocket]\nidle_timeout = \"0s\"\nmax_connections = 0\n{MINIMAL}"
    ));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e.iter().any(|m| m.starts_with("corral.toml:2:16: websocket.idle_timeout: must be more than 0")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(
            |m| m.starts_with("corral.toml:3:19: websocket.max_connections: 0 is out of range")
        ),
        "{e:#?}"
    );
}

#[test]
fn health_checks_default_off_read_back_and_name_bad_values() {
    let c = ok(MINIMAL);
    let h = &c.pools[0].health;
    assert_eq!(h.interval, None);
    assert_eq!((h.healthy, h.unhealthy, h.max_fails), (2, 3, 3));
    assert_eq!(h.fail_status, vec![502, 503, 504]);
    assert_eq!(h.eject_for, Duration::from_secs(10));
    let text = format!("{MINIMAL}[pools.web.health]\npath = \"/up\"\ninterval = \"500ms\"\ntimeout = \"1s\"\nhealthy = 1\nunhealthy = 2\nmax_fails = 0\nfail_status = [500, 503]\neject_for = \"30s\"\n");
    let c = ok(&text);
    let h = &c.pools[0].health;
    assert_eq!(h.interval, Some(Duration::from_millis(500)));
    assert_eq!((h.healthy, h.unhealthy, h.max_fails), (1, 2, 0));
    assert_eq!(h.fail_status, vec![500, 503]);
    assert_eq!(ok(&render(&c)).pools[0].health, c.pools[0].health);
    let e = errs(&format!(
        "{MINIMAL}[pools.web.health]\ninterval = \"0s\"\nfail_status = [404]\nunhealthy = 0\n"
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.health.interval: must be more than 0")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.health.fail_status[0]: 404 is out of range")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.health.unhealthy: 0 is out of range")),
        "{e:#?}"
    );
}

#[test]
fn a_remote_pool_names_its_upstreams_and_refuses_keys_of_supervised_workers() {
    let text = "[pools.api]\nupstreams = [\"127.0.0.1:9001\", \"localhost:9002\", \"[::1]:9003\"]\nresolve_interval = \"10s\"\nconcurrency = 50\n";
    let c = ok(text);
    let p = &c.pools[0];
    assert!(p.command.is_empty());
    assert_eq!(p.workers, 3);
    assert_eq!(p.upstreams[2].to_string(), "[::1]:9003");
    assert_eq!(p.resolve_interval, Duration::from_secs(10));
    assert_eq!(
        p.health.interval,
        Some(Duration::from_secs(5)),
        "remote pools are checked by default"
    );
    let again = ok(&render(&c));
    assert_eq!(again.pools[0], c.pools[0]);
    let e = errs("[pools.api]\nupstreams = [\"127.0.0.1:9001\", \"nowhere\"]\nworkers = 2\ncommand = [\"app\"]\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m
                .starts_with("corral.toml:2:32: pools.api.upstreams[1]: \"nowhere\" has no port")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m
            .starts_with("corral.toml:3:11: pools.api.workers: applies to workers corral starts")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m
            .starts_with("corral.toml:4:11: pools.api.command: applies to workers corral starts")),
        "{e:#?}"
    );
    let e = errs(&format!("{MINIMAL}resolve_interval = \"5s\"\n"));
    assert!(
        e[0].contains("pools.web.resolve_interval: applies to pools with upstreams only"),
        "{e:#?}"
    );
    let e = errs("[pools.api]\n");
    assert!(
        e[0].contains(
            "pools.api.command: is missing; a pool needs the command that starts a worker, an app"
        ),
        "{e:#?}"
    );
}

#[test]
fn smoke_checks_and_keep_previous_are_read_back_and_bad_ones_named() {
    let text = "[routing]\nactive = \"blue\"\nkeep_previous = true\n[pools.blue]\ncommand = [\"app\"]\n[pools.green]\ncommand = [\"app\"]\nsmoke = [{ path = \"/health\" }, { path = \"/api/ping\", status = 204 }]\n";
    let c = ok(text);
    assert!(c.routing.keep_previous);
    let green = &c.pools[1];
    assert_eq!(green.smoke.len(), 2);
    assert_eq!((green.smoke[0].status, green.smoke[1].status), (200, 204));
    let again = ok(&render(&c));
    assert_eq!(again.pools[1].smoke, green.smoke);
    assert!(again.routing.keep_previous);
    let e = errs(
        "[pools.web]\ncommand = [\"app\"]\nsmoke = [{ path = \"health\" }, { status = 99 }, 3]\n",
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.smoke[0].path: \"health\" must start with '/'")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.smoke[1].status: 99 is out of range")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.smoke[1].path: is missing")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("pools.web.smoke[2]: expected an array of checks")),
        "{e:#?}"
    );
}

#[test]
fn rollback_needs_a_window_and_a_share_between_0_and_1() {
    assert_eq!(ok(MINIMAL).routing.rollback, None);
    let c = ok(&format!("[routing]\nactive = \"web\"\nrollback_window = \"2m\"\nrollback_error_rate = 0.2\n{MINIMAL}"));
    let rb = c.routing.rollback.expect("rollback");
    assert_eq!(
        (rb.window, rb.error_rate, rb.min_requests),
        (Duration::from_secs(120), 0.2, 20)
    );
    assert_eq!(ok(&render(&c)).routing.rollback, c.routing.rollback);
    let e = errs(&format!(
        "[routing]\nactive = \"web\"\nrollback_window = \"1m\"\nrollback_error_rate = 5\n{MINIMAL}"
    ));
    assert!(
        e[0].contains("routing.rollback_error_rate: expected a share between 0 and 1"),
        "{e:#?}"
    );
}

#[test]
fn weights_split_traffic_name_their_primary_and_bad_ones_are_named() {
    let pools = "[pools.blue]\ncommand = [\"app\"]\n[pools.green]\ncommand = [\"app\"]\n";
    let c = ok(&format!(
        "[routing]\nweights = {{ blue = 90, green = 10 }}\n{pools}"
    ));
    assert_eq!(c.routing.active, "blue");
    assert_eq!(
        c.routing.weights,
        vec![("blue".to_string(), 90), ("green".to_string(), 10)]
    );
    assert!((c.routing.traffic().share("green") - 0.1).abs() < 1e-9);
    assert_eq!(ok(&render(&c)).routing, c.routing);
    // One pool with a weight is no split.
    let one = ok(&format!(
        "[routing]\nweights = {{ blue = 0, green = 5 }}\n{pools}"
    ));
    assert_eq!(
        (one.routing.active.as_str(), one.routing.weights.len()),
        ("green", 0)
    );
    let e = errs(&format!(
        "[routing]\nweights = {{ blue = 90, red = 10 }}\n{pools}"
    ));
    assert!(
        e[0].contains("routing.weights.red: no pool is named \"red\""),
        "{e:#?}"
    );
    let e = errs(&format!("[routing]\nweights = {{ blue = 0 }}\n{pools}"));
    assert!(
        e[0].contains("routing.weights: every weight is 0"),
        "{e:#?}"
    );
    let e = errs(&format!("[routing]\nweights = {{ blue = -1 }}\n{pools}"));
    assert!(
        e[0].contains("routing.weights.blue: -1 is out of range"),
        "{e:#?}"
    );
    let e = errs(&format!(
        "[routing]\nactive = \"green\"\nweights = {{ blue = 100 }}\n{pools}"
    ));
    assert!(
        e[0].contains("routing.active: \"green\" gets no share of routing.weights"),
        "{e:#?}"
    );
    let e = errs(&format!("[routing]\nweights = \"blue\"\n{pools}"));
    assert!(e[0].contains("routing.weights: expected a table"), "{e:#?}");
}

#[test]
fn tls_takes_one_certificate_or_several_relative_to_the_file_and_names_what_is_wrong() {
    let one = ok("[server]\nlisten = [\"127.0.0.1:8080\"]\n[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"site.pem\"\nkey = \"site.key\"\nredirect_http = \"127.0.0.1:8081\"\n[pools.web]\ncommand = [\"app\"]\n");
    let tls = one.server.tls.as_ref().expect("tls");
    assert_eq!(tls.listen, vec!["127.0.0.1:8443".parse().expect("addr")]);
    assert_eq!(tls.certificates.len(), 1);
    assert!(tls.certificates[0].cert.ends_with("site.pem"));
    assert!(tls.certificates[0].cert.is_absolute() || tls.certificates[0].cert.starts_with("."));
    assert_eq!(tls.certificates[0].place.line, 5);
    assert_eq!(
        tls.redirect_http,
        Some("127.0.0.1:8081".parse().expect("addr"))
    );
    let again = ok(&render(&one));
    let back = again.server.tls.expect("tls rendered");
    assert_eq!(
        (back.listen, back.redirect_http),
        (tls.listen.clone(), tls.redirect_http)
    );
    assert_eq!(back.certificates[0].cert, tls.certificates[0].cert);

    let several = ok("[server.tls]\nlisten = \"127.0.0.1:8443\"\ncertificates = [\n  { cert = \"a.pem\", key = \"a.key\" },\n  { cert = \"b.pem\", key = \"b.key\" },\n]\n[pools.web]\ncommand = [\"app\"]\n");
    let certs = &several.server.tls.expect("tls").certificates;
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1].place.key, "server.tls.certificates[1]");
    assert_eq!(certs[1].place.line, 5);

    let e = errs("[server.tls]\nlisten = [\"127.0.0.1:8443\"]\n[pools.web]\ncommand = [\"app\"]\n");
    assert!(
        e[0].contains("server.tls.cert: is missing; HTTPS needs a certificate"),
        "{e:#?}"
    );
    let e =
        errs("[server.tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n[pools.web]\ncommand = [\"app\"]\n");
    assert!(
        e[0].contains("server.tls.listen: needs at least one address"),
        "{e:#?}"
    );
    let e = errs("[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncertificates = [{ cert = \"a.pem\" }]\n[pools.web]\ncommand = [\"app\"]\n");
    assert!(
        e[0].contains("server.tls.certificates[0].key: is missing"),
        "{e:#?}"
    );
    let e = errs("[server]\nlisten = [\"127.0.0.1:8443\"]\n[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"a.pem\"\nkey = \"a.key\"\n[pools.web]\ncommand = [\"app\"]\n");
    assert!(e[0].contains("127.0.0.1:8443 is served twice"), "{e:#?}");
    let e = errs("[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"a.pem\"\nkey = \"a.key\"\nciphers = []\n[pools.web]\ncommand = [\"app\"]\n");
    assert!(e[0].contains("server.tls.ciphers: unknown key"), "{e:#?}");
    let e = errs("[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"a.pem\"\nkey = \"a.key\"\nmax_streams = 0\n[pools.web]\ncommand = [\"app\"]\n");
    assert!(
        e[0].contains("server.tls.max_streams: 0 is out of range"),
        "{e:#?}"
    );
    let h1 = ok("[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"a.pem\"\nkey = \"a.key\"\nhttp2 = false\nmax_streams = 16\n[pools.web]\ncommand = [\"app\"]\n");
    let tls = h1.server.tls.expect("tls");
    assert_eq!((tls.http2, tls.max_streams), (false, 16));
    assert!(one
        .server
        .tls
        .as_ref()
        .is_some_and(|t| t.http2 && t.max_streams == 128));
}

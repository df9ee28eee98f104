//! docs/migrating.md is true and complete: every corral key its tables name exists (held
//! against what `corral check` prints for configs that set every kind of table), every
//! setting of the installed Gunicorn is in its Gunicorn table, and every Traefik middleware
//! and router rule, and the nginx directives put in front of Gunicorn, have a row.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::{apps, check, repo_root};

fn doc() -> String {
    std::fs::read_to_string(repo_root().join("docs/migrating.md")).expect("read migrating.md")
}

/// The text of `## heading` up to the next `## `.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("migrating.md has no section {heading:?}"));
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The code spans of `text` (`` `x` `` and ``` ``x`` ```).
fn spans(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('`') {
        let ticks = if rest[i..].starts_with("``") { 2 } else { 1 };
        let after = &rest[i + ticks..];
        let fence = &rest[i..i + ticks];
        let Some(end) = after.find(fence) else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end + ticks..];
    }
    out
}

/// The cells of column `col` (0 = first) of every table row in `text` whose header row
/// names `header` in that column.
fn column(text: &str, header: &str, col: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut taking = false;
    for line in text.lines() {
        if !line.starts_with('|') {
            taking = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        if line.starts_with("|---") {
            continue;
        }
        let cell = cells.get(col).map_or("", |c| c.trim());
        if !taking && cell == header {
            taking = true;
            continue;
        }
        if taking {
            out.push(cell.to_string());
        }
    }
    out
}

/// Every key path `corral check` prints for `config`, pool names as `NAME`, with the tables.
fn printed_keys(config: &str, dir: &std::path::Path, name: &str, into: &mut BTreeSet<String>) {
    let path = dir.join(name);
    std::fs::write(&path, config).expect("write");
    let (code, effective, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}\n{config}");
    let mut prefix = String::new();
    let mut last_key = String::new();
    let pools = |p: &str| {
        let mut parts: Vec<String> = p.split('.').map(String::from).collect();
        if parts.len() > 1 && parts[0] == "pools" {
            parts[1] = "NAME".into();
        }
        parts.join(".")
    };
    for line in effective.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(t) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            prefix = pools(t);
        } else if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            prefix = pools(t);
        } else if let Some((key, _)) = line.split_once(" = ").filter(|_| !line.starts_with('{')) {
            last_key = format!("{prefix}.{}", key.trim());
            into.insert(last_key.clone());
        }
        // Inline tables: `match = { path_prefix = ... }`, `{ cert = ..., key = ... }`.
        if let (Some(a), Some(b)) = (line.find('{'), line.rfind('}')) {
            for part in line[a + 1..b].split(',') {
                if let Some((k, _)) = part.split_once(" = ") {
                    let k = k.trim().trim_start_matches('{').trim();
                    into.insert(format!("{last_key}.{k}"));
                    into.insert(format!("{prefix}.{k}"));
                }
            }
        }
    }
    let tables: Vec<String> = into
        .iter()
        .flat_map(|k| {
            let parts: Vec<&str> = k.split('.').collect();
            (1..parts.len()).map(move |n| parts[..n].join("."))
        })
        .collect();
    into.extend(tables);
}

/// Every key the configs below print: each kind of table and key set at least once.
fn known_keys() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("dir");
    let ssl = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "a.key"])
        .args(["-out", "a.pem", "-days", "2", "-subj", "/CN=a.test"])
        .current_dir(dir.path())
        .output()
        .expect("openssl");
    assert!(ssl.status.success(), "{ssl:?}");
    let mut keys = BTreeSet::new();
    let files = dir.path().display().to_string();
    printed_keys(
        &format!(
            "[[rate_limits]]\nname = \"api\"\nrate = \"10/s\"\nmatch = {{ path_prefix = \"/api\", method = \"GET\", host = \"a\" }}\n\
             [[routes]]\nhost = \"example.com\"\npools = [\"web\"]\ncompression = false\nheaders = {{ preset = \"strict\", set = {{ A = \"b\" }}, remove = [\"Server\"] }}\n\
             [[routes]]\npath_prefix = \"/api\"\npools = [\"api\"]\nstrip_prefix = true\n\
             [[routes]]\npath_prefix = \"/static\"\nstatic = {files:?}\ncache_control = \"public\"\ncache_control_hashed = \"immutable\"\n\
             [[routes]]\npath_prefix = \"/old\"\nredirect = \"/new{{path}}\"\n\
             [pools.web]\ncommand = [\"gunicorn\", \"app:app\"]\nbind = \"fd\"\n[pools.web.health]\ninterval = \"5s\"\n\
             [pools.api]\nupstreams = [\"127.0.0.1:9000\"]\n"
        ),
        dir.path(),
        "routes.toml",
        &mut keys,
    );
    printed_keys(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n\
         [server.buffering]\ntemp_dir = \"/tmp\"\n[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"a.pem\"\nkey = \"a.key\"\nredirect_http = \"127.0.0.1:8081\"\n\
         [server.tls.acme]\nemail = \"ops@example.com\"\ndomains = [\"example.com\"]\ndirectory = \"https://127.0.0.1:1/directory\"\n\
         [websocket]\nmax_connections = 100\n\
         [rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n\
         [routing]\nweights = { blue = 90, green = 10 }\nrollback_window = \"30s\"\n\
         [pools.blue]\ncommand = [\"app\", \"{port}\"]\ncwd = \"/tmp\"\nenv = { A = \"b\" }\nuser = \"nobody\"\nsmoke = [{ path = \"/\" }]\nmax_memory = \"1GiB\"\n\
         [pools.green]\napp = \"app:application\"\ninterface = \"asgi\"\npython = \"python3\"\n",
        dir.path(),
        "tls.toml",
        &mut keys,
    );
    keys
}

/// corral's top-level tables.
const TABLES: [&str; 10] = [
    "server",
    "log",
    "headers",
    "compression",
    "websocket",
    "rate_limits",
    "rate_limit_store",
    "routing",
    "routes",
    "pools",
];

/// The corral key a code span of the corral column names, if it names one: commands,
/// signals, metrics, paths, values and placeholders are not keys.
fn key_of(span: &str) -> Option<String> {
    let first = span.chars().next()?;
    if span.starts_with("corral ")
        || span.starts_with("corral_")
        || !(first.is_ascii_lowercase() || first == '[')
    {
        return None;
    }
    let span = span.split(" = ").next().unwrap_or(span).trim();
    let (table, key) = match span.strip_prefix('[') {
        Some(rest) => {
            let rest = rest.trim_start_matches('[');
            let (t, k) = rest.split_once(']')?;
            (Some(t), k.trim_start_matches(']').trim())
        }
        None => (None, span),
    };
    let ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.".contains(&b))
    };
    if !ok(key)
        || table.is_some_and(|t| {
            !t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.".contains(&b))
        })
    {
        return None;
    }
    // A dotted name is a key only as a full path (`server.limits.body_size`), not a file
    // name (`index.html`) or a Python name (`os.sendfile`).
    if key.contains('.') && table.is_none() && !TABLES.contains(&key.split('.').next()?) {
        return None;
    }
    Some(match (table, key) {
        (Some(t), "") => t.to_string(),
        (Some(t), k) => format!("{t}.{k}"),
        (None, k) => k.to_string(),
    })
}

#[test]
fn every_corral_key_migrating_md_names_exists() {
    let known = known_keys();
    let doc = doc();
    // Left out: the Python worker's section (issue 33) names the `app =` pools' keys
    // (`interface`), which are not in the config yet.
    let doc = match doc.find("\n## Gunicorn's worker classes") {
        Some(start) => {
            let end = doc[start + 1..]
                .find("\n## ")
                .map_or(doc.len(), |i| start + 1 + i);
            format!("{}{}", &doc[..start], &doc[end..])
        }
        None => doc,
    };
    let mut named = BTreeSet::new();
    for cell in column(&doc, "corral", 1) {
        for span in spans(&cell) {
            if let Some(key) = key_of(&span) {
                named.insert(key);
            }
        }
    }
    assert!(named.len() >= 60, "too few keys found: {named:?}");
    let missing: Vec<&String> = named
        .iter()
        .filter(|k| {
            !known.iter().any(|p| {
                p == *k
                    || p.ends_with(&format!(".{k}"))
                    || (!k.contains('.') && p.split('.').any(|s| s == k.as_str()))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/migrating.md names keys corral does not have: {missing:?}\nknown: {known:?}"
    );
}

/// Whether a code span of `cells` names `word` (a flag, setting, middleware or directive):
/// as a whole word of the span, split at `/`, spaces, commas, `=`, `(` and `.`.
fn named_in(cells: &[String], word: &str) -> bool {
    cells.iter().flat_map(|c| spans(c)).any(|span| {
        span.split(|c: char| "/ ,=(.{};$".contains(c))
            .any(|w| w == word)
    })
}

#[test]
fn every_gunicorn_setting_has_a_row() {
    let Some(venv) = apps::venv_with("gunicorn") else {
        return;
    };
    let out = Command::new(venv.join("bin").join("python"))
        .args([
            "-c",
            "import gunicorn.config as c\nfor s in c.KNOWN_SETTINGS: print(s.name, *(s.cli or []))",
        ])
        .output()
        .expect("python");
    assert!(out.status.success(), "{out:?}");
    let doc = doc();
    let cells = column(section(&doc, "Gunicorn settings"), "Gunicorn", 0);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.lines().count() > 50, "{listed}");
    let missing: Vec<&str> = listed
        .lines()
        .filter(|line| !line.split(' ').any(|w| named_in(&cells, w)))
        .collect();
    assert!(
        missing.is_empty(),
        "migrating.md's Gunicorn table misses these settings (name and flags): {missing:#?}"
    );
}

#[test]
fn every_traefik_middleware_router_rule_and_common_nginx_directive_has_a_row() {
    let doc = doc();
    let middlewares = column(section(&doc, "Traefik middlewares"), "Traefik", 0);
    let rules = column(section(&doc, "Traefik router rules"), "Traefik", 0);
    let nginx = column(section(&doc, "nginx"), "nginx", 0);
    let signals = column(section(&doc, "Gunicorn signals"), "Gunicorn", 0);
    let mut missing = Vec::new();
    for (cells, words) in [
        (
            &middlewares,
            &[
                "addPrefix",
                "basicAuth",
                "buffering",
                "chain",
                "circuitBreaker",
                "compress",
                "contentType",
                "digestAuth",
                "errors",
                "forwardAuth",
                "grpcWeb",
                "headers",
                "ipAllowList",
                "inFlightReq",
                "passTLSClientCert",
                "rateLimit",
                "redirectRegex",
                "redirectScheme",
                "replacePath",
                "replacePathRegex",
                "retry",
                "stripPrefix",
                "stripPrefixRegex",
            ][..],
        ),
        (
            &rules,
            &[
                "Host",
                "HostRegexp",
                "Path",
                "PathPrefix",
                "PathRegexp",
                "Method",
                "Header",
                "HeaderRegexp",
                "Query",
                "QueryRegexp",
                "ClientIP",
                "priority",
                "service",
                "middlewares",
                "tls",
                "entryPoints",
            ][..],
        ),
        (
            &nginx,
            &[
                "listen",
                "server_name",
                "location",
                "proxy_pass",
                "alias",
                "root",
                "try_files",
                "index",
                "autoindex",
                "return",
                "rewrite",
                "upstream",
                "keepalive",
                "proxy_next_upstream",
                "max_fails",
                "proxy_set_header",
                "proxy_http_version",
                "proxy_connect_timeout",
                "proxy_read_timeout",
                "proxy_send_timeout",
                "proxy_buffering",
                "proxy_buffers",
                "proxy_buffer_size",
                "proxy_max_temp_file_size",
                "proxy_temp_path",
                "proxy_request_buffering",
                "client_max_body_size",
                "client_body_buffer_size",
                "client_body_timeout",
                "client_header_timeout",
                "large_client_header_buffers",
                "keepalive_timeout",
                "send_timeout",
                "underscores_in_headers",
                "set_real_ip_from",
                "real_ip_header",
                "sendfile",
                "open_file_cache",
                "gzip_static",
                "expires",
                "add_header",
                "etag",
                "types",
                "proxy_hide_header",
                "server_tokens",
                "error_page",
                "limit_req",
                "limit_conn",
                "allow",
                "deny",
                "auth_basic",
                "gzip",
                "ssl_certificate",
                "ssl_protocols",
                "http2",
                "proxy_cache",
                "access_log",
                "log_format",
                "error_log",
                "worker_processes",
                "worker_connections",
            ][..],
        ),
        (
            &signals,
            &[
                "HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD",
            ][..],
        ),
    ] {
        for word in words {
            if !named_in(cells, word) {
                missing.push(*word);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "migrating.md has no row for {missing:?}"
    );
}

//! Issue 34, acceptance 1: one corral in front of the bundled Django example (pool `web`,
//! at `/`), the FastAPI example with its WebSocket route (pool `live`, under `/ws`), an API
//! with a blue and a green pool under `/api` (gunicorn, each saying its colour) and
//! `/static` from disk. Each request reaches its place; `corral switch` of the API route to
//! green under load (HTTP clients on `/api` and `/`, a WebSocket open on `/ws`) fails no
//! request and leaves `/` and `/ws` untouched; switching the API route back (a rollback)
//! likewise; and a bad green release is rolled back by itself within the route's window,
//! `/` and `/ws` untouched again. Real parts: the corral binary and CLI, gunicorn, Django, uvicorn and FastAPI
//! from the venv, ureq and tungstenite clients.

mod support;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The API: says which colour it is and the path it got; a colour whose `broken-COLOR`
/// file exists answers 500 (but passes its health check), a bad release.
const API: &str = r#"
import os

def app(environ, start_response):
    color, path = os.environ["COLOR"], environ.get("PATH_INFO")
    status = "200 OK"
    if os.path.exists("broken-" + color) and path != "/health":
        status = "500 Internal Server Error"
    body = ("api %s %s" % (color, path)).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

fn config(venv: &Path, api_dir: &Path, files: &Path) -> String {
    let bin = |name: &str| venv.join("bin").join(name).display().to_string();
    let examples = repo_root().join("examples");
    let api = |color: &str| {
        format!(
            "[pools.api-{color}]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"app:app\"]\ncwd = {:?}\nenv = {{ COLOR = {color:?} }}\nworkers = 2\nready = \"tcp\"\nstart_timeout = \"60s\"\nkill_timeout = \"5s\"\n[pools.api-{color}.health]\ntimeout = \"10s\"\n\n",
            bin("gunicorn"),
            api_dir.display().to_string(),
        )
    };
    format!(
        "[routing]\nrollback_window = \"4s\"\nrollback_min_requests = 10\nrollback_error_rate = 0.2\n\n\
         [[routes]]\nname = \"site\"\npools = [\"web\"]\n\n\
         [[routes]]\nname = \"live\"\npath_prefix = \"/ws\"\npools = [\"live\"]\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\nactive = \"api-blue\"\nstrip_prefix = true\n\n\
         [[routes]]\nname = \"static\"\npath_prefix = \"/static\"\nstatic = {:?}\n\n\
         [pools.web]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"app:application\"]\ncwd = {:?}\nworkers = 2\nready = \"http\"\nstart_timeout = \"60s\"\nkill_timeout = \"5s\"\n\n\
         [pools.live]\ncommand = [{:?}, \"--fd\", \"3\", \"--no-access-log\", \"--ws-ping-timeout\", \"600\", \"app:app\"]\ncwd = {:?}\nworkers = 1\nconcurrency = 64\nbind = \"fd\"\nready = \"http\"\nstart_timeout = \"60s\"\nkill_timeout = \"5s\"\n\n\
         {}{}",
        files.display().to_string(),
        bin("gunicorn"),
        examples.join("django").display().to_string(),
        bin("uvicorn"),
        examples.join("fastapi").display().to_string(),
        api("blue"),
        api("green"),
    )
}

/// The test's WebSocket answers uvicorn's keep-alive pings only while it reads, and it
/// stays idle between its echoes (the `live` pool is started with a long ping timeout).
type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send on the WebSocket");
    loop {
        match ws.read().expect("read the echo") {
            Message::Text(t) => {
                assert_eq!(t.as_str(), text);
                return;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The body of `GET path`, which must answer 200.
fn body(corral: &Corral, path: &str) -> String {
    let (status, body) = get(&client(), &corral.url(path)).expect("request");
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The colours that answer 20 requests on `/api/x`.
fn api_colours(corral: &Corral) -> BTreeSet<String> {
    (0..20)
        .map(|_| {
            let b = body(corral, "/api/x");
            b.split(' ').nth(1).unwrap_or_default().to_string()
        })
        .collect()
}

/// The pids of the ready workers of `pool`, from `/status`.
fn pids(corral: &Corral, pool: &str) -> BTreeSet<u64> {
    let status = corral.status().unwrap_or_default();
    let pools = status["pools"].as_array().cloned().unwrap_or_default();
    pools
        .iter()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
        .filter(|w| w["state"] == "ready")
        .filter_map(|w| w["pid"].as_u64())
        .collect()
}

/// `/status`'s entry for the route named `name`.
fn route(corral: &Corral, name: &str) -> Value {
    let status = corral.status().unwrap_or_default();
    let routes = status["routes"].as_array().cloned().unwrap_or_default();
    routes
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {status}"))
}

/// `corral switch ARGS`, asked again while the switch before it still retires its old pool
/// (one switch at a time).
fn switch(corral: &Corral, args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["switch"];
    argv.extend_from_slice(args);
    wait_for("the switch before to end", Duration::from_secs(30), || {
        let (code, out, err) = corral.cli(&argv);
        (!err.contains("a switch is already under way")).then_some((code, out, err))
    })
}

/// Waits until `n` switches have passed their rollback window (a switch is refused while
/// one is in its window).
fn windows_passed(corral: &Corral, n: usize) {
    wait_for(
        "the rollback window to pass",
        Duration::from_secs(30),
        || {
            let passed = corral
                .log_events()
                .iter()
                .filter(|e| e["event"] == "rollback_window_passed")
                .count();
            (passed >= n).then_some(())
        },
    );
}

/// HTTP load on `/api`, `/` and a WebSocket on `/ws` across `switch`: nothing fails, the
/// WebSocket stays open and echoes, `/` keeps its workers.
fn across(corral: &Corral, ws: &mut Ws, switch: &[&str], expect: &str) {
    let site = pids(corral, "web");
    let live = pids(corral, "live");
    let api_load = Load::start(&corral.url("/api/load"), 6, Duration::from_secs(240));
    let site_load = Load::start(&corral.url("/"), 2, Duration::from_secs(240));
    api_load.wait_more(50, Duration::from_secs(60));
    site_load.wait_more(20, Duration::from_secs(60));
    echo(ws, "before");
    let (code, out, err) = self::switch(corral, switch);
    assert_eq!(code, 0, "{out}{err}\n{}", corral.logs());
    println!("{}", out.trim());
    assert!(out.contains(expect), "{out}");
    echo(ws, "during");
    api_load.wait_more(100, Duration::from_secs(60));
    site_load.wait_more(20, Duration::from_secs(60));
    let (api, site_result) = (api_load.stop(), site_load.stop());
    println!(
        "{} /api and {} / requests across `corral switch {}`, none failed",
        api.ok,
        site_result.ok,
        switch.join(" ")
    );
    api.assert_no_failures(&corral.logs());
    site_result.assert_no_failures(&corral.logs());
    echo(ws, "after");
    assert_eq!(
        pids(corral, "web"),
        site,
        "the site's workers are untouched"
    );
    assert_eq!(
        pids(corral, "live"),
        live,
        "the WebSocket pool is untouched"
    );
    let site_route = route(corral, "site");
    assert_eq!(site_route["active_pool"], "web");
    assert_eq!(site_route["active_because"], "config");
    assert_eq!(route(corral, "live")["active_because"], "config");
}

#[test]
fn django_fastapi_websocket_api_blue_green_and_static_behind_one_corral() {
    let (Some(venv), Some(_)) = (apps::venv_with("gunicorn"), apps::venv_with("uvicorn")) else {
        return;
    };
    let api_dir = tempfile::tempdir().expect("api dir");
    std::fs::write(api_dir.path().join("app.py"), API).expect("write the api");
    let files = tempfile::tempdir().expect("static dir");
    std::fs::write(files.path().join("app.css"), "body { color: teal }\n").expect("write");
    let corral = Corral::start(
        &config(&venv, api_dir.path(), files.path()),
        "graceful_timeout = \"10s\"",
        0,
    );
    wait_for("every pool ready", Duration::from_secs(120), || {
        let all = ["web", "live", "api-blue", "api-green"];
        let want = [2, 1, 2, 2];
        all.iter()
            .zip(want)
            .all(|(p, n)| pids(&corral, p).len() == n)
            .then_some(())
    });

    // Each request reaches its place.
    let site: Value = serde_json::from_str(&body(&corral, "/")).expect("Django's JSON");
    assert_eq!(site["hello"], "django");
    assert_eq!(body(&corral, "/api/items?x=1"), "api blue /items");
    assert_eq!(body(&corral, "/static/app.css"), "body { color: teal }\n");
    let (mut ws, _) =
        tungstenite::connect(format!("ws://127.0.0.1:{}/ws", corral.port)).expect("WebSocket");
    echo(&mut ws, "hello");
    assert_eq!(api_colours(&corral), BTreeSet::from(["blue".to_string()]));

    // A pool of another route is refused, and nothing moves.
    let (code, out, err) = corral.cli(&["switch", "--route", "site", "api-green"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("not of route \"site\""), "{err}");

    // The API route to green under load; `/` and `/ws` untouched.
    across(
        &corral,
        &mut ws,
        &["--route", "api", "api-green"],
        "switched route api from api-blue to api-green",
    );
    assert_eq!(api_colours(&corral), BTreeSet::from(["green".to_string()]));
    let api = route(&corral, "api");
    assert_eq!(
        (api["active_pool"].as_str(), api["active_because"].as_str()),
        (Some("api-green"), Some("switch")),
        "{api}"
    );
    assert!(api["requests"].as_u64().unwrap_or(0) >= 150, "{api}");
    let api_2xx = corral.metric("corral_route_requests_total{route=\"api\",status=\"2xx\"}");
    assert!(api_2xx >= 150.0, "{api_2xx}");
    let (code, table, err) = corral.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("route api: api-green (switch "), "{table}");
    assert!(table.contains("route site: web (config "), "{table}");

    // The API route back to blue (found by its pool), likewise.
    windows_passed(&corral, 1);
    across(
        &corral,
        &mut ws,
        &["api-blue"],
        "switched route api from api-green to api-blue",
    );
    assert_eq!(api_colours(&corral), BTreeSet::from(["blue".to_string()]));
    assert_eq!(body(&corral, "/static/app.css"), "body { color: teal }\n");

    // A bad green release: switched to, it answers 500s and the API route rolls back by
    // itself within its window; `/` and `/ws` see nothing of it.
    windows_passed(&corral, 2);
    std::fs::write(api_dir.path().join("broken-green"), "").expect("break green");
    let (site, live) = (pids(&corral, "web"), pids(&corral, "live"));
    let api_load = Load::start(&corral.url("/api/load"), 4, Duration::from_secs(240));
    let site_load = Load::start(&corral.url("/"), 2, Duration::from_secs(240));
    let (code, out, err) = switch(&corral, &["api-green"]);
    assert_eq!(code, 0, "{out}{err}");
    let rolled = corral.wait_event("rolled_back", Duration::from_secs(60));
    println!("{rolled}");
    assert_eq!(rolled["route"], "api");
    echo(&mut ws, "rolled back");
    site_load.wait_more(20, Duration::from_secs(60));
    let (api_result, site_result) = (api_load.stop(), site_load.stop());
    site_result.assert_no_failures(&corral.logs());
    assert!(
        api_result
            .failures
            .iter()
            .all(|f| f.starts_with("500 api green")),
        "{:?}",
        &api_result.failures[..api_result.failures.len().min(5)]
    );
    println!(
        "rollback: {} / requests, none failed; /api: {} 500s from green before it",
        site_result.ok,
        api_result.failures.len()
    );
    assert_eq!(api_colours(&corral), BTreeSet::from(["blue".to_string()]));
    let api = route(&corral, "api");
    assert_eq!(api["active_because"], "rollback", "{api}");
    assert_eq!(
        pids(&corral, "web"),
        site,
        "the site's workers are untouched"
    );
    assert_eq!(
        pids(&corral, "live"),
        live,
        "the WebSocket pool is untouched"
    );
    assert_eq!(route(&corral, "site")["active_because"], "config");
    let _ = ws.close(None);
}

//! `[[routes]]` (issue 34): one corral in front of several pools, a static directory and a
//! redirect, by host and path prefix. Real parts: the corral binary, test-app workers for
//! the web and API pools, one gunicorn worker (from the venv) behind a `strip_prefix`
//! route, and raw HTTP/1.1 requests.

mod support;

use std::path::Path;
use std::time::Duration;

use support::raw::{Raw, Response};
use support::{apps, testapp_bin, wait_for, Corral};

/// A gunicorn app that answers what it was asked: the path and `X-Forwarded-Prefix`.
const APP: &str = r#"
def app(environ, start_response):
    body = ("py %s prefix=%s" % (environ.get("PATH_INFO"), environ.get("HTTP_X_FORWARDED_PREFIX", "-"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

fn testapp(name: &str) -> String {
    format!(
        "[pools.{name}]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nconcurrency = 8\nready = \"http\"\nkill_timeout = \"3s\"\nstart_timeout = \"20s\"\n",
        testapp_bin().display().to_string()
    )
}

fn gunicorn(venv: &Path, app_dir: &Path) -> String {
    format!(
        "[pools.py]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"app:app\"]\ncwd = {:?}\nworkers = 1\nconcurrency = 1\nready = \"tcp\"\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n",
        venv.join("bin").join("gunicorn").display().to_string(),
        app_dir.display().to_string(),
    )
}

fn request(port: u16, host: &str, target: &str) -> Response {
    let mut raw = Raw::connect(port);
    raw.send(
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    raw.response(false)
}

/// The pool that answered under `prefix` (test-app workers say it in `/env?name=CORRAL_POOL`;
/// the API route strips its prefix, so they see `/env`).
fn pool_of(port: u16, host: &str, prefix: &str) -> String {
    let r = request(port, host, &format!("{prefix}/env?name=CORRAL_POOL"));
    assert_eq!(r.status, 200, "{prefix}: {r:?}");
    String::from_utf8_lossy(&r.body).trim().to_string()
}

#[test]
fn routes_by_host_and_prefix_reach_their_pool_directory_or_redirect() {
    let Some(venv) = apps::venv_with("gunicorn") else {
        return;
    };
    let app = tempfile::tempdir().expect("app dir");
    std::fs::write(app.path().join("app.py"), APP).expect("write the app");
    let files = tempfile::tempdir().expect("static dir");
    std::fs::write(files.path().join("hello.txt"), "hello from disk\n").expect("write a file");
    let body = format!(
        "[[routes]]\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\nactive = \"api-blue\"\nstrip_prefix = true\n\
         [[routes]]\npools = [\"web\"]\n\
         [[routes]]\npath_prefix = \"/py\"\npools = [\"py\"]\nstrip_prefix = true\n\
         [[routes]]\nname = \"assets\"\npath_prefix = \"/static\"\nstatic = {:?}\n\
         [[routes]]\nhost = \"www.example.com\"\nredirect = \"https://example.com{{path}}\"\n\
         {}{}{}{}",
        files.path().display().to_string(),
        testapp("web"),
        testapp("api-blue"),
        testapp("api-green"),
        gunicorn(&venv, app.path()),
    );
    let corral = Corral::start(&body, "", 1);
    let port = corral.port;
    wait_for("every pool to answer", Duration::from_secs(40), || {
        let ok =
            |prefix: &str| request(port, "example.com", &format!("{prefix}/health")).status == 200;
        (ok("") && ok("/api") && ok("/py")).then_some(())
    });

    assert_eq!(pool_of(port, "example.com", ""), "web");
    assert_eq!(pool_of(port, "example.com", "/api"), "api-blue");
    let pid = |target: &str| {
        let r = request(port, "example.com", target);
        r.header("x-worker-pid").map(str::to_string)
    };
    assert_eq!(
        pid("/apix"),
        pid("/"),
        "/apix is not under /api: web answers it"
    );
    assert_ne!(pid("/api/x"), pid("/"));

    let py = request(port, "example.com", "/py/hello?x=1");
    assert_eq!(py.status, 200, "{py:?}");
    assert_eq!(String::from_utf8_lossy(&py.body), "py /hello prefix=/py");
    let py_root = request(port, "example.com", "/py");
    assert_eq!(String::from_utf8_lossy(&py_root.body), "py / prefix=/py");

    let file = request(port, "example.com", "/static/hello.txt");
    assert_eq!(file.status, 200, "{file:?}");
    assert_eq!(file.body, b"hello from disk\n");
    assert_eq!(
        file.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let moved = request(port, "WWW.example.com:8080", "/a/b?c=d");
    assert_eq!(moved.status, 308, "{moved:?}");
    assert_eq!(
        moved.header("location"),
        Some("https://example.com/a/b?c=d")
    );

    // The access line names the route, and a static answer names no pool of workers.
    let line = corral.wait_log("the static access line", Duration::from_secs(10), |l| {
        l["path"] == "/static/hello.txt"
    });
    assert_eq!(line["route"], "assets", "{line}");
    assert_eq!(line["pool"], "static", "{line}");
}

#[test]
fn a_pool_in_two_routes_and_an_unknown_pool_are_refused_by_check() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("corral.toml");
    let text = format!(
        "[[routes]]\npools = [\"web\"]\n[[routes]]\npath_prefix = \"/api\"\npools = [\"web\", \"nope\"]\n{}",
        testapp("web")
    );
    std::fs::write(&config, text).expect("write config");
    let (code, out, err) = support::check(&config);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("routes[1].pools"), "{err}");
    assert!(err.contains("\"nope\""), "{err}");
}

//! A route's own edge settings (issue 34: "rate limits, timeouts, headers and compression may
//! be set per route") through the real binary: `headers` over `[headers]` and
//! `compression = false` on one pool route, while the other route keeps the config-wide
//! ones. Real parts: the corral binary, two test-app pools, raw HTTP/1.1 requests.

mod support;

use support::raw::{Raw, Response};
use support::{testapp_bin, Corral};

fn testapp(name: &str) -> String {
    format!(
        "[pools.{name}]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nconcurrency = 8\nready = \"http\"\nkill_timeout = \"3s\"\n",
        testapp_bin().display().to_string()
    )
}

fn ask(port: u16, target: &str) -> Response {
    let mut raw = Raw::connect(port);
    raw.send(
        format!("GET {target} HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    raw.response(false)
}

#[test]
fn a_route_has_its_own_headers_and_compression() {
    let body = format!(
        "[headers]\nset = {{ X-Site = \"all\", X-Who = \"site\" }}\n\
         [compression]\nenabled = true\n\
         [[routes]]\npools = [\"web\"]\n\
         [[routes]]\npath_prefix = \"/downloads\"\npools = [\"files\"]\nstrip_prefix = true\ncompression = false\n\
         headers = {{ set = {{ X-Who = \"downloads\", Cache-Control = \"private\" }}, remove = [\"X-Powered-By\"] }}\n\
         {}{}",
        testapp("web"),
        testapp("files")
    );
    let corral = Corral::start(&body, "", 1);
    let port = corral.port;
    support::wait_for("both pools", std::time::Duration::from_secs(20), || {
        (ask(port, "/health").status == 200 && ask(port, "/downloads/health").status == 200)
            .then_some(())
    });
    // Small answers take the plain relay, large compressible ones pingora's session: both.
    for n in [10, 20000] {
        let target = format!("/payload?n={n}&type=application/json");
        let site = ask(port, &target);
        assert_eq!(site.status, 200, "{site:?}");
        assert_eq!(site.header("x-site"), Some("all"));
        assert_eq!(site.header("x-who"), Some("site"));
        assert_eq!(site.header("cache-control"), None);
        let files = ask(port, &format!("/downloads{target}"));
        assert_eq!(files.status, 200, "{files:?}");
        assert_eq!(files.header("x-site"), Some("all"), "[headers] set is kept");
        assert_eq!(
            files.header("x-who"),
            Some("downloads"),
            "the route's value wins"
        );
        assert_eq!(files.header("cache-control"), Some("private"));
        assert_eq!(
            files.header("content-encoding"),
            None,
            "compression = false"
        );
        if n == 20000 {
            assert_eq!(site.header("content-encoding"), Some("gzip"), "{site:?}");
            assert_eq!(files.body.len(), 20000);
        }
    }
}

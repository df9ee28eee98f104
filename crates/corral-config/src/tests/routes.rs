//! `[[routes]]`: what is read, what is refused (with its place), and what prints back.

use super::*;
use crate::{Route, RouteTarget};

const POOLS: &str = "[pools.web]\ncommand = [\"app\", \"{port}\"]\n[pools.api-blue]\ncommand = [\"app\", \"{port}\"]\n[pools.api-green]\ncommand = [\"app\", \"{port}\"]\n";

fn target(routes: &[Route], name: &str) -> RouteTarget {
    routes
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.target.clone())
        .unwrap_or_else(|| panic!("no route {name}"))
}

#[test]
fn routes_are_read_and_print_back_the_same() {
    let dir = std::env::temp_dir();
    let dir = std::fs::canonicalize(&dir).expect("temp dir");
    let c = ok(&format!(
        "[[routes]]\nhost = \"Example.COM\"\npath_prefix = \"/api/\"\npools = [\"api-blue\", \"api-green\"]\nweights = {{ api-blue = 90, api-green = 10 }}\nstrip_prefix = true\n\
         [[routes]]\npools = [\"web\"]\n\
         [[routes]]\nname = \"assets\"\npath_prefix = \"/static\"\nstatic = {:?}\n\
         [[routes]]\nhost = \"www.example.com\"\nredirect = \"https://example.com{{path}}\"\n{POOLS}",
        dir.display().to_string()
    ));
    assert_eq!(c.routes.len(), 4);
    let api = &c.routes[0];
    assert_eq!(api.name, "example.com/api");
    assert_eq!(api.host.as_deref(), Some("example.com"));
    assert_eq!(api.path_prefix, "/api", "a trailing / is dropped");
    let RouteTarget::Pools {
        traffic,
        strip_prefix,
        ..
    } = &api.target
    else {
        panic!("api is a pool route");
    };
    assert_eq!(traffic.active, "api-blue");
    assert_eq!(traffic.weights.len(), 2);
    assert!(strip_prefix);
    assert_eq!(target(&c.routes, "assets"), RouteTarget::Static(dir));
    assert_eq!(
        target(&c.routes, "www.example.com"),
        RouteTarget::Redirect("https://example.com{path}".into())
    );
    // `[routing]` steers the first pool route when it says nothing.
    assert_eq!(c.routing.active, "api-blue");
    let again = ok(&render(&c));
    assert_eq!(again.routes, c.routes);
    assert_eq!(again.routing, c.routing);
}

#[test]
fn no_routes_is_exactly_as_before() {
    let c = ok(MINIMAL);
    assert!(c.routes.is_empty());
    assert_eq!(c.routing.active, "web");
}

#[test]
fn prefixes_match_on_segment_boundaries_and_hosts_by_pattern() {
    let c = ok(&format!(
        "[[routes]]\nhost = \"*.example.com\"\npath_prefix = \"/api\"\npools = [\"web\"]\n{MINIMAL}"
    ));
    let api = &c.routes[0];
    assert!(api.matches("a.example.com", "/api"));
    assert!(api.matches("a.example.com", "/api/x"));
    assert!(api.matches("a.example.com", "/api?q=1"));
    assert!(!api.matches("a.example.com", "/apix"));
    assert!(
        !api.matches("example.com", "/api"),
        "*. does not take the bare domain"
    );
    assert!(!api.matches("a.example.org", "/api"));
}

#[test]
fn bad_routes_are_refused_with_their_place() {
    let bad = errs(&format!(
        "[[routes]]\npools = [\"web\", \"nope\"]\nactive = \"web\"\n\
         [[routes]]\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\n\
         [[routes]]\npath_prefix = \"/x\"\npools = [\"web\"]\nstatic = \"/\"\n\
         [[routes]]\npath_prefix = \"/y\"\n\
         [[routes]]\npath_prefix = \"y\"\nredirect = \"ftp://x{{nope}}\"\n\
         [[routes]]\nhost = \"a b\"\nstatic = \"/definitely/not/here\"\nstrip_prefix = true\nsurprise = 1\n{POOLS}"
    ));
    let all = bad.join("\n");
    for expected in [
        "corral.toml:2:9: routes[0].pools: ",
        "routes[1].active",
        "routes[2]",
        "routes[3]",
        "routes[4].path_prefix",
        "routes[4].redirect",
        "routes[5].host",
        "routes[5].static",
        "routes[5].strip_prefix",
        "routes[5].surprise",
    ] {
        assert!(all.contains(expected), "no {expected:?} in:\n{all}");
    }
    let clash = errs(&format!(
        "[[routes]]\npools = [\"web\"]\n[[routes]]\npath_prefix = \"/\"\npools = [\"api-blue\", \"web\"]\nactive = \"api-blue\"\n{POOLS}"
    ))
    .join("\n");
    assert!(
        clash.contains("same host and path_prefix as routes[0]"),
        "{clash}"
    );
    assert!(
        clash.contains("\"web\" is a pool of routes[0] already"),
        "{clash}"
    );
    let unrouted = errs(&format!(
        "[routing]\nactive = \"api-green\"\n[[routes]]\npools = [\"web\"]\n{POOLS}"
    ))
    .join("\n");
    assert!(unrouted.contains("routing.active"), "{unrouted}");
}

#[test]
fn route_edge_settings_are_read_merged_and_print_back() {
    let dir = std::fs::canonicalize(std::env::temp_dir()).expect("temp dir");
    let c = ok(&format!(
        "[headers]\npreset = \"strict\"\nset = {{ X-A = \"global\", X-B = \"global\" }}\n\
         [[routes]]\npools = [\"web\"]\ncompression = false\nheaders = {{ set = {{ x-b = \"route\" }}, remove = [\"Server\", \"Via\"] }}\n\
         [[routes]]\npath_prefix = \"/static\"\nstatic = {:?}\ncache_control = \"public, max-age=60\"\n\
         cache_control_hashed = \"public, max-age=31536000, immutable\"\n{POOLS}",
        dir.display().to_string()
    ));
    let web = &c.routes[0].edge;
    assert_eq!(web.compression, Some(false));
    let merged = web.headers.as_ref().expect("headers").over(&c.headers);
    assert_eq!(merged.preset, crate::HeaderPreset::Strict, "kept");
    assert_eq!(
        merged.set,
        vec![
            ("X-A".to_string(), "global".to_string()),
            ("x-b".to_string(), "route".to_string())
        ],
        "the route's value wins, whatever the case"
    );
    assert_eq!(merged.remove, vec!["Server", "Via"], "replaced");
    let files = &c.routes[1].edge;
    assert_eq!(files.cache_control.as_deref(), Some("public, max-age=60"));
    assert!(files.cache_control_hashed.is_some());
    assert!(files.headers.is_none());
    let again = ok(&render(&c));
    assert_eq!(again.routes, c.routes);
}

#[test]
fn route_edge_settings_on_the_wrong_route_are_refused() {
    let all = errs(&format!(
        "[[routes]]\npools = [\"web\"]\ncache_control = \"public\"\n\
         [[routes]]\npath_prefix = \"/s\"\nstatic = \"/\"\ncompression = false\ncache_control = \"bad\\u0001\"\n\
         [[routes]]\npath_prefix = \"/r\"\nredirect = \"/x\"\ncache_control_hashed = \"immutable\"\nheaders = {{ set = {{ \"a b\" = \"x\" }}, surprise = 1 }}\n{POOLS}"
    ))
    .join("\n");
    for expected in [
        "routes[0].cache_control: goes with static",
        "routes[1].compression: goes with pools",
        "routes[1].cache_control: \"bad\\u{1}\" is not a Cache-Control value",
        "routes[2].cache_control_hashed: goes with static",
        "routes[2].headers.set.a b",
        "routes[2].headers.surprise",
    ] {
        assert!(all.contains(expected), "no {expected:?} in:\n{all}");
    }
}

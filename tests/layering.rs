//! The crates are layered (docs/ARCHITECTURE.md, "Code map"): a crate depends only on crates
//! of a lower layer, so the supervisor and the proxy meet only in `corral-routes`, and
//! nothing below the binary knows the binary's wiring.

use std::path::Path;

/// Each workspace crate's layer; a crate may depend only on crates of a lower one.
const LAYERS: &[(&str, u32)] = &[
    ("corral-config", 0),
    ("corral-systemd", 0),
    ("corral-testapp", 0),
    ("corral-python", 0),
    ("corral-telemetry", 1),
    ("corral-compress", 1),
    ("corral-tls", 1),
    ("corral-ratelimit", 1),
    ("corral-control", 1),
    ("corral-routes", 2),
    ("corral-acme", 2),
    ("corral-supervisor", 3),
    ("corral-proxy", 3),
    ("corral", 4),
];

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// The workspace crates `manifest` names as dependencies of any kind.
fn corral_dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("read manifest");
    let table: toml::Table = toml::from_str(&text).expect("manifest is TOML");
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|kind| table.get(*kind).and_then(|d| d.as_table()))
        .flat_map(|deps| deps.keys().cloned())
        .filter(|name| name.starts_with("corral"))
        .collect()
}

#[test]
fn no_crate_depends_on_a_crate_of_its_own_layer_or_above() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut manifests = vec![("corral".to_string(), root.join("Cargo.toml"))];
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        // `crates/corral` holds the binary's sources; its manifest is the root one.
        if dir.join("Cargo.toml").exists() {
            manifests.push((name, dir.join("Cargo.toml")));
        }
    }
    let mut wrong = Vec::new();
    for (name, manifest) in &manifests {
        let Some(own) = layer(name) else {
            wrong.push(format!("{name} has no layer in LAYERS"));
            continue;
        };
        for dep in corral_dependencies(manifest) {
            match layer(&dep) {
                Some(l) if l < own => {}
                _ => wrong.push(format!("{name} (layer {own}) depends on {dep}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_proxy_does_not_name_the_supervisor() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deps = corral_dependencies(&root.join("crates/corral-proxy/Cargo.toml"));
    assert!(deps.iter().any(|d| d == "corral-routes"), "{deps:?}");
    assert!(!deps.iter().any(|d| d == "corral-supervisor"), "{deps:?}");
}

//! Lists `python/corral_worker/` and writes `files.rs`: every file of the package embedded
//! with `include_str!`, so a file added there ships without editing any Rust.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let package = root.join("corral_worker");
    println!("cargo:rerun-if-changed={}", package.display());
    let mut names: Vec<String> = std::fs::read_dir(&package)
        .expect("python/corral_worker is readable")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".py"))
        .collect();
    names.sort();
    let mut out = String::from(
        "/// Every file of the `corral_worker` package: (path under the package root, text).\n",
    );
    out += "pub const FILES: &[(&str, &str)] = &[\n";
    for name in &names {
        let path = package.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    (\"corral_worker/{name}\", include_str!({:?})),",
            path.display().to_string()
        );
    }
    out += "];\n";
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("files.rs");
    std::fs::write(dest, out).expect("write files.rs");
}

//! `cargo xtask deb`: the Debian package, built by cargo-deb from the metadata in the top
//! `Cargo.toml`, then checked: the files an operator expects, the conffile, and the
//! maintainer scripts. `cargo xtask deb-installed`, after `dpkg -i` (CI: it creates a system
//! user), checks what the install did and runs `corral check` on the installed config.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::needs::Env;

/// Paths the package must hold (as `dpkg-deb -c` prints them, without the leading `.`).
const FILES: &[&str] = &[
    "/usr/bin/corral",
    "/lib/systemd/system/corral.service",
    "/etc/corral/corral.toml",
    "/usr/share/corral/example-app.py",
    "/usr/share/doc/corral/README.md",
    "/usr/share/doc/corral/configuration.md",
    "/usr/share/doc/corral/operations.md",
    "/usr/share/doc/corral/quickstart.md",
];

/// Control members `dpkg-deb -I` must list.
const CONTROL: &[&str] = &["conffiles", "postinst", "prerm", "postrm", "control"];

/// Builds and checks the package.
pub fn build(root: &Path, env: &Env) -> Result<(), String> {
    if !cargo_deb_installed() {
        eprintln!("xtask: cargo install cargo-deb");
        crate::run(Command::new(crate::cargo_program()).args([
            "install",
            "--locked",
            "cargo-deb",
        ]))?;
    }
    crate::cargo(root, env, &["deb", "--package", "corral"])?;
    let deb = newest_deb(&root.join("target").join("debian"))?;
    check_contents(&deb)?;
    eprintln!("xtask: {} is complete", deb.display());
    Ok(())
}

fn cargo_deb_installed() -> bool {
    Command::new(crate::cargo_program())
        .args(["deb", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn newest_deb(dir: &Path) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("no .deb in {}", dir.display()))
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `dpkg-deb -c` and `-I`: every expected file and control member is there.
fn check_contents(deb: &Path) -> Result<(), String> {
    let listing = output(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    let info = output(Command::new("dpkg-deb").arg("-I").arg(deb))?;
    print!("{listing}{info}");
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| !listing.lines().any(|l| l.ends_with(&format!(".{f}"))))
        .chain(
            CONTROL
                .iter()
                .copied()
                .filter(|c| !info.lines().any(|l| l.split_whitespace().any(|w| w == *c))),
        )
        .collect();
    if !missing.is_empty() {
        return Err(format!("{} lacks: {}", deb.display(), missing.join(", ")));
    }
    let conf = output(
        Command::new("dpkg-deb")
            .args(["-I"])
            .arg(deb)
            .arg("conffiles"),
    )?;
    if !conf.lines().any(|l| l.trim() == "/etc/corral/corral.toml") {
        return Err(format!("/etc/corral/corral.toml is not a conffile: {conf}"));
    }
    Ok(())
}

/// After `dpkg -i`: the user exists, the config is there with its owner and mode, and
/// `corral check` accepts it.
pub fn check_installed() -> Result<(), String> {
    let user = output(Command::new("getent").args(["passwd", "corral"]))?;
    eprintln!("xtask: user {}", user.trim());
    let mode = output(Command::new("stat").args(["-c", "%U:%G %a", "/etc/corral/corral.toml"]))?;
    if mode.trim() != "root:corral 640" {
        return Err(format!(
            "/etc/corral/corral.toml is {}, not root:corral 640",
            mode.trim()
        ));
    }
    let check =
        output(Command::new("/usr/bin/corral").args(["check", "-c", "/etc/corral/corral.toml"]))?;
    eprintln!(
        "xtask: corral check accepts /etc/corral/corral.toml ({} lines of effective config)",
        check.lines().count()
    );
    Ok(())
}

//! `target/venv`: the Python environment of the tests' app servers (and of cmake, when the
//! machine has none and no root to install Debian's).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::needs::{self, Purpose};

/// The app servers the examples run under, pinned: `examples/requirements.txt`.
const APP_REQUIREMENTS: &str = "examples/requirements.txt";

/// cmake from PyPI, a self-contained build of the real one.
const CMAKE: &str = "cmake>=3.25,<5";

/// Creates the venv if needed and installs what `purpose` needs into it, once: a stamp file
/// holds the requirements last installed, so an unchanged list costs nothing.
pub fn ensure(
    root: &Path,
    purpose: Purpose,
    with_cmake: bool,
    apt: bool,
) -> Result<PathBuf, String> {
    let venv = root.join("target").join("venv");
    let mut wanted = String::new();
    if with_cmake {
        wanted += CMAKE;
        wanted += "\n";
    }
    if purpose == Purpose::Test {
        let path = root.join(APP_REQUIREMENTS);
        wanted += &std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    let stamp = venv.join("corral-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    if !venv.join("bin").join("python3").exists() {
        create(&venv, apt)?;
    }
    let listed = venv.join("corral-requirements.new");
    std::fs::write(&listed, &wanted)
        .map_err(|e| format!("cannot write {}: {e}", listed.display()))?;
    eprintln!("xtask: pip install into {}", venv.display());
    crate::run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&listed),
    )?;
    std::fs::rename(&listed, &stamp)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(venv)
}

/// `python3 -m venv`; Debian keeps its `ensurepip` in python3-venv, installed when missing.
fn create(venv: &Path, apt: bool) -> Result<(), String> {
    let make = || {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if make() {
        return Ok(());
    }
    if apt && needs::apt_install(&["python3-venv"]).is_ok() && make() {
        return Ok(());
    }
    Err(format!(
        "cannot create a Python venv at {}: install python3-venv (sudo apt-get install -y python3-venv) and run this again",
        venv.display()
    ))
}

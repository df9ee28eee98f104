//! The Python side of an app pool (`app = "module:callable"`), shipped inside the binary.
//!
//! `python/corral_worker/` is a pure-stdlib package: `template.py` is the process that
//! imports the app once and forks workers on the supervisor's request; `http.py`, `wsgi.py`
//! and `asgi.py` are what a worker runs; `standalone.py` serves one app without a template.
//! `build.rs` embeds every file of it as [`FILES`], and [`install`] writes them under the
//! runtime dir once per start, so nothing ships or is installed separately. The files go to
//! a directory named by a hash of their text: a master started by SIGUSR2 from a newer
//! binary writes its own next to the old one's, and neither sees a half-written package
//! (each is written aside, then renamed into place).

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/files.rs"));

/// The module a template runs (`python -m`).
pub const TEMPLATE_MODULE: &str = "corral_worker.template";

/// A hash of the package's files, naming its directory.
fn version() -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    FILES.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Writes the package under `runtime_dir/python/VERSION/` unless it is there already, and
/// returns that directory: the one to put first on a template's `PYTHONPATH`.
pub fn install(runtime_dir: &Path) -> io::Result<PathBuf> {
    let base = runtime_dir.join("python");
    let dir = base.join(version());
    if dir.join("corral_worker").is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&base)?;
    let aside = base.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    for (path, text) in FILES {
        let file = aside.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text)?;
    }
    // Readable by a pool's own `user`.
    set_mode(&base, 0o755)?;
    set_mode(&aside, 0o755)?;
    set_mode(&aside.join("corral_worker"), 0o755)?;
    match std::fs::rename(&aside, &dir) {
        Ok(()) => Ok(dir),
        // Another master wrote the same files first.
        Err(_) if dir.join("corral_worker").is_dir() => {
            let _ = std::fs::remove_dir_all(&aside);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&aside);
            Err(e)
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_package_is_embedded() {
        let names: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
        assert!(names.contains(&"corral_worker/__init__.py"), "{names:?}");
        assert!(names.contains(&"corral_worker/template.py"), "{names:?}");
    }

    #[test]
    fn install_writes_the_files_once_and_reuses_them() {
        let dir = std::env::temp_dir().join(format!("corral-python-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = install(&dir).expect("install");
        let template = first.join("corral_worker/template.py");
        let text = std::fs::read_to_string(&template).expect("template written");
        assert!(text.contains("def main"));
        let second = install(&dir).expect("install again");
        assert_eq!(first, second);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

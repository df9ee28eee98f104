//! Lowering an app pool's keys: `app = "module:callable"`, `interface` and `python`. Such a
//! pool runs a Python app corral preloads once in a template process and forks workers
//! from, instead of a `command`; every other pool key means what it means for a command
//! pool. The interpreter is found when the config is read, so a missing one fails
//! `corral check` with its place in the file.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::model::{Interface, PythonApp};
use crate::reader::{Reader, Table};

/// The interpreter an app pool runs when `python` is not given: `python3` on `PATH`.
pub const DEFAULT_PYTHON: &str = "python3";

/// Reads `app`, `interface` and `python`; `command` is the span of the pool's `command`,
/// when it has one. `None` for a command pool (and its app-only keys are refused).
pub(crate) fn app(
    r: &mut Reader,
    t: &mut Table,
    command: Option<Range<usize>>,
) -> Option<PythonApp> {
    let app_path = t.key_path("app");
    let app_span = t.get("app").map(|n| n.span());
    let target = t.string(r, "app");
    let interface_span = t.get("interface").map(|n| n.span());
    let interface = match t.choice(r, "interface", &["wsgi", "asgi"]) {
        Some("asgi") => Interface::Asgi,
        _ => Interface::Wsgi,
    };
    let python_span = t.get("python").map(|n| n.span());
    let python = t.string(r, "python");
    let (Some(target), Some(app_span)) = (target, app_span) else {
        for (key, span) in [("interface", interface_span), ("python", python_span)] {
            if let Some(span) = span {
                r.error(
                    span,
                    &t.key_path(key),
                    "only applies to a pool with `app` (a Python app corral preloads); this pool runs a `command`",
                );
            }
        }
        return None;
    };
    if let Some(span) = command {
        r.error(
            span,
            &t.key_path("command"),
            "and `app` are exclusive: a pool runs either a program (`command`) or a Python app corral preloads and forks (`app`); remove one",
        );
    }
    if let Err(why) = check_target(&target) {
        r.error(
            app_span.clone(),
            &app_path,
            format!("{target:?} {why}; write it like \"mysite.wsgi:application\""),
        );
    }
    let written = python.unwrap_or_else(|| DEFAULT_PYTHON.to_string());
    let resolved = match find_interpreter(&written) {
        Some(path) => path,
        None => {
            let where_ = if written.contains('/') {
                "is not an executable file".to_string()
            } else {
                "is not found on PATH".to_string()
            };
            r.error(
                python_span.unwrap_or(app_span),
                &t.key_path("python"),
                format!("{written:?} {where_}; install Python 3 or name the interpreter, e.g. python = \"/srv/app/venv/bin/python\""),
            );
            PathBuf::from(&written)
        }
    };
    Some(PythonApp {
        target,
        interface,
        python: resolved,
        python_written: written,
    })
}

/// `module:callable`, each a dotted Python name (`callable` may be left out: `application`).
fn check_target(target: &str) -> Result<(), &'static str> {
    let (module, callable) = match target.split_once(':') {
        Some((m, c)) => (m, Some(c)),
        None => (target, None),
    };
    let dotted = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
    };
    if !dotted(module) {
        return Err("does not start with a module name");
    }
    if callable.is_some_and(|c| !dotted(c)) {
        return Err("names no callable after the ':'");
    }
    Ok(())
}

/// The interpreter `name` stands for: a path as given, or the first match on `PATH`.
fn find_interpreter(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        // Not canonicalized: a virtualenv's python is a symlink that must run as itself.
        return is_executable(&path).then(|| std::path::absolute(&path).unwrap_or(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_module_and_callable() {
        assert!(check_target("mysite.wsgi:application").is_ok());
        assert!(check_target("app:app").is_ok());
        assert!(check_target("app").is_ok());
        assert!(check_target("app:create.app").is_ok());
        assert!(check_target(":app").is_err());
        assert!(check_target("app:").is_err());
        assert!(check_target("my-site:app").is_err());
        assert!(check_target("app:app()").is_err());
    }
}

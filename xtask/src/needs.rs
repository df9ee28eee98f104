//! What the build and the tests need from the machine, and getting it there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::venv;

/// Why the machine is being prepared: the tests need more than the build.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Building and running corral and its example.
    Build,
    /// Running the whole test suite.
    Test,
}

/// One program the work calls, and where Debian has it.
struct Tool {
    command: &'static str,
    apt: &'static str,
    why: &'static str,
    purpose: Purpose,
}

const TOOLS: &[Tool] = &[
    Tool {
        command: "cc",
        apt: "build-essential",
        why: "C compiler for pingora's C dependencies",
        purpose: Purpose::Build,
    },
    Tool {
        command: "cmake",
        apt: "cmake",
        why: "pingora-core builds zlib-ng with cmake",
        purpose: Purpose::Build,
    },
    Tool {
        command: "python3",
        apt: "python3",
        why: "the example app and the Python app servers",
        purpose: Purpose::Build,
    },
    Tool {
        command: "redis-server",
        apt: "redis-server",
        why: "the shared rate limit tests",
        purpose: Purpose::Test,
    },
    Tool {
        command: "curl",
        apt: "curl",
        why: "the quickstart's commands",
        purpose: Purpose::Test,
    },
    Tool {
        command: "openssl",
        apt: "openssl",
        why: "test certificates and TLS clients of the HTTPS tests",
        purpose: Purpose::Test,
    },
    Tool {
        command: "h2load",
        apt: "nghttp2-client",
        why: "the HTTP/2 tests (h2load, nghttp)",
        purpose: Purpose::Test,
    },
    Tool {
        command: "pebble",
        apt: "pebble",
        why: "the ACME tests (an RFC 8555 test CA, with pebble-challtestsrv for DNS)",
        purpose: Purpose::Test,
    },
    Tool {
        command: "jq",
        apt: "jq",
        why: "the quickstart's commands",
        purpose: Purpose::Test,
    },
    Tool {
        command: "promtool",
        apt: "prometheus",
        why: "checking config/alerts.yml",
        purpose: Purpose::Test,
    },
    Tool {
        command: "systemd-analyze",
        apt: "systemd",
        why: "verifying the unit files (systemd/)",
        purpose: Purpose::Test,
    },
    Tool {
        command: "node",
        apt: "nodejs",
        why: "the Node.js example's test",
        purpose: Purpose::Test,
    },
];

/// What the prepared machine adds to cargo's environment.
#[derive(Default)]
pub struct Env {
    /// Directories appended to `PATH` (cmake from PyPI, when Debian's could not be had).
    path_extra: Vec<PathBuf>,
    /// Variables for the tests: where the app servers are, and that they must run.
    vars: Vec<(String, String)>,
}

impl Env {
    /// Sets the environment on a cargo command.
    pub fn apply(&self, cmd: &mut Command) {
        if !self.path_extra.is_empty() {
            let mut paths: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            paths.extend(self.path_extra.iter().cloned());
            if let Ok(joined) = std::env::join_paths(paths) {
                cmd.env("PATH", joined);
            }
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }

    /// Prints what `setup` arranged, for a person running cargo by hand afterwards.
    pub fn describe(&self) {
        eprintln!("xtask: the machine is ready");
        for dir in &self.path_extra {
            eprintln!("  add to PATH: {}", dir.display());
        }
        for (k, v) in &self.vars {
            eprintln!("  {k}={v}");
        }
    }
}

/// Installs what `purpose` needs and is missing, or says exactly how to; then returns the
/// environment cargo runs with.
pub fn prepare(root: &Path, purpose: Purpose) -> Result<Env, String> {
    let missing: Vec<&Tool> = TOOLS
        .iter()
        .filter(|t| purpose == Purpose::Test || t.purpose == Purpose::Build)
        .filter(|t| !on_path(t.command))
        .collect();
    for tool in &missing {
        eprintln!("xtask: {} is missing ({})", tool.command, tool.why);
    }
    let mut env = Env::default();
    let apt = can_apt();
    if !missing.is_empty() {
        if apt {
            apt_install(&missing.iter().map(|t| t.apt).collect::<Vec<_>>())?;
        } else {
            // Without root, cmake can still come from PyPI; the rest only from the system.
            let others: Vec<&str> = missing
                .iter()
                .filter(|t| t.command != "cmake")
                .map(|t| t.apt)
                .collect();
            if !others.is_empty() {
                return Err(format!(
                    "install them first, then run this again:\n  sudo apt-get install -y {}",
                    others.join(" ")
                ));
            }
        }
    }
    let cmake_from_pypi = !on_path("cmake");
    if purpose == Purpose::Test || cmake_from_pypi {
        let venv = venv::ensure(root, purpose, cmake_from_pypi, apt)?;
        if cmake_from_pypi {
            env.path_extra.push(venv.join("bin"));
        }
        if purpose == Purpose::Test {
            env.vars.extend([
                ("CORRAL_VENV".to_string(), venv.display().to_string()),
                ("CORRAL_REQUIRE_REDIS".to_string(), "1".to_string()),
                ("CORRAL_REQUIRE_APPS".to_string(), "1".to_string()),
            ]);
        }
    }
    Ok(env)
}

/// Whether `command` is an executable file in one of `PATH`'s directories.
pub fn on_path(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).any(|dir| {
                std::fs::metadata(dir.join(command))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// Root on a machine with apt-get: Debian packages can be installed directly.
pub fn can_apt() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    root && on_path("apt-get")
}

/// `apt-get update` then `apt-get install` of `packages`, without questions.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    eprintln!("xtask: apt-get install {}", packages.join(" "));
    let quiet = |cmd: &mut Command| {
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
    };
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    quiet(&mut update);
    crate::run(&mut update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages);
    quiet(&mut install);
    // redis-server and prometheus would start as services listening on the machine's
    // addresses; the tests start their own on loopback. policy-rc.d's 101 forbids starting.
    let policy = Path::new(POLICY_RC_D);
    let added = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok();
    if added {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755));
    }
    let result = crate::run(&mut install);
    if added {
        let _ = std::fs::remove_file(policy);
    }
    result
}

/// Debian's hook that decides whether a package's maintainer script may start its service.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

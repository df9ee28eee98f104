//! `cargo xtask`: the two commands of the README, on a machine that has Rust and nothing else.
//!
//! pingora builds zlib-ng with cmake, the example app is Python, and the tests run real
//! Redis, Node.js and Python app servers. Rather than fail two minutes into a build, this
//! runner checks for each of them first, installs what is missing (Debian packages when run
//! as root, else cmake and the Python servers from PyPI into `target/venv`), or says exactly
//! what to run, and only then calls cargo.

mod deb;
mod needs;
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use needs::Purpose;

const USAGE: &str = "\
cargo xtask example        build corral and run config/example.toml (installs cmake if missing)
cargo xtask test [ARGS]    install what the tests need, then cargo test --workspace [ARGS]
cargo xtask setup [test]   only install what the build (or the tests) need
cargo xtask clippy         cargo clippy --workspace --all-targets -- -D warnings
cargo xtask deb            build target/debian/corral_*.deb with cargo-deb and check it
cargo xtask deb-installed  after dpkg -i: the user, the config, corral check on it";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((verb, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let root = workspace_root();
    let outcome = match verb.as_str() {
        "example" => needs::prepare(&root, Purpose::Build).and_then(|env| {
            cargo(
                &root,
                &env,
                &["run", "--release", "--", "run", "-c", "config/example.toml"],
            )
        }),
        "test" => needs::prepare(&root, Purpose::Test).and_then(|env| {
            let mut argv = vec!["test", "--workspace"];
            argv.extend(rest.iter().map(String::as_str));
            cargo(&root, &env, &argv)
        }),
        "setup" => {
            let purpose = match rest.first().map(String::as_str) {
                Some("test") => Purpose::Test,
                _ => Purpose::Build,
            };
            needs::prepare(&root, purpose).map(|env| {
                env.describe();
            })
        }
        "deb" => needs::prepare(&root, Purpose::Build).and_then(|env| deb::build(&root, &env)),
        "deb-installed" => deb::check_installed(),
        "clippy" => needs::prepare(&root, Purpose::Build).and_then(|env| {
            let mut argv = vec!["clippy", "--workspace", "--all-targets"];
            argv.extend(rest.iter().map(String::as_str));
            argv.extend(["--", "-D", "warnings"]);
            cargo(&root, &env, &argv)
        }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: this crate lives in `xtask/` under it.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo that runs this xtask (`$CARGO`), so the same toolchain builds everything.
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs cargo with the prepared environment; a failing cargo is this command's failure.
fn cargo(root: &Path, env: &needs::Env, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(cargo_program());
    cmd.args(args).current_dir(root);
    env.apply(&mut cmd);
    run(&mut cmd)
}

/// Runs a command to completion; a non-zero exit is an error naming the command.
fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed ({status})", cmd.get_program()))
    }
}

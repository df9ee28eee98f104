//! Command-line verbs. Each loads the config the same way: `--config`, `$CORRAL_CONFIG`,
//! `./corral.toml`, `/etc/corral/corral.toml`, then `$PORT`, `$HOST`, `$WEB_CONCURRENCY`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use corral_config::{Config, ConfigErrors};

/// Exit code for a config that does not validate (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// corral: your app's workers, supervised, behind a reverse proxy, from one binary.
#[derive(Parser)]
#[command(name = "corral", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the workers and the proxy, and run until stopped.
    Run(ConfigArgs),
    /// Validate the config without running anything; print the effective config.
    Check(ConfigArgs),
}

#[derive(Args)]
pub struct ConfigArgs {
    /// The config file (else $CORRAL_CONFIG, ./corral.toml, /etc/corral/corral.toml).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn load(args: &ConfigArgs) -> Result<Config, ConfigErrors> {
    corral_config::load(args.config.as_deref(), &|name| std::env::var(name).ok())
}

fn report(errors: &ConfigErrors) {
    let n = errors.0.len();
    eprintln!(
        "corral: the config has {n} error{}:",
        if n == 1 { "" } else { "s" }
    );
    for e in &errors.0 {
        eprintln!("  {e}");
    }
}

/// `corral check`: like `nginx -t`.
pub fn check(args: &ConfigArgs) -> ExitCode {
    match load(args) {
        Ok(config) => {
            print!("{}", corral_config::render(&config));
            eprintln!("corral: {} is valid", config.source.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report(&errors);
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// `corral run`.
pub fn run(args: &ConfigArgs) -> ExitCode {
    let config = match load(args) {
        Ok(config) => config,
        Err(errors) => {
            report(&errors);
            eprintln!("corral: not starting");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match crate::run::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "corral failed");
            eprintln!("corral: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Command-line verbs. Each loads the config the same way: `--config`, `$CORRAL_CONFIG`,
//! `./corral.toml`, `/etc/corral/corral.toml`, then `$PORT`, `$HOST`, `$WEB_CONCURRENCY`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use corral_config::{Config, ConfigErrors};
use corral_control::{Answer, Refusal, Request};
use serde_json::Value;

use crate::client::{self, ClientError};

/// Exit code for a config that does not validate (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// corral: your app's workers, supervised, behind a reverse proxy, from one binary.
#[derive(Parser)]
#[command(name = "corral", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Runs the verb asked for; its exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Check(args) => check(&args),
            Command::Run(args) => run(&args),
            Command::Serve(args) => crate::serve::serve(&args),
            Command::Reload(args) => reload(&args),
            Command::Status { args, json } => status(&args, json),
            Command::Scale {
                args,
                pool,
                workers,
            } => scale(&args, &pool, workers),
            Command::Switch {
                args,
                pool,
                weights,
                route,
            } => switch(&args, pool.as_deref(), weights.as_deref(), route),
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the workers and the proxy, and run until stopped.
    Run(ConfigArgs),
    /// Run CMD as the workers without a config file, like `gunicorn -w 4 app:app`:
    /// `corral serve --workers 4 -- python3 app.py --port {port}`.
    Serve(crate::serve::ServeArgs),
    /// Validate the config without running anything; print the effective config.
    Check(ConfigArgs),
    /// Ask the running corral to re-read its config and replace its workers (like SIGHUP).
    Reload(ControlArgs),
    /// Show the running corral's pools and workers.
    Status {
        #[command(flatten)]
        args: ControlArgs,
        /// Print the raw JSON of /status.
        #[arg(long)]
        json: bool,
    },
    /// Move traffic to another pool once all its workers are ready and pass their health and
    /// smoke checks; the previous pool drains and stops (or stays warm with
    /// routing.keep_previous). Refused, with the reason, when any check fails.
    ///
    /// With --weights, new requests are split by weight instead (a canary); the pools that
    /// gain a share are checked the same way, and a rollback restores the previous split.
    ///
    /// With [[routes]], one route's traffic moves (--route, or the route whose pools are
    /// named) and every other route is left as it is.
    #[command(group(clap::ArgGroup::new("to").required(true).args(["pool", "weights"])))]
    Switch {
        #[command(flatten)]
        args: ControlArgs,
        /// The pool to switch all traffic to.
        pool: Option<String>,
        /// Split new requests by weight, e.g. blue=90,green=10.
        #[arg(long, value_name = "POOL=WEIGHT,...")]
        weights: Option<String>,
        /// The [[routes]] route to switch (its `name`); by default the route whose pools
        /// are named.
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
    },
    /// Set the number of workers of a pool of the running corral.
    Scale {
        #[command(flatten)]
        args: ControlArgs,
        /// The pool.
        pool: String,
        /// How many workers it should have, from 1 to the pool limit (`MAX_WORKERS`).
        #[arg(value_parser = clap::value_parser!(u32).range(1..=corral_config::MAX_WORKERS))]
        workers: u32,
    },
}

#[derive(Args)]
pub struct ControlArgs {
    /// The config file, to find the control socket.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control socket (else server.control_socket of the config).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct ConfigArgs {
    /// The config file (else $CORRAL_CONFIG, ./corral.toml, /etc/corral/corral.toml).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The config of `args`, its certificates checked too (readable, PEM, key matching), so
/// `corral check` and `corral run` refuse the same files.
fn load(args: &ConfigArgs) -> Result<Config, ConfigErrors> {
    let config = corral_config::load(args.config.as_deref(), &|name| std::env::var(name).ok())?;
    corral_tls::load(&config).map_err(ConfigErrors)?;
    Ok(config)
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

/// Warns when the ACME directory cannot be reached now: not an error, as the CA (or the
/// network) may be back by the time corral starts, and certificates are ordered in the
/// background anyway.
fn warn_unreachable_ca(config: &Config) {
    let Some(acme) = config.server.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
        return;
    };
    if let Err(why) = corral_acme::reachable(&acme.directory) {
        eprintln!(
            "corral: warning: {}:{}:{}: {}.directory: the ACME directory {} is unreachable now ({why}); certificates will be ordered once it answers",
            config.source.display(),
            acme.place.line,
            acme.place.column,
            acme.place.key,
            acme.directory
        );
    }
}

/// `corral check`: like `nginx -t`.
pub fn check(args: &ConfigArgs) -> ExitCode {
    match load(args) {
        Ok(config) => {
            print!("{}", corral_config::render(&config));
            warn_unreachable_ca(&config);
            eprintln!("corral: {} is valid", config.source.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report(&errors);
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn socket(args: &ControlArgs) -> PathBuf {
    let config = corral_config::load(args.config.as_deref(), &|name| std::env::var(name).ok()).ok();
    client::socket_path(args.socket.as_deref(), config.as_ref())
}

fn failed(e: &ClientError) -> ExitCode {
    eprintln!("corral: {e}");
    ExitCode::from(e.exit_code())
}

/// `corral reload`: exit 0 once the new config is accepted; the errors and 64 if not.
pub fn reload(args: &ControlArgs) -> ExitCode {
    ask(args, Request::Reload, |answer| match answer {
        Answer::Reloaded { generation, .. } => {
            println!("reloaded: generation {generation}; workers are being replaced")
        }
        other => println!("{other:?}"),
    })
}

/// `corral scale POOL N`.
pub fn scale(args: &ControlArgs, pool: &str, workers: u32) -> ExitCode {
    let request = Request::Scale {
        pool: Some(pool.to_string()),
        workers,
    };
    ask(args, request, |_| {
        println!("pool {pool}: scaling to {workers} workers")
    })
}

/// `corral switch POOL` or `corral switch --weights blue=90,green=10`, with `--route NAME`
/// for one `[[routes]]` route.
pub fn switch(
    args: &ControlArgs,
    pool: Option<&str>,
    weights: Option<&str>,
    route: Option<String>,
) -> ExitCode {
    let to = match (pool, weights) {
        (_, Some(weights)) => match corral_config::Traffic::parse_weights(weights) {
            Ok(to) => to,
            Err(e) => {
                eprintln!("corral: --weights {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
        (Some(pool), None) => corral_config::Traffic::to(pool),
        (None, None) => {
            eprintln!("corral: say where traffic goes: a POOL or --weights");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    ask(args, Request::Switch { to, route }, |answer| match answer {
        Answer::Switched(s) => println!(
            "switched {}from {} to {} ({} workers checked, {} ms); {}",
            s.route
                .as_ref()
                .map_or_else(String::new, |r| format!("route {r} ")),
            s.from,
            s.to,
            s.workers,
            s.took_ms,
            s.previous
        ),
        other => println!("{other:?}"),
    })
}

/// Sends `request` to the running master; `done` prints its answer. A refusal prints why
/// and exits 64 (the master refused: the running config is unchanged) or 1.
fn ask(args: &ControlArgs, request: Request, done: impl FnOnce(Answer)) -> ExitCode {
    let refusal = match client::send(&socket(args), &request) {
        Ok(Ok(answer)) => {
            done(answer);
            return ExitCode::SUCCESS;
        }
        Ok(Err(refusal)) => refusal,
        Err(e) => return failed(&e),
    };
    let (errors, code) = match refusal {
        Refusal::Refused(errors) => (errors, EXIT_BAD_CONFIG),
        Refusal::BadRequest(why) => (vec![why], 1),
        Refusal::Stopping => (vec!["corral is stopping".to_string()], 1),
    };
    eprintln!("corral: refused; the running config is unchanged:");
    for e in &errors {
        eprintln!("  {e}");
    }
    ExitCode::from(code)
}

/// A failed `GET /status`.
fn control_errors(status: u16, body: &str) -> ExitCode {
    eprintln!("corral: status {status}: {}", body.trim());
    ExitCode::FAILURE
}

/// `corral status`: a table for humans, or `--json`.
pub fn status(args: &ControlArgs, json: bool) -> ExitCode {
    let body = match client::request(&socket(args), "GET", "/status") {
        Ok((200, body)) => body,
        Ok((status, body)) => return control_errors(status, &body),
        Err(e) => return failed(&e),
    };
    if json {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    let Ok(status) = serde_json::from_str::<Value>(&body) else {
        eprintln!("corral: unexpected status answer");
        return ExitCode::FAILURE;
    };
    print!("{}", status_table(&status));
    ExitCode::SUCCESS
}

/// The human form of `/status`.
fn status_table(s: &Value) -> String {
    let mut out = format!(
        "corral {} pid {} up {:.0}s, config generation {}{}\n",
        s["version"].as_str().unwrap_or("?"),
        s["pid"],
        s["uptime_seconds"].as_f64().unwrap_or(0.0),
        s["generation"],
        if s["stopping"] == true {
            ", STOPPING"
        } else {
            ""
        }
    );
    // With `[[routes]]`, where each pool route sends its requests.
    for route in s["routes"].as_array().into_iter().flatten() {
        let to = match route["weights"].as_object() {
            Some(weights) => weights
                .iter()
                .map(|(pool, w)| format!("{pool}={w}"))
                .collect::<Vec<_>>()
                .join(","),
            None => route["active_pool"].as_str().unwrap_or("?").to_string(),
        };
        out += &format!(
            "route {}: {to} ({} {:.0}s ago), {} requests, {} 5xx\n",
            route["name"].as_str().unwrap_or("?"),
            route["active_because"].as_str().unwrap_or("?"),
            route["active_for_seconds"].as_f64().unwrap_or(0.0),
            route["requests"],
            route["requests_5xx"],
        );
    }
    for pool in s["pools"].as_array().into_iter().flatten() {
        out += &format!(
            "\npool {}{}: {} of {} ready{}\n",
            pool["name"].as_str().unwrap_or("?"),
            match (pool["active"] == true, pool["weight"].as_u64()) {
                (true, Some(w)) => format!(" (active, weight {w})"),
                (false, Some(w)) => format!(" (weight {w})"),
                (true, None) => " (active)".to_string(),
                (false, None) => String::new(),
            },
            pool["ready"],
            pool["desired"],
            pool["failed"]
                .as_str()
                .map(|f| format!(", FAILED: {f}"))
                .unwrap_or_default()
        );
        out += &format!(
            "  {:>6}  {:>8}  {:<9}  {:>8}  {:>9}  {:>8}\n",
            "WORKER", "PID", "STATE", "AGE", "REQUESTS", "RESTARTS"
        );
        for w in pool["workers"].as_array().into_iter().flatten() {
            out += &format!(
                "  {:>6}  {:>8}  {:<9}  {:>7.0}s  {:>9}  {:>8}\n",
                // `Value`'s Display ignores widths: format as strings.
                w["id"].to_string(),
                w["pid"].to_string(),
                w["state"].as_str().unwrap_or("?"),
                w["age_seconds"].as_f64().unwrap_or(0.0),
                w["requests"].to_string(),
                w["restarts"].to_string()
            );
        }
    }
    out
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
            eprintln!("corral: {e:#}");
            ExitCode::FAILURE
        }
    }
}

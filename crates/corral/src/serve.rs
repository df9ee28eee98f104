//! `corral serve [OPTIONS] -- CMD ...`: the zero-config form, like `gunicorn -w 4 app:app`.
//!
//! The options become a minimal config file, written to the runtime directory and then run
//! exactly like `corral run -c` on it: the same defaults, validation, logs, admin API and
//! reload (SIGHUP re-reads that file and replaces every worker). The file stays readable while
//! corral runs, for `corral check -c` or to copy as a starting point, and is removed at exit.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::cli::{self, ConfigArgs};

/// The options of `corral serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Worker processes, or "auto" (else $WEB_CONCURRENCY, else 1).
    #[arg(short, long, value_name = "N|auto")]
    pub workers: Option<String>,
    /// How a worker gets its socket: `{port}`/$PORT, fd 3, or `{socket}` (else unix when
    /// CMD names `{socket}`, tcp otherwise).
    #[arg(long, value_enum)]
    pub bind: Option<BindArg>,
    /// The port corral listens on for clients (else $PORT, else 8080).
    #[arg(short, long, value_name = "P")]
    pub port: Option<u16>,
    /// The address corral listens on (else $HOST, else 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// Requests one worker takes at once (1 for sync workers; raise it for async ones).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// How a new worker is known to be ready (http: GET --health-path answers 2xx).
    #[arg(long, value_enum, default_value_t = ReadyArg::Http)]
    pub ready: ReadyArg,
    /// The path `--ready http` requests.
    #[arg(long, value_name = "PATH", default_value = "/health")]
    pub health_path: String,
    /// The admin listener (/healthz, /readyz, /status, /metrics).
    #[arg(long, value_name = "ADDR:PORT", default_value = corral_config::DEFAULT_ADMIN)]
    pub admin: String,
    /// Where the control socket (and this generated config) live (else /run/corral for
    /// root, $XDG_RUNTIME_DIR/corral, /tmp/corral-UID).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// A Python app to preload and fork workers from, instead of CMD (imported from the
    /// current directory).
    #[arg(long, value_name = "MODULE:CALLABLE", conflicts_with = "command")]
    pub app: Option<String>,
    /// With --app: how workers call it.
    #[arg(long, value_enum, requires = "app")]
    pub interface: Option<InterfaceArg>,
    /// With --app: the interpreter (else python3 on PATH).
    #[arg(long, value_name = "PATH", requires = "app")]
    pub python: Option<String>,
    /// The worker's command; `{port}`, `{socket}` and `{worker}` are filled in per worker.
    #[arg(last = true, required_unless_present = "app", value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--interface`.
#[derive(Clone, Copy, ValueEnum)]
pub enum InterfaceArg {
    /// PEP 3333, one request at a time per worker.
    Wsgi,
    /// ASGI 3: HTTP, WebSocket and lifespan.
    Asgi,
}

/// `--bind`.
#[derive(Clone, Copy, ValueEnum)]
pub enum BindArg {
    /// A loopback port per worker, as `{port}` and `$PORT`.
    Tcp,
    /// A socket corral binds, handed over as fd 3.
    Fd,
    /// A Unix socket per worker, as `{socket}`.
    Unix,
}

/// `--ready`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ReadyArg {
    /// GET the health path; 2xx means ready.
    Http,
    /// A TCP connect succeeds.
    Tcp,
    /// The worker sends READY=1 to $NOTIFY_SOCKET.
    Notify,
}

/// A TOML basic string: the config crate's one writer, which `corral check` prints with.
fn quoted(s: &str) -> String {
    corral_config::toml_string(s)
}

/// The config file the options stand for.
pub fn config_text(args: &ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> String {
    let host = args
        .host
        .clone()
        .or_else(|| env("HOST").filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let port = args
        .port
        .map(|p| p.to_string())
        .or_else(|| env("PORT").filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "8080".to_string());
    let listen = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut text = String::from("# Written by `corral serve` from its command line.\n[server]\n");
    let _ = writeln!(text, "listen = [{}]", quoted(&listen));
    let _ = writeln!(text, "admin = {}", quoted(&args.admin));
    if let Some(dir) = &args.runtime_dir {
        let _ = writeln!(text, "runtime_dir = {}", quoted(&dir.display().to_string()));
    }
    // The option values are the config's words: clap's names for them say it once.
    let name = |v: Option<clap::builder::PossibleValue>| v.map(|v| v.get_name().to_string());
    match &args.app {
        Some(app) => {
            let _ = writeln!(text, "\n[pools.web]\napp = {}", quoted(app));
            if let Some(interface) = args.interface.and_then(|i| name(i.to_possible_value())) {
                let _ = writeln!(text, "interface = \"{interface}\"");
            }
            if let Some(python) = &args.python {
                let _ = writeln!(text, "python = {}", quoted(python));
            }
            // The app is imported from where `corral serve` runs, as gunicorn does.
            if let Ok(cwd) = std::env::current_dir() {
                let _ = writeln!(text, "cwd = {}", quoted(&cwd.display().to_string()));
            }
        }
        None => {
            let command: Vec<String> = args.command.iter().map(|a| quoted(a)).collect();
            let _ = writeln!(text, "\n[pools.web]\ncommand = [{}]", command.join(", "));
        }
    }
    match args.workers.as_deref() {
        Some("auto") => text += "workers = \"auto\"\n",
        Some(n) => {
            // Written as given: the config reader reports a bad number with its range.
            let n = n
                .parse::<i64>()
                .map_or_else(|_| quoted(n), |n| n.to_string());
            let _ = writeln!(text, "workers = {n}");
        }
        None => {}
    }
    // Without --bind the config reader picks it from the command's placeholders.
    if let Some(bind) = args.bind.and_then(|b| name(b.to_possible_value())) {
        let _ = writeln!(text, "bind = \"{bind}\"");
    }
    let ready = name(args.ready.to_possible_value()).unwrap_or_default();
    let _ = writeln!(text, "ready = \"{ready}\"");
    if let Some(n) = args.concurrency {
        let _ = writeln!(text, "concurrency = {n}");
    }
    let _ = writeln!(
        text,
        "\n[pools.web.health]\npath = {}",
        quoted(&args.health_path)
    );
    text
}

/// Writes the file and runs it; the explicit options win over `$PORT`, `$HOST` and
/// `$WEB_CONCURRENCY`, which the config loader would otherwise apply on top.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let text = config_text(args, &|name| std::env::var(name).ok());
    let dir = args
        .runtime_dir
        .clone()
        .unwrap_or_else(corral_config::default_runtime_dir);
    let path: PathBuf = dir.join(format!("serve-{}.toml", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text)) {
        eprintln!("corral: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    // The variables are folded into the file already; left set, the loader would apply
    // them again over the options. Still single-threaded here, so this is sound.
    for name in ["PORT", "HOST", "WEB_CONCURRENCY"] {
        std::env::remove_var(name);
    }
    let code = cli::run(&ConfigArgs {
        config: Some(path.clone()),
    });
    let _ = std::fs::remove_file(&path);
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn text(argv: &[&str], env: &[(&str, &str)]) -> String {
        let args = Wrap::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))
            .expect("valid arguments")
            .serve;
        config_text(&args, &|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn parses(text: &str) -> corral_config::Config {
        corral_config::parse(std::path::Path::new("serve.toml"), text)
            .unwrap_or_else(|e| panic!("{text}\n{e:?}"))
    }

    #[test]
    fn the_options_make_a_valid_minimal_config() {
        let t = text(
            &[
                "--workers",
                "4",
                "--port",
                "9000",
                "--",
                "python3",
                "app.py",
                "--port",
                "{port}",
            ],
            &[("PORT", "7000")],
        );
        let c = parses(&t);
        assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:9000");
        assert_eq!(c.pools[0].workers, 4);
        assert_eq!(
            c.pools[0].command,
            ["python3", "app.py", "--port", "{port}"]
        );
    }

    #[test]
    fn port_and_host_fall_back_to_the_environment_then_the_defaults() {
        let c = parses(&text(
            &["--", "app", "{port}"],
            &[("PORT", "7000"), ("HOST", "::1")],
        ));
        assert_eq!(c.server.listen[0].to_string(), "[::1]:7000");
        let c = parses(&text(&["--", "app", "{port}"], &[]));
        assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:8080");
        assert_eq!(c.pools[0].workers, 1);
    }

    #[test]
    fn arguments_with_quotes_and_control_characters_survive() {
        let odd = "a \"quoted\" \\ arg\twith\u{1b}escape";
        let c = parses(&text(&["--bind", "fd", "--", "gunicorn", odd], &[]));
        assert_eq!(c.pools[0].command[1], odd);
        assert_eq!(c.pools[0].bind, corral_config::Bind::Fd);
    }

    #[test]
    fn an_app_is_served_preloaded_instead_of_a_command() {
        let c = parses(&text(
            &[
                "--workers",
                "4",
                "--app",
                "mysite.wsgi:application",
                "--interface",
                "asgi",
            ],
            &[],
        ));
        let app = c.pools[0].app.as_ref().expect("an app pool");
        assert_eq!(app.target, "mysite.wsgi:application");
        assert_eq!(app.interface, corral_config::Interface::Asgi);
        assert!(c.pools[0].command.is_empty());
        assert_eq!(c.pools[0].cwd, std::env::current_dir().ok());
    }

    #[test]
    fn a_socket_placeholder_without_bind_serves_over_a_unix_socket() {
        let c = parses(&text(
            &["--", "gunicorn", "-b", "unix:{socket}", "app:app"],
            &[],
        ));
        assert_eq!(c.pools[0].bind, corral_config::Bind::Unix);
        let c = parses(&text(&["--", "app", "--port", "{port}"], &[]));
        assert_eq!(c.pools[0].bind, corral_config::Bind::Tcp);
    }

    #[test]
    fn a_bad_worker_count_is_the_config_readers_error() {
        let t = text(&["--workers", "lots", "--", "app", "{port}"], &[]);
        let errors =
            corral_config::parse(std::path::Path::new("serve.toml"), &t).expect_err("refused");
        assert!(errors.0[0].to_string().contains("workers"), "{errors:?}");
    }
}

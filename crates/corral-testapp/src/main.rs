//! The worker program corral's integration tests supervise: a small HTTP/1.1 server whose
//! endpoints make it behave well or badly on request.
//!
//! Listens on `--port N` (127.0.0.1), `--unix PATH`, or fd 3 when `LISTEN_FDS=1`.
//! Endpoints: `/` (worker id and pid), `/health` (500 after `/sick`, 200 again after
//! `/well`), `/unlisten` (refuse new connections, close each after its answer, stay up),
//! `/sleep?ms=N`, `/crash`, `/hang`,
//! `/headers` (request headers as JSON), `/status/NNN`, `/bytes?n=N`, `/alloc?mb=N`,
//! `/env?name=VAR` (an environment variable), `/echo` (the request body), `/count`
//! (requests this process has read: proof that a refused request never reached it),
//! `/ws` (WebSocket echo; the text `fragments` starts one endless fragmented message), and answers shaped like other servers' (see `shapes`: `/chunked`,
//! `/hop-fields`, `/dated`, `/split-head`, `/many-fields`, `/until-close`, `/http10`, `/worker-close`, `/truncate`, `/drop`,
//! `/stall`), and `/payload` (a text body of any size, type, framing and pace, see `payload`).
//! `--fail-every N` answers 500 to every Nth request of `/` (and other unlisted paths);
//! `--startup-delay-ms N` delays listening; `--exit-at-start CODE`
//! exits at once (a crash loop); `--ignore-term` ignores SIGTERM (a stubborn worker);
//! `--notify-after-ms N` sends `READY=1` to `$NOTIFY_SOCKET` after N ms; `--idle-close-ms N`
//! closes a TCP connection idle that long (as app servers' keep-alive timeouts do).
//! `--record DIR` appends a line per request read to `DIR/seen-PID`: its `X-Request-Id`
//! (`-` without one), method and target, for the network fuzzer (`tests/fuzz.rs`).

mod http;
mod payload;
mod shapes;

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// A connection of either listener kind.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

struct Options {
    port: Option<u16>,
    unix: Option<String>,
    startup_delay: Duration,
    exit_at_start: Option<i32>,
    ignore_term: bool,
    notify_after: Option<Duration>,
    idle_close: Option<Duration>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        port: None,
        unix: None,
        startup_delay: Duration::ZERO,
        exit_at_start: None,
        ignore_term: false,
        notify_after: None,
        idle_close: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                o.port = Some(
                    value("--port")?
                        .parse()
                        .map_err(|e| format!("--port: {e}"))?,
                )
            }
            "--unix" => o.unix = Some(value("--unix")?),
            "--startup-delay-ms" => {
                o.startup_delay = Duration::from_millis(
                    value("--startup-delay-ms")?
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                )
            }
            "--exit-at-start" => {
                o.exit_at_start = Some(
                    value("--exit-at-start")?
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                )
            }
            "--ignore-term" => o.ignore_term = true,
            "--notify-after-ms" => {
                o.notify_after = Some(Duration::from_millis(
                    value("--notify-after-ms")?
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                ))
            }
            "--idle-close-ms" => {
                o.idle_close = Some(Duration::from_millis(
                    value("--idle-close-ms")?
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                ))
            }
            "--record" => {
                let dir = value("--record")?;
                let path = format!("{dir}/seen-{}", std::process::id());
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("--record {path}: {e}"))?;
                let _ = http::RECORD.set(std::sync::Mutex::new(file));
            }
            "--fail-every" => {
                let n: u64 = value("--fail-every")?
                    .parse()
                    .map_err(|e| format!("--fail-every: {e}"))?;
                FAIL_EVERY.store(n, Ordering::SeqCst);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("corral-testapp: {e}");
            std::process::exit(64);
        }
    };
    if let Some(code) = options.exit_at_start {
        eprintln!("corral-testapp: exiting at start with {code} as asked");
        std::process::exit(code);
    }
    if options.ignore_term {
        // SAFETY: installing SIG_IGN for SIGTERM has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    std::thread::sleep(options.startup_delay);
    if let Some(delay) = options.notify_after {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            notify_ready();
        });
    }
    if let Err(e) = serve(&options) {
        eprintln!("corral-testapp: {e}");
        std::process::exit(1);
    }
}

/// Sends `READY=1` to `$NOTIFY_SOCKET` (the sd_notify protocol).
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        eprintln!("corral-testapp: --notify-after-ms given but no $NOTIFY_SOCKET");
        return;
    };
    match std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.send_to(b"READY=1", &path)) {
        Ok(_) => println!("corral-testapp: sent READY=1"),
        Err(e) => eprintln!(
            "corral-testapp: cannot notify {}: {e}",
            path.to_string_lossy()
        ),
    }
}

fn serve(options: &Options) -> io::Result<()> {
    let worker = std::env::var("CORRAL_WORKER").unwrap_or_default();
    if let Some(path) = &options.unix {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        println!("corral-testapp worker {worker} listening on unix:{path}");
        for conn in listener.incoming() {
            let conn = conn?;
            std::thread::spawn(move || http::handle(conn));
        }
        return Ok(());
    }
    let listener = if std::env::var("LISTEN_FDS").as_deref() == Ok("1") {
        // SAFETY: under the socket activation protocol fd 3 is a listening socket handed to
        // us and owned by nobody else in this process.
        #[allow(unsafe_code)]
        unsafe {
            TcpListener::from_raw_fd(3)
        }
    } else {
        let port = options.port.ok_or_else(|| {
            io::Error::other("give --port N, --unix PATH or fd 3 with LISTEN_FDS=1")
        })?;
        TcpListener::bind(("127.0.0.1", port))?
    };
    println!(
        "corral-testapp worker {worker} listening on {}",
        listener.local_addr()?
    );
    LISTENER.store(listener.as_raw_fd(), Ordering::SeqCst);
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                let _ = conn.set_nodelay(true);
                let _ = conn.set_read_timeout(options.idle_close);
                std::thread::spawn(move || http::handle(conn));
            }
            // `/unlisten`: the process lives on, refusing connections.
            Err(_) if unlistened() => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

/// `--fail-every N`: every Nth request to a path not listed above answers 500 (0: never).
static FAIL_EVERY: AtomicU64 = AtomicU64::new(0);
static ANSWERED: AtomicU64 = AtomicU64::new(0);

/// Whether this answer is one `--fail-every` fails.
pub fn fails_now() -> bool {
    let every = FAIL_EVERY.load(Ordering::Relaxed);
    every > 0 && (ANSWERED.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(every)
}

/// The TCP listener's fd, for `/unlisten`; -1 before it is bound.
static LISTENER: AtomicI32 = AtomicI32::new(-1);
static UNLISTENED: AtomicBool = AtomicBool::new(false);

/// `/unlisten`: stop listening (new connections are refused) but stay up, and close every
/// connection after its current answer: a worker whose listener broke.
pub fn unlisten() {
    UNLISTENED.store(true, Ordering::SeqCst);
    let fd = LISTENER.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown on our own listening socket's fd, which lives as long as `serve`.
        #[allow(unsafe_code)]
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

/// Whether `/unlisten` was asked for.
pub fn unlistened() -> bool {
    UNLISTENED.load(Ordering::SeqCst)
}

//! The validated configuration the rest of corral runs on: plain Rust types, no TOML.
//! Over 400 lines: every type a config section becomes, each with the doc its users read;
//! one list, so a new key has one place to go. The `[[rate_limits]]` types and the
//! forwarded fields are in submodules of their own, re-exported here.

mod forwarded;
mod rate;
mod route;

pub use forwarded::ForwardedField;
pub use rate::{OnStoreError, RateKey, RateLimit, RateMatch, RateStore, StoreKind};
pub use route::{prefix_matches, Route, RouteEdge, RouteHeaders, RouteTarget};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cidr::Cidr;

/// Everything corral needs to run, after defaults, validation and environment overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from, for messages and reloads.
    pub source: PathBuf,
    /// Listeners, admin endpoint and process-wide timeouts.
    pub server: Server,
    /// Log format and level.
    pub log: Log,
    /// Which pool serves traffic.
    pub routing: Routing,
    /// Fields corral adds to and removes from every answer.
    pub headers: Headers,
    /// `[compression]`: which answers corral compresses, and how.
    pub compression: Compression,
    /// `[websocket]`: limits of upgraded connections.
    pub websocket: WebSocket,
    /// `[[rate_limits]]`, in file order; every matching rule applies.
    pub rate_limits: Vec<RateLimit>,
    /// `[rate_limit_store]`: where the limits' counters live.
    pub rate_limit_store: RateStore,
    /// `[[routes]]`, in file order; empty: every request goes to `[routing]`'s pools.
    pub routes: Vec<Route>,
    /// The supervised pools, in file order.
    pub pools: Vec<Pool>,
}

/// `[server]`: where corral listens and how it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Public listeners; `$PORT`/`$HOST` override the first.
    pub listen: Vec<SocketAddr>,
    /// Admin listener for /healthz, /readyz, /status, /metrics; `None` when disabled.
    pub admin: Option<SocketAddr>,
    /// `[server.tls]`: HTTPS listeners; `None` without the table.
    pub tls: Option<Tls>,
    /// Directory for corral's runtime files (the control socket).
    pub runtime_dir: PathBuf,
    /// Directory for what must outlive a restart of corral: a traffic switch made at run
    /// time (`routing.json`).
    pub state_dir: PathBuf,
    /// Unix socket that `corral reload|status|scale` talk to; `None` when disabled.
    pub control_socket: Option<PathBuf>,
    /// How long a graceful stop waits for in-flight requests before cutting them; also how
    /// long a retiring worker may take to finish its requests.
    pub graceful_timeout: Duration,
    /// On SIGTERM, how long corral keeps accepting after `/readyz` turned 503, so load
    /// balancers notice before connections are refused.
    pub accept_grace: Duration,
    /// Proxy threads; defaults to the number of cores.
    pub threads: usize,
    /// Limits on what clients may send.
    pub limits: Limits,
    /// `[server.buffering]`: what corral holds between workers and slow clients.
    pub buffering: Buffering,
    /// Peers whose `X-Forwarded-*`/`Forwarded` fields are believed; empty = nobody.
    pub trusted_proxies: Vec<Cidr>,
    /// The forwarded fields the worker gets, in the order written; all six by default.
    pub forward_fields: Vec<ForwardedField>,
    /// Whether request fields with `_` in their name reach workers (nginx's
    /// `underscores_in_headers`); off, they are dropped: a WSGI or CGI environ reads
    /// `Transfer_Encoding` as `Transfer-Encoding`.
    pub underscores_in_headers: bool,
    /// Every client connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
    /// Client connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Reload when the config file changes, as on SIGHUP.
    pub watch_config: bool,
}

/// `[server.limits]`: protection against oversized or slow clients (Gunicorn's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest request line in bytes (414 beyond).
    pub request_line: usize,
    /// Most header fields in a request (431 beyond).
    pub header_count: usize,
    /// Longest single header field in bytes, name and value (431 beyond).
    pub header_size: usize,
    /// Largest request body in bytes (413 beyond).
    pub body_size: u64,
    /// Time a new connection has to send its first request head (slowloris guard).
    pub header_timeout: Duration,
    /// Longest wait between two reads of a request body (nginx's `client_body_timeout`):
    /// a body that stops arriving is answered 408 and its connection closed.
    pub body_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    pub keepalive_timeout: Duration,
    /// Longest wait for a client to take any of an answer (nginx's `send_timeout`): a
    /// client that takes nothing for this long is dropped.
    pub send_timeout: Duration,
}

/// `[server.buffering]`: how much of the answers slow clients have not taken yet corral
/// holds, so a worker is free as soon as it has answered (nginx's `proxy_buffering`).
#[derive(Debug, Clone, PartialEq)]
pub struct Buffering {
    /// Bytes of memory all buffers of the process may hold together; past it, answers go
    /// to temp files sooner.
    pub memory: u64,
    /// Bytes of one answer held in memory before the rest goes to a temp file.
    pub answer_buffer: u64,
    /// Bytes of one request body held in memory before the rest goes to a temp file.
    pub body_buffer: u64,
    /// Largest temp file of one answer (nginx's `proxy_max_temp_file_size`); at it, reads
    /// from the worker wait for the client. 0: no temp files.
    pub max_temp_file: u64,
    /// Where temp files are made (and unlinked at once); `None`: `runtime_dir`.
    pub temp_dir: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// JSON lines for machines, or text for humans.
    pub format: LogFormat,
    /// A tracing filter directive such as `info` or `corral=debug,info`.
    pub level: String,
    /// Whether each request is logged as an access line.
    pub access: bool,
    /// Where lines go instead of stdout; `None` = stdout (journald).
    pub file: Option<PathBuf>,
    /// Where access lines go instead of with the rest; `None` = with the rest.
    pub access_file: Option<PathBuf>,
    /// When the files are rotated and how many old ones are kept.
    pub rotation: Rotation,
}

/// Rotation of `[log]` files: `name` → `name.1` → `name.2` ..., the oldest removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a line would take the file past this many bytes; `None` = no limit.
    pub max_size: Option<u64>,
    /// Rotate at the first line of each new day (UTC).
    pub daily: bool,
    /// Rotated files kept.
    pub keep: u32,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (journald, `jq`).
    Json,
    /// Human-readable lines.
    Text,
}

/// `[headers]`: response fields for every answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    /// A ready set of security fields, added where the worker did not send them.
    pub preset: HeaderPreset,
    /// Fields set on every answer, replacing the worker's (name, value).
    pub set: Vec<(String, String)>,
    /// Fields removed from every answer (names); by default `Server` and `X-Powered-By`,
    /// which tell the world versions.
    pub remove: Vec<String>,
}

/// One smoke check: `GET path` must answer `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smoke {
    /// The path requested.
    pub path: String,
    /// The status expected.
    pub status: u16,
}

/// One entry of `upstreams`: a name (resolved at start and every `resolve_interval`) or
/// an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `[pools.NAME.health]` beyond the readiness path: whether a ready worker is still fit to
/// take requests, asked actively (a probe every `interval`) and seen passively (failures of
/// the requests themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Probe `path` this often; `None`: no active checks (readiness only).
    pub interval: Option<Duration>,
    /// One probe's time limit.
    pub timeout: Duration,
    /// Passes in a row that bring an unhealthy worker back into rotation.
    pub healthy: u32,
    /// Failures in a row that take a worker out of rotation (and replace it).
    pub unhealthy: u32,
    /// Request failures in a row (connect errors, `fail_status` answers) that eject a backend
    /// for `eject_for`; 0: no passive ejection.
    pub max_fails: u32,
    /// Worker answers that count as failures.
    pub fail_status: Vec<u16>,
    /// The first ejection's length; each further one in a row doubles it, up to 5 minutes.
    pub eject_for: Duration,
}

/// `[websocket]`: upgraded connections live for hours, so they get limits of their own
/// rather than the request timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocket {
    /// Open upgraded connections at most; one more is answered 503. `None`: only
    /// `server.max_connections` bounds them.
    pub max_connections: Option<usize>,
    /// No byte either way for this long closes the tunnel.
    pub idle_timeout: Duration,
    /// Whether an open WebSocket takes one of its worker's `concurrency` slots. Off by
    /// default, so long-lived sockets do not starve a sync worker of plain requests.
    pub counts_against_concurrency: bool,
}

/// `[compression]`: answers compressed on their way to the client, so workers need not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// Off by default: compression costs CPU that not every deployment wants to spend.
    pub enabled: bool,
    /// The codings corral offers, best first; the client's q-values decide between them.
    pub algorithms: Vec<Coding>,
    /// The level of each coding, indexed by [`Coding::index`].
    pub levels: [u32; 3],
    /// Answers declaring fewer bytes than this pass as they are: their frames would cost
    /// more than compression saves.
    pub min_size: u64,
    /// Media types compressed (lowercase, `text/*` and `application/*+json` forms allowed).
    pub types: Vec<String>,
}

/// A content coding corral can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Zstandard (RFC 8878): the fastest for its ratio, newer clients only.
    Zstd,
    /// Brotli (RFC 7932): the best ratio for text, every current browser.
    Brotli,
    /// gzip (RFC 1952): every client.
    Gzip,
}

impl Coding {
    /// Every coding, in the default order of preference.
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Brotli, Coding::Gzip];

    /// The token of `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// A stable index for per-coding arrays.
    pub fn index(self) -> usize {
        match self {
            Coding::Zstd => 0,
            Coding::Brotli => 1,
            Coding::Gzip => 2,
        }
    }
}

/// The security fields `preset` adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderPreset {
    /// None.
    #[default]
    None,
    /// HSTS (when the client's scheme is https), `X-Content-Type-Options: nosniff`,
    /// `X-Frame-Options: DENY`, `Referrer-Policy: strict-origin-when-cross-origin`.
    Strict,
}

/// `[server.tls]`: HTTPS on `listen` with `certificates`, and a plain listener answering
/// 308 to the `https` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    /// The HTTPS listeners.
    pub listen: Vec<SocketAddr>,
    /// The certificates; the first is the default, the others are chosen by the name the
    /// client asks for (SNI) among the names each certificate is valid for.
    pub certificates: Vec<Certificate>,
    /// `redirect_http`: a plain listener that answers 308 to `https://host/path`.
    pub redirect_http: Option<SocketAddr>,
    /// `http2`: offer HTTP/2 (ALPN `h2`) beside HTTP/1.1.
    pub http2: bool,
    /// `max_streams`: concurrent streams one HTTP/2 connection may open.
    pub max_streams: u32,
    /// `[server.tls.acme]`: certificates ordered from an ACME CA; `None` without the table.
    pub acme: Option<crate::acme::Acme>,
}

/// One certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    /// The chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Where the config names them, so a file that cannot be used is reported there.
    pub place: Place,
}

/// A place in the config file, kept for problems found after it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// 1-based line, 0 for none.
    pub line: usize,
    /// 1-based column, 0 for none.
    pub column: usize,
    /// The key path, such as `server.tls.certificates[1]`.
    pub key: String,
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The pool that receives traffic (with `weights`, the one with the largest share).
    pub active: String,
    /// `weights = { blue = 90, green = 10 }`: a canary, each pool's share of new requests;
    /// empty when every request goes to `active`.
    pub weights: Vec<(String, u32)>,
    /// Whether `corral switch` keeps the pool it switched away from running (warm, for a
    /// quick switch back) instead of draining and stopping it.
    pub keep_previous: bool,
    /// `rollback_*`: when a switch is undone on its own; `None` without `rollback_window`.
    pub rollback: Option<Rollback>,
}

/// Automatic rollback after `corral switch`: within `window`, a new pool whose 5xx share
/// of at least `min_requests` answers passes `error_rate`, or that has no backend in
/// rotation, gives the traffic back to the previous pool (kept warm for the window).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollback {
    /// How long after a switch it may be undone.
    pub window: std::time::Duration,
    /// The share of 5xx answers (0..1) above which it is.
    pub error_rate: f64,
    /// Answers the share needs before it counts.
    pub min_requests: u64,
}

/// `[pools.NAME]`: a group of identical workers running the user's command.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The pool's name, the key under `[pools]`.
    pub name: String,
    /// argv with `{port}`, `{socket}` and `{worker}` placeholders; empty for an app pool.
    pub command: Vec<String>,
    /// `app`: a Python app corral preloads in a template and forks workers from; `None`
    /// for a pool that runs a `command` (or forwards to `upstreams`).
    pub app: Option<PythonApp>,
    /// `upstreams`: servers corral forwards to but does not start (a remote pool; then
    /// `command` is empty). Empty for a supervised pool.
    pub upstreams: Vec<Upstream>,
    /// How often the upstreams' names are resolved again.
    pub resolve_interval: Duration,
    /// How many workers run (a remote pool: how many upstreams it names).
    pub workers: u32,
    /// How a worker gets its listening socket.
    pub bind: Bind,
    /// With `bind = "fd"`, whether the worker also gets systemd's `LISTEN_FDS`, `LISTEN_PID`
    /// and `LISTEN_FDNAMES`. Off when the command names the fd itself (`fd://3`): gunicorn
    /// would adopt fd 3 twice, once per way, and fail with EBADF.
    pub listen_fds_env: bool,
    /// How corral learns that a worker can take traffic.
    pub ready: Ready,
    /// Path requested by `ready = "http"`.
    pub health_path: String,
    /// `smoke`: what `corral switch` checks before sending the pool traffic.
    pub smoke: Vec<Smoke>,
    /// `[pools.NAME.health]`: active checks of ready workers, passive ejection.
    pub health: Health,
    /// Working directory of the workers; corral's own when absent.
    pub cwd: Option<PathBuf>,
    /// Extra environment for the workers.
    pub env: Vec<(String, String)>,
    /// How long a worker may take to become ready before it is killed and retried.
    pub start_timeout: Duration,
    /// How long a worker has after SIGTERM (or SIGABRT when hung) before SIGKILL.
    pub kill_timeout: Duration,
    /// Requests a worker takes at once (1 = a sync worker); the proxy never sends more.
    pub concurrency: u32,
    /// Requests that may wait for a free worker; beyond it, 503 at once.
    pub queue_size: u32,
    /// How long a request waits for a free worker before 503.
    pub queue_timeout: Duration,
    /// How long a worker may take to start answering a request before 504.
    pub timeout: Duration,
    /// Requests after which a worker is replaced; 0 = never.
    pub max_requests: u64,
    /// Up to this many extra requests, random per worker, so workers do not retire together.
    pub max_requests_jitter: u64,
    /// Resident memory above which a worker is replaced; `None` = no limit.
    pub max_memory: Option<u64>,
    /// The user and group the workers run as; corral's own when `None`.
    pub run_as: Option<RunAs>,
    /// Failed starts within `start_limit_interval` after which the pool stops restarting.
    pub start_limit_burst: u32,
    /// The window of `start_limit_burst`.
    pub start_limit_interval: Duration,
    /// Whether a worker's answer is read as fast as it comes and held for a slow client
    /// (`[server.buffering]`); off, the worker is held until the client has it.
    pub response_buffering: bool,
    /// Whether a request body is read whole before a worker is chosen; off, it streams to
    /// the worker as it arrives (for apps that stream uploads).
    pub request_buffering: bool,
}

/// An app pool's Python app: what the template imports and how workers serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonApp {
    /// `module:callable`, as written.
    pub target: String,
    /// The protocol between the workers and the app.
    pub interface: Interface,
    /// The interpreter, found when the config was read (an absolute path).
    pub python: PathBuf,
    /// `python` as written (or the default), for `corral check`.
    pub python_written: String,
}

/// How a worker calls the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// PEP 3333: a sync worker, one request at a time.
    Wsgi,
    /// ASGI 3: HTTP, WebSocket and lifespan on an event loop.
    Asgi,
}

impl Interface {
    /// The word the config uses, which is also the worker module's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Wsgi => "wsgi",
            Interface::Asgi => "asgi",
        }
    }
}

/// A user and group resolved when the config is read, so a typo fails `corral check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user as written (a name or a number).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// The group as written, or the user's primary group.
    pub group: String,
    /// Its gid.
    pub gid: u32,
}

/// How a worker receives its listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// corral picks a free loopback port and passes `{port}` and `$PORT`.
    Tcp,
    /// corral binds the socket and hands it over as fd 3 with `LISTEN_FDS=1`.
    Fd,
    /// The worker listens on a Unix socket at the path corral passes as `{socket}`.
    Unix,
}

/// How readiness of a new worker is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// A TCP connect to the worker succeeds.
    Tcp,
    /// `GET health_path` answers 2xx.
    Http,
    /// The worker sends `READY=1` to `$NOTIFY_SOCKET` (the sd_notify protocol).
    Notify,
}

impl Config {
    /// The pool that receives traffic.
    pub fn active_pool(&self) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == self.routing.active)
    }
}

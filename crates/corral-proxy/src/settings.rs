//! The proxy's reloadable settings.

use crate::forward::buffer::BufferSettings;
use corral_compress::{Compressor, Counters};
use corral_config::{Cidr, Coding, Config, Limits, WebSocket};
use corral_ratelimit::Limiter;
use corral_telemetry::Metrics;

use crate::forward::{AnswerRules, ForwardMask, RouteTable};

/// The proxy's settings; swapped whole on reload, read once per request.
pub struct ProxySettings {
    /// Client limits.
    pub limits: Limits,
    /// Whether to write an access log line per request.
    pub access_log: bool,
    /// Peers whose forwarding fields are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// `server.forward_fields`, made once: which forwarded fields the worker gets (and
    /// `server.underscores_in_headers`).
    pub(crate) forward_fields: ForwardMask,
    /// Whether every client connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Client connections open at once before new ones are refused.
    pub max_connections: usize,
    /// What every answer loses and gains (`[headers]`), made once here.
    pub(crate) answer: AnswerRules,
    /// `[[rate_limits]]` and their store.
    pub limiter: Limiter,
    /// `[compression]`, or `None` when it is off.
    pub compression: Option<Compressor>,
    /// `[websocket]`: limits of upgraded connections.
    pub websocket: WebSocket,
    /// `server.tls.max_streams`: concurrent streams one HTTP/2 connection may open.
    pub h2_max_streams: u32,
    /// `[server.buffering]`: what is held for slow clients, and the opted-out form.
    pub(crate) buffering: BufferSettings,
    pub(crate) unbuffered: BufferSettings,
    /// `[[routes]]`, made once: host and path prefix to pool, directory or redirect.
    pub(crate) routes: RouteTable,
}

impl ProxySettings {
    /// The settings of `config`; `previous` (on reload) lends its rate limit counters and
    /// store connection, so unchanged rules keep counting.
    pub fn new(
        config: &Config,
        previous: Option<&ProxySettings>,
        metrics: &Metrics,
    ) -> ProxySettings {
        ProxySettings {
            limits: config.server.limits.clone(),
            h2_max_streams: config
                .server
                .tls
                .as_ref()
                .map_or(corral_config::DEFAULT_H2_MAX_STREAMS, |t| t.max_streams),
            access_log: config.log.access,
            trusted_proxies: config.server.trusted_proxies.clone(),
            forward_fields: ForwardMask::of(&config.server.forward_fields)
                .keeping_underscores(config.server.underscores_in_headers),
            proxy_protocol: config.server.proxy_protocol,
            max_connections: config.server.max_connections,
            answer: AnswerRules::new(&config.headers),
            limiter: Limiter::new(
                config,
                previous.map(|p| &p.limiter),
                metrics.rate_limit_store_errors.clone(),
            ),
            compression: Compressor::new(&config.compression, compression_counters(metrics)),
            websocket: config.websocket,
            buffering: BufferSettings::new(config),
            unbuffered: BufferSettings::new(config).unbuffered(),
            routes: RouteTable::new(config, metrics),
        }
    }

    /// The keep-alive timeout in whole seconds, at least 1 (0 would mean "forever" to pingora).
    pub fn keepalive_secs(&self) -> u64 {
        self.limits.keepalive_timeout.as_secs().max(1)
    }
}

/// The compression byte counters of each coding, resolved once.
fn compression_counters(metrics: &Metrics) -> Counters {
    let of = |family: &prometheus::IntCounterVec| {
        Coding::ALL.map(|c| family.with_label_values(&[c.token()]))
    };
    Counters {
        input: of(&metrics.compression_input),
        output: of(&metrics.compression_output),
    }
}

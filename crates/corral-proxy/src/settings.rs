//! The proxy's reloadable settings.

use corral_config::{Cidr, Config, Limits};

use crate::forward::AnswerRules;

/// The proxy's settings; swapped whole on reload, read once per request.
pub struct ProxySettings {
    /// Client limits.
    pub limits: Limits,
    /// Whether to write an access log line per request.
    pub access_log: bool,
    /// Peers whose forwarding fields are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Whether every client connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Client connections open at once before new ones are refused.
    pub max_connections: usize,
    /// What every answer loses and gains (`[headers]`), made once here.
    pub(crate) answer: AnswerRules,
}

impl ProxySettings {
    /// The settings of `config`.
    pub fn new(config: &Config) -> ProxySettings {
        ProxySettings {
            limits: config.server.limits.clone(),
            access_log: config.log.access,
            trusted_proxies: config.server.trusted_proxies.clone(),
            proxy_protocol: config.server.proxy_protocol,
            max_connections: config.server.max_connections,
            answer: AnswerRules::new(&config.headers),
        }
    }

    /// The keep-alive timeout in whole seconds, at least 1 (0 would mean "forever" to pingora).
    pub fn keepalive_secs(&self) -> u64 {
        self.limits.keepalive_timeout.as_secs().max(1)
    }
}

//! Rate limits for the proxy: `[[rate_limits]]` rules matched on path, method, host and
//! upgrades, keyed by the client identity, a field or nothing, with a rate and a burst
//! (GCRA, `gcra`) and an optional in-flight cap (`inflight`), counted in memory (`memory`)
//! or in Redis (`redis`). Knows neither pingora nor the proxy: a request comes in as a
//! [`Request`], a [`Verdict`] goes out.

pub mod gcra;
pub mod inflight;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Instant;

use corral_config::{Config, OnStoreError, RateKey, RateLimit, RateMatch, StoreKind};

use gcra::Rate;
use inflight::{InFlight, InFlightGuard};
use memory::MemoryStore;
use redis::RedisStore;

/// What a rule needs to know of a request.
pub struct Request<'a> {
    /// The target as the client sent it (path and query).
    pub path: &'a [u8],
    /// The method, upper case.
    pub method: &'a str,
    /// The host asked for (a trusted proxy's, else `Host`), any port included.
    pub host: Option<&'a [u8]>,
    /// A WebSocket upgrade.
    pub websocket: bool,
    /// The resolved client address.
    pub client_ip: &'a str,
    /// The request's fields, for `header:NAME` keys.
    pub headers: &'a http::HeaderMap,
}

/// The outcome for one request.
pub enum Verdict {
    /// Within every matching rule; `fields` go on the answer, `guards` hold the in-flight
    /// places until the request ends.
    Pass {
        /// `RateLimit` and `RateLimit-Policy`, when any rule sends them.
        fields: Vec<(&'static str, String)>,
        /// The in-flight places taken.
        guards: Vec<InFlightGuard>,
    },
    /// Over `rule`: answer 429 with `Retry-After: retry_after` and `fields`.
    Limited {
        /// The rule's name.
        rule: Arc<str>,
        /// Seconds until a request of the key would pass.
        retry_after: u64,
        /// `RateLimit` and `RateLimit-Policy` of the rule.
        fields: Vec<(&'static str, String)>,
    },
    /// The store failed and `on_error = "deny"`: answer 503.
    StoreDown,
}

/// One compiled rule.
struct Rule {
    /// Stable across processes and reloads while the rule is unchanged (it prefixes keys).
    id: u64,
    name: Arc<str>,
    matcher: RateMatch,
    key: RateKey,
    rate: Rate,
    in_flight: u32,
    headers: bool,
    policy: String,
}

/// Where the counters live.
enum Store {
    Memory,
    Redis(Arc<RedisStore>, OnStoreError),
}

/// Every rule of a config with its store; rebuilt on reload from the previous one, so the
/// counters of unchanged rules (and Redis connections) survive.
pub struct Limiter {
    rules: Vec<Rule>,
    store: Store,
    memory: Arc<MemoryStore>,
    inflight: Arc<InFlight>,
    epoch: Instant,
}

impl Limiter {
    /// The limiter of `config`; `previous` lends its counters and connection.
    /// `store_errors` counts failed Redis decisions.
    pub fn new(
        config: &Config,
        previous: Option<&Limiter>,
        store_errors: prometheus::IntCounter,
    ) -> Limiter {
        let rules = config.rate_limits.iter().map(Rule::of).collect();
        let max_keys = config.rate_limit_store.max_keys;
        let (memory, inflight, epoch) = match previous {
            Some(p) => (p.memory.clone(), p.inflight.clone(), p.epoch),
            None => (
                Arc::new(MemoryStore::new(max_keys)),
                Arc::default(),
                Instant::now(),
            ),
        };
        let store = match &config.rate_limit_store.kind {
            StoreKind::Memory => Store::Memory,
            StoreKind::Redis {
                url,
                timeout,
                on_error,
            } => {
                let kept = previous.and_then(|p| match &p.store {
                    Store::Redis(s, _) if s.same(url, *timeout) => Some(s.clone()),
                    _ => None,
                });
                match kept
                    .map(Ok)
                    .unwrap_or_else(|| RedisStore::new(url, *timeout, store_errors).map(Arc::new))
                {
                    Ok(store) => {
                        store.start();
                        Store::Redis(store, *on_error)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot use the Redis rate limit store; counting in memory");
                        Store::Memory
                    }
                }
            }
        };
        Limiter {
            rules,
            store,
            memory,
            inflight,
            epoch,
        }
    }

    /// Whether no rule is configured (the request path then skips the limiter).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every matching rule to `request`.
    pub async fn check(&self, request: &Request<'_>) -> Verdict {
        let mut policies = Vec::new();
        let mut states = Vec::new();
        let mut guards = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(request)) {
            let key = rule.key_of(request);
            if rule.in_flight > 0 {
                match self.inflight.enter(&key, rule.in_flight) {
                    Some(guard) => guards.push(guard),
                    None => {
                        let fields = vec![
                            ("RateLimit-Policy", rule.policy.clone()),
                            ("RateLimit", format!("\"{}\";r=0;t=1", rule.name)),
                        ];
                        return Verdict::Limited {
                            rule: rule.name.clone(),
                            retry_after: 1,
                            fields,
                        };
                    }
                }
            }
            let decision = match &self.store {
                Store::Memory => {
                    let now = self.epoch.elapsed().as_micros() as u64;
                    self.memory.decide(&key, rule.rate, now)
                }
                Store::Redis(store, on_error) => match store.decide(&key, rule.rate).await {
                    Ok(decision) => decision,
                    Err(()) if *on_error == OnStoreError::Deny => return Verdict::StoreDown,
                    Err(()) => continue,
                },
            };
            let state = format!(
                "\"{}\";r={};t={}",
                rule.name,
                decision.remaining,
                secs(decision.reset_after)
            );
            if !decision.allowed {
                let fields = vec![
                    ("RateLimit-Policy", rule.policy.clone()),
                    ("RateLimit", state),
                ];
                return Verdict::Limited {
                    rule: rule.name.clone(),
                    retry_after: secs(decision.retry_after).max(1),
                    fields,
                };
            }
            if rule.headers {
                policies.push(rule.policy.clone());
                states.push(state);
            }
        }
        let mut fields = Vec::new();
        if !policies.is_empty() {
            fields.push(("RateLimit-Policy", policies.join(", ")));
            fields.push(("RateLimit", states.join(", ")));
        }
        Verdict::Pass { fields, guards }
    }
}

/// Whole seconds, rounded up.
fn secs(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

impl Rule {
    fn of(config: &RateLimit) -> Rule {
        let rate = Rate::new(config.count, config.per, config.burst);
        Rule {
            id: stable_hash(&format!(
                "{}|{:?}|{:?}|{}|{:?}|{}",
                config.name, config.matcher, config.key, config.count, config.per, config.burst
            )),
            name: Arc::from(config.name.as_str()),
            matcher: config.matcher.clone(),
            key: config.key.clone(),
            rate,
            in_flight: config.in_flight,
            headers: config.headers,
            policy: format!(
                "\"{}\";q={};w={}",
                config.name,
                rate.burst,
                rate.window_secs()
            ),
        }
    }

    fn matches(&self, r: &Request) -> bool {
        let m = &self.matcher;
        m.path_prefix
            .as_ref()
            .is_none_or(|p| r.path.starts_with(p.as_bytes()))
            && m.method.as_ref().is_none_or(|v| v == r.method)
            && m.host.as_ref().is_none_or(|h| {
                without_port(r.host.unwrap_or_default()).eq_ignore_ascii_case(h.as_bytes())
            })
            && (!m.websocket || r.websocket)
    }

    /// The store key: the rule's id, then what the request is counted by.
    fn key_of(&self, r: &Request) -> Vec<u8> {
        let mut key = Vec::with_capacity(64);
        key.extend_from_slice(b"corral:rl:");
        key.extend_from_slice(format!("{:016x}:", self.id).as_bytes());
        match &self.key {
            RateKey::Global => {}
            RateKey::ClientIp => {
                key.extend_from_slice(b"ip:");
                key.extend_from_slice(r.client_ip.as_bytes());
            }
            RateKey::Header(name) => match r.headers.get(name.as_str()) {
                Some(value) => {
                    key.extend_from_slice(b"h:");
                    key.extend_from_slice(value.as_bytes());
                }
                // No key field: counted by the client address (documented).
                None => {
                    key.extend_from_slice(b"ip:");
                    key.extend_from_slice(r.client_ip.as_bytes());
                }
            },
        }
        key
    }
}

/// `example.org:8080` -> `example.org`, `[::1]:80` -> `[::1]`.
fn without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return host
            .iter()
            .position(|&b| b == b']')
            .map_or(host, |end| &host[..=end]);
    }
    match host.iter().position(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

/// FNV-1a: the same on every host, unlike std's hasher.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

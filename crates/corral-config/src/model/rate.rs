//! The `[[rate_limits]]` and `[rate_limit_store]` types.

use std::time::Duration;

/// One `[[rate_limits]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Labels metrics, logs and the `RateLimit` fields.
    pub name: String,
    /// Which requests the rule applies to.
    pub matcher: RateMatch,
    /// What a request is counted under.
    pub key: RateKey,
    /// `count` requests per `per`, spread evenly (GCRA).
    pub count: u32,
    /// The period of `count`.
    pub per: Duration,
    /// Requests that may come at once before the rate applies.
    pub burst: u32,
    /// Requests of one key in flight at once; 0 = no cap.
    pub in_flight: u32,
    /// Whether answers within the limit carry `RateLimit` and `RateLimit-Policy`.
    pub headers: bool,
}

/// `match = { ... }`: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RateMatch {
    /// The request path starts with this.
    pub path_prefix: Option<String>,
    /// The method, upper case.
    pub method: Option<String>,
    /// The host the client asked for, lower case, without port.
    pub host: Option<String>,
    /// Only WebSocket upgrades.
    pub websocket: bool,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The client address (after `trusted_proxies`).
    ClientIp,
    /// A request field (lower-case name), such as an API key; the client address when absent.
    Header(String),
    /// One counter for everyone.
    Global,
}

/// `[rate_limit_store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStore {
    /// Where the counters live.
    pub kind: StoreKind,
    /// Keys the memory store holds at most (idle ones go first).
    pub max_keys: usize,
}

impl Default for RateStore {
    fn default() -> Self {
        RateStore {
            kind: StoreKind::Memory,
            max_keys: crate::ratelimit::DEFAULT_MAX_KEYS,
        }
    }
}

/// Where rate limit counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process.
    Memory,
    /// In Redis, shared by every corral that points at it.
    Redis {
        /// `redis://host:port`.
        url: String,
        /// The longest a decision may wait for Redis.
        timeout: Duration,
        /// What requests get while Redis does not answer.
        on_error: OnStoreError,
    },
}

/// What a request gets while the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// It passes (availability first).
    Allow,
    /// It is refused with 503 (protection first).
    Deny,
}

//! The Redis store: one atomic script per decision (the GCRA of `gcra.rs`, on Redis's own
//! clock so every corral sharing it agrees), over the client's multiplexed connection
//! manager (which reconnects by itself), each decision bounded by the store's timeout. An
//! outage is logged once when it starts and once when it ends, and every failed decision
//! is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::gcra::{Decision, Rate};

/// GCRA in Lua: KEYS[1] the key, ARGV interval and tolerance in microseconds. Returns
/// `{allowed, ahead}`: how far the key's TAT runs ahead of now, after the request when it
/// was allowed.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, tat - now}
end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1000)
return {1, new - now}
"#;

/// How often a store that never connected tries again.
const CONNECT_RETRY: Duration = Duration::from_secs(1);

/// Rate limit state in Redis.
pub struct RedisStore {
    url: String,
    client: redis::Client,
    timeout: Duration,
    conn: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    /// Woken when a connection attempt ends, either way: a decision that comes while the
    /// first attempt is under way waits for it (within `timeout`) instead of failing.
    attempted: tokio::sync::Notify,
    down: AtomicBool,
    script: redis::Script,
    errors: prometheus::IntCounter,
}

impl RedisStore {
    /// A store on `url`; it connects on first use and keeps trying until it can.
    pub fn new(
        url: &str,
        timeout: Duration,
        errors: prometheus::IntCounter,
    ) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        Ok(RedisStore {
            url: url.to_string(),
            client,
            timeout,
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            attempted: tokio::sync::Notify::new(),
            down: AtomicBool::new(false),
            script: redis::Script::new(SCRIPT),
            errors,
        })
    }

    /// Whether this store talks to `url` with `timeout` (a reload keeps it then).
    pub fn same(&self, url: &str, timeout: Duration) -> bool {
        self.url == url && self.timeout == timeout
    }

    /// Decides one request of `key`; `Err` when Redis did not answer in time.
    pub async fn decide(self: &Arc<Self>, key: &[u8], rate: Rate) -> Result<Decision, ()> {
        let Some(conn) = self.connection().await else {
            self.failed("not connected yet");
            return Err(());
        };
        let mut conn = (*conn).clone();
        let mut invocation = self.script.key(key);
        invocation.arg(rate.interval).arg(rate.tolerance);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((allowed, ahead))) => {
                self.succeeded();
                Ok(decision(rate, allowed == 1, ahead.max(0) as u64))
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                Err(())
            }
            Err(_) => {
                self.failed("timed out");
                Err(())
            }
        }
    }

    /// The connection; before the first one, waits up to `timeout` for the attempt under
    /// way, so requests that come just after a start or reload are decided, not refused.
    /// Once an attempt has failed (the store is down), answers at once.
    async fn connection(self: &Arc<Self>) -> Option<Arc<ConnectionManager>> {
        if let Some(conn) = self.conn.load_full() {
            return Some(conn);
        }
        self.connect_in_background();
        if self.down.load(Ordering::Acquire) {
            return None;
        }
        let attempted = self.attempted.notified();
        tokio::pin!(attempted);
        attempted.as_mut().enable();
        if self.conn.load().is_none() && !self.down.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(self.timeout, attempted).await;
        }
        self.conn.load_full()
    }

    /// Starts connecting, when called on a tokio runtime (else on first use).
    pub fn start(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_ok() {
            self.connect_in_background();
        }
    }

    fn connect_in_background(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(store.timeout.max(Duration::from_millis(200))))
                .set_response_timeout(Some(store.timeout))
                .set_number_of_retries(1);
            loop {
                match ConnectionManager::new_with_config(store.client.clone(), config.clone()).await
                {
                    Ok(conn) => {
                        store.conn.store(Some(Arc::new(conn)));
                        store.attempted.notify_waiters();
                        return;
                    }
                    Err(e) => {
                        store.failed(&e.to_string());
                        store.attempted.notify_waiters();
                        tokio::time::sleep(CONNECT_RETRY).await;
                    }
                }
            }
        });
    }

    fn failed(&self, why: &str) {
        self.errors.inc();
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::error!(event = "rate_limit_store_down", url = %self.url, error = why, "the rate limit store does not answer; applying on_error until it does");
        }
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(event = "rate_limit_store_up", url = %self.url, "the rate limit store answers again");
        }
    }
}

/// The decision Redis's answer means.
fn decision(rate: Rate, allowed: bool, ahead: u64) -> Decision {
    if allowed {
        let room = (rate.tolerance + rate.interval).saturating_sub(ahead);
        Decision {
            allowed,
            tat: 0,
            remaining: (room / rate.interval) as u32,
            retry_after: 0,
            reset_after: ahead,
        }
    } else {
        Decision {
            allowed,
            tat: 0,
            remaining: 0,
            retry_after: ahead.saturating_sub(rate.tolerance),
            reset_after: ahead,
        }
    }
}

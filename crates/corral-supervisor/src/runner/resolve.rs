//! The resolver of a remote pool: its `upstreams` looked up now and every
//! `resolve_interval`, with the system resolver (so `/etc/hosts` and the search domains
//! apply), reported to the policy in `upstreams` order.

use std::net::SocketAddr;
use std::time::Duration;

use corral_config::Upstream;

use crate::policy::Event;
use crate::worker::PoolId;

/// How long one lookup may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves until aborted (a reload, the pool gone) or the supervisor is gone.
pub(super) async fn run(
    pool: PoolId,
    generation: u64,
    upstreams: Vec<Upstream>,
    every: Duration,
    report: impl Fn(Event) -> bool,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut addrs = Vec::with_capacity(upstreams.len());
        for upstream in &upstreams {
            addrs.push(lookup(upstream).await);
        }
        if !report(Event::Resolved {
            pool,
            generation,
            addrs,
        }) {
            return;
        }
    }
}

async fn lookup(upstream: &Upstream) -> Result<Vec<SocketAddr>, String> {
    let found = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((upstream.host.as_str(), upstream.port)),
    )
    .await
    .map_err(|_| format!("no answer within {LOOKUP_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err("no address".into());
    }
    Ok(addrs)
}

//! Remote pools: servers named by `upstreams`, which corral forwards to but does not start.
//! The runner resolves the names (at start and every `resolve_interval`) and reports the
//! addresses; each address is one backend, kept across resolutions so its health and
//! counters carry on. A name that fails to resolve keeps the addresses it had: a DNS hiccup
//! never empties a pool. No process exists, so nothing is signalled: a backend that fails
//! its checks only leaves the rotation, and a hung request only gets its 504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Action, Policy};
use crate::worker::{PoolId, WorkerId};
use corral_routes::{Address, Backend, BackendInfo};

/// What one upstream name resolved to, in `upstreams` order.
pub(crate) type Resolution = Vec<Result<Vec<SocketAddr>, String>>;

/// A backend of a remote pool and the `upstreams` entry it came from.
pub(crate) struct RemoteBackend {
    pub(crate) upstream: usize,
    pub(crate) backend: Arc<Backend>,
}

impl Policy {
    /// Starts (or, after a reload, restarts) the resolver of a remote pool, once per pool
    /// generation.
    pub(super) fn ensure_resolver(&mut self, id: PoolId) {
        let Some(pool) = self.pool_mut(id) else {
            return;
        };
        if pool.resolving == Some(pool.generation) {
            return;
        }
        pool.resolving = Some(pool.generation);
        let action = Action::Resolve {
            pool: id,
            generation: pool.generation,
            upstreams: pool.config.upstreams.clone(),
            every: pool.config.resolve_interval,
        };
        self.actions.push(action);
    }

    /// The addresses of a remote pool's upstreams, as resolved for its `generation`.
    pub(super) fn on_resolved(
        &mut self,
        id: PoolId,
        generation: u64,
        resolved: Resolution,
        now: Instant,
    ) {
        let mut next_worker = self.next_worker;
        let Some(pool) = self.pools.iter_mut().find(|p| p.id == id) else {
            return;
        };
        if pool.generation != generation {
            return;
        }
        let mut kept: Vec<RemoteBackend> = Vec::new();
        let mut added = Vec::new();
        for (i, result) in resolved.into_iter().enumerate() {
            let upstream = pool
                .config
                .upstreams
                .get(i)
                .map(|u| u.to_string())
                .unwrap_or_default();
            let addrs: Vec<SocketAddr> = match result {
                Ok(addrs) => addrs,
                Err(why) => {
                    tracing::warn!(event = "upstream_unresolved", pool = &*pool.name, upstream = %upstream, error = %why, "cannot resolve an upstream; keeping the addresses it had");
                    pool.remote
                        .iter()
                        .filter(|r| r.upstream == i)
                        .filter_map(|r| match &r.backend.info.addr {
                            Address::Tcp(a) => Some(*a),
                            Address::Unix(_) => None,
                        })
                        .collect()
                }
            };
            for addr in addrs {
                if kept
                    .iter()
                    .any(|r| matches!(&r.backend.info.addr, Address::Tcp(a) if *a == addr))
                {
                    continue;
                }
                let existing = pool.remote.iter().find(|r| {
                    r.upstream == i && matches!(&r.backend.info.addr, Address::Tcp(a) if *a == addr)
                });
                let backend = match existing {
                    Some(r) => r.backend.clone(),
                    None => {
                        let backend = Arc::new(Backend::new(BackendInfo {
                            id: WorkerId(next_worker),
                            pool: pool.name.clone(),
                            worker: kept.len() as u32 + 1,
                            pid: 0,
                            addr: Address::Tcp(addr),
                            started: now,
                            max_requests: 0,
                            recycle: Default::default(),
                        }));
                        next_worker += 1;
                        tracing::info!(event = "upstream_added", pool = &*pool.name, upstream = %upstream, addr = %addr, "remote backend added");
                        added.push(backend.clone());
                        backend
                    }
                };
                kept.push(RemoteBackend {
                    upstream: i,
                    backend,
                });
            }
        }
        for gone in pool
            .remote
            .iter()
            .filter(|r| !kept.iter().any(|k| Arc::ptr_eq(&k.backend, &r.backend)))
        {
            tracing::info!(event = "upstream_removed", pool = &*pool.name, addr = %gone.backend.info.addr, "remote backend no longer resolved; removed");
        }
        pool.remote = kept;
        let health = pool.config.health.clone();
        let path = pool.config.health_path.clone();
        let counters = pool.metrics.health.clone();
        self.next_worker = next_worker;
        if health.interval.is_some() {
            for backend in added {
                self.actions.push(Action::WatchHealth {
                    worker: backend.info.id,
                    backend,
                    health: health.clone(),
                    path: path.clone(),
                    counters: counters.clone(),
                });
            }
        }
    }
}

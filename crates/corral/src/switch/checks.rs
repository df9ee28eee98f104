//! The checks a pool passes before it gets traffic: the health check of every ready worker
//! made now (`GET health.path`, 2xx), each in rotation, then every `smoke` check spread over
//! the workers. The I/O half of the switch's Checking step.

use std::sync::Arc;

use corral_config::Pool;
use corral_supervisor::ready::{probe_within, status_of};
use corral_supervisor::Backend;

use super::plan::Stage;

/// Runs the `stage` of `pool`'s checks on its ready workers.
pub async fn check(stage: Stage, pool: &Pool, backends: &[Arc<Backend>]) -> Result<(), String> {
    if backends.is_empty() {
        return Err(format!("no worker of {} is ready", pool.name));
    }
    match stage {
        Stage::Health => health(pool, backends).await,
        Stage::Smoke => smoke(pool, backends).await,
    }
}

/// The health check of every worker, each in rotation.
async fn health(pool: &Pool, backends: &[Arc<Backend>]) -> Result<(), String> {
    let timeout = pool.health.timeout;
    for b in backends {
        if let Err(why) = probe_within(
            corral_config::Ready::Http,
            &b.info.addr,
            &pool.health_path,
            timeout,
        )
        .await
        {
            return Err(format!(
                "health check GET {} on {} worker {} ({}): {why}",
                pool.health_path, pool.name, b.info.worker, b.info.addr
            ));
        }
        if !b.health.in_rotation(&mut None) {
            return Err(format!(
                "{} worker {} ({}) is out of rotation (failed health checks or ejected)",
                pool.name, b.info.worker, b.info.addr
            ));
        }
    }
    Ok(())
}

/// The smoke checks, spread over the workers.
async fn smoke(pool: &Pool, backends: &[Arc<Backend>]) -> Result<(), String> {
    let timeout = pool.health.timeout;
    for (i, smoke) in pool.smoke.iter().enumerate() {
        let b = &backends[i % backends.len()];
        match status_of(&b.info.addr, &smoke.path, timeout).await {
            Ok(status) if status == smoke.status => {}
            Ok(status) => {
                return Err(format!(
                    "smoke check GET {} on {} worker {} answered {status}, expected {}",
                    smoke.path, pool.name, b.info.worker, smoke.status
                ))
            }
            Err(why) => {
                return Err(format!(
                    "smoke check GET {} on {} worker {}: {why}",
                    smoke.path, pool.name, b.info.worker
                ))
            }
        }
    }
    Ok(())
}

//! Upstreams: where a routed request goes. A service's live instances ([`pool`]: balancing,
//! in-flight counts), each with a circuit breaker ([`breaker`]) and active health checks
//! ([`health`]); the per-service retry budget ([`retry`]); the instance set from config and the
//! registry table with hosts resolved off the request path ([`discovery`], [`registry`],
//! [`resolve`]); SigV4 for function URLs ([`sigv4`]).
//! Depends on `config` and `ops` (metrics) only.

pub mod breaker;
pub mod discovery;
pub mod health;
pub mod pool;
pub mod registry;
pub mod resolve;
pub mod retry;
pub mod sigv4;

use std::sync::Arc;
use std::time::Instant;

use crate::ops::admin::UpstreamStatus;
use crate::ops::metrics::Metrics;
use pool::ServicePool;

/// Every service's pool, as the admin listener sees them.
#[derive(Debug, Clone, Default)]
pub struct Pools(pub Vec<Arc<ServicePool>>);

impl UpstreamStatus for Pools {
    fn unready_services(&self) -> Vec<String> {
        let now = Instant::now();
        let mut names: Vec<String> = self
            .0
            .iter()
            .filter(|p| !p.has_usable(now))
            .map(|p| p.config.name.clone())
            .collect();
        names.sort();
        names
    }

    fn record_gauges(&self, metrics: &Metrics) {
        let now = Instant::now();
        for pool in &self.0 {
            for (instance, state, healthy) in pool.breaker_states(now) {
                metrics.breaker(&pool.config.name, &instance, state.as_gauge());
                metrics.instance_health(&pool.config.name, &instance, healthy);
            }
        }
    }
}

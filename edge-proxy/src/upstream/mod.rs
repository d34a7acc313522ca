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

use arc_swap::ArcSwap;

use crate::ops::admin::UpstreamStatus;
use crate::ops::metrics::{InstanceSeries, Metrics};
use pool::ServicePool;

/// Every service's pool. Discovery, health checks and the admin listener read the current set
/// on each round; a config reload replaces it (keeping the pools of unchanged services).
#[derive(Debug, Clone, Default)]
pub struct Pools(Arc<ArcSwap<Vec<Arc<ServicePool>>>>);

impl Pools {
    pub fn new(pools: Vec<Arc<ServicePool>>) -> Pools {
        Pools(Arc::new(ArcSwap::from_pointee(pools)))
    }

    /// The current pools.
    pub fn load(&self) -> Arc<Vec<Arc<ServicePool>>> {
        self.0.load_full()
    }

    pub fn replace(&self, pools: Vec<Arc<ServicePool>>) {
        self.0.store(Arc::new(pools));
    }

    /// The current pool of a service.
    pub fn get(&self, service: &str) -> Option<Arc<ServicePool>> {
        self.0
            .load()
            .iter()
            .find(|p| p.config.name == service)
            .cloned()
    }

    /// Whether `pool` is still one of the current pools.
    pub fn contains(&self, pool: &Arc<ServicePool>) -> bool {
        self.0.load().iter().any(|p| Arc::ptr_eq(p, pool))
    }
}

impl UpstreamStatus for Pools {
    fn unready_services(&self) -> Vec<String> {
        let now = Instant::now();
        let mut names: Vec<String> = self
            .load()
            .iter()
            .filter(|p| !p.has_usable(now))
            .map(|p| p.config.name.clone())
            .collect();
        names.sort();
        names
    }

    fn record_gauges(&self, metrics: &Metrics) {
        let now = Instant::now();
        let mut series = Vec::new();
        for pool in self.load().iter() {
            for (instance, state, healthy) in pool.breaker_states(now) {
                series.push(InstanceSeries {
                    service: pool.config.name.clone(),
                    instance,
                    breaker: state.label(),
                    healthy,
                });
            }
        }
        // Only the current instances: those that left (registry, reload) lose their series.
        metrics.replace_instance_series(&series);
    }
}

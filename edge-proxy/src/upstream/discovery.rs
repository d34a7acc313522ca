//! Instance discovery: each service's set is its static instances (from the config) plus, when
//! `registry = true`, the live entries of the registry table. A Pingora background service
//! refreshes every pool on the registry's poll interval. If the registry cannot be read the
//! pool keeps its last good set (logged and counted), so a registry outage never empties a
//! service.
//!
//! Pingora's own `ServiceDiscovery` identifies a backend by socket address; instances here are
//! URLs that may share an address and differ by path (several functions behind one
//! `cargo lambda watch`), so discovery feeds [`ServicePool`]s directly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::pool::{InstanceSource, InstanceSpec, ServicePool};
use super::registry::{epoch_now, RegistrySource};
use crate::config::UpstreamUrl;
use crate::ops::metrics::Metrics;

/// The static part of a service's set.
pub fn static_specs(pool: &ServicePool) -> Vec<InstanceSpec> {
    pool.config
        .instances
        .iter()
        .map(|url| InstanceSpec {
            url: url.clone(),
            weight: 1,
            source: InstanceSource::Static,
        })
        .collect()
}

pub struct DiscoveryService {
    pools: Vec<Arc<ServicePool>>,
    registry: Option<Arc<dyn RegistrySource>>,
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl DiscoveryService {
    pub fn new(
        pools: Vec<Arc<ServicePool>>,
        registry: Option<Arc<dyn RegistrySource>>,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        DiscoveryService {
            pools,
            registry,
            interval,
            metrics,
        }
    }

    /// One refresh of every pool.
    pub async fn refresh(&self) {
        for pool in &self.pools {
            let mut specs = static_specs(pool);
            if pool.config.registry {
                let Some(registry) = &self.registry else {
                    continue;
                };
                match registry.registrations(&pool.config.name).await {
                    Ok(registrations) => {
                        self.metrics.discovery_refresh(&pool.config.name, true);
                        let now = epoch_now();
                        for registration in registrations.into_iter().filter(|r| r.is_live(now)) {
                            match UpstreamUrl::parse(&registration.url) {
                                Ok(url) => specs.push(InstanceSpec {
                                    url,
                                    weight: registration.weight,
                                    source: InstanceSource::Registry,
                                }),
                                Err(error) => {
                                    tracing::warn!(service = %pool.config.name, url = %registration.url, %error, "ignoring bad registration")
                                }
                            }
                        }
                    }
                    Err(error) => {
                        self.metrics.discovery_refresh(&pool.config.name, false);
                        tracing::warn!(service = %pool.config.name, %error, "registry unreachable; keeping the last good instance set");
                        continue;
                    }
                }
            }
            pool.update(&specs);
        }
    }
}

#[async_trait]
impl BackgroundService for DiscoveryService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.refresh().await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::upstream::registry::{MemoryRegistry, Registration};

    fn pool() -> Arc<ServicePool> {
        let config = Config::parse(
            r#"
            [registry]
            table = "RegistryTable"
            [services.users]
            instances = ["http://127.0.0.1:9000/lambda-url/user-service"]
            registry = true
            [[routes]]
            prefix = "/api/users"
            service = "users"
            "#,
        )
        .unwrap();
        Arc::new(ServicePool::new(Arc::clone(&config.services["users"])))
    }

    fn registration(url: &str, ttl: i64) -> Registration {
        Registration {
            service: "users".into(),
            url: url.into(),
            weight: 2,
            expires_at: epoch_now() + ttl,
        }
    }

    fn urls(pool: &ServicePool) -> Vec<String> {
        let mut urls: Vec<String> = pool.instances().iter().map(|i| i.url.to_string()).collect();
        urls.sort();
        urls
    }

    #[tokio::test]
    async fn merges_static_and_live_registry_entries() {
        let pool = pool();
        let registry = Arc::new(MemoryRegistry::default());
        registry.put(registration(
            "http://127.0.0.1:9001/lambda-url/user-service",
            60,
        ));
        registry.put(registration(
            "http://127.0.0.1:9002/lambda-url/user-service",
            -1,
        ));
        let discovery = DiscoveryService::new(
            vec![Arc::clone(&pool)],
            Some(registry.clone()),
            Duration::from_secs(1),
            Arc::new(Metrics::new()),
        );
        discovery.refresh().await;
        assert_eq!(
            urls(&pool),
            [
                "http://127.0.0.1:9000/lambda-url/user-service",
                "http://127.0.0.1:9001/lambda-url/user-service"
            ]
        );
        assert_eq!(
            pool.instances()
                .iter()
                .find(|i| i.source == InstanceSource::Registry)
                .unwrap()
                .weight,
            2
        );
    }

    #[tokio::test]
    async fn an_outage_keeps_the_last_good_set_and_expiry_drops_entries() {
        let pool = pool();
        let registry = Arc::new(MemoryRegistry::default());
        let metrics = Arc::new(Metrics::new());
        registry.put(registration(
            "http://127.0.0.1:9001/lambda-url/user-service",
            60,
        ));
        let discovery = DiscoveryService::new(
            vec![Arc::clone(&pool)],
            Some(registry.clone()),
            Duration::from_secs(1),
            metrics.clone(),
        );
        discovery.refresh().await;
        assert_eq!(urls(&pool).len(), 2);
        let before = Arc::as_ptr(&pool.instances()[1]);

        registry.set_down(true);
        discovery.refresh().await;
        assert_eq!(urls(&pool).len(), 2, "outage keeps the set");
        assert!(metrics
            .render()
            .contains("edge_discovery_refresh_total{outcome=\"failure\",service=\"users\"} 1"));

        registry.set_down(false);
        discovery.refresh().await;
        assert_eq!(
            Arc::as_ptr(&pool.instances()[1]),
            before,
            "instance state survives refreshes"
        );

        registry.put(registration(
            "http://127.0.0.1:9001/lambda-url/user-service",
            -5,
        ));
        discovery.refresh().await;
        assert_eq!(
            urls(&pool),
            ["http://127.0.0.1:9000/lambda-url/user-service"],
            "expired entry dropped"
        );
    }
}

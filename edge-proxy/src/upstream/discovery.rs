//! Instance discovery: each service's set is its static instances (from the config) plus, when
//! `registry = true`, the live entries of the registry table, each instance's host resolved to
//! its addresses. A Pingora background service polls the registry on its interval and resolves
//! every host when its instance joins and again every `dns.refresh-ms`, off the request path.
//!
//! What survives an outage: if the registry cannot be read, the pool keeps its last good set;
//! if a host stops resolving, its instance keeps its last good addresses (both logged and
//! counted), so neither empties a service.
//!
//! Registry hygiene: an `aws-iam` service sends signed requests with bodies, so its registry
//! entries must be `https` function URLs (or loopback hosts, where the service allows them);
//! any other entry is skipped with a warning and a metric.
//!
//! Pingora's own `ServiceDiscovery` identifies a backend by socket address; instances here are
//! URLs that may share an address and differ by path (several functions behind one
//! `cargo lambda watch`), so discovery feeds [`ServicePool`]s directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::pool::{Instance, InstanceSource, InstanceSpec, ServicePool};
use super::registry::{epoch_now, Registration, RegistrySource};
use super::resolve::Resolver;
use super::Pools;
use crate::config::{DnsConfig, UpstreamUrl};
use crate::ops::metrics::Metrics;

/// How often the loop wakes up at most: new instances are resolved within this.
const TICK: Duration = Duration::from_secs(1);

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
    pools: Pools,
    registry: Option<Arc<dyn RegistrySource>>,
    resolver: Arc<dyn Resolver>,
    poll_interval: Duration,
    dns: DnsConfig,
    metrics: Arc<Metrics>,
}

impl DiscoveryService {
    pub fn new(
        pools: Pools,
        registry: Option<Arc<dyn RegistrySource>>,
        resolver: Arc<dyn Resolver>,
        poll_interval: Duration,
        dns: DnsConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        DiscoveryService {
            pools,
            registry,
            resolver,
            poll_interval,
            dns,
            metrics,
        }
    }

    /// One refresh of every pool: its instance set, then its hosts' addresses.
    pub async fn refresh(&self) {
        for pool in self.pools.load().iter() {
            self.refresh_set(pool).await;
        }
        self.resolve_due(Instant::now()).await;
    }

    /// Reads the registry (if the pool uses it) and replaces the pool's instance set.
    async fn refresh_set(&self, pool: &ServicePool) {
        let mut specs = static_specs(pool);
        if pool.config.registry {
            let Some(registry) = &self.registry else {
                return;
            };
            match registry.registrations(&pool.config.name).await {
                Ok(registrations) => {
                    self.metrics.discovery_refresh(&pool.config.name, true);
                    let now = epoch_now();
                    specs.extend(
                        registrations
                            .into_iter()
                            .filter(|r| r.is_live(now))
                            .filter_map(|r| self.admit_registration(pool, r)),
                    );
                }
                Err(error) => {
                    self.metrics.discovery_refresh(&pool.config.name, false);
                    tracing::warn!(service = %pool.config.name, %error, "registry unreachable; keeping the last good instance set");
                    return;
                }
            }
        }
        pool.update(&specs);
    }

    /// A registration as an instance, if its URL parses and may receive this service's
    /// requests (see the module's doc).
    fn admit_registration(
        &self,
        pool: &ServicePool,
        registration: Registration,
    ) -> Option<InstanceSpec> {
        let service = &pool.config.name;
        let refuse = |why: &dyn std::fmt::Display| {
            self.metrics.registry_rejected(service);
            tracing::warn!(%service, url = %registration.url, reason = %why, "skipping registry entry");
        };
        let url = match UpstreamUrl::parse(&registration.url) {
            Ok(url) => url,
            Err(error) => {
                refuse(&error);
                return None;
            }
        };
        if pool.config.aws_iam
            && !url.accepts_signed_requests(pool.config.allow_loopback_function_urls)
        {
            refuse(&"an aws-iam service only takes https function URLs (https://<id>.lambda-url.<region>.on.aws)");
            return None;
        }
        if pool.config.aws_iam
            && url.function_url_region().is_none()
            && pool.config.aws_region.is_none()
        {
            refuse(&"the host names no region to sign for, and the service sets no aws-region");
            return None;
        }
        Some(InstanceSpec {
            url,
            weight: registration.weight,
            source: InstanceSource::Registry,
        })
    }

    /// Resolves every instance whose host has never resolved, or not for `dns.refresh-ms`.
    pub async fn resolve_due(&self, now: Instant) {
        for pool in self.pools.load().iter() {
            for instance in pool.instances().iter() {
                if instance.resolution_due(now, self.dns.refresh) {
                    self.resolve(pool, instance, now).await;
                }
            }
        }
    }

    async fn resolve(&self, pool: &ServicePool, instance: &Instance, now: Instant) {
        let url = &instance.url;
        let outcome =
            tokio::time::timeout(self.dns.timeout, self.resolver.resolve(&url.host, url.port))
                .await;
        let service = &pool.config.name;
        let found = match outcome {
            Ok(Ok(addresses)) if !addresses.is_empty() => Some(addresses),
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                tracing::warn!(%service, host = %url.host, %error, "host did not resolve; keeping its last good addresses");
                None
            }
            Err(_) => {
                tracing::warn!(%service, host = %url.host, "resolution timed out; keeping its last good addresses");
                None
            }
        };
        self.metrics.dns_resolution(service, found.is_some());
        if instance.record_resolution(found, now) {
            let addresses: Vec<String> = instance
                .addresses()
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::info!(%service, instance = %url, ?addresses, "instance addresses changed");
        }
    }
}

#[async_trait]
impl BackgroundService for DiscoveryService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_poll = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_poll {
                for pool in self.pools.load().iter() {
                    self.refresh_set(pool).await;
                }
                next_poll = now + self.poll_interval;
            }
            self.resolve_due(Instant::now()).await;
            tokio::select! {
                _ = tokio::time::sleep(TICK.min(self.poll_interval)) => {}
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
    use crate::upstream::resolve::{StaticResolver, SystemResolver};
    use pingora::upstreams::peer::Peer;

    fn pool_of(service: &str) -> Arc<ServicePool> {
        let text = format!(
            "[registry]\ntable = \"RegistryTable\"\n{service}\n[[routes]]\nprefix = \"/api/users\"\nservice = \"users\"\n"
        );
        let config = Config::parse(&text).unwrap();
        Arc::new(ServicePool::new(Arc::clone(&config.services["users"])))
    }

    fn pool() -> Arc<ServicePool> {
        pool_of(
            r#"
            [services.users]
            instances = ["http://127.0.0.1:9000/lambda-url/user-service"]
            registry = true
            "#,
        )
    }

    fn addresses(pool: &ServicePool) -> Vec<Vec<String>> {
        pool.instances()
            .iter()
            .map(|i| i.addresses().iter().map(ToString::to_string).collect())
            .collect()
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
            Pools::new(vec![Arc::clone(&pool)]),
            Some(registry.clone()),
            Arc::new(SystemResolver),
            Duration::from_secs(1),
            DnsConfig::default(),
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
            Pools::new(vec![Arc::clone(&pool)]),
            Some(registry.clone()),
            Arc::new(SystemResolver),
            Duration::from_secs(1),
            DnsConfig::default(),
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

    #[tokio::test]
    async fn hosts_resolve_off_the_request_path_and_follow_changes() {
        let pool = pool_of(
            r#"
            [services.users]
            instances = ["https://fn.lambda-url.eu-west-1.on.aws"]
            aws-iam = true
            "#,
        );
        let resolver = Arc::new(StaticResolver::default());
        resolver.set(
            "fn.lambda-url.eu-west-1.on.aws",
            vec!["10.0.0.1:0".parse().unwrap(), "10.0.0.2:0".parse().unwrap()],
        );
        let metrics = Arc::new(Metrics::new());
        let dns = DnsConfig {
            refresh: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
        };
        let discovery = DiscoveryService::new(
            Pools::new(vec![Arc::clone(&pool)]),
            None,
            resolver.clone(),
            Duration::from_secs(1),
            dns,
            metrics.clone(),
        );
        discovery.refresh().await;
        assert_eq!(
            addresses(&pool),
            [["10.0.0.1:443", "10.0.0.2:443"]],
            "every address is kept"
        );
        let instance = Arc::clone(&pool.instances()[0]);
        let first = instance.next_address().unwrap();
        assert_ne!(
            instance.next_address().unwrap(),
            first,
            "connections take turns"
        );

        // The addresses change: nothing happens before the refresh interval...
        resolver.set(
            "fn.lambda-url.eu-west-1.on.aws",
            vec!["10.0.0.3:0".parse().unwrap()],
        );
        let t0 = Instant::now();
        discovery.resolve_due(t0 + Duration::from_secs(5)).await;
        assert_eq!(addresses(&pool), [["10.0.0.1:443", "10.0.0.2:443"]]);
        // ...and after it, new connections go to the new address, on the same instance.
        discovery.resolve_due(t0 + Duration::from_secs(31)).await;
        assert_eq!(addresses(&pool), [["10.0.0.3:443"]]);
        assert!(Arc::ptr_eq(&instance, &pool.instances()[0]));
        let peer = instance
            .peer(Duration::from_secs(1), Duration::from_secs(1))
            .unwrap();
        assert_eq!(peer.address().to_string(), "10.0.0.3:443");

        // The host stops resolving: the last good address stays, logged and counted.
        resolver.fail("fn.lambda-url.eu-west-1.on.aws");
        discovery.resolve_due(t0 + Duration::from_secs(62)).await;
        assert_eq!(addresses(&pool), [["10.0.0.3:443"]]);
        assert!(instance.usable(Instant::now()));
        let text = metrics.render();
        assert!(
            text.contains("edge_dns_resolutions_total{outcome=\"failure\",service=\"users\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edge_dns_resolutions_total{outcome=\"success\",service=\"users\"} 2")
        );
    }

    #[tokio::test]
    async fn an_unresolved_host_is_not_usable_until_it_resolves() {
        let pool = pool_of(
            r#"
            [services.users]
            instances = ["http://users.internal:9000"]
            "#,
        );
        let resolver = Arc::new(StaticResolver::default());
        let discovery = DiscoveryService::new(
            Pools::new(vec![Arc::clone(&pool)]),
            None,
            resolver.clone(),
            Duration::from_secs(1),
            DnsConfig::default(),
            Arc::new(Metrics::new()),
        );
        discovery.refresh().await;
        assert!(!pool.has_usable(Instant::now()));
        resolver.set("users.internal", vec!["127.0.0.1:0".parse().unwrap()]);
        // Never resolved: retried at once, not after the refresh interval.
        discovery.resolve_due(Instant::now()).await;
        assert!(pool.has_usable(Instant::now()));
    }

    #[tokio::test]
    async fn aws_iam_services_take_only_function_urls_from_the_registry() {
        let pool = pool_of(
            r#"
            [services.users]
            registry = true
            aws-iam = true
            "#,
        );
        let registry = Arc::new(MemoryRegistry::default());
        for url in [
            "https://good.lambda-url.eu-west-1.on.aws",
            "http://plain.lambda-url.eu-west-1.on.aws",
            "https://attacker.example.com",
            "http://localhost:9200",
            "not a url",
        ] {
            registry.put(registration(url, 60));
        }
        let metrics = Arc::new(Metrics::new());
        let discovery = DiscoveryService::new(
            Pools::new(vec![Arc::clone(&pool)]),
            Some(registry.clone()),
            Arc::new(StaticResolver::default()),
            Duration::from_secs(1),
            DnsConfig::default(),
            metrics.clone(),
        );
        discovery.refresh().await;
        assert_eq!(urls(&pool), ["https://good.lambda-url.eu-west-1.on.aws"]);
        assert!(metrics
            .render()
            .contains("edge_registry_rejected_total{service=\"users\"} 4"));

        // Where the service allows loopback fronts (the local stack in AWS's shape), those too.
        let local = pool_of(
            r#"
            [services.users]
            registry = true
            aws-iam = true
            aws-region = "us-east-1"
            allow-loopback-function-urls = true
            "#,
        );
        let discovery = DiscoveryService::new(
            Pools::new(vec![Arc::clone(&local)]),
            Some(registry),
            Arc::new(StaticResolver::default()),
            Duration::from_secs(1),
            DnsConfig::default(),
            Arc::new(Metrics::new()),
        );
        discovery.refresh().await;
        assert_eq!(
            urls(&local),
            [
                "http://localhost:9200",
                "https://good.lambda-url.eu-west-1.on.aws"
            ]
        );
    }
}

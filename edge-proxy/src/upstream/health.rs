//! Active health checks: a Pingora background service that sends `GET <base path><path>` to
//! every instance of every service on its interval (with Pingora's `HttpHealthCheck`, which
//! wants a 200). An instance turns unhealthy after `unhealthy-threshold` failures in a row and
//! gets no traffic until `healthy-threshold` passes in a row.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::ops::metrics::Metrics;
use crate::upstream::pool::{Instance, ServicePool};

pub struct HealthService {
    pools: Vec<Arc<ServicePool>>,
    metrics: Arc<Metrics>,
}

impl HealthService {
    pub fn new(pools: Vec<Arc<ServicePool>>, metrics: Arc<Metrics>) -> Self {
        HealthService {
            pools: pools
                .into_iter()
                .filter(|p| p.config.health_check.enabled)
                .collect(),
            metrics,
        }
    }

    /// Checks one instance once; true when it answered 200 in time.
    pub async fn check(pool: &ServicePool, instance: &Instance) -> bool {
        let config = &pool.config.health_check;
        let mut checker = HttpHealthCheck::new(&instance.url.host_header(), instance.url.tls);
        let path = format!("{}{}", instance.url.base_path, config.path);
        match path.parse::<http::Uri>() {
            Ok(uri) => checker.req.set_uri(uri),
            Err(_) => return false,
        }
        checker.peer_template.options.connection_timeout = Some(config.timeout);
        checker.peer_template.options.total_connection_timeout = Some(config.timeout);
        checker.peer_template.options.read_timeout = Some(config.timeout);
        let Ok(backend) = Backend::new(&instance.addr.to_string()) else {
            return false;
        };
        tokio::time::timeout(config.timeout * 2, checker.check(&backend))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn check_pool(&self, pool: &ServicePool) {
        let config = &pool.config.health_check;
        for instance in pool.instances().iter() {
            let ok = Self::check(pool, instance).await;
            if let Some(now_healthy) =
                instance.record_health(ok, config.healthy_threshold, config.unhealthy_threshold)
            {
                tracing::warn!(service = %pool.config.name, instance = %instance.url, healthy = now_healthy, "instance health changed");
            }
            self.metrics.instance_health(
                &pool.config.name,
                &instance.url.to_string(),
                instance.is_healthy(),
            );
        }
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tasks: Vec<_> = self
            .pools
            .iter()
            .map(|pool| {
                let (pool, mut shutdown) = (Arc::clone(pool), shutdown.clone());
                let this = HealthService {
                    pools: Vec::new(),
                    metrics: Arc::clone(&self.metrics),
                };
                tokio::spawn(async move {
                    loop {
                        this.check_pool(&pool).await;
                        tokio::select! {
                            _ = tokio::time::sleep(pool.config.health_check.interval) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

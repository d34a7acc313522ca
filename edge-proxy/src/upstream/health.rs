//! Active health checks: a Pingora background service that sends `GET <base path><path>` to
//! every instance of every service on its interval (with Pingora's `HttpHealthCheck`, which
//! wants a 200), to each of its addresses in turn. An instance turns unhealthy after
//! `unhealthy-threshold` failures in a row and gets no traffic until `healthy-threshold` passes
//! in a row. Checks of `aws-iam` services are signed like requests: a function URL answers an
//! unsigned one 403.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::pool::{Instance, ServicePool};
use super::sigv4::{sign_request, Signer};
use super::Pools;
use crate::ops::metrics::Metrics;

pub struct HealthService {
    pools: Pools,
    metrics: Arc<Metrics>,
    signer: Option<Arc<Signer>>,
}

/// How often the set of pools is looked at for pools a config reload added.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);

impl HealthService {
    /// Checks the pools that have health checks on (those of the current set: a reload's new
    /// pools are picked up, a replaced pool's checks stop); `signer` signs the checks of
    /// `aws-iam` services.
    pub fn new(pools: Pools, metrics: Arc<Metrics>, signer: Option<Arc<Signer>>) -> Self {
        HealthService {
            pools,
            metrics,
            signer,
        }
    }

    /// Checks one instance once, at its next address; true when it answered 200 in time.
    pub async fn check(&self, pool: &ServicePool, instance: &Instance) -> bool {
        let config = &pool.config.health_check;
        let Some(address) = instance.next_address() else {
            return false;
        };
        let mut checker = HttpHealthCheck::new(instance.url.host_header(), instance.url.tls);
        let path = format!("{}{}", instance.url.base_path, config.path);
        match path.parse::<http::Uri>() {
            Ok(uri) => checker.req.set_uri(uri),
            Err(_) => return false,
        }
        if pool.config.aws_iam {
            let region = instance
                .url
                .function_url_region()
                .or_else(|| pool.config.aws_region.clone())
                .unwrap_or_default();
            let Some(signer) = &self.signer else {
                return false;
            };
            if let Err(error) =
                sign_request(signer, &instance.url, &region, &mut checker.req, b"").await
            {
                tracing::warn!(service = %pool.config.name, instance = %instance.url, %error, "cannot sign the health check");
                return false;
            }
        }
        checker.peer_template.options.connection_timeout = Some(config.timeout);
        checker.peer_template.options.total_connection_timeout = Some(config.timeout);
        checker.peer_template.options.read_timeout = Some(config.timeout);
        let Ok(backend) = Backend::new(&address.to_string()) else {
            return false;
        };
        tokio::time::timeout(config.timeout * 2, checker.check(&backend))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn check_pool(&self, pool: &ServicePool) {
        let config = &pool.config.health_check;
        for instance in pool.instances().iter() {
            let ok = self.check(pool, instance).await;
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
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let this = Arc::new(HealthService {
            pools: self.pools.clone(),
            metrics: Arc::clone(&self.metrics),
            signer: self.signer.clone(),
        });
        // One task per pool with checks on, for as long as that pool is current.
        let mut checked: Vec<Arc<ServicePool>> = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            checked.retain(|pool| this.pools.contains(pool));
            for pool in this.pools.load().iter() {
                if !pool.config.health_check.enabled || checked.iter().any(|p| Arc::ptr_eq(p, pool))
                {
                    continue;
                }
                checked.push(Arc::clone(pool));
                let (this, pool, mut shutdown) =
                    (Arc::clone(&this), Arc::clone(pool), shutdown.clone());
                tasks.spawn(async move {
                    while this.pools.contains(&pool) {
                        this.check_pool(&pool).await;
                        tokio::select! {
                            _ = tokio::time::sleep(pool.config.health_check.interval) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                });
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
                _ = shutdown.changed() => break,
            }
        }
        tasks.shutdown().await;
    }
}

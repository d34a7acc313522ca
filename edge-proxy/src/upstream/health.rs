//! Active health checks: a Pingora background service that sends `GET <base path><path>` to
//! every instance of every service on its interval (with Pingora's `HttpHealthCheck`, which
//! wants a 200), to each of its addresses in turn. An instance turns unhealthy after
//! `unhealthy-threshold` failures in a row and gets no traffic until `healthy-threshold` passes
//! in a row. Checks of `aws-iam` services are signed like requests: a function URL answers an
//! unsigned one 403.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::RequestHeader;
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
    async fn check(&self, pool: &ServicePool, check: &mut InstanceCheck) -> bool {
        let (Some(request), Some(address)) = (&check.request, check.instance.next_address()) else {
            return false;
        };
        let instance = &check.instance;
        let checker = &mut check.checker;
        checker.req = request.clone();
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
        let Ok(backend) = Backend::new(&address.to_string()) else {
            return false;
        };
        let timeout = pool.config.health_check.timeout;
        tokio::time::timeout(timeout * 2, checker.check(&backend))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// One round of checks of `pool`'s current instances, with the checkers kept in `checks`
    /// from round to round.
    async fn check_pool(&self, pool: &ServicePool, checks: &mut Vec<InstanceCheck>) {
        let config = &pool.config.health_check;
        keep_checks_current(pool, checks);
        for check in checks.iter_mut() {
            let ok = self.check(pool, check).await;
            let instance = &check.instance;
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

/// One instance's checker, kept from round to round: Pingora's `HttpHealthCheck` owns a
/// connector, and making one reads the platform's CA certificates from disk (milliseconds of
/// CPU, on the proxy's cores), so a checker made per check cost that per instance per interval.
struct InstanceCheck {
    instance: Arc<Instance>,
    checker: HttpHealthCheck,
    /// The request before signing (a signed check is signed afresh from it each time); `None`
    /// when the instance's base path and the check's path make no valid URI: the check fails.
    request: Option<RequestHeader>,
}

impl InstanceCheck {
    fn new(pool: &ServicePool, instance: Arc<Instance>) -> Self {
        let config = &pool.config.health_check;
        let mut checker = HttpHealthCheck::new(instance.url.host_header(), instance.url.tls);
        checker.peer_template.options.connection_timeout = Some(config.timeout);
        checker.peer_template.options.total_connection_timeout = Some(config.timeout);
        checker.peer_template.options.read_timeout = Some(config.timeout);
        let path = format!("{}{}", instance.url.base_path, config.path);
        let request = path.parse::<http::Uri>().ok().map(|uri| {
            let mut request = checker.req.clone();
            request.set_uri(uri);
            request
        });
        InstanceCheck {
            instance,
            checker,
            request,
        }
    }
}

/// Drops the checks of instances that left `pool` and adds one for each instance new to it.
fn keep_checks_current(pool: &ServicePool, checks: &mut Vec<InstanceCheck>) {
    let instances = pool.instances();
    checks.retain(|c| instances.iter().any(|i| Arc::ptr_eq(i, &c.instance)));
    for instance in instances.iter() {
        if !checks.iter().any(|c| Arc::ptr_eq(&c.instance, instance)) {
            checks.push(InstanceCheck::new(pool, Arc::clone(instance)));
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
                    let mut checks = Vec::new();
                    while this.pools.contains(&pool) {
                        this.check_pool(&pool, &mut checks).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, UpstreamUrl};
    use crate::upstream::pool::{InstanceSource, InstanceSpec};

    fn pool() -> ServicePool {
        let config = Config::parse(
            r#"
            [services.users]
            instances = ["http://127.0.0.1:9000/lambda-url/user-service"]
            [[routes]]
            prefix = "/api/users"
            service = "users"
            "#,
        )
        .unwrap();
        ServicePool::new(Arc::clone(&config.services["users"]))
    }

    fn specs(urls: &[&str]) -> Vec<InstanceSpec> {
        urls.iter()
            .map(|url| InstanceSpec {
                url: UpstreamUrl::parse(url).unwrap(),
                weight: 1,
                source: InstanceSource::Static,
            })
            .collect()
    }

    /// (instance URL, check target, marked) of each check.
    fn summary(checks: &[InstanceCheck]) -> Vec<(String, String, bool)> {
        checks
            .iter()
            .map(|c| {
                let target = c.request.as_ref().map(|r| r.uri.to_string());
                let marked = c.checker.consecutive_success == MARK;
                (
                    c.instance.url.to_string(),
                    target.unwrap_or_default(),
                    marked,
                )
            })
            .collect()
    }

    const MARK: usize = 4242;

    #[test]
    fn an_instances_checker_is_kept_from_round_to_round_while_it_is_in_the_pool() {
        let pool = pool();
        pool.update(&specs(&[
            "http://127.0.0.1:9000/a",
            "http://127.0.0.1:9001/b",
        ]));
        let mut checks = Vec::new();
        keep_checks_current(&pool, &mut checks);
        assert_eq!(
            summary(&checks),
            [
                ("http://127.0.0.1:9000/a".into(), "/a/health".into(), false),
                ("http://127.0.0.1:9001/b".into(), "/b/health".into(), false),
            ]
        );
        // Mark the checkers made in the first round: a round that made them anew loses the marks.
        for check in &mut checks {
            check.checker.consecutive_success = MARK;
        }
        keep_checks_current(&pool, &mut checks);
        assert!(summary(&checks).iter().all(|(_, _, marked)| *marked));

        // b stays, a leaves, c comes: only c's checker is new.
        pool.update(&specs(&[
            "http://127.0.0.1:9001/b",
            "http://127.0.0.1:9002/c",
        ]));
        keep_checks_current(&pool, &mut checks);
        assert_eq!(
            summary(&checks),
            [
                ("http://127.0.0.1:9001/b".into(), "/b/health".into(), true),
                ("http://127.0.0.1:9002/c".into(), "/c/health".into(), false),
            ]
        );
    }
}

//! Config reload without a restart (`SIGHUP`, or `POST /reload` on the admin listener): the
//! file is read and validated again; a bad file, or one that changes what only a restart can
//! change (listeners, threads, timeouts of the connection loop, the registry, DNS, the JWKS
//! source, the limiter's size, signing for the first time), is refused and the running config
//! stays. A good one is swapped in for new requests; requests in flight finish on theirs, and
//! no connection is closed. Each cached route's memory budget follows the new config: what a
//! route no longer cached, or cached with a new budget, held is purged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::cache::{self, EdgeCache};
use super::state::{ProxyState, StateDeps};
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::ops::admin::{ConfigReload, Refusal};
use crate::upstream::Pools;

/// Re-reads the config file and applies it.
pub struct Reloader {
    path: PathBuf,
    state: Arc<ArcSwap<ProxyState>>,
    pools: Pools,
    deps: StateDeps,
    /// Whether the proxy has a SigV4 signer (made at start-up only).
    can_sign: bool,
    cache: Option<&'static EdgeCache>,
    /// One reload at a time.
    running: Mutex<()>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub routes: usize,
    pub services: usize,
    /// Services whose pool was kept (settings unchanged).
    pub pools_kept: usize,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        state: Arc<ArcSwap<ProxyState>>,
        pools: Pools,
        deps: StateDeps,
        can_sign: bool,
        cache: Option<&'static EdgeCache>,
    ) -> Reloader {
        Reloader {
            path,
            state,
            pools,
            deps,
            can_sign,
            cache,
            running: Mutex::new(()),
        }
    }

    /// Reads, validates and applies the file; on any error nothing changes.
    pub fn reload(&self) -> Result<Applied, Error> {
        let _one = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = self.apply();
        match &outcome {
            Ok(applied) => {
                self.deps.metrics.config_reload(true);
                tracing::info!(path = %self.path.display(), routes = applied.routes, services = applied.services, pools_kept = applied.pools_kept, "config reloaded");
            }
            Err(error) => {
                self.deps.metrics.config_reload(false);
                tracing::error!(path = %self.path.display(), %error, "config reload refused; the running config stays");
            }
        }
        outcome
    }

    fn apply(&self) -> Result<Applied, Error> {
        let config = Config::load(&self.path)?;
        let current = self.state.load_full();
        restart_only(&current.config, &config, self.can_sign)?;
        let next = ProxyState::build(&config, Some(&current), &self.deps)?;
        let pools_kept = next
            .pools
            .iter()
            .filter(|(name, pool)| {
                current
                    .pools
                    .get(*name)
                    .is_some_and(|p| Arc::ptr_eq(p, pool))
            })
            .count();
        let applied = Applied {
            routes: config.routes.len(),
            services: next.pools.len(),
            pools_kept,
        };
        // Pools first: discovery and health checks start on new pools before requests use them.
        self.pools.replace(next.pools());
        if let Some(cache) = self.cache {
            let purged = cache.configure(cache::budgets(&config.routes));
            self.deps.metrics.cache_purged("reload", purged);
        }
        self.state.store(Arc::new(next));
        Ok(applied)
    }
}

impl ConfigReload for Reloader {
    fn reload(&self) -> Result<String, Refusal> {
        match Reloader::reload(self) {
            Ok(applied) => Ok(serde_json::json!({
                "status": "applied",
                "routes": applied.routes,
                "services": applied.services,
                "pools_kept": applied.pools_kept,
            })
            .to_string()),
            Err(Error::Config(error)) => Err(Refusal {
                field: error.field,
                message: error.message,
            }),
            Err(other) => Err(Refusal {
                field: "config".into(),
                message: other.to_string(),
            }),
        }
    }
}

/// Refuses a config that changes what only a restart (or a graceful upgrade) can change,
/// naming the first such field.
pub fn restart_only(current: &Config, next: &Config, can_sign: bool) -> Result<(), ConfigError> {
    let (a, b) = (&current.server, &next.server);
    let server: [(&str, bool); 8] = [
        ("server.listen", a.listen == b.listen),
        ("server.admin-listen", a.admin_listen == b.admin_listen),
        (
            "server.admin-token-sha256",
            a.admin_token_sha256 == b.admin_token_sha256,
        ),
        ("server.threads", a.threads == b.threads),
        (
            "server.grace-period-seconds",
            a.grace_period_seconds == b.grace_period_seconds,
        ),
        (
            "server.graceful-shutdown-timeout-seconds",
            a.graceful_shutdown_timeout_seconds == b.graceful_shutdown_timeout_seconds,
        ),
        ("server.head-timeout-ms", a.head_timeout == b.head_timeout),
        (
            "server.keepalive-idle-ms",
            a.keepalive_idle == b.keepalive_idle,
        ),
    ];
    let (x, y) = (&current.auth, &next.auth);
    let others: [(&str, bool); 8] = [
        ("registry", current.registry == next.registry),
        (
            "cache.lock-timeout-ms",
            current.cache.lock_timeout == next.cache.lock_timeout,
        ),
        ("tracing", current.tracing == next.tracing),
        ("dns", current.dns == next.dns),
        ("auth.jwt.jwks-file", x.jwks_file == y.jwks_file),
        (
            "auth.jwt.jwks-url",
            x.jwks_url == y.jwks_url
                && x.jwks_refresh == y.jwks_refresh
                && x.jwks_limits == y.jwks_limits,
        ),
        (
            "rate-limit.cells",
            current.rate_limit_cells == next.rate_limit_cells,
        ),
        (
            "services.*.aws-iam",
            can_sign || !next.services.values().any(|s| s.aws_iam),
        ),
    ];
    match server.iter().chain(others.iter()).find(|(_, same)| !same) {
        Some((field, _)) => Err(ConfigError::new(
            *field,
            "cannot change without a restart (or a graceful upgrade); the running config stays",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::tests::GOOD as BASE;

    fn check(next: &str) -> Result<(), String> {
        let (a, b) = (Config::parse(BASE).unwrap(), Config::parse(next).unwrap());
        restart_only(&a, &b, false).map_err(|e| e.field)
    }

    #[test]
    fn routes_services_and_limits_may_change_listeners_may_not() {
        let more = format!(
            "{BASE}\n[[routes]]\nprefix = \"/api/more\"\nservice = \"users\"\n[rate-limit]\nrequests-per-second = 5\nburst = 5\n"
        );
        assert_eq!(check(&more), Ok(()));
        assert_eq!(
            check(&BASE.replace("127.0.0.1:8080", "127.0.0.1:8081")),
            Err("server.listen".into())
        );
        assert_eq!(
            check(&BASE.replace("[server]", "[server]\nthreads = 7")),
            Err("server.threads".into())
        );
        let signed = BASE.replace(
            "instances = [\"http://127.0.0.1:9000/lambda-url/user-service\"]",
            "instances = [\"https://abc.lambda-url.us-east-1.on.aws/\"]\naws-iam = true",
        );
        assert_eq!(check(&signed), Err("services.*.aws-iam".into()));
        // Trace export is set up once, at start.
        let traced = format!("{BASE}\n[tracing]\nendpoint = \"http://collector:4318\"\n");
        assert_eq!(check(&traced), Err("tracing".into()));
        // Cache budgets follow a reload; the cache lock is made once.
        let budget = format!("{BASE}\n[cache]\nmemory-bytes = 8192\n");
        assert_eq!(check(&budget), Ok(()));
        let lock = format!("{BASE}\n[cache]\nlock-timeout-ms = 10\n");
        assert_eq!(check(&lock), Err("cache.lock-timeout-ms".into()));
    }
}

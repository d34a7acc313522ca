//! What a config reload replaces: the routes and their pools, auth, limits and the client
//! settings, built from one [`Config`]. A request takes the current state when it starts and
//! keeps it to its end, so a reload never changes a request in flight. Building from a
//! previous state keeps what did not change: the pool (instances, breakers, health) of every
//! service whose settings are the same, the JWKS keys, and the global limiter's connection.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::ClientAddress;
use super::routing::Router;
use super::RouteTarget;
use crate::admission::auth::Authenticator;
use crate::admission::global::{GlobalLimiter, RedisStore, TokenStore};
use crate::config::{Config, ConfigError, ServiceConfig};
use crate::error::Error;
use crate::ops::clock::Clock;
use crate::ops::metrics::Metrics;
use crate::upstream::discovery::static_specs;
use crate::upstream::pool::{InstanceSource, InstanceSpec, ServicePool};

/// One config's worth of request-path state.
pub struct ProxyState {
    /// The config it was built from; the request path reads its timeouts, size limits, the
    /// failure limit and credential forwarding from here.
    pub(super) config: Arc<Config>,
    pub(super) router: Router<RouteTarget>,
    pub(super) client: ClientAddress,
    pub(super) pools: HashMap<String, Arc<ServicePool>>,
    pub(super) auth: Arc<Authenticator>,
    /// Policies with `scope = "global"`, when `[redis]` is configured.
    pub(super) global: Option<Arc<GlobalLimiter>>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState")
            .field("routes", &self.config.routes.len())
            .field("services", &self.pools.len())
            .finish()
    }
}

/// What building a state needs besides the config.
#[derive(Clone)]
pub struct StateDeps {
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The store of global limits instead of Redis at `[redis].url` (tests).
    pub limit_store: Option<Arc<dyn TokenStore>>,
}

impl ProxyState {
    /// The state for `config`, keeping what `previous` has for unchanged settings.
    pub fn build(
        config: &Config,
        previous: Option<&ProxyState>,
        deps: &StateDeps,
    ) -> Result<ProxyState, Error> {
        let pools: HashMap<String, Arc<ServicePool>> = config
            .services
            .iter()
            .map(|(name, service)| {
                let old = previous.and_then(|p| p.pools.get(name));
                (name.clone(), pool_for(service, old))
            })
            .collect();
        // Validation guarantees every route names a service; a route that did not would
        // never be routed to rather than fail later.
        let targets = config
            .routes
            .iter()
            .filter_map(|route| {
                let pool = pools.get(&route.service)?;
                Some(RouteTarget {
                    route: route.clone(),
                    pool: Arc::clone(pool),
                    metrics: deps.metrics.route(&route.prefix, &route.service),
                })
            })
            .collect();
        let mut auth = Authenticator::new(config.auth.api_keys.clone(), config.auth.jwt.clone());
        if let Some(previous) = previous {
            // The same JWKS source (a reload may not change it): the same keys, still
            // refreshed by the one refresher.
            auth.jwks = previous.auth.jwks.clone();
        }
        let global = match (&config.redis, previous) {
            (None, _) => None,
            (Some(redis), Some(previous)) if previous.config.redis.as_ref() == Some(redis) => {
                previous.global.clone()
            }
            (Some(redis), _) => {
                let store: Arc<dyn TokenStore> = match &deps.limit_store {
                    Some(store) => Arc::clone(store),
                    None => Arc::new(RedisStore::new(redis).map_err(|e| {
                        Error::Config(ConfigError::new("redis.url", e.to_string()))
                    })?),
                };
                Some(Arc::new(GlobalLimiter::new(
                    store,
                    redis,
                    Arc::clone(&deps.metrics),
                    Arc::clone(&deps.clock),
                )))
            }
        };
        Ok(ProxyState {
            config: Arc::new(config.clone()),
            router: Router::new(targets),
            client: ClientAddress::new(
                config.server.trusted_proxies.clone(),
                config.server.ipv6_prefix_length,
            ),
            pools,
            auth: Arc::new(auth),
            global,
        })
    }

    /// Every service's pool.
    pub fn pools(&self) -> Vec<Arc<ServicePool>> {
        self.pools.values().cloned().collect()
    }

    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

/// The previous pool when the service's settings are unchanged; otherwise a new pool with the
/// service's static instances and the registry instances the previous pool knew (with their
/// addresses), so a changed service keeps serving while discovery catches up.
fn pool_for(service: &Arc<ServiceConfig>, old: Option<&Arc<ServicePool>>) -> Arc<ServicePool> {
    if let Some(old) = old.filter(|old| *old.config == **service) {
        return Arc::clone(old);
    }
    let pool = Arc::new(ServicePool::new(Arc::clone(service)));
    let mut specs = static_specs(&pool);
    if let Some(old) = old {
        if service.registry {
            specs.extend(
                old.instances()
                    .iter()
                    .filter(|i| i.source == InstanceSource::Registry)
                    .map(|i| InstanceSpec {
                        url: i.url.clone(),
                        weight: i.weight,
                        source: InstanceSource::Registry,
                    }),
            );
        }
    }
    pool.update(&specs);
    if let Some(old) = old {
        pool.adopt_addresses(old);
    }
    pool
}

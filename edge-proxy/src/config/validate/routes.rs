//! `[[routes]]` and `[rate-limit]`: path prefixes, the service each goes to, prefix stripping,
//! auth mode, scopes, the rate limit that applies (the route's own or the default), and the
//! route's cache settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::super::internal::{
    AuthConfig, AuthMode, Route, RouteCache, ServiceConfig, DEFAULT_MAX_OBJECT_BYTES,
};
use super::super::wire::{RateLimitSection, RouteCacheSection, RouteSection};
use super::super::ConfigError;
use super::{rate_policy, scoped};

/// The routes, and the rate limiter's cell count.
pub(super) fn validate(
    sections: Vec<RouteSection>,
    rate_limit: Option<RateLimitSection>,
    services: &HashMap<String, Arc<ServiceConfig>>,
    auth: &AuthConfig,
    store: bool,
    memory_bytes: usize,
) -> Result<(Vec<Route>, usize), ConfigError> {
    let default_limit = match &rate_limit {
        None => None,
        Some(section) => Some(Arc::new(scoped(
            "rate-limit",
            rate_policy(
                "rate-limit",
                "default",
                section.requests_per_second,
                section.burst,
            )?,
            section.scope,
            section.on_store_error,
            store,
        )?)),
    };
    let rate_limit_cells = rate_limit.as_ref().map_or(1 << 20, |s| s.cells);
    if !(1..=(1 << 26)).contains(&rate_limit_cells) {
        return Err(ConfigError::new(
            "rate-limit.cells",
            "must be from 1 to 67108864",
        ));
    }

    if sections.is_empty() {
        return Err(ConfigError::new(
            "routes",
            "must contain at least one route",
        ));
    }
    let mut routes = Vec::new();
    for (i, route) in sections.into_iter().enumerate() {
        let field = format!("routes[{i}]");
        let prefix = check_path_prefix(&format!("{field}.prefix"), &route.prefix)?;
        if !services.contains_key(&route.service) {
            return Err(ConfigError::new(
                format!("{field}.service"),
                format!("no service named '{}'", route.service),
            ));
        }
        let strip_prefix = match route.strip_prefix {
            None => String::new(),
            Some(strip) => {
                let strip = check_path_prefix(&format!("{field}.strip-prefix"), &strip)?;
                if !(prefix == strip || prefix.starts_with(&format!("{strip}/"))) {
                    return Err(ConfigError::new(
                        format!("{field}.strip-prefix"),
                        "must be a leading part of the prefix",
                    ));
                }
                strip
            }
        };
        if routes.iter().any(|r: &Route| r.prefix == prefix) {
            return Err(ConfigError::new(
                format!("{field}.prefix"),
                "is already routed",
            ));
        }
        let jwt_configured =
            auth.jwt.hs256_secret.is_some() || auth.jwks_file.is_some() || auth.jwks_url.is_some();
        if route.auth == AuthMode::Jwt && !jwt_configured {
            return Err(ConfigError::new(
                format!("{field}.auth"),
                "jwt needs [auth.jwt] with a secret or a JWKS",
            ));
        }
        if route.auth == AuthMode::Any && !jwt_configured && auth.api_keys.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.auth"),
                "any needs API keys or [auth.jwt]",
            ));
        }
        if route.auth == AuthMode::ApiKey && auth.api_keys.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.auth"),
                "api-key needs at least one [[auth.api-keys]]",
            ));
        }
        if route.auth == AuthMode::Public && !route.scopes.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.scopes"),
                "a public route cannot require scopes",
            ));
        }
        let rate_limit = match route.rate_limit {
            Some(limit) => {
                let field = format!("{field}.rate-limit");
                let policy = rate_policy(&field, &prefix, limit.requests_per_second, limit.burst)?;
                Some(Arc::new(scoped(
                    &field,
                    policy,
                    limit.scope,
                    limit.on_store_error,
                    store,
                )?))
            }
            None => default_limit.clone(),
        };
        let cache = route
            .cache
            .map(|section| route_cache(&format!("{field}.cache"), section, memory_bytes))
            .transpose()?;
        routes.push(Route {
            prefix,
            service: route.service,
            strip_prefix,
            auth: route.auth,
            scopes: route.scopes,
            rate_limit,
            cache,
        });
    }

    Ok((routes, rate_limit_cells))
}

/// A route's cache: a default TTL of at most a day, its own memory budget (`[cache]`'s if
/// unset), objects no larger than that budget.
fn route_cache(
    field: &str,
    section: RouteCacheSection,
    default_memory_bytes: usize,
) -> Result<RouteCache, ConfigError> {
    let memory_bytes = match section.memory_bytes {
        Some(bytes) => super::memory_budget(&format!("{field}.memory-bytes"), bytes)?,
        None => default_memory_bytes,
    };
    let default_ttl = match section.default_ttl_seconds {
        Some(0) | None => None,
        Some(seconds) if seconds <= 86_400 => Some(Duration::from_secs(u64::from(seconds))),
        Some(_) => {
            return Err(ConfigError::new(
                format!("{field}.default-ttl-seconds"),
                "must be from 0 to 86400",
            ))
        }
    };
    let max_object_bytes = section
        .max_object_bytes
        .unwrap_or(DEFAULT_MAX_OBJECT_BYTES.min(memory_bytes));
    if max_object_bytes == 0 || max_object_bytes > memory_bytes {
        return Err(ConfigError::new(
            format!("{field}.max-object-bytes"),
            "must be from 1 to the route's memory-bytes",
        ));
    }
    Ok(RouteCache {
        default_ttl,
        max_object_bytes,
        memory_bytes,
    })
}

fn check_path_prefix(field: &str, value: &str) -> Result<String, ConfigError> {
    if !value.starts_with('/') {
        return Err(ConfigError::new(field, "must start with '/'"));
    }
    if value.len() > 1 && value.ends_with('/') {
        return Err(ConfigError::new(field, "must not end with '/'"));
    }
    if value.contains("//") || value.split('/').any(|s| s == "." || s == "..") {
        return Err(ConfigError::new(field, "must be a normalised path"));
    }
    Ok(value.to_string())
}

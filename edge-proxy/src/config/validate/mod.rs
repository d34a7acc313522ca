//! From wire structs to the internal [`Config`], one section per module: [`server`], [`services`]
//! (instances, timeouts, health checks, breakers, retries), [`auth`] and [`routes`] (with their
//! rate limits). Each check returns a [`ConfigError`] naming the field, in the file's own
//! spelling (`services.users.health-check.interval-ms`).

mod auth;
mod routes;
mod server;
mod services;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::internal::{
    CacheConfig, Config, DnsConfig, LimitScope, RatePolicy, RedisConfig, RegistryConfig,
    StoreFailure, TracingConfig,
};
use super::wire::{
    CacheSection, DnsSection, FileConfig, RedisSection, RegistrySection, TracingSection,
};
use super::ConfigError;

impl FileConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let server = server::validate(self.server)?;
        let registry = self.registry.map(validate_registry).transpose()?;
        let mut services = HashMap::new();
        for (name, section) in self.services {
            let service = services::validate(&name, section, registry.is_some())?;
            services.insert(name, Arc::new(service));
        }
        let auth = auth::validate(self.auth)?;
        let redis = self.redis.map(validate_redis).transpose()?;
        let cache = validate_cache(self.cache)?;
        let (routes, rate_limit_cells) = routes::validate(
            self.routes,
            self.rate_limit,
            &services,
            &auth,
            redis.is_some(),
            cache.memory_bytes,
        )?;
        let dns = validate_dns(self.dns)?;
        let tracing = validate_tracing(self.tracing)?;
        Ok(Config {
            server,
            services,
            routes,
            registry,
            auth,
            rate_limit_cells,
            dns,
            redis,
            tracing,
            cache,
        })
    }
}

fn validate_cache(section: CacheSection) -> Result<CacheConfig, ConfigError> {
    let defaults = CacheConfig::default();
    Ok(CacheConfig {
        memory_bytes: memory_budget(
            "cache.memory-bytes",
            section.memory_bytes.unwrap_or(defaults.memory_bytes),
        )?,
        lock_timeout: match section.lock_timeout_ms {
            Some(ms) => ms_in_range("cache.lock-timeout-ms", ms, 1, 60_000)?,
            None => defaults.lock_timeout,
        },
    })
}

/// A cache memory budget: 4 KiB to 64 GiB.
pub(super) fn memory_budget(field: &str, bytes: usize) -> Result<usize, ConfigError> {
    if (4096..=(64usize << 30)).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(ConfigError::new(field, "must be from 4096 to 68719476736"))
    }
}

fn validate_tracing(section: TracingSection) -> Result<TracingConfig, ConfigError> {
    let defaults = TracingConfig::default();
    if let Some(endpoint) = &section.endpoint {
        let valid = endpoint
            .parse::<http::Uri>()
            .ok()
            .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")))
            .is_some_and(|uri| uri.host().is_some() && uri.query().is_none());
        if !valid {
            return Err(ConfigError::new(
                "tracing.endpoint",
                "must be an http:// or https:// URL (the collector's base, /v1/traces is added)",
            ));
        }
    }
    if let Some(ratio) = section.sample_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::new(
                "tracing.sample-ratio",
                "must be from 0.0 to 1.0",
            ));
        }
    }
    let queue_size = section.queue_size.unwrap_or(defaults.queue_size);
    if !(1..=1_000_000).contains(&queue_size) {
        return Err(ConfigError::new(
            "tracing.queue-size",
            "must be from 1 to 1000000",
        ));
    }
    let service_name = section.service_name.unwrap_or(defaults.service_name);
    if service_name.trim().is_empty() {
        return Err(ConfigError::new(
            "tracing.service-name",
            "must not be empty",
        ));
    }
    Ok(TracingConfig {
        endpoint: section.endpoint,
        sample_ratio: section.sample_ratio,
        service_name,
        queue_size,
        export_timeout: match section.export_timeout_ms {
            Some(ms) => ms_in_range("tracing.export-timeout-ms", ms, 1, 60_000)?,
            None => defaults.export_timeout,
        },
    })
}

fn validate_registry(section: RegistrySection) -> Result<RegistryConfig, ConfigError> {
    if section.table.trim().is_empty() {
        return Err(ConfigError::new("registry.table", "must not be empty"));
    }
    let poll_interval = ms_in_range(
        "registry.poll-interval-ms",
        section.poll_interval_ms,
        100,
        3_600_000,
    )?;
    Ok(RegistryConfig {
        table: section.table,
        poll_interval,
    })
}

fn validate_redis(section: RedisSection) -> Result<RedisConfig, ConfigError> {
    let url = section.url.trim();
    if !url.starts_with("redis://") {
        return Err(ConfigError::new(
            "redis.url",
            "must be a redis:// URL (TLS is not supported yet)",
        ));
    }
    // The URL may carry a password: the error names the field, never the value.
    if redis::Client::open(url).is_err() {
        return Err(ConfigError::new("redis.url", "is not a valid Redis URL"));
    }
    if !(1..=1000).contains(&section.lease) {
        return Err(ConfigError::new("redis.lease", "must be from 1 to 1000"));
    }
    Ok(RedisConfig {
        url: url.to_string(),
        timeout: ms_in_range("redis.timeout-ms", section.timeout_ms, 1, 1_000)?,
        connect_timeout: ms_in_range(
            "redis.connect-timeout-ms",
            section.connect_timeout_ms,
            1,
            10_000,
        )?,
        lease: section.lease,
        lease_ttl: ms_in_range("redis.lease-ms", section.lease_ms, 1, 60_000)?,
    })
}

fn validate_dns(section: DnsSection) -> Result<DnsConfig, ConfigError> {
    Ok(DnsConfig {
        refresh: ms_in_range("dns.refresh-ms", section.refresh_ms, 1_000, 3_600_000)?,
        timeout: ms_in_range("dns.timeout-ms", section.timeout_ms, 100, 30_000)?,
    })
}

/// A rate limit: above 0 and at most a million per second, a burst from 1 to a million.
pub(super) fn rate_policy(
    field: &str,
    name: &str,
    rate: f64,
    burst: u32,
) -> Result<RatePolicy, ConfigError> {
    if !(rate > 0.0 && rate <= 1_000_000.0) {
        return Err(ConfigError::new(
            format!("{field}.requests-per-second"),
            "must be above 0 and at most 1000000",
        ));
    }
    if burst == 0 || burst > 1_000_000 {
        return Err(ConfigError::new(
            format!("{field}.burst"),
            "must be from 1 to 1000000",
        ));
    }
    Ok(RatePolicy::local(name, rate, burst))
}

/// Where a route's limit is counted: a global limit needs `[redis]`; `on-store-error` is
/// only for a global one.
pub(super) fn scoped(
    field: &str,
    policy: RatePolicy,
    scope: LimitScope,
    on_store_error: Option<StoreFailure>,
    store: bool,
) -> Result<RatePolicy, ConfigError> {
    match (scope, on_store_error) {
        (LimitScope::Global, _) if !store => Err(ConfigError::new(
            format!("{field}.scope"),
            "global needs a [redis] section",
        )),
        (LimitScope::Local, Some(_)) => Err(ConfigError::new(
            format!("{field}.on-store-error"),
            "applies only to scope = \"global\"",
        )),
        (scope, on_store_error) => Ok(policy.scoped(scope, on_store_error.unwrap_or_default())),
    }
}

/// A SHA-256 written as 64 hex characters.
fn sha256_hex(field: &str, value: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = hex::decode(value).ok().filter(|b| b.len() == 32);
    let Some(bytes) = bytes else {
        return Err(ConfigError::new(
            field,
            "must be 64 hex characters (a SHA-256)",
        ));
    };
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&bytes);
    Ok(sha256)
}

/// A duration in milliseconds within `[min, max]`.
fn ms_in_range(field: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            field,
            format!("must be from {min} to {max}"),
        ));
    }
    Ok(Duration::from_millis(value))
}

/// A count that must be at least 1.
fn positive(field: &str, value: u32) -> Result<u32, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, "must be at least 1"));
    }
    Ok(value)
}

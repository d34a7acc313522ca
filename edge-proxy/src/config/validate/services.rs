//! `[services.NAME]`: instances, balancing, timeouts, failure statuses, SigV4, health checks,
//! circuit breaker and retries.

use super::super::internal::{BreakerConfig, HealthCheckConfig, RetryConfig, ServiceConfig};
use super::super::url::UpstreamUrl;
use super::super::wire::ServiceSection;
use super::super::ConfigError;
use super::{ms_in_range, positive};

pub(super) fn validate(
    name: &str,
    section: ServiceSection,
    registry_configured: bool,
) -> Result<ServiceConfig, ConfigError> {
    let field = format!("services.{name}");
    if section.instances.is_empty() && !section.registry {
        return Err(ConfigError::new(
            format!("{field}.instances"),
            "must list at least one instance (or set registry = true)",
        ));
    }
    if section.registry && !registry_configured {
        return Err(ConfigError::new(
            format!("{field}.registry"),
            "needs a [registry] section",
        ));
    }
    let instances = section
        .instances
        .iter()
        .enumerate()
        .map(|(i, url)| {
            UpstreamUrl::parse(url)
                .map_err(|e| ConfigError::new(format!("{field}.instances[{i}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let connect_timeout = ms_in_range(
        &format!("{field}.connect-timeout-ms"),
        section.connect_timeout_ms,
        1,
        300_000,
    )?;
    let read_timeout = ms_in_range(
        &format!("{field}.read-timeout-ms"),
        section.read_timeout_ms,
        1,
        300_000,
    )?;
    let total_timeout = ms_in_range(
        &format!("{field}.total-timeout-ms"),
        section.total_timeout_ms,
        1,
        600_000,
    )?;
    if total_timeout < connect_timeout {
        return Err(ConfigError::new(
            format!("{field}.total-timeout-ms"),
            "must be at least connect-timeout-ms",
        ));
    }
    if let Some(bad) = section
        .failure_statuses
        .iter()
        .find(|s| !(100..=599).contains(*s))
    {
        return Err(ConfigError::new(
            format!("{field}.failure-statuses"),
            format!("{bad} is not an HTTP status"),
        ));
    }

    let hc = section.health_check;
    let hc_field = format!("{field}.health-check");
    if !hc.path.starts_with('/') {
        return Err(ConfigError::new(
            format!("{hc_field}.path"),
            "must start with '/'",
        ));
    }
    // Refused here, not found out by every check failing (an instance's base path is a
    // valid URI path already, so the two together are too).
    if let Err(error) = hc.path.parse::<http::uri::PathAndQuery>() {
        return Err(ConfigError::new(
            format!("{hc_field}.path"),
            format!("is not a valid URI path: {error}"),
        ));
    }
    let health_check = HealthCheckConfig {
        enabled: hc.enabled,
        interval: ms_in_range(
            &format!("{hc_field}.interval-ms"),
            hc.interval_ms,
            100,
            3_600_000,
        )?,
        timeout: ms_in_range(&format!("{hc_field}.timeout-ms"), hc.timeout_ms, 1, 60_000)?,
        healthy_threshold: positive(
            &format!("{hc_field}.healthy-threshold"),
            hc.healthy_threshold,
        )?,
        unhealthy_threshold: positive(
            &format!("{hc_field}.unhealthy-threshold"),
            hc.unhealthy_threshold,
        )?,
        path: hc.path,
    };

    let cb = section.circuit_breaker;
    let cb_field = format!("{field}.circuit-breaker");
    if !(cb.failure_rate > 0.0 && cb.failure_rate <= 1.0) {
        return Err(ConfigError::new(
            format!("{cb_field}.failure-rate"),
            "must be in (0, 1]",
        ));
    }
    if cb.minimum_calls > cb.window {
        return Err(ConfigError::new(
            format!("{cb_field}.minimum-calls"),
            "must not exceed window",
        ));
    }
    let open_for = ms_in_range(&format!("{cb_field}.open-ms"), cb.open_ms, 1, 3_600_000)?;
    let max_open_for = ms_in_range(
        &format!("{cb_field}.max-open-ms"),
        cb.max_open_ms,
        1,
        3_600_000,
    )?;
    if max_open_for < open_for {
        return Err(ConfigError::new(
            format!("{cb_field}.max-open-ms"),
            "must be at least open-ms",
        ));
    }
    let breaker = BreakerConfig {
        consecutive_failures: positive(
            &format!("{cb_field}.consecutive-failures"),
            cb.consecutive_failures,
        )?,
        failure_rate: cb.failure_rate,
        window: cb.window,
        minimum_calls: cb.minimum_calls.max(1),
        open_for,
        max_open_for,
        half_open_probes: positive(&format!("{cb_field}.half-open-probes"), cb.half_open_probes)?,
    };

    if section.aws_iam {
        for (i, url) in instances.iter().enumerate() {
            if !url.accepts_signed_requests(section.allow_loopback_function_urls) {
                return Err(ConfigError::new(
                    format!("{field}.instances[{i}]"),
                    "aws-iam instances must be https function URLs (https://<id>.lambda-url.<region>.on.aws), or on a loopback host with allow-loopback-function-urls",
                ));
            }
            if section.aws_region.is_none() && url.function_url_region().is_none() {
                return Err(ConfigError::new(
                    format!("{field}.instances[{i}]"),
                    "names no region to sign for: set aws-region",
                ));
            }
        }
    } else if section.allow_loopback_function_urls {
        return Err(ConfigError::new(
            format!("{field}.allow-loopback-function-urls"),
            "only applies with aws-iam = true",
        ));
    }
    if let Some(region) = &section.aws_region {
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::new(
                format!("{field}.aws-region"),
                "is not a region name",
            ));
        }
    }
    let retry = section.retry;
    if !(0.0..=1.0).contains(&retry.budget_ratio) {
        return Err(ConfigError::new(
            format!("{field}.retry.budget-ratio"),
            "must be from 0 to 1",
        ));
    }

    Ok(ServiceConfig {
        name: name.to_string(),
        instances,
        registry: section.registry,
        balancer: section.balancer,
        connect_timeout,
        read_timeout,
        total_timeout,
        failure_statuses: section.failure_statuses,
        aws_iam: section.aws_iam,
        aws_region: section.aws_region,
        allow_loopback_function_urls: section.allow_loopback_function_urls,
        health_check,
        breaker,
        retry: RetryConfig {
            enabled: retry.enabled,
            budget_ratio: retry.budget_ratio,
            budget_reserve: retry.budget_reserve,
        },
    })
}

//! The proxy's configuration: a TOML file parsed into wire structs (kebab-case, named defaults,
//! unknown keys rejected), then validated into the internal [`Config`] the proxy runs on.
//! Every validation error names the field it is about; nothing here panics on bad input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::upstream::UpstreamUrl;

/// A configuration problem, naming the field (`routes[1].service`, `server.listen`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    /// Upstream services by name.
    #[serde(default)]
    pub services: HashMap<String, ServiceSection>,
    /// Path prefixes and the service each goes to; the longest matching prefix wins.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Discovery registry table, for services with `registry = true`.
    #[serde(default)]
    pub registry: Option<RegistrySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerSection {
    /// Public listener.
    pub listen: String,
    /// Worker threads.
    pub threads: usize,
    /// Seconds to keep serving after SIGTERM before shutting down.
    pub grace_period_seconds: u64,
    /// Seconds in-flight requests get to finish once shutdown starts.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Downstream read timeout (slow clients are cut off), in milliseconds.
    pub client_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            threads: 2,
            grace_period_seconds: 1,
            graceful_shutdown_timeout_seconds: 2,
            client_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceSection {
    /// Static instances: base URLs that may carry a path
    /// (`http://127.0.0.1:9000/lambda-url/user-service`).
    #[serde(default)]
    pub instances: Vec<String>,
    /// Also take instances from the registry table (see `[registry]`).
    #[serde(default)]
    pub registry: bool,
    /// `round-robin` or `least-in-flight` (power of two choices on in-flight requests).
    #[serde(default)]
    pub balancer: Balancer,
    /// TCP (and TLS) connect timeout, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the upstream between reads, in milliseconds.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Budget for the whole upstream exchange including a retry, in milliseconds.
    #[serde(default = "default_total_timeout_ms")]
    pub total_timeout_ms: u64,
    /// Upstream statuses that count as failures for the breaker and may be retried.
    #[serde(default = "default_failure_statuses")]
    pub failure_statuses: Vec<u16>,
    #[serde(default)]
    pub health_check: HealthCheckSection,
    #[serde(default)]
    pub circuit_breaker: BreakerSection,
    #[serde(default)]
    pub retry: RetrySection,
}

/// How instances are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    #[default]
    RoundRobin,
    LeastInFlight,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HealthCheckSection {
    /// Active checks on (an instance that fails them gets no traffic until it passes again).
    pub enabled: bool,
    /// Path under the instance's base URL; must answer 200.
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Passes in a row that make an unhealthy instance healthy.
    pub healthy_threshold: u32,
    /// Failures in a row that make a healthy instance unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckSection {
    fn default() -> Self {
        HealthCheckSection {
            enabled: true,
            path: "/health".into(),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BreakerSection {
    /// Failures in a row that open the breaker.
    pub consecutive_failures: u32,
    /// Failure rate (0-1) over the window that opens the breaker...
    pub failure_rate: f64,
    /// ...over this many most recent calls...
    pub window: usize,
    /// ...once at least this many calls are in the window.
    pub minimum_calls: usize,
    /// How long it stays open the first time, in milliseconds (doubles while it keeps failing).
    pub open_ms: u64,
    /// Longest it stays open, in milliseconds.
    pub max_open_ms: u64,
    /// Probe requests admitted at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerSection {
    fn default() -> Self {
        let defaults = BreakerConfig::default();
        BreakerSection {
            consecutive_failures: defaults.consecutive_failures,
            failure_rate: defaults.failure_rate,
            window: defaults.window,
            minimum_calls: defaults.minimum_calls,
            open_ms: defaults.open_for.as_millis() as u64,
            max_open_ms: defaults.max_open_for.as_millis() as u64,
            half_open_probes: defaults.half_open_probes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RetrySection {
    /// Retry once on another instance (idempotent methods; POST/PATCH only if never sent).
    pub enabled: bool,
    /// Extra load retries may add, as a fraction of requests.
    pub budget_ratio: f64,
    /// Retries banked for a quiet service.
    pub budget_reserve: u32,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            enabled: true,
            budget_ratio: 0.2,
            budget_reserve: 10,
        }
    }
}

/// The discovery registry: a DynamoDB table of `{service, url, weight, expires_at}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistrySection {
    /// Table name (the endpoint and credentials come from the standard AWS environment).
    pub table: String,
    /// How often the proxy reads it, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    2_000
}

fn default_connect_timeout_ms() -> u64 {
    1_000
}

fn default_read_timeout_ms() -> u64 {
    15_000
}

fn default_total_timeout_ms() -> u64 {
    30_000
}

fn default_failure_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteSection {
    /// Path prefix, matched on whole segments (`/api/users` matches `/api/users/1`, not
    /// `/api/usersx`).
    pub prefix: String,
    /// Name of a service in `[services]`.
    pub service: String,
    /// Leading part of the path removed before forwarding (`/api`: `/api/users/1` reaches the
    /// function as `/users/1`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Internal, validated form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub client_timeout: Duration,
    pub services: HashMap<String, Arc<ServiceConfig>>,
    pub routes: Vec<Route>,
    pub registry: Option<RegistryConfig>,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub instances: Vec<UpstreamUrl>,
    pub registry: bool,
    pub balancer: Balancer,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub total_timeout: Duration,
    pub failure_statuses: Vec<u16>,
    pub health_check: HealthCheckConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
}

#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub enabled: bool,
    pub budget_ratio: f64,
    pub budget_reserve: u32,
}

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub table: String,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub service: String,
    pub strip_prefix: String,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let field = e.span().map_or_else(
                || "config".to_string(),
                |span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("line {line}")
                },
            );
            ConfigError::new(field, e.message().to_string())
        })?;
        file.validate()
    }
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

impl FileConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let server = self.server;
        let listen = server.listen.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new("server.listen", format!("not an ip:port address: {e}"))
        })?;
        if server.threads == 0 || server.threads > 256 {
            return Err(ConfigError::new("server.threads", "must be from 1 to 256"));
        }
        if server.client_timeout_ms == 0 {
            return Err(ConfigError::new(
                "server.client-timeout-ms",
                "must be positive",
            ));
        }

        let registry = match self.registry {
            None => None,
            Some(section) => {
                if section.table.trim().is_empty() {
                    return Err(ConfigError::new("registry.table", "must not be empty"));
                }
                ms_in_range(
                    "registry.poll-interval-ms",
                    section.poll_interval_ms,
                    100,
                    3_600_000,
                )?;
                Some(RegistryConfig {
                    table: section.table,
                    poll_interval: Duration::from_millis(section.poll_interval_ms),
                })
            }
        };

        let mut services = HashMap::new();
        for (name, section) in self.services {
            let service = validate_service(&name, section, registry.is_some())?;
            services.insert(name, Arc::new(service));
        }

        if self.routes.is_empty() {
            return Err(ConfigError::new(
                "routes",
                "must contain at least one route",
            ));
        }
        let mut routes = Vec::new();
        for (i, route) in self.routes.into_iter().enumerate() {
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
            routes.push(Route {
                prefix,
                service: route.service,
                strip_prefix,
            });
        }

        Ok(Config {
            listen,
            threads: server.threads,
            grace_period_seconds: server.grace_period_seconds,
            graceful_shutdown_timeout_seconds: server.graceful_shutdown_timeout_seconds,
            client_timeout: Duration::from_millis(server.client_timeout_ms),
            services,
            routes,
            registry,
        })
    }
}

fn ms_in_range(field: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            field,
            format!("must be from {min} to {max}"),
        ));
    }
    Ok(Duration::from_millis(value))
}

fn validate_service(
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
                .map_err(|message| ConfigError::new(format!("{field}.instances[{i}]"), message))
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
        health_check,
        breaker,
        retry: RetryConfig {
            enabled: retry.enabled,
            budget_ratio: retry.budget_ratio,
            budget_reserve: retry.budget_reserve,
        },
    })
}

fn positive(field: &str, value: u32) -> Result<u32, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, "must be at least 1"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [server]
        listen = "127.0.0.1:8080"

        [services.users]
        instances = ["http://127.0.0.1:9000/lambda-url/user-service"]

        [[routes]]
        prefix = "/api/users"
        service = "users"
        strip-prefix = "/api"
    "#;

    fn error_field(text: &str) -> String {
        Config::parse(text).unwrap_err().field
    }

    #[test]
    fn a_good_config_loads() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.routes[0].strip_prefix, "/api");
        let service = &config.services["users"];
        assert_eq!(service.instances[0].base_path, "/lambda-url/user-service");
        assert_eq!(service.read_timeout, Duration::from_millis(15_000));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error_field(&GOOD.replace("127.0.0.1:8080", "nope")),
            "server.listen"
        );
        assert_eq!(
            error_field(&GOOD.replace("service = \"users\"", "service = \"ghost\"")),
            "routes[0].service"
        );
        assert_eq!(
            error_field(&GOOD.replace("strip-prefix = \"/api\"", "strip-prefix = \"/other\"")),
            "routes[0].strip-prefix"
        );
        assert_eq!(
            error_field(&GOOD.replace("prefix = \"/api/users\"", "prefix = \"api/users\"")),
            "routes[0].prefix"
        );
        assert_eq!(
            error_field(&GOOD.replace("http://127.0.0.1:9000/lambda-url/user-service", "ftp://x")),
            "services.users.instances[0]"
        );
        assert_eq!(
            error_field(&GOOD.replace("[\"http://127.0.0.1:9000/lambda-url/user-service\"]", "[]")),
            "services.users.instances"
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused() {
        let unknown = GOOD.replace("listen =", "colour = \"red\"\nlisten =");
        let error = Config::parse(&unknown).unwrap_err();
        assert!(error.message.contains("colour"), "{error}");
        assert!(error.field.starts_with("line"), "{error}");
        assert!(Config::parse("[[routes]\n").is_err());
        assert_eq!(error_field(""), "routes");
    }
}

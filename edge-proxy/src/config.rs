//! The proxy's configuration: a TOML file parsed into wire structs (kebab-case, named defaults,
//! unknown keys rejected), then validated into the internal [`Config`] the proxy runs on.
//! Every validation error names the field it is about; nothing here panics on bad input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{ApiKey, AuthMode, JwtSettings};
use crate::breaker::BreakerConfig;
use crate::hygiene::Limits;
use crate::ratelimit::RatePolicy;
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
    /// API keys and JWT verification.
    #[serde(default)]
    pub auth: AuthSection,
    /// The default rate limit per consumer (or client IP on public routes); routes may override.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSection {
    #[serde(default)]
    pub api_keys: Vec<ApiKeySection>,
    #[serde(default)]
    pub jwt: Option<JwtSection>,
    /// Forward the client's `Authorization` / `x-api-key` to the functions (off by default).
    #[serde(default)]
    pub forward_credentials: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiKeySection {
    /// Who the key belongs to; forwarded as `x-consumer-id`.
    pub consumer: String,
    /// Hex SHA-256 of the key (`printf %s KEY | sha256sum`); the key itself is never stored.
    pub key_sha256: String,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JwtSection {
    /// HS256 secret (at least 32 bytes). Prefer `hs256-secret-env` outside development.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// Name of an environment variable holding the HS256 secret.
    #[serde(default)]
    pub hs256_secret_env: Option<String>,
    /// JWKS file with RS256 / ES256 public keys.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// JWKS URL, fetched at start and every `jwks-refresh-seconds`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh_seconds")]
    pub jwks_refresh_seconds: u64,
    /// Required `iss`, if set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` / `nbf`, in seconds.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// Longest token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

fn default_jwks_refresh_seconds() -> u64 {
    300
}

fn default_leeway_seconds() -> u64 {
    30
}

fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitSection {
    /// Sustained rate per key.
    pub requests_per_second: f64,
    /// Requests allowed at once.
    pub burst: u32,
    /// Limiter cells (8 bytes each); bounds memory whatever the number of clients.
    #[serde(default = "default_rate_limit_cells")]
    pub cells: usize,
}

fn default_rate_limit_cells() -> usize {
    1 << 20
}

/// A route's own limit, replacing the default one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteRateLimitSection {
    pub requests_per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerSection {
    /// Public listener.
    pub listen: String,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`); keep it off public interfaces.
    pub admin_listen: Option<String>,
    /// Worker threads.
    pub threads: usize,
    /// Seconds to keep serving after SIGTERM before shutting down.
    pub grace_period_seconds: u64,
    /// Seconds in-flight requests get to finish once shutdown starts.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Downstream read timeout (slow clients are cut off), in milliseconds.
    pub client_timeout_ms: u64,
    /// Whole time a client gets to send a request head, from its first byte (408 and close
    /// beyond; a new connection that sends nothing for this long is closed), in milliseconds.
    pub head_timeout_ms: u64,
    /// Longest request target accepted (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest header section accepted (431 beyond).
    pub max_header_bytes: usize,
    /// Largest request body accepted (413 beyond), declared or streamed.
    pub max_body_bytes: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            admin_listen: Some("127.0.0.1:9901".into()),
            threads: 2,
            grace_period_seconds: 1,
            graceful_shutdown_timeout_seconds: 2,
            client_timeout_ms: 10_000,
            head_timeout_ms: 10_000,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 1024 * 1024,
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
    /// Upstream statuses that count as failures for the breaker and may be retried (not when
    /// the response carries `Retry-After`: that one is passed through as it is).
    #[serde(default = "default_failure_statuses")]
    pub failure_statuses: Vec<u16>,
    /// Sign requests with SigV4 (service `lambda`) for Lambda function URLs with IAM auth.
    #[serde(default)]
    pub aws_iam: bool,
    /// Region to sign for when an instance URL does not name one.
    #[serde(default)]
    pub aws_region: Option<String>,
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
    /// `public`, `api-key`, `jwt` or `any` (an API key or a JWT).
    #[serde(default)]
    pub auth: AuthMode,
    /// Scopes a caller must hold (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// This route's own rate limit (keyed per consumer and route).
    #[serde(default)]
    pub rate_limit: Option<RouteRateLimitSection>,
}

// ---------------------------------------------------------------------------------------------
// Internal, validated form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub client_timeout: Duration,
    pub head_timeout: Duration,
    pub limits: Limits,
    pub services: HashMap<String, Arc<ServiceConfig>>,
    pub routes: Vec<Route>,
    pub registry: Option<RegistryConfig>,
    pub auth: AuthConfig,
    pub rate_limit_cells: usize,
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
    pub aws_iam: bool,
    pub aws_region: Option<String>,
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
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    /// The limit that applies (the route's own, else the default), if any.
    pub rate_limit: Option<Arc<RatePolicy>>,
}

/// Authentication settings, validated.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKey>,
    pub jwt: JwtSettings,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub forward_credentials: bool,
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
            let message = e.message().trim();
            // Some TOML syntax errors carry no message of their own.
            let message = if message.is_empty() {
                "invalid TOML"
            } else {
                message
            };
            ConfigError::new(field, message)
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
        let admin_listen = match &server.admin_listen {
            None => None,
            Some(admin) => {
                let admin = admin.parse::<SocketAddr>().map_err(|e| {
                    ConfigError::new(
                        "server.admin-listen",
                        format!("not an ip:port address: {e}"),
                    )
                })?;
                if admin == listen {
                    return Err(ConfigError::new(
                        "server.admin-listen",
                        "must differ from server.listen",
                    ));
                }
                Some(admin)
            }
        };
        if server.threads == 0 || server.threads > 256 {
            return Err(ConfigError::new("server.threads", "must be from 1 to 256"));
        }
        if server.client_timeout_ms == 0 {
            return Err(ConfigError::new(
                "server.client-timeout-ms",
                "must be positive",
            ));
        }
        if server.head_timeout_ms == 0 || server.head_timeout_ms > 600_000 {
            return Err(ConfigError::new(
                "server.head-timeout-ms",
                "must be from 1 to 600000",
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

        let auth = validate_auth(self.auth)?;
        let default_limit = match &self.rate_limit {
            None => None,
            Some(section) => Some(Arc::new(rate_policy(
                "rate-limit",
                "default",
                section.requests_per_second,
                section.burst,
            )?)),
        };
        let rate_limit_cells = self.rate_limit.as_ref().map_or(1 << 20, |s| s.cells);
        if !(1..=(1 << 26)).contains(&rate_limit_cells) {
            return Err(ConfigError::new(
                "rate-limit.cells",
                "must be from 1 to 67108864",
            ));
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
            let jwt_configured = auth.jwt.hs256_secret.is_some()
                || auth.jwks_file.is_some()
                || auth.jwks_url.is_some();
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
                Some(limit) => Some(Arc::new(rate_policy(
                    &format!("{field}.rate-limit"),
                    &prefix,
                    limit.requests_per_second,
                    limit.burst,
                )?)),
                None => default_limit.clone(),
            };
            routes.push(Route {
                prefix,
                service: route.service,
                strip_prefix,
                auth: route.auth,
                scopes: route.scopes,
                rate_limit,
            });
        }

        for (field, value, max) in [
            ("server.max-uri-bytes", server.max_uri_bytes, 1 << 20),
            ("server.max-header-bytes", server.max_header_bytes, 1 << 20),
            ("server.max-body-bytes", server.max_body_bytes, 64 << 20),
        ] {
            if value < 256 || value > max {
                return Err(ConfigError::new(
                    field,
                    format!("must be from 256 to {max}"),
                ));
            }
        }
        let limits = Limits {
            max_uri_bytes: server.max_uri_bytes,
            max_header_bytes: server.max_header_bytes,
            max_body_bytes: server.max_body_bytes,
        };
        Ok(Config {
            listen,
            admin_listen,
            limits,
            threads: server.threads,
            grace_period_seconds: server.grace_period_seconds,
            graceful_shutdown_timeout_seconds: server.graceful_shutdown_timeout_seconds,
            client_timeout: Duration::from_millis(server.client_timeout_ms),
            head_timeout: Duration::from_millis(server.head_timeout_ms),
            services,
            routes,
            registry,
            auth,
            rate_limit_cells,
        })
    }
}

fn rate_policy(field: &str, name: &str, rate: f64, burst: u32) -> Result<RatePolicy, ConfigError> {
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
    Ok(RatePolicy {
        name: name.to_string(),
        rate_per_second: rate,
        burst,
    })
}

fn validate_auth(section: AuthSection) -> Result<AuthConfig, ConfigError> {
    let mut api_keys = Vec::new();
    for (i, key) in section.api_keys.into_iter().enumerate() {
        let field = format!("auth.api-keys[{i}]");
        if key.consumer.trim().is_empty()
            || key.consumer.len() > 128
            || !key.consumer.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ConfigError::new(
                format!("{field}.consumer"),
                "must be 1 to 128 printable ASCII characters",
            ));
        }
        let bytes = hex::decode(&key.key_sha256).ok().filter(|b| b.len() == 32);
        let Some(bytes) = bytes else {
            return Err(ConfigError::new(
                format!("{field}.key-sha256"),
                "must be 64 hex characters (a SHA-256)",
            ));
        };
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&bytes);
        if api_keys.iter().any(|k: &ApiKey| k.sha256 == sha256) {
            return Err(ConfigError::new(
                format!("{field}.key-sha256"),
                "duplicates another key",
            ));
        }
        api_keys.push(ApiKey {
            consumer: key.consumer,
            sha256,
            scopes: key.scopes,
        });
    }
    let mut config = AuthConfig {
        api_keys,
        forward_credentials: section.forward_credentials,
        ..AuthConfig::default()
    };
    if let Some(jwt) = section.jwt {
        let secret = match (jwt.hs256_secret, jwt.hs256_secret_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "auth.jwt.hs256-secret-env",
                    "set either hs256-secret or hs256-secret-env",
                ));
            }
            (Some(secret), None) => Some(secret),
            (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
                ConfigError::new(
                    "auth.jwt.hs256-secret-env",
                    format!("environment variable {var} is not set"),
                )
            })?),
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::new(
                "auth.jwt.hs256-secret",
                "must be at least 32 bytes",
            ));
        }
        if let Some(url) = &jwt.jwks_url {
            UpstreamUrl::parse(url).map_err(|e| ConfigError::new("auth.jwt.jwks-url", e))?;
        }
        if jwt.leeway_seconds > 300 {
            return Err(ConfigError::new(
                "auth.jwt.leeway-seconds",
                "must be at most 300",
            ));
        }
        if !(256..=65_536).contains(&jwt.max_token_bytes) {
            return Err(ConfigError::new(
                "auth.jwt.max-token-bytes",
                "must be from 256 to 65536",
            ));
        }
        config.jwt = JwtSettings {
            hs256_secret: secret.map(String::into_bytes),
            issuer: jwt.issuer,
            audience: jwt.audience,
            leeway_seconds: jwt.leeway_seconds,
            max_token_bytes: jwt.max_token_bytes,
        };
        config.jwks_file = jwt.jwks_file;
        config.jwks_url = jwt.jwks_url;
        config.jwks_refresh = ms_in_range(
            "auth.jwt.jwks-refresh-seconds",
            jwt.jwks_refresh_seconds.saturating_mul(1000),
            1000,
            86_400_000,
        )?;
    }
    Ok(config)
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

    if section.aws_iam {
        for (i, url) in instances.iter().enumerate() {
            if section.aws_region.is_none() && crate::sigv4::region_from_host(&url.host).is_none() {
                return Err(ConfigError::new(
                    format!("{field}.instances[{i}]"),
                    "aws-iam needs a function URL host (<id>.lambda-url.<region>.on.aws) or aws-region",
                ));
            }
        }
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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is either a valid config or an error naming a field; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(error) = Config::parse(&text) {
                prop_assert!(!error.field.is_empty());
            }
        }

        #[test]
        fn arbitrary_values_in_a_valid_shape_never_panic(
            listen in "\\PC{0,30}",
            instance in "\\PC{0,60}",
            prefix in "\\PC{0,30}",
            timeout in any::<u64>(),
        ) {
            let text = format!(
                "[server]\nlisten = {listen:?}\n[services.s]\ninstances = [{instance:?}]\nread-timeout-ms = {timeout}\n[[routes]]\nprefix = {prefix:?}\nservice = \"s\"\n"
            );
            let _ = Config::parse(&text);
        }
    }
}

//! The validated configuration the proxy runs on, and the settings types each area reads
//! (route auth modes, keys, JWT settings, breaker and rate-limit policies, request limits).
//! These are plain data: the behaviour lives in the areas that use them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;

use super::url::UpstreamUrl;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub services: HashMap<String, Arc<ServiceConfig>>,
    pub routes: Vec<Route>,
    pub registry: Option<RegistryConfig>,
    pub auth: AuthConfig,
    pub rate_limit_cells: usize,
    pub dns: DnsConfig,
    /// The store of global rate limits, when a policy is global.
    pub redis: Option<RedisConfig>,
    pub tracing: TracingConfig,
    pub cache: CacheConfig,
}

/// `[tracing]`, validated: where spans are exported (OTLP over HTTP) and how many.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's base URL (`/v1/traces` is appended); `None`: the `OTEL_EXPORTER_OTLP_*`
    /// variables decide, and without them nothing is exported.
    pub endpoint: Option<String>,
    /// Share of traces started here that are recorded; a parent's sampled flag is honoured.
    /// `None`: `OTEL_TRACES_SAMPLER` decides (default: every trace).
    pub sample_ratio: Option<f64>,
    /// `service.name` unless `OTEL_SERVICE_NAME` is set.
    pub service_name: String,
    /// Spans that may wait for export; past it they are dropped and counted.
    pub queue_size: usize,
    /// Longest one export may take.
    pub export_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            endpoint: None,
            sample_ratio: None,
            service_name: "edge-proxy".into(),
            queue_size: 2048,
            export_timeout: Duration::from_secs(5),
        }
    }
}

/// `[redis]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub lease: u32,
    pub lease_ttl: Duration,
}

/// Where a rate limit is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitScope {
    /// By each replica on its own: N replicas allow N times the rate.
    #[default]
    Local,
    /// In Redis, shared by every replica.
    Global,
}

/// What a global limit does while Redis cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreFailure {
    /// Admit (no `RateLimit` headers).
    #[default]
    Open,
    /// Refuse with 429 and `Retry-After: 1`.
    Closed,
}

/// `[dns]`: how instance host names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsConfig {
    pub refresh: Duration,
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            refresh: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        }
    }
}

/// `[server]`: listeners, threads, shutdown, client timeouts, request size limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// SHA-256 of the admin listener's bearer token, when it has one.
    pub admin_token_sha256: Option<[u8; 32]>,
    /// Who may name the client in `X-Forwarded-For` / `Forwarded`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// IPv6 clients are one client per network of this prefix length.
    pub ipv6_prefix_length: u8,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub client_timeout: Duration,
    pub head_timeout: Duration,
    pub keepalive_idle: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq)]
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
    pub allow_loopback_function_urls: bool,
    pub health_check: HealthCheckConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub enabled: bool,
    pub budget_ratio: f64,
    pub budget_reserve: u32,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// Whether (and how) this route's `GET`s are cached.
    pub cache: Option<RouteCache>,
}

/// A route's cache settings, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCache {
    pub default_ttl: Option<Duration>,
    pub max_object_bytes: usize,
    /// The route's own LRU budget: bytes of bodies it holds.
    pub memory_bytes: usize,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// A cached route's budget where it sets none.
    pub memory_bytes: usize,
    pub lock_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 64 * 1024 * 1024,
            lock_timeout: Duration::from_secs(2),
        }
    }
}

/// The largest body a route stores unless it says otherwise.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 1024 * 1024;

impl AsRef<Route> for Route {
    fn as_ref(&self) -> &Route {
        self
    }
}

/// Authentication settings, validated.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKey>,
    pub jwt: JwtSettings,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub jwks_limits: JwksLimits,
    pub forward_credentials: bool,
    /// Failed authentications per client address (`None`: not limited).
    pub failure_limit: Option<Arc<RatePolicy>>,
}

/// Bounds on a JWKS document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    pub max_bytes: usize,
    pub max_keys: usize,
}

impl Default for JwksLimits {
    fn default() -> Self {
        JwksLimits {
            max_bytes: 64 * 1024,
            max_keys: 20,
        }
    }
}

/// How instances are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    #[default]
    RoundRobin,
    LeastInFlight,
}

/// What a route demands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// No credentials; rate limited by client IP.
    #[default]
    Public,
    ApiKey,
    Jwt,
    /// An API key or a JWT.
    Any,
}

/// One configured API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub consumer: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<String>,
}

/// JWT verification settings.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    pub hs256_secret: Option<Vec<u8>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
    pub max_token_bytes: usize,
}

/// A circuit breaker's thresholds (see `upstream::breaker` for the state machine).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub window: usize,
    pub minimum_calls: usize,
    pub open_for: Duration,
    pub max_open_for: Duration,
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            minimum_calls: 10,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
            half_open_probes: 1,
        }
    }
}

/// Size limits for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// A limit: `burst` requests at once, refilled at `rate_per_second`. Made by
/// [`RatePolicy::local`] (and [`RatePolicy::scoped`]), which also write the parts of its
/// `RateLimit` headers that no request changes; its fields are read, not changed.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePolicy {
    /// Name shown in the `RateLimit-Policy` header.
    pub name: String,
    pub rate_per_second: f64,
    pub burst: u32,
    pub scope: LimitScope,
    /// Only for [`LimitScope::Global`].
    pub on_store_error: StoreFailure,
    /// `name` as a structured-field string: quoted, escaped, visible ASCII only.
    quoted_name: String,
    /// The whole `RateLimit-Policy` value: nothing in it depends on the request.
    policy_header: HeaderValue,
}

impl RatePolicy {
    /// A policy each replica enforces on its own.
    pub fn local(name: &str, rate_per_second: f64, burst: u32) -> RatePolicy {
        let quoted_name = quoted_string(name);
        let window = window_seconds(burst, rate_per_second);
        let policy_header = limit_header(&quoted_name, ("q", u64::from(burst)), ("w", window));
        RatePolicy {
            name: name.to_string(),
            rate_per_second,
            burst,
            scope: LimitScope::Local,
            on_store_error: StoreFailure::Open,
            // Only visible ASCII and `;`/`=` separators: always a valid header value.
            policy_header: HeaderValue::try_from(policy_header)
                .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
            quoted_name,
        }
    }

    /// The same policy counted in `scope`, failing as `on_store_error` says when its store
    /// cannot answer.
    pub fn scoped(self, scope: LimitScope, on_store_error: StoreFailure) -> RatePolicy {
        RatePolicy {
            scope,
            on_store_error,
            ..self
        }
    }

    /// Nanoseconds between two requests at the sustained rate.
    pub fn interval_ns(&self) -> u64 {
        (1e9 / self.rate_per_second).max(1.0) as u64
    }

    /// GCRA's tolerance for an `interval` in any unit: how far ahead of now the theoretical
    /// arrival time may be (`burst − 1` intervals) for a request to be allowed.
    pub fn tolerance(&self, interval: u64) -> u64 {
        interval.saturating_mul(u64::from(self.burst.saturating_sub(1)))
    }

    /// Time for an empty bucket to refill completely, in whole seconds (the policy window).
    pub fn window_seconds(&self) -> u64 {
        window_seconds(self.burst, self.rate_per_second)
    }

    /// `RateLimit-Policy` header value (draft-ietf-httpapi-ratelimit-headers), made once.
    pub fn policy_header(&self) -> &HeaderValue {
        &self.policy_header
    }

    /// A RateLimit header's value for this policy: its quoted name and two parameters
    /// (`"name";a=1;b=2`).
    pub fn limit_header(&self, first: (&str, u64), second: (&str, u64)) -> String {
        limit_header(&self.quoted_name, first, second)
    }
}

/// Time for an empty bucket of `burst` to refill at `rate_per_second`, in whole seconds.
fn window_seconds(burst: u32, rate_per_second: f64) -> u64 {
    ((f64::from(burst) / rate_per_second).ceil() as u64).max(1)
}

/// `quoted_name;a=1;b=2`, written into one string of the exact size (`format!` goes through
/// fmt's machinery and grows its string piece by piece; `RateLimit` is made per response).
fn limit_header(quoted_name: &str, first: (&str, u64), second: (&str, u64)) -> String {
    let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (a, b) = (a.format(first.1), b.format(second.1));
    let pieces = [quoted_name, ";", first.0, "=", a, ";", second.0, "=", b];
    let mut text = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        text.push_str(piece);
    }
    text
}

/// `text` as a structured-field string (RFC 8941): in quotes, with `"` and `\` escaped. A
/// string may hold only visible ASCII and spaces, so any other byte of the name (a route
/// prefix may be UTF-8) is written percent-encoded, as it would be in a URL.
fn quoted_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                quoted.push('\\');
                quoted.push(char::from(byte));
            }
            b' '..=b'~' => quoted.push(char::from(byte)),
            // Percent-encoded as in a URL (once per policy, at load).
            _ => {
                let _ = write!(quoted, "%{byte:02X}");
            }
        }
    }
    quoted.push('"');
    quoted
}

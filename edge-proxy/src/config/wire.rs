//! The config file as written: serde structs in kebab-case with named defaults, unknown keys
//! rejected. Nothing here is validated; [`super::validate`] turns these into [`super::Config`].

use std::collections::HashMap;

use serde::Deserialize;

use super::internal::{AuthMode, Balancer, BreakerConfig, LimitScope, StoreFailure};

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
    /// How instance host names are resolved.
    #[serde(default)]
    pub dns: DnsSection,
    /// Where `scope = "global"` rate limits are decided (Redis, Valkey, ElastiCache).
    #[serde(default)]
    pub redis: Option<RedisSection>,
    /// Span export (OpenTelemetry, OTLP over HTTP).
    #[serde(default)]
    pub tracing: TracingSection,
    /// The edge cache routes with `cache` share.
    #[serde(default)]
    pub cache: CacheSection,
}

/// `[cache]`: what cached routes have in common.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSection {
    /// Each cached route's memory budget, where the route sets none.
    pub memory_bytes: Option<usize>,
    /// Longest concurrent misses for one key wait for the first one's response.
    pub lock_timeout_ms: Option<u64>,
}

/// `[tracing]`: where the proxy's spans go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TracingSection {
    /// The collector's base URL, e.g. `http://127.0.0.1:4318`.
    pub endpoint: Option<String>,
    /// From 0.0 to 1.0: the share of new traces recorded.
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub queue_size: Option<usize>,
    pub export_timeout_ms: Option<u64>,
}

/// `[redis]`: the store shared by every replica for global rate limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisSection {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Longest one limiter call may take before the policy's `on-store-error` applies.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest a (re)connection may take.
    #[serde(default = "default_redis_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Most tokens a replica takes from Redis at once for one key.
    #[serde(default = "default_lease")]
    pub lease: u32,
    /// How long taken tokens stay usable; bounds how far over the limit the fleet can go.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_redis_timeout_ms() -> u64 {
    5
}

fn default_redis_connect_timeout_ms() -> u64 {
    200
}

fn default_lease() -> u32 {
    10
}

fn default_lease_ms() -> u64 {
    250
}

/// Instance host names are resolved off the request path, when an instance joins and again on
/// this interval; a host that stops resolving keeps its last good addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DnsSection {
    /// How often every instance's host is resolved again, in milliseconds.
    pub refresh_ms: u64,
    /// Longest a resolution may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            refresh_ms: 30_000,
            timeout_ms: 2_000,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSection {
    #[serde(default)]
    pub api_keys: Vec<ApiKeySection>,
    #[serde(default)]
    pub jwt: Option<JwtSection>,
    /// Forward the client's `Authorization` / `x-api-key` to the functions (off by default;
    /// never to `aws-iam` services).
    #[serde(default)]
    pub forward_credentials: bool,
    /// Failed authentications allowed per client address: guessing is slowed to this rate,
    /// checked before any credential is verified.
    #[serde(default)]
    pub failure_limit: FailureLimitSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct FailureLimitSection {
    /// On unless set to false.
    pub enabled: bool,
    /// Failed attempts a client address earns back per second.
    pub requests_per_second: f64,
    /// Failed attempts a client address may make at once.
    pub burst: u32,
}

impl Default for FailureLimitSection {
    fn default() -> Self {
        FailureLimitSection {
            enabled: true,
            requests_per_second: 1.0,
            burst: 30,
        }
    }
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
    /// JWKS URL, fetched at start and every `jwks-refresh-seconds`: `https` (plain `http` only
    /// to a loopback host), redirects only within the same origin.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Largest JWKS document accepted, in bytes (a larger one is refused whole).
    #[serde(default = "default_jwks_max_bytes")]
    pub jwks_max_bytes: usize,
    /// Most keys a JWKS may hold (one with more is refused whole).
    #[serde(default = "default_jwks_max_keys")]
    pub jwks_max_keys: usize,
    #[serde(default = "default_jwks_refresh_seconds")]
    pub jwks_refresh_seconds: u64,
    /// When set, tokens must carry `iss`, a string equal to this.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, tokens must carry `aud`, this string or an array containing it.
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

fn default_jwks_max_bytes() -> usize {
    64 * 1024
}

fn default_jwks_max_keys() -> usize {
    20
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
    /// `local` (each replica on its own) or `global` (shared through `[redis]`).
    #[serde(default)]
    pub scope: LimitScope,
    /// For a global limit, what happens while Redis cannot answer: `open` or `closed`.
    pub on_store_error: Option<StoreFailure>,
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
    #[serde(default)]
    pub scope: LimitScope,
    pub on_store_error: Option<StoreFailure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerSection {
    /// Public listener.
    pub listen: String,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, ...). A non-loopback address needs
    /// `admin-public = true` and `admin-token-sha256`.
    pub admin_listen: Option<String>,
    /// Allow the admin listener on a non-loopback address.
    pub admin_public: bool,
    /// Hex SHA-256 of the bearer token the admin listener requires for everything but
    /// `/healthz` and `/readyz` (required with `admin-public`).
    pub admin_token_sha256: Option<String>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` / `Forwarded` may name the client: a load
    /// balancer in front of this proxy. From anyone else those headers are not believed.
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are limited per network of this prefix length (one /64 is one client by
    /// default: a host gets a whole /64 and can rotate through it freely).
    pub ipv6_prefix_length: u8,
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
    /// How long an idle keep-alive connection waits for its next request, in seconds.
    pub keepalive_idle_seconds: u64,
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
            admin_public: false,
            admin_token_sha256: None,
            trusted_proxies: Vec::new(),
            ipv6_prefix_length: 64,
            threads: 2,
            grace_period_seconds: 1,
            graceful_shutdown_timeout_seconds: 2,
            client_timeout_ms: 10_000,
            head_timeout_ms: 10_000,
            keepalive_idle_seconds: 60,
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
    /// With `aws-iam`: also accept instances on loopback hosts (`http://localhost:PORT`), for
    /// the local stack in AWS's shape. Otherwise signed requests go only to `https` function
    /// URLs (`https://<id>.lambda-url.<region>.on.aws`).
    #[serde(default)]
    pub allow_loopback_function_urls: bool,
    #[serde(default)]
    pub health_check: HealthCheckSection,
    #[serde(default)]
    pub circuit_breaker: BreakerSection,
    #[serde(default)]
    pub retry: RetrySection,
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
    /// Serve this route's `GET`s from the edge cache (`[cache]`), as RFC 9111 allows.
    #[serde(default)]
    pub cache: Option<RouteCacheSection>,
}

/// A route's cache settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteCacheSection {
    /// How long a response the origin gave no freshness for (no `Cache-Control` max-age, no
    /// `Expires`) is fresh; unset: such responses are not stored.
    pub default_ttl_seconds: Option<u32>,
    /// Largest response body stored; larger ones are passed through.
    pub max_object_bytes: Option<usize>,
    /// Bytes of response bodies this route holds; past it its least recently used go.
    /// Unset: `[cache] memory-bytes`.
    pub memory_bytes: Option<usize>,
}

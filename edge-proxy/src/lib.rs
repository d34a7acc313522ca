//! The edge proxy: a Pingora server in front of the Lambda functions.
//!
//! - [`config`]: the TOML file, validated into typed config (errors name the field).
//! - [`downstream`]: the connection loop around Pingora's: head deadline, JSON for requests
//!   Pingora refuses itself.
//! - [`hygiene`]: framing and size checks before routing.
//! - [`routing`]: path prefix routing, traversal refusal, path and `Location` rewriting.
//! - [`upstream`]: instance URLs.
//! - [`pool`]: a service's live instances and the choice of one per attempt.
//! - [`breaker`]: the per-instance circuit breaker.
//! - [`retry`]: the per-service retry budget.
//! - [`discovery`] and [`registry`]: static instances plus the DynamoDB registry table.
//! - [`health`]: active health checks.
//! - [`metrics`]: Prometheus metrics.
//! - [`auth`]: API keys, JWT verification, scopes.
//! - [`ratelimit`]: GCRA rate limiting in bounded memory.
//! - [`proxy`]: the `ProxyHttp` implementation, phase by phase.
//! - [`error`]: the proxy's own JSON error responses.
//! - [`sigv4`]: SigV4 signing for `aws-iam` upstreams (Lambda function URLs).
//! - [`server`]: building and running the Pingora server.
//! - [`telemetry`]: log set-up; [`trace`]: request ids and W3C trace context.
//! - [`admin`]: the admin listener (`/healthz`, `/readyz`, `/metrics`).
//! - `fuzzing`: properties shared by the fuzz targets (`edge-proxy/fuzz`) and seed replays.

pub mod admin;
pub mod auth;
pub mod breaker;
pub mod config;
pub mod discovery;
pub mod downstream;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod hygiene;
pub mod jwks;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod registry;
pub mod retry;
pub mod routing;
pub mod server;
pub mod sigv4;
pub mod telemetry;
pub mod trace;
pub mod upstream;

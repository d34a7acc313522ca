//! The edge proxy: a Pingora server in front of the Lambda functions.
//!
//! - [`config`]: the TOML file, validated into typed config (errors name the field).
//! - [`routing`]: path prefix routing, traversal refusal, path and `Location` rewriting.
//! - [`upstream`]: instance URLs and instance selection per service.
//! - [`proxy`]: the `ProxyHttp` implementation, phase by phase.
//! - [`error`]: the proxy's own JSON error responses.
//! - [`server`]: building and running the Pingora server.
//! - [`telemetry`]: log set-up.

pub mod config;
pub mod error;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod upstream;

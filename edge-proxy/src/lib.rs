//! The edge proxy: a Pingora server in front of the Lambda functions.
//!
//! The crate is five areas whose dependencies point one way (a module never imports from an
//! area that depends on it; `tests/architecture.rs` checks this):
//!
//! ```text
//!                       server, cli            composition root, the command line
//!                           │
//!                         proxy                ProxyHttp phases, request context, hygiene,
//!                      ╱    │    ╲             routing, forwarding, JSON errors, the
//!                     ╱     │     ╲            downstream connection loop
//!            admission      │     upstream     auth, JWKS, rate limits │ pools, breakers,
//!                     ╲     │     ╱  │         retry budget, discovery, registry,
//!                      ╲    │    ╱   │         health checks, SigV4
//!                         config    ops        validated settings │ metrics, trace
//!                                              context, logs, admin listener
//! ```
//!
//! - [`config`]: the TOML file, validated into typed config (errors name the field).
//! - [`admission`]: API keys, JWT verification and JWKS, scopes, GCRA rate limiting.
//! - [`upstream`]: instance pools and balancing, circuit breakers, the retry budget, static and
//!   registry discovery, active health checks, SigV4 for function URLs.
//! - [`proxy`]: the `ProxyHttp` implementation and what it needs on the request path.
//! - [`ops`]: Prometheus metrics, request ids and trace context, logs, the admin listener.
//! - [`server`] builds and runs it all; [`cli`] is the command line; [`error`] is the crate's
//!   error type off the request path (on it, [`proxy::ProxyError`]).
//! - `fuzzing` (feature `fuzzing`): properties shared by the fuzz targets (`edge-proxy/fuzz`)
//!   and the seed replays `cargo test` runs.

pub mod admission;
pub mod cli;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod upstream;

pub use error::Error;

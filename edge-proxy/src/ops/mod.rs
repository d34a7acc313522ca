//! Operations: what operators read and run. Prometheus [`metrics`], request ids and W3C trace
//! context ([`trace`]) and their export ([`otlp`]), log set-up ([`telemetry`]) and the
//! [`access`] log, the [`admin`] listener, and the [`clock`] rate limits read. Depends on no
//! other area; the upstream area reports to the admin listener through
//! [`admin::UpstreamStatus`].

pub mod access;
pub mod admin;
pub mod clock;
pub mod metrics;
pub mod otlp;
pub mod telemetry;
pub mod trace;

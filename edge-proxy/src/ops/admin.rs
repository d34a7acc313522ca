//! The admin listener (default `127.0.0.1:9901`), separate from the public port, which never
//! routes to it. With `server.admin-token-sha256` set (required for a non-loopback address),
//! everything but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`.
//! - `GET /healthz`: the process is alive;
//! - `GET /readyz`: config loaded and every service has at least one usable instance (503 and
//!   the services that have none otherwise);
//! - `GET /metrics`: Prometheus text;
//! - `POST /reload`: re-read the config file (as `SIGHUP` does): 200 and what was applied, or
//!   422 and the refused field (the running config stays).
//! - `POST /cache/purge?prefix=/api/products`: drop every response the edge cache holds for a
//!   path starting with the prefix: 200 and how many.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::metrics::Metrics;

/// What the admin listener reports about the upstreams; the upstream area implements it, so
/// this area depends on no other.
pub trait UpstreamStatus: Send + Sync {
    /// Services with no usable instance right now, sorted.
    fn unready_services(&self) -> Vec<String>;
    /// Copies breaker and health state into the gauges, before the metrics are rendered.
    fn record_gauges(&self, metrics: &Metrics);
}

/// Reloads the config; the proxy area implements it.
pub trait ConfigReload: Send + Sync {
    /// A JSON summary of what was applied, or why the file was refused.
    fn reload(&self) -> Result<String, Refusal>;
}

/// The edge cache, as the admin listener sees it; the proxy area implements it.
#[async_trait]
pub trait CacheAdmin: Send + Sync {
    /// Purges what is held for paths starting with `prefix`; how many responses went.
    async fn purge_prefix(&self, prefix: &str) -> usize;
    /// Copies the cache's size and evictions into the gauges, before the metrics are rendered.
    fn record_gauges(&self, metrics: &Metrics);
}

/// Why a config file was refused: the field, in the file's spelling, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub upstreams: Arc<dyn UpstreamStatus>,
    /// `None`: the proxy was not started from a file, so there is nothing to re-read.
    pub reload: Option<Arc<dyn ConfigReload>>,
    pub cache: Option<Arc<dyn CacheAdmin>>,
    /// SHA-256 of the bearer token required beyond `/healthz` and `/readyz`, if any.
    pub token_sha256: Option<[u8; 32]>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

impl AdminApp {
    /// Whether the request carries the admin token (always, when none is configured).
    fn authorized(&self, request: &http::request::Parts) -> bool {
        let Some(expected) = &self.token_sha256 else {
            return true;
        };
        let presented = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        presented.is_some_and(|token| {
            let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            bool::from(hash.ct_eq(expected))
        })
    }

    /// `POST /cache/purge?prefix=/...`.
    async fn purge(&self, query: Option<&str>) -> Response<Vec<u8>> {
        let Some(cache) = &self.cache else {
            return respond(
                404,
                "application/json",
                br#"{"error":{"code":"not_found","message":"no edge cache"}}"#.to_vec(),
            );
        };
        let prefix = query
            .unwrap_or_default()
            .split('&')
            .find_map(|p| p.strip_prefix("prefix="))
            .filter(|p| p.starts_with('/') && !p.contains('%'));
        let Some(prefix) = prefix else {
            return respond(
                400,
                "application/json",
                br#"{"error":{"code":"bad_request","message":"give ?prefix=/path (a path starting with /, not percent-encoded)"}}"#
                    .to_vec(),
            );
        };
        let purged = cache.purge_prefix(prefix).await;
        self.metrics.cache_purged("admin", purged);
        let body = serde_json::json!({"status": "purged", "prefix": prefix, "purged": purged});
        respond(200, "application/json", body.to_string().into_bytes())
    }

    /// Services with no usable instance right now.
    pub fn unready_services(&self) -> Vec<String> {
        self.upstreams.unready_services()
    }

    /// Copies breaker and health state into the gauges, then renders every metric.
    pub fn metrics_text(&self) -> String {
        self.upstreams.record_gauges(&self.metrics);
        if let Some(cache) = &self.cache {
            cache.record_gauges(&self.metrics);
        }
        self.metrics.render()
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        let reload = matches!(request.uri.path(), "/reload" | "/cache/purge");
        let allowed = if reload {
            http::Method::POST
        } else {
            http::Method::GET
        };
        if request.method != allowed {
            let body: &[u8] = if reload {
                br#"{"error":{"code":"method_not_allowed","message":"POST only"}}"#
            } else {
                br#"{"error":{"code":"method_not_allowed","message":"GET only"}}"#
            };
            return respond(405, "application/json", body.to_vec());
        }
        let open = matches!(request.uri.path(), "/healthz" | "/readyz");
        if !open && !self.authorized(request) {
            let mut response = respond(
                401,
                "application/json",
                br#"{"error":{"code":"unauthorized","message":"missing or invalid admin token"}}"#
                    .to_vec(),
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"edge-admin\""),
            );
            return response;
        }
        match request.uri.path() {
            "/healthz" => respond(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                let unready = self.unready_services();
                if unready.is_empty() {
                    respond(200, "application/json", br#"{"status":"ready"}"#.to_vec())
                } else {
                    let body = serde_json::json!({"status": "not_ready", "services_without_instances": unready});
                    respond(503, "application/json", body.to_string().into_bytes())
                }
            }
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4",
                self.metrics_text().into_bytes(),
            ),
            "/cache/purge" => self.purge(request.uri.query()).await,
            "/reload" => match &self.reload {
                None => respond(
                    404,
                    "application/json",
                    br#"{"error":{"code":"not_found","message":"this proxy was not started from a config file"}}"#.to_vec(),
                ),
                Some(reloader) => match reloader.reload() {
                    Ok(summary) => respond(200, "application/json", summary.into_bytes()),
                    Err(error) => {
                        let body = serde_json::json!({"error": {"code": "config_refused", "message": error.message, "field": error.field}});
                        respond(422, "application/json", body.to_string().into_bytes())
                    }
                },
            },
            _ => respond(
                404,
                "application/json",
                br#"{"error":{"code":"not_found","message":"no such admin endpoint"}}"#.to_vec(),
            ),
        }
    }
}

//! The edge proxy itself: one [`ProxyHttp`] implementation, one method per request phase.
//!
//! - `request_filter`: route the path (400 for traversal, 404 for no route).
//! - `upstream_peer`: choose an instance of the route's service.
//! - `upstream_request_filter`: rewrite the path into the instance's space, set `Host` and the
//!   forwarding headers.
//! - `response_filter`: map `Location` back into the client's path space.
//! - `fail_to_proxy`: every failure becomes a JSON error (see [`crate::error`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::config::{Config, Route};
use crate::error::ProxyError;
use crate::routing::{client_location, upstream_path, RouteError, Router};
use crate::upstream::{Instance, ServicePool};

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    route: Option<Route>,
    pool: Option<Arc<ServicePool>>,
    instance: Option<Arc<Instance>>,
}

pub struct EdgeProxy {
    router: Router,
    pools: HashMap<String, Arc<ServicePool>>,
    client_timeout: std::time::Duration,
}

impl EdgeProxy {
    pub fn new(config: &Config) -> Result<EdgeProxy, String> {
        let pools = config
            .services
            .iter()
            .map(|(name, service)| {
                ServicePool::new(Arc::clone(service))
                    .map(|pool| (name.clone(), Arc::new(pool)))
                    .map_err(|e| format!("services.{name}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(EdgeProxy {
            router: Router::new(config.routes.clone()),
            pools,
            client_timeout: config.client_timeout,
        })
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            route: None,
            pool: None,
            instance: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        session.set_read_timeout(Some(self.client_timeout));
        let path = session.req_header().uri.path().to_string();
        let route = match self.router.route(&path) {
            Ok(route) => route.clone(),
            Err(RouteError::BadPath) => {
                ProxyError::BadRequest("malformed or non-canonical path")
                    .respond(session)
                    .await?;
                return Ok(true);
            }
            Err(RouteError::NoRoute) => {
                ProxyError::NotFound.respond(session).await?;
                return Ok(true);
            }
        };
        ctx.pool = self.pools.get(&route.service).cloned();
        ctx.route = Some(route);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "route has no service"))?;
        let instance = pool
            .select()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no instance available"))?;
        let peer = instance.peer(&pool.config);
        ctx.instance = Some(instance);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let (Some(route), Some(instance)) = (&ctx.route, &ctx.instance) else {
            return Error::e_explain(ErrorType::InternalError, "upstream request without a route");
        };
        let original = session.req_header().uri.clone();
        let mut path_and_query = upstream_path(&instance.url.base_path, route, original.path());
        if let Some(query) = original.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let uri = path_and_query
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "rewritten uri", e))?;
        upstream_request.set_uri(uri);
        upstream_request.insert_header("host", instance.url.host_header())?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let client_ip = addr.ip().to_string();
            let forwarded_for = match upstream_request
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(existing) => format!("{existing}, {client_ip}"),
                None => client_ip,
            };
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
        }
        upstream_request.insert_header("x-forwarded-proto", "http")?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(route) = &ctx.route {
            let rewritten = upstream_response
                .headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .and_then(|location| client_location(route, location));
            if let Some(location) = rewritten {
                upstream_response.insert_header("location", location)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(proxy_error) = ProxyError::from_pingora(error) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if let Err(write_error) = proxy_error.respond(session).await {
            tracing::debug!(error = %write_error, "could not write the error response");
        }
        FailToProxy {
            error_code: proxy_error.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let request = session.req_header();
        tracing::info!(
            target: "access",
            method = %request.method,
            path = %request.uri.path(),
            route = ctx.route.as_ref().map_or("-", |r| r.prefix.as_str()),
            status,
            latency_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            upstream = ctx.instance.as_ref().map(|i| i.url.to_string()).unwrap_or_default(),
            error = error.map(|e| e.to_string()).unwrap_or_default(),
            "request"
        );
    }
}

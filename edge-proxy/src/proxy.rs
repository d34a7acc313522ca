//! The edge proxy itself: one [`ProxyHttp`] implementation, one method per request phase.
//!
//! - `request_filter`: route the path (400 for traversal, 404 for no route).
//! - `upstream_peer`: choose an instance of the route's service (balancer, health, breaker,
//!   never one this request already tried); 503 at once if none is usable.
//! - `upstream_request_filter`: rewrite the path into the instance's space, set `Host` and the
//!   forwarding headers.
//! - `upstream_response_filter`: settle the attempt with the breaker; a failure status on an
//!   idempotent request is retried once on another instance, within the retry budget, unless
//!   the upstream sent `Retry-After` (it asked to be called back later: passed through).
//! - `fail_to_connect` / `error_while_proxy`: settle the attempt as failed and decide the retry:
//!   idempotent methods after any upstream failure, POST/PATCH only if never sent.
//! - `response_filter`: map `Location` back into the client's path space.
//! - `fail_to_proxy`: every failure becomes a JSON error (see [`crate::error`]).
//! - `logging`: the access-log line and request metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::auth::{AuthError, AuthMode, Authenticator, Identity};
use crate::config::{Config, Route};
use crate::discovery::static_specs;
use crate::error::ProxyError;
use crate::hygiene::{self, Limits};
use crate::metrics::Metrics;
use crate::pool::{Attempt, ServicePool};
use crate::ratelimit::{Decision, RateLimiter, RatePolicy};
use crate::routing::{client_location, upstream_path, RouteError, Router};
use crate::sigv4::{region_from_host, signed_headers, Signable, Signer};
use crate::trace::{request_id, TraceContext};

/// Attempts per request: the first try and at most one retry.
const MAX_ATTEMPTS: u32 = 2;

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    route: Option<Arc<Route>>,
    pool: Option<Arc<ServicePool>>,
    attempt: Option<Attempt>,
    tried: Vec<SocketAddr>,
    attempts: u32,
    upstream_started: Option<Instant>,
    /// Set when a phase has already decided whether the current failure is retried.
    retry_decided: Option<bool>,
    /// Seconds to advertise when no instance is usable.
    retry_after: u64,
    last_instance: Option<String>,
    identity: Option<Identity>,
    rate: Option<(Arc<RatePolicy>, Decision)>,
    /// `ok`, `missing`, `invalid`, `forbidden` or `public`, for the access log.
    auth_outcome: &'static str,
    request_id: String,
    trace: Option<TraceContext>,
    /// Request body bytes seen so far.
    body_bytes: usize,
    /// For JSON bodies: the UTF-8 check, carrying an incomplete sequence between chunks.
    utf8: Option<hygiene::Utf8Check>,
    /// The whole request body, read up front for upstreams that need it signed.
    signed_body: Option<Vec<u8>>,
}

impl RequestCtx {
    /// Upstream time of the attempt that just ended, into the metrics.
    fn end_upstream(&mut self, metrics: &Metrics) {
        if let (Some(started), Some(pool)) = (self.upstream_started.take(), &self.pool) {
            metrics.upstream(&pool.config.name, started.elapsed().as_secs_f64());
        }
    }
}

pub struct EdgeProxy {
    router: Router,
    pools: HashMap<String, Arc<ServicePool>>,
    client_timeout: Duration,
    limits: Limits,
    metrics: Arc<Metrics>,
    auth: Arc<Authenticator>,
    limiter: RateLimiter,
    forward_credentials: bool,
    signer: Option<Arc<Signer>>,
}

/// Identity headers the proxy sets; any a client sends are removed first.
const IDENTITY_HEADERS: [&str; 3] = ["x-consumer-id", "x-consumer-scopes", "x-auth-method"];

fn challenge(mode: AuthMode, error: AuthError) -> &'static str {
    match (mode, error) {
        (AuthMode::ApiKey, _) => "ApiKey realm=\"edge\"",
        (AuthMode::Jwt, AuthError::Invalid) => "Bearer realm=\"edge\", error=\"invalid_token\"",
        (AuthMode::Jwt, _) => "Bearer realm=\"edge\"",
        _ => "Bearer realm=\"edge\", ApiKey realm=\"edge\"",
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

impl EdgeProxy {
    /// Builds the proxy with one pool per service, holding its static instances; discovery adds
    /// registry instances later.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        auth: Arc<Authenticator>,
        signer: Option<Arc<Signer>>,
    ) -> EdgeProxy {
        let pools = config
            .services
            .iter()
            .map(|(name, service)| {
                let pool = Arc::new(ServicePool::new(Arc::clone(service)));
                pool.update(&static_specs(&pool));
                (name.clone(), pool)
            })
            .collect();
        EdgeProxy {
            router: Router::new(config.routes.clone()),
            pools,
            client_timeout: config.client_timeout,
            limits: config.limits,
            metrics,
            auth,
            limiter: RateLimiter::new(config.rate_limit_cells),
            forward_credentials: config.auth.forward_credentials,
            signer,
        }
    }

    /// Authenticates, authorizes and rate limits; `Some(error)` when the request is refused.
    fn admit(
        &self,
        session: &Session,
        route: &Route,
        ctx: &mut RequestCtx,
    ) -> Option<(ProxyError, Vec<(&'static str, String)>)> {
        let headers = &session.req_header().headers;
        let identity = match self.auth.authenticate(route.auth, headers) {
            Ok(identity) => identity,
            Err(error) => {
                ctx.auth_outcome = if error == AuthError::Missing {
                    "missing"
                } else {
                    "invalid"
                };
                self.metrics.auth_rejected(&route.prefix, 401);
                return Some((
                    ProxyError::Unauthorized {
                        challenge: challenge(route.auth, error),
                    },
                    Vec::new(),
                ));
            }
        };
        if let Some(identity) = &identity {
            if Authenticator::authorize(identity, &route.scopes).is_err() {
                ctx.auth_outcome = "forbidden";
                self.metrics.auth_rejected(&route.prefix, 403);
                return Some((ProxyError::Forbidden, Vec::new()));
            }
        }
        ctx.auth_outcome = if identity.is_some() { "ok" } else { "public" };
        if let Some(policy) = &route.rate_limit {
            let key = match &identity {
                Some(identity) => format!("consumer:{}", identity.consumer),
                None => format!(
                    "ip:{}",
                    session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map_or_else(String::new, |a| a.ip().to_string())
                ),
            };
            let decision = self.limiter.check(policy, &key, Instant::now());
            ctx.rate = Some((Arc::clone(policy), decision));
            if let Decision::Limited {
                retry_after_seconds,
                ..
            } = decision
            {
                self.metrics.rate_limited(&route.prefix);
                let headers = vec![
                    ("ratelimit-policy", policy.policy_header()),
                    ("ratelimit", decision.header(policy)),
                ];
                return Some((
                    ProxyError::RateLimited {
                        retry_after: retry_after_seconds,
                    },
                    headers,
                ));
            }
        }
        ctx.identity = identity;
        None
    }

    pub fn pools(&self) -> Vec<Arc<ServicePool>> {
        self.pools.values().cloned().collect()
    }

    /// Adds the SigV4 headers for the chosen instance.
    async fn sign(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> pingora::Result<()> {
        let refuse = |why: String| {
            tracing::error!(request_id = %ctx.request_id, error = %why, "cannot sign the upstream request");
            Error::explain(
                ErrorType::HTTPStatus(502),
                "upstream request could not be signed",
            )
        };
        let (Some(pool), Some(attempt), Some(signer)) = (&ctx.pool, &ctx.attempt, &self.signer)
        else {
            return Err(refuse("no signer".into()));
        };
        let url = &attempt.instance.url;
        let region = region_from_host(&url.host)
            .or_else(|| pool.config.aws_region.clone())
            .ok_or_else(|| refuse(format!("no region for {url}")))?;
        let credentials = signer.credentials().await.map_err(refuse)?;
        let scheme = if url.tls { "https" } else { "http" };
        let host = url.host_header();
        let target = upstream_request
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url_text = format!("{scheme}://{host}{target}");
        let signable = Signable {
            method: upstream_request.method.as_str(),
            url: &url_text,
            host: &host,
            body: ctx.signed_body.as_deref().unwrap_or_default(),
        };
        let headers = signed_headers(
            &credentials,
            &region,
            "lambda",
            signable,
            std::time::SystemTime::now(),
        )
        .map_err(refuse)?;
        upstream_request.remove_header("authorization");
        for (name, value) in headers {
            upstream_request.insert_header(name, value)?;
        }
        Ok(())
    }

    /// Whether the failed attempt may be retried on another instance; takes a retry from the
    /// budget if so.
    fn may_retry(&self, session: &Session, ctx: &RequestCtx, request_sent: bool) -> bool {
        let Some(pool) = &ctx.pool else { return false };
        if !pool.config.retry.enabled || ctx.attempts >= MAX_ATTEMPTS {
            return false;
        }
        let method = &session.req_header().method;
        if request_sent && (!is_idempotent(method) || session.as_ref().retry_buffer_truncated()) {
            return false;
        }
        let now = Instant::now();
        let another = pool
            .instances()
            .iter()
            .any(|i| !ctx.tried.contains(&i.addr) && i.usable(now));
        another && pool.retry_budget.try_withdraw()
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
            attempt: None,
            tried: Vec::new(),
            attempts: 0,
            upstream_started: None,
            retry_decided: None,
            retry_after: 1,
            last_instance: None,
            identity: None,
            rate: None,
            auth_outcome: "-",
            request_id: String::new(),
            trace: None,
            body_bytes: 0,
            utf8: None,
            signed_body: None,
        }
    }

    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // From here on, this request's responses are ours (see `downstream`).
        crate::downstream::admit();
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        session.set_read_timeout(Some(self.client_timeout));
        let headers = &session.req_header().headers;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        ctx.request_id = request_id(header("x-request-id"));
        ctx.trace = Some(TraceContext::from_headers(
            header("traceparent"),
            header("tracestate"),
        ));
        if let Err(error) = hygiene::check(session.req_header(), &self.limits) {
            error
                .respond_with(session, &[("x-request-id", ctx.request_id.clone())])
                .await?;
            return Ok(true);
        }
        if hygiene::declares_json(session.req_header()) {
            ctx.utf8 = Some(hygiene::Utf8Check::default());
        }
        let path = session.req_header().uri.path().to_string();
        let route = match self.router.route(&path) {
            Ok(route) => Arc::clone(route),
            Err(RouteError::BadPath) => {
                ProxyError::BadRequest("malformed or non-canonical path")
                    .respond_with(session, &[("x-request-id", ctx.request_id.clone())])
                    .await?;
                return Ok(true);
            }
            Err(RouteError::NoRoute) => {
                ProxyError::NotFound
                    .respond_with(session, &[("x-request-id", ctx.request_id.clone())])
                    .await?;
                return Ok(true);
            }
        };
        if let Some((error, mut headers)) = self.admit(session, &route, ctx) {
            ctx.route = Some(route);
            headers.push(("x-request-id", ctx.request_id.clone()));
            error.respond_with(session, &headers).await?;
            return Ok(true);
        }
        if let Some(pool) = self.pools.get(&route.service) {
            pool.retry_budget.deposit();
            ctx.pool = Some(Arc::clone(pool));
        }
        if is_idempotent(&session.req_header().method) {
            session.as_mut().enable_retry_buffering();
        }
        if ctx.pool.as_ref().is_some_and(|p| p.config.aws_iam) {
            // SigV4 for function URLs covers the body hash, so read the body before signing.
            // Pingora forwards it from the retry buffer, which bounds it (64 KiB).
            session.as_mut().enable_retry_buffering();
            let mut body = Vec::new();
            while let Some(chunk) = session.read_request_body().await? {
                body.extend_from_slice(&chunk);
                if body.len() > self.limits.max_body_bytes
                    || session.as_ref().retry_buffer_truncated()
                {
                    ctx.route = Some(route);
                    ProxyError::PayloadTooLarge
                        .respond_with(session, &[("x-request-id", ctx.request_id.clone())])
                        .await?;
                    return Ok(true);
                }
            }
            ctx.signed_body = Some(body);
        }
        ctx.route = Some(route);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len());
        if ctx.body_bytes > self.limits.max_body_bytes {
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body over the limit",
            ));
        }
        if let Some(check) = ctx.utf8.as_mut() {
            let valid = check.feed(body.as_deref().unwrap_or_default(), end_of_stream);
            if !valid {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(400),
                    "JSON body is not UTF-8",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "route has no service"))?;
        ctx.attempt = None;
        ctx.retry_decided = None;
        if ctx.attempts > 0 {
            self.metrics.retry(&pool.config.name);
        }
        let elapsed = ctx.started.elapsed();
        let Some(remaining) = pool
            .config
            .total_timeout
            .checked_sub(elapsed)
            .filter(|d| !d.is_zero())
        else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                "total timeout spent",
            ));
        };
        let attempt = pool
            .select(&ctx.tried, Instant::now())
            .map_err(|unavailable| {
                ctx.retry_after = unavailable.retry_after;
                Error::explain(ErrorType::HTTPStatus(503), "no usable instance")
            })?;
        let instance = Arc::clone(&attempt.instance);
        ctx.tried.push(instance.addr);
        ctx.attempts += 1;
        ctx.last_instance = Some(instance.url.to_string());
        ctx.attempt = Some(attempt);
        ctx.upstream_started = Some(Instant::now());
        let peer = instance.peer(
            pool.config.connect_timeout.min(remaining),
            pool.config.read_timeout.min(remaining),
        );
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let (Some(route), Some(attempt)) = (&ctx.route, &ctx.attempt) else {
            return Error::e_explain(ErrorType::InternalError, "upstream request without a route");
        };
        let url = &attempt.instance.url;
        let original = session.req_header().uri.clone();
        let mut path_and_query = upstream_path(&url.base_path, route, original.path());
        if let Some(query) = original.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let uri = path_and_query
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "rewritten uri", e))?;
        upstream_request.set_uri(uri);
        upstream_request.insert_header("host", url.host_header())?;
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
        // Identity comes only from the proxy: drop whatever the client claimed.
        for name in IDENTITY_HEADERS {
            upstream_request.remove_header(name);
        }
        if !self.forward_credentials {
            upstream_request.remove_header("authorization");
            upstream_request.remove_header("x-api-key");
        }
        upstream_request.insert_header("x-request-id", ctx.request_id.as_str())?;
        upstream_request.remove_header("tracestate");
        if let Some(trace) = &ctx.trace {
            upstream_request.insert_header("traceparent", trace.traceparent())?;
            if let Some(state) = &trace.tracestate {
                upstream_request.insert_header("tracestate", state.as_str())?;
            }
        }
        if let Some(identity) = &ctx.identity {
            upstream_request.insert_header("x-consumer-id", identity.consumer.as_str())?;
            upstream_request.insert_header("x-consumer-scopes", identity.scopes.join(" "))?;
            upstream_request.insert_header("x-auth-method", identity.method)?;
        }
        for hop_by_hop in [
            "connection",
            "keep-alive",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ] {
            upstream_request.remove_header(hop_by_hop);
        }
        if ctx.pool.as_ref().is_some_and(|p| p.config.aws_iam) {
            // Last, so nothing set above changes what was signed.
            if let Err(error) = self.sign(upstream_request, ctx).await {
                ctx.retry_decided = Some(false);
                return Err(error);
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let status = upstream_response.status.as_u16();
        let Some(pool) = ctx.pool.clone() else {
            return Ok(());
        };
        if pool.config.aws_iam && (status == 401 || status == 403) {
            // The upstream refused the proxy's own signature: not the client's fault, and not
            // something another try fixes.
            tracing::error!(request_id = %ctx.request_id, status, service = %pool.config.name, "signed upstream refused the request");
            ctx.end_upstream(&self.metrics);
            ctx.retry_decided = Some(false);
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "upstream refused the signature",
            ));
        }
        let failure = pool.config.failure_statuses.contains(&status);
        ctx.end_upstream(&self.metrics);
        if let Some(attempt) = ctx.attempt.as_mut() {
            if failure {
                attempt.failed();
            } else {
                attempt.succeeded();
            }
        }
        // A failure that carries Retry-After is the upstream's deliberate answer ("come back
        // in n seconds", e.g. the functions' 503 while DynamoDB is unreachable, which every
        // instance shares): retrying it at once elsewhere would only double the wait.
        let deliberate = upstream_response
            .headers
            .contains_key(http::header::RETRY_AFTER);
        if failure && !deliberate && self.may_retry(session, ctx, true) {
            ctx.retry_decided = Some(true);
            let mut error =
                Error::explain(ErrorType::HTTPStatus(status), "retryable upstream status");
            error.set_retry(true);
            error.as_up();
            return Err(error);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.end_upstream(&self.metrics);
        if let Some(attempt) = ctx.attempt.as_mut() {
            attempt.failed();
        }
        // Nothing was sent: any method may go to another instance.
        let retry = self.may_retry(session, ctx, false);
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if let Some(decided) = ctx.retry_decided.take() {
            e.set_retry(decided);
            return e;
        }
        ctx.end_upstream(&self.metrics);
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        if upstream_fault {
            if let Some(attempt) = ctx.attempt.as_mut() {
                attempt.failed();
            }
        }
        let retry = upstream_fault && self.may_retry(session, ctx, true);
        e.set_retry(retry);
        e
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
        upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some((policy, decision)) = &ctx.rate {
            upstream_response.insert_header("ratelimit-policy", policy.policy_header())?;
            upstream_response.insert_header("ratelimit", decision.header(policy))?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let proxy_error = match error.etype() {
            ErrorType::HTTPStatus(503) => Some(ProxyError::Unavailable {
                retry_after: ctx.retry_after,
            }),
            _ => ProxyError::from_pingora(error),
        };
        let Some(proxy_error) = proxy_error else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if let Err(write_error) = proxy_error
            .respond_and_close(session, &[("x-request-id", ctx.request_id.clone())])
            .await
        {
            tracing::debug!(error = %write_error, "could not write the error response");
        }
        FailToProxy {
            error_code: proxy_error.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        // Release the instance (in-flight count, unsettled probe).
        ctx.attempt = None;
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let request = session.req_header();
        let route = ctx.route.as_ref().map_or("-", |r| r.prefix.as_str());
        let latency = ctx.started.elapsed().as_secs_f64();
        self.metrics
            .request(route, request.method.as_str(), status, latency);
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            trace_id = ctx.trace.as_ref().map_or("-", |t| t.trace_id.as_str()),
            method = %request.method,
            path = %request.uri.path(),
            route,
            status,
            latency_ms = latency * 1000.0,
            upstream = ctx.last_instance.as_deref().unwrap_or("-"),
            retries = ctx.attempts.saturating_sub(1),
            consumer = ctx.identity.as_ref().map_or("-", |i| i.consumer.as_str()),
            auth = ctx.auth_outcome,
            rate_limited = status == 429 && ctx.rate.is_some(),
            error = error.map(|e| e.to_string()).unwrap_or_default(),
            "request"
        );
    }
}

//! The proxy itself: one [`ProxyHttp`] implementation, one method per request phase, with the
//! per-request [`context`], request [`hygiene`], [`routing`], header [`forwarding`], the JSON
//! [`error`] answers and the [`downstream`] connection loop around Pingora's. Depends on
//! `config`, `admission`, `upstream` and `ops`.
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
//! - `fail_to_proxy`: every failure becomes a JSON error (see [`error`]); a [`ProxyError`]
//!   raised in a phase travels as the cause of Pingora's error and is answered as it is.
//! - `request_cache_filter` .. `should_serve_stale`: the edge [`cache`] on routes that have
//!   one, after auth and rate limits (Pingora looks in the cache after `request_filter`).
//! - `logging`: the access-log line and request metrics.

mod admit;
pub mod cache;
pub mod client;
pub mod context;
pub mod downstream;
pub mod error;
pub mod forwarding;
pub mod hygiene;
pub mod reload;
pub mod routing;
pub mod state;
pub mod timer_floor;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use opentelemetry::KeyValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use arc_swap::ArcSwap;

use crate::admission::auth::X_API_KEY;
use crate::admission::ratelimit::RateLimiter;
use crate::config::Route;
use crate::ops::access::{self, AccessLine};
use crate::ops::clock::Clock;
use crate::ops::metrics::{Metrics, RouteMetrics};
use crate::ops::trace::{HexIds, RequestId, RequestTrace, Tracer};
use crate::upstream::pool::ServicePool;
use crate::upstream::sigv4::{sign_request, Signer};
use cache::{EdgeCache, Outcome};
use context::RequestCtx;
pub use error::ProxyError;
use forwarding::{Forwarding, X_REQUEST_ID};
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use routing::{client_location, RouteError};
pub use state::{ProxyState, StateDeps};

/// Attempts per request: the first try and at most one retry.
pub(crate) const MAX_ATTEMPTS: u32 = 2;

/// `-` in the access log, for what a request did not have.
const NONE: &str = "-";

/// A route and the pool of the service it goes to, joined once when the proxy is built.
#[derive(Debug)]
pub struct RouteTarget {
    pub route: Route,
    pub pool: Arc<ServicePool>,
    /// The route's request series and its service's upstream series.
    pub metrics: RouteMetrics,
}

impl AsRef<Route> for RouteTarget {
    fn as_ref(&self) -> &Route {
        &self.route
    }
}

pub struct EdgeProxy {
    /// The current config's state; a reload swaps it, a request keeps the one it started with.
    state: Arc<ArcSwap<ProxyState>>,
    metrics: Arc<Metrics>,
    /// Per-replica limits. Kept across reloads: a changed policy applies to the same cells.
    limiter: RateLimiter,
    clock: Arc<dyn Clock>,
    signer: Option<Arc<Signer>>,
    tracer: Tracer,
    cache: Option<&'static EdgeCache>,
}

/// A request body that could not be read whole: the client's fault (bad framing, a stall), so
/// a 4xx, unless the client is gone and nothing can be answered.
fn unreadable_body(error: Box<Error>) -> Box<Error> {
    match error.etype() {
        ErrorType::ConnectionClosed => error,
        ErrorType::ReadTimedout => ProxyError::RequestTimeout.into_pingora(),
        _ => ProxyError::BadRequest("the request body is malformed").into_pingora(),
    }
}

/// Methods that change nothing (RFC 9110 section 9.2.1): any other purges the cache.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

impl EdgeProxy {
    /// The proxy over `state`, with a per-replica limiter of `rate_limit_cells` cells.
    pub fn new(
        state: ProxyState,
        rate_limit_cells: usize,
        metrics: Arc<Metrics>,
        signer: Option<Arc<Signer>>,
        clock: Arc<dyn Clock>,
    ) -> EdgeProxy {
        EdgeProxy {
            state: Arc::new(ArcSwap::from_pointee(state)),
            metrics,
            limiter: RateLimiter::starting_at(rate_limit_cells, clock.now()),
            clock,
            signer,
            tracer: Tracer::off(),
            cache: None,
        }
    }

    /// Serves cached routes from `cache`.
    pub fn with_cache(mut self, cache: &'static EdgeCache) -> EdgeProxy {
        self.cache = Some(cache);
        self
    }

    /// Records and exports spans with `tracer` (default: ids propagated, nothing recorded).
    pub fn with_tracer(mut self, tracer: Tracer) -> EdgeProxy {
        self.tracer = tracer;
        self
    }

    /// The cell a reload stores a new state in.
    pub fn state(&self) -> Arc<ArcSwap<ProxyState>> {
        Arc::clone(&self.state)
    }

    /// Adds the SigV4 headers for the chosen instance.
    async fn sign(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> pingora::Result<()> {
        let refuse = |why: &dyn std::fmt::Display| {
            let (trace_id, span_id) = ctx.trace_ids();
            tracing::error!(request_id = %ctx.request_id, trace_id, span_id, error = %why, "cannot sign the upstream request");
            ProxyError::BadGateway.into_pingora()
        };
        let (Some(target), Some(attempt), Some(signer)) = (&ctx.route, &ctx.attempt, &self.signer)
        else {
            return Err(refuse(&"no signer"));
        };
        let url = &attempt.instance.url;
        let region = url
            .function_url_region()
            .or_else(|| target.pool.config.aws_region.clone())
            .ok_or_else(|| refuse(&format!("no region for {url}")))?;
        let body = ctx.signed_body.as_deref().unwrap_or_default();
        sign_request(signer, url, &region, upstream_request, body)
            .await
            .map_err(|e| refuse(&e))
    }

    /// Whether the failed attempt may be retried on another instance; takes a retry from the
    /// budget if so.
    fn may_retry(&self, session: &Session, ctx: &RequestCtx, request_sent: bool) -> bool {
        let Some(target) = &ctx.route else {
            return false;
        };
        let pool = &target.pool;
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
            .any(|i| !ctx.tried.contains(&i.id) && i.usable(now));
        another && pool.retry_budget.try_withdraw()
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.load_full())
    }

    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // From here on, this request's responses are ours (see `downstream`).
        downstream::admit();
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let state = Arc::clone(&ctx.state);
        session.set_read_timeout(Some(state.config.server.client_timeout));
        let headers = &session.req_header().headers;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        ctx.request_id = RequestId::of(headers.get(&X_REQUEST_ID));
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client = state.client.of(peer, headers);
        let mut trace = self
            .tracer
            .start(headers, session.req_header().method.as_str());
        trace.server_attributes(|| {
            let request = session.req_header();
            let mut attributes = vec![
                KeyValue::new("http.request.method", request.method.to_string()),
                KeyValue::new("url.path", request.uri.path().to_string()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("network.protocol.version", "1.1"),
            ];
            if let Some(ip) = ctx.client {
                attributes.push(KeyValue::new("client.address", ip.to_string()));
            }
            if let Some(agent) = header("user-agent") {
                attributes.push(KeyValue::new("user_agent.original", agent.to_string()));
            }
            attributes
        });
        ctx.trace = Some(trace);
        if let Err(error) = hygiene::check(session.req_header(), &state.config.server.limits) {
            error
                .respond_with(session, &[("x-request-id", ctx.request_id.to_string())])
                .await?;
            return Ok(true);
        }
        if hygiene::declares_json(session.req_header()) {
            ctx.utf8 = Some(hygiene::Utf8Check::default());
        }
        let target = match state.router.route(session.req_header().uri.path()) {
            Ok(target) => Arc::clone(target),
            Err(RouteError::BadPath) => {
                ProxyError::BadRequest("malformed or non-canonical path")
                    .respond_with(session, &[("x-request-id", ctx.request_id.to_string())])
                    .await?;
                return Ok(true);
            }
            Err(RouteError::NoRoute) => {
                ProxyError::NotFound
                    .respond_with(session, &[("x-request-id", ctx.request_id.to_string())])
                    .await?;
                return Ok(true);
            }
        };
        ctx.route = Some(Arc::clone(&target));
        if let Some((error, mut headers)) = self.admit(session, &state, &target.route, ctx).await {
            headers.push(("x-request-id", ctx.request_id.to_string()));
            error.respond_with(session, &headers).await?;
            return Ok(true);
        }
        target.pool.retry_budget.deposit();
        if is_idempotent(&session.req_header().method) {
            session.as_mut().enable_retry_buffering();
        }
        if target.pool.config.aws_iam {
            // SigV4 for function URLs covers the body hash, so read the body before signing.
            // Pingora forwards it from the retry buffer, which bounds it (64 KiB).
            session.as_mut().enable_retry_buffering();
            let mut body = Vec::new();
            while let Some(chunk) = session.read_request_body().await.map_err(unreadable_body)? {
                body.extend_from_slice(&chunk);
                if body.len() > state.config.server.limits.max_body_bytes
                    || session.as_ref().retry_buffer_truncated()
                {
                    ProxyError::PayloadTooLarge
                        .respond_with(session, &[("x-request-id", ctx.request_id.to_string())])
                        .await?;
                    return Ok(true);
                }
            }
            ctx.signed_body = Some(body);
        }
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
        if ctx.body_bytes > ctx.state.config.server.limits.max_body_bytes {
            return Err(ProxyError::PayloadTooLarge.into_pingora());
        }
        if let Some(check) = ctx.utf8.as_mut() {
            let valid = check.feed(body.as_deref().unwrap_or_default(), end_of_stream);
            if !valid {
                return Err(ProxyError::BadRequest("JSON body is not UTF-8").into_pingora());
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(target) = ctx.route.clone() else {
            return Err(ProxyError::Internal.into_pingora());
        };
        let pool = &target.pool;
        ctx.attempt = None;
        ctx.retry_decided = None;
        if ctx.attempts > 0 {
            self.metrics.retry(&pool.config.name);
        }
        // One clock read for the budget left, the balancer and the attempt's start.
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(ctx.started);
        let Some(remaining) = pool
            .config
            .total_timeout
            .checked_sub(elapsed)
            .filter(|d| !d.is_zero())
        else {
            return Err(ProxyError::GatewayTimeout.into_pingora());
        };
        let attempt = pool.select(&ctx.tried, now).map_err(|unavailable| {
            ProxyError::Unavailable {
                retry_after: unavailable.retry_after,
            }
            .into_pingora()
        })?;
        let instance = Arc::clone(&attempt.instance);
        ctx.tried.push(instance.id);
        ctx.attempts += 1;
        ctx.last_instance = Some(Arc::clone(&instance));
        if let Some(trace) = ctx.trace.as_mut() {
            trace.begin_attempt(
                session.req_header().method.as_str(),
                &instance.url.host,
                instance.url.port,
                ctx.attempts - 1,
            );
        }
        ctx.attempt = Some(attempt);
        ctx.upstream_started = Some(now);
        let peer = instance
            .peer(
                pool.config.connect_timeout.min(remaining),
                pool.config.read_timeout.min(remaining),
            )
            .ok_or_else(|| ProxyError::Unavailable { retry_after: 1 }.into_pingora())?;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let (Some(target), Some(attempt)) = (&ctx.route, &ctx.attempt) else {
            return Err(ProxyError::Internal.into_pingora());
        };
        Forwarding {
            route: &target.route,
            url: &attempt.instance.url,
            host: &attempt.instance.host,
            request_id: &ctx.request_id,
            trace: ctx.trace.as_ref(),
            identity: ctx.identity.as_deref(),
            forward_credentials: ctx.state.config.auth.forward_credentials,
            signed: target.pool.config.aws_iam,
        }
        .apply(session, upstream_request)?;
        if let Some(trace) = ctx.trace.as_mut().filter(|t| t.is_recording()) {
            let url = &attempt.instance.url;
            let scheme = if url.tls { "https" } else { "http" };
            let authority = attempt.instance.host.to_str().unwrap_or_default();
            let full = format!("{scheme}://{authority}{}", upstream_request.uri);
            trace.attempt_attribute(|| KeyValue::new("url.full", full));
        }
        if target.pool.config.aws_iam {
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
        if let Some(trace) = ctx.trace.as_mut() {
            trace.attempt_status(status);
        }
        let Some(target) = ctx.route.clone() else {
            return Ok(());
        };
        let pool = &target.pool;
        if pool.config.aws_iam && (status == 401 || status == 403) {
            // The upstream refused the proxy's own signature: not the client's fault, and not
            // something another try fixes.
            let (trace_id, span_id) = ctx.trace_ids();
            tracing::error!(request_id = %ctx.request_id, trace_id, span_id, status, service = %pool.config.name, "signed upstream refused the request");
            ctx.end_upstream();
            ctx.retry_decided = Some(false);
            return Err(ProxyError::BadGateway.into_pingora());
        }
        let failure = pool.config.failure_statuses.contains(&status);
        let now = ctx.end_upstream();
        let method = &session.req_header().method;
        if let Some(cache) = self.cache.filter(|_| status < 400 && !is_safe(method)) {
            // Before the write's response reaches the client: a read after it is never stale.
            let purged = cache.purge_for_write(session.req_header().uri.path()).await;
            self.metrics.cache_purged("write", purged);
        }
        if let Some(attempt) = ctx.attempt.as_mut() {
            if failure {
                attempt.failed(now);
            } else {
                attempt.succeeded(now);
            }
        }
        // A failure that carries Retry-After is the upstream's deliberate answer ("come back
        // in n seconds", e.g. the functions' 503 while DynamoDB is unreachable, which every
        // instance shares): retrying it at once elsewhere would only double the wait. (Looked
        // up only for a failure.)
        if failure
            && !upstream_response
                .headers
                .contains_key(http::header::RETRY_AFTER)
            && self.may_retry(session, ctx, true)
        {
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
        let now = ctx.end_upstream();
        if let Some(trace) = ctx.trace.as_mut() {
            trace.end_attempt(None, Some(e.etype().as_str()));
        }
        if let Some(attempt) = ctx.attempt.as_mut() {
            attempt.failed(now);
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
        let now = ctx.end_upstream();
        if let Some(trace) = ctx.trace.as_mut() {
            trace.end_attempt(None, Some(e.etype().as_str()));
        }
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        if upstream_fault {
            if let Some(attempt) = ctx.attempt.as_mut() {
                attempt.failed(now);
            }
        }
        let retry = upstream_fault && self.may_retry(session, ctx, true);
        e.set_retry(retry);
        e
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let mut added = ResponseHeaders::default();
        if let Some(target) = &ctx.route {
            added.location = upstream_response
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| client_location(&target.route, location));
        }
        if let (Some(cache), Some(target)) = (self.cache, &ctx.route) {
            if target.route.cache.is_some() {
                let outcome = *ctx.cache.get_or_insert_with(|| Outcome::of(session));
                if matches!(outcome, Outcome::Miss | Outcome::Expired) && session.cache.enabled() {
                    let path = session.req_header().uri.path();
                    cache.remember(path, session.cache.cache_key().to_compact());
                }
                let meta = matches!(outcome, Outcome::Hit | Outcome::Stale)
                    .then(|| session.cache.cache_meta());
                added.cache_status = Some(outcome.cache_status(meta));
            }
        }
        if let Some((policy, decision)) = &ctx.rate {
            added.rate = Some((policy.policy_header().clone(), decision.header(policy)));
        }
        added.apply(upstream_response, &ctx.request_id)
    }

    fn request_cache_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let (Some(cache), Some(target)) = (self.cache, &ctx.route) else {
            return Ok(());
        };
        let Some(settings) = target.route.cache else {
            return Ok(());
        };
        if session.req_header().method != Method::GET {
            ctx.cache = Some(Outcome::Bypass);
            return Ok(());
        }
        ctx.cache_epoch = cache.enable(session, &settings);
        Ok(())
    }

    fn cache_key_callback(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<CacheKey> {
        Ok(EdgeCache::key(
            session.req_header(),
            ctx.route.as_ref().map_or("", |t| t.route.prefix.as_str()),
        ))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        response: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<RespCacheable> {
        let settings = ctx.route.as_ref().and_then(|t| t.route.cache);
        let (Some(cache), Some(settings)) = (self.cache, settings) else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        // Credentials reach the origin only when the config forwards them.
        let headers = &session.req_header().headers;
        let credentials = ctx.state.config.auth.forward_credentials
            && (headers.contains_key(http::header::AUTHORIZATION)
                || headers.contains_key(&X_API_KEY));
        Ok(cache.cacheable(response, &settings, credentials, ctx.cache_epoch))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        request: &RequestHeader,
    ) -> Option<HashBinary> {
        EdgeCache::variance(meta, request)
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        // Whenever the stored response allows it (stale-if-error, stale-while-revalidate; the
        // cache checks the windows): an instance down, a breaker open, or no instance at all.
        if error.is_some() {
            // Pingora closes the client's connection after a stale copy served for a failed
            // attempt; saying so (`Connection: close`) keeps a client from sending its next
            // request on a connection about to close (it would fail, not be retried).
            session.set_keepalive(None);
        }
        true
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(proxy_error) = ProxyError::from_pingora(error) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if let Err(write_error) = proxy_error
            .respond_and_close(session, &[("x-request-id", ctx.request_id.to_string())])
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
        let route = ctx.route.as_ref().map_or("-", |r| r.route.prefix.as_str());
        let latency = ctx.started.elapsed().as_secs_f64();
        match &ctx.route {
            Some(target) => target
                .metrics
                .request(request.method.as_str(), status, latency),
            None => self
                .metrics
                .request("-", request.method.as_str(), status, latency),
        }
        if let (Some(outcome), Some(target)) = (ctx.cache, &ctx.route) {
            target.metrics.cache(outcome.index(), outcome.as_str());
        }
        if let Some(trace) = ctx.trace.as_mut() {
            let route = ctx.route.as_ref().map(|r| r.route.prefix.as_str());
            let kind = error.map(|e| e.etype().as_str());
            trace.finish(request.method.as_str(), route, status, kind);
        }
        if !access::enabled() {
            return;
        }
        // The ids and the client's address made only for a line that is written.
        let ids = ctx.trace.as_ref().map(RequestTrace::hex_ids);
        let mut client_text = [0u8; client::MAX_IP_TEXT];
        let error = error.map(|e| e.to_string());
        AccessLine {
            request_id: ctx.request_id.as_str(),
            trace_id: ids.as_ref().map_or(NONE, HexIds::trace_id),
            span_id: ids.as_ref().map_or(NONE, HexIds::span_id),
            method: request.method.as_str(),
            path: request.uri.path(),
            route,
            status,
            latency_ms: latency * 1000.0,
            upstream: ctx.last_instance.as_ref().map_or(NONE, |i| i.text.as_str()),
            retries: ctx.attempts.saturating_sub(1),
            client: ctx
                .client
                .map_or(NONE, |ip| client::ip_text(ip, &mut client_text)),
            consumer: ctx.identity.as_ref().map_or(NONE, |i| i.id.as_str()),
            auth: ctx.auth_outcome.as_str(),
            rate_limited: status == 429 && ctx.rate.is_some(),
            cache: ctx.cache.map_or(NONE, Outcome::as_str),
            error: error.as_deref().unwrap_or_default(),
        }
        .write();
    }
}

/// What [`EdgeProxy::response_filter`] adds to a response, set in its plain header map: the
/// response is taken apart and put back without Pingora's case-keeping name map (as the
/// upstream's request is, see [`forwarding`]): names go to the client lower-case, the standard
/// ones title-cased by Pingora, the reason phrase kept.
#[derive(Default)]
struct ResponseHeaders {
    location: Option<String>,
    cache_status: Option<String>,
    /// `RateLimit-Policy` and `RateLimit`.
    rate: Option<(HeaderValue, String)>,
}

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl ResponseHeaders {
    fn apply(self, response: &mut ResponseHeader, request_id: &RequestId) -> pingora::Result<()> {
        let reason = response
            .get_reason_phrase()
            .filter(|r| Some(*r) != response.status.canonical_reason())
            .map(str::to_string);
        let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
        let mut parts: http::response::Parts = std::mem::replace(response, placeholder).into();
        let set = self.set(&mut parts.headers, request_id);
        *response = ResponseHeader::from(parts);
        response.set_reason_phrase(reason.as_deref())?;
        set.map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "response header", e))
    }

    fn set(self, headers: &mut http::HeaderMap, request_id: &RequestId) -> Result<(), http::Error> {
        // Room for exactly what is added: a larger reservation rehashes the map even when
        // the one header most responses get (`x-request-id`) fits as it is.
        let added = 1
            + usize::from(self.location.is_some())
            + usize::from(self.cache_status.is_some())
            + 2 * usize::from(self.rate.is_some());
        headers.try_reserve(added)?;
        if let Some(location) = self.location {
            headers.try_insert(header::LOCATION, HeaderValue::try_from(location)?)?;
        }
        if let Some(status) = self.cache_status {
            headers.try_insert(CACHE_STATUS.clone(), HeaderValue::try_from(status)?)?;
        }
        headers.try_insert(X_REQUEST_ID.clone(), request_id.header_value().clone())?;
        if let Some((policy, rate)) = self.rate {
            headers.try_insert(RATELIMIT_POLICY.clone(), policy)?;
            headers.try_insert(RATELIMIT.clone(), HeaderValue::try_from(rate)?)?;
        }
        Ok(())
    }
}

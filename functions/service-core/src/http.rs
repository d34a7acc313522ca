//! The HTTP face both functions share: serving a request (span, `/health`, `HEAD`, errors
//! into JSON), the method and path segments handlers route on, JSON bodies, and the `ETag` /
//! `If-Match` pair that carries a resource's version.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use lambda_http::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use crate::ApiError;

/// What a handler routes on: the method and the path's segments (`/products/1/` gives
/// `["products", "1"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub method: Method,
    path: String,
}

impl Target {
    pub fn of(request: &Request) -> Target {
        Target {
            method: request.method().clone(),
            path: request.uri().path().trim_end_matches('/').to_string(),
        }
    }

    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').skip(1).collect()
    }
}

/// Serves one request: runs the service's `route` inside the request's span and turns an
/// error into its JSON response, so both functions log and answer failures the same way.
/// `/health` is answered here (see [`health`]). `HEAD` is answered as `GET` without the body
/// (HTTP requires it wherever `GET` is served), so handlers never see it.
pub async fn serve<F, Fut>(
    mut request: lambda_http::Request,
    route: F,
) -> lambda_http::Response<lambda_http::Body>
where
    F: FnOnce(lambda_http::Request) -> Fut,
    Fut: std::future::Future<
        Output = Result<lambda_http::Response<lambda_http::Body>, crate::ApiError>,
    >,
{
    use lambda_http::RequestExt;
    use tracing::Instrument;

    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
        .unwrap_or_default();
    let consumer = request
        .headers()
        .get("x-consumer-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let health_check = Target::of(&request).segments() == ["health"];
    let span = if health_check {
        // Liveness probes every few seconds: logged, not traced.
        crate::telemetry::health_span(&request_id)
    } else {
        crate::telemetry::request_span(
            request.headers(),
            request.method().as_str(),
            request.uri().path(),
            &request_id,
            &consumer,
        )
    };
    let recorded = span.clone();
    let head = request.method() == lambda_http::http::Method::HEAD;
    if head {
        *request.method_mut() = lambda_http::http::Method::GET;
    }
    async move {
        let outcome = if health_check {
            match request.method() {
                &Method::GET => Ok(health()),
                _ => Err(crate::ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
            }
        } else {
            // A panic in a handler costs this request (a JSON 500), not the sandbox.
            match AssertUnwindSafe(route(request)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => Err(crate::telemetry::handler_panicked(panic.as_ref())),
            }
        };
        let mut response = outcome.unwrap_or_else(crate::ApiError::into_response);
        // Nothing is shared by a cache unless its handler says so (see `shared_read`).
        if !response.headers().contains_key(header::CACHE_CONTROL) {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(PRIVATE));
        }
        if head {
            // The length GET would have sent, as HTTP asks of a HEAD response.
            let length = match response.body() {
                lambda_http::Body::Text(text) => text.len(),
                lambda_http::Body::Binary(bytes) => bytes.len(),
                _ => 0,
            };
            response.headers_mut().insert(
                lambda_http::http::header::CONTENT_LENGTH,
                lambda_http::http::HeaderValue::from(length),
            );
            *response.body_mut() = lambda_http::Body::Empty;
        }
        tracing::info!(status = response.status().as_u16(), "handled");
        crate::telemetry::record_response(&recorded, response.status().as_u16());
        response
    }
    .instrument(span)
    .await
}

/// A JSON response with the right content type.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let (status, text) = match serde_json::to_string(value) {
        Ok(text) => (status, text),
        Err(error) => {
            tracing::error!(%error, "could not serialize a response body");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":{"code":"internal_error","message":"internal server error"}}"#
                    .to_string(),
            )
        }
    };
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `200 {"status":"ok"}`: liveness for the edge proxy's health checks. It touches no
/// dependency, so a database outage does not take every instance out of rotation at once.
pub fn health() -> Response<Body> {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// An empty `204 No Content`.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The strong entity tag for a version: `"7"`.
/// `Cache-Control` of every response no handler marked shareable: for its caller only, and
/// not stored anywhere.
pub const PRIVATE: &str = "private, no-store";

/// Marks a successful read every caller sees alike as shareable: fresh for `max_age` seconds,
/// then usable as long again while a cache asks anew (stale-while-revalidate) and for five
/// minutes while this function fails (stale-if-error); with an `ETag` from its body when it
/// has none (list pages), so a cache can answer `If-None-Match`.
pub fn shared_read(response: &mut Response<Body>, max_age: u32) {
    let control =
        format!("public, max-age={max_age}, stale-while-revalidate={max_age}, stale-if-error=300");
    if let Ok(value) = HeaderValue::from_str(&control) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    if !response.headers().contains_key(header::ETAG) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(response.body().as_ref());
        let tag = format!("\"b-{}\"", hex::encode(&digest[..8]));
        if let Ok(value) = HeaderValue::from_str(&tag) {
            response.headers_mut().insert(header::ETAG, value);
        }
    }
}

pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Adds `ETag` (and optionally `Location`) to a response.
pub fn with_version(
    mut response: Response<Body>,
    version: u64,
    location: Option<&str>,
) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A resource that carries a version: its `ETag`, and what `If-Match` is checked against.
pub trait Versioned {
    fn version(&self) -> u64;
}

/// `status` with `value` as its JSON body and its version as `ETag`, plus `Location` if given.
pub fn versioned<T: Serialize + Versioned>(
    status: StatusCode,
    value: &T,
    location: Option<&str>,
) -> Response<Body> {
    with_version(json(status, value), value.version(), location)
}

/// How often a write without `If-Match` re-reads and re-applies when another writer got in
/// first; with `If-Match` a lost race is the answer (412).
pub const WRITE_ATTEMPTS: usize = 5;

/// A write to the current version of a resource: `read` it, check the request's `If-Match`
/// against its version, and `write` it. A write that loses a race (its store reports a
/// version mismatch) starts again from a fresh read, unless the client pinned a version.
pub async fn write_current<T, R, Read, ReadFut, Write, WriteFut>(
    headers: &HeaderMap,
    read: Read,
    write: Write,
) -> Result<R, ApiError>
where
    T: Versioned,
    Read: Fn() -> ReadFut,
    ReadFut: std::future::Future<Output = Result<T, ApiError>>,
    Write: Fn(T) -> WriteFut,
    WriteFut: std::future::Future<Output = Result<R, ApiError>>,
{
    let precondition = Precondition::from_headers(headers);
    precondition
        .retry_lost_races(WRITE_ATTEMPTS, || async {
            let current = read().await?;
            precondition.check(current.version())?;
            write(current).await
        })
        .await
}

/// A validated change to a versioned resource (the body of a `PATCH`).
pub trait Patch<T> {
    /// The resource after this change, with the next version.
    fn apply(&self, current: &T) -> T;
}

/// A `PATCH`: applies `patch` to the current version of the resource (see [`write_current`]),
/// stores it with `replace(current, next)`, and answers 200 with the result.
pub async fn update<T, P, Read, ReadFut, Replace, ReplaceFut>(
    headers: &HeaderMap,
    patch: &P,
    read: Read,
    replace: Replace,
) -> Result<Response<Body>, ApiError>
where
    T: Versioned + Serialize,
    P: Patch<T>,
    Read: Fn() -> ReadFut,
    ReadFut: std::future::Future<Output = Result<T, ApiError>>,
    Replace: Fn(T, T) -> ReplaceFut,
    ReplaceFut: std::future::Future<Output = Result<T, ApiError>>,
{
    let updated = write_current(headers, read, |current| {
        let next = patch.apply(&current);
        replace(current, next)
    })
    .await?;
    Ok(versioned(StatusCode::OK, &updated, None))
}

/// The caller the edge proxy verified, from the identity headers it sets (and removes from
/// every client request first): `x-consumer-id` (`api-key:dev-client`, `jwt:alice`) and the
/// space-separated `x-consumer-scopes`. The function URL accepts only the proxy's signed
/// requests, so these are the proxy's word, not the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub scopes: Vec<String>,
}

/// Longest caller id accepted (the proxy's are far shorter).
const MAX_CALLER_CHARS: usize = 256;

impl Caller {
    /// The caller of a request; `Unauthenticated` when it names none (or a malformed one).
    pub fn of(headers: &HeaderMap) -> Result<Caller, ApiError> {
        let id = headers
            .get("x-consumer-id")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|id| {
                !id.is_empty() && id.len() <= MAX_CALLER_CHARS && !id.chars().any(char::is_control)
            })
            .ok_or(ApiError::Unauthenticated)?;
        let scopes = headers
            .get("x-consumer-scopes")
            .and_then(|value| value.to_str().ok())
            .map(|scopes| scopes.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Ok(Caller {
            id: id.to_string(),
            scopes,
        })
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What the client's `If-Match` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match` (or `*`): apply to whatever version is current.
    Any,
    /// Apply only if the current version is this one.
    Version(u64),
    /// `If-Match` was present but names no version this service could ever have: the
    /// precondition can only fail.
    Unsatisfiable,
}

impl Precondition {
    /// Reads `If-Match`. Several tags are allowed; only the first version-shaped one counts,
    /// since a resource has exactly one current version.
    pub fn from_headers(headers: &HeaderMap) -> Precondition {
        let Some(value) = headers.get(header::IF_MATCH) else {
            return Precondition::Any;
        };
        let Ok(value) = value.to_str() else {
            return Precondition::Unsatisfiable;
        };
        if value.trim() == "*" {
            return Precondition::Any;
        }
        value
            .split(',')
            .map(str::trim)
            .find_map(|tag| {
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                tag.strip_prefix('"')?
                    .strip_suffix('"')?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(Precondition::Unsatisfiable, Precondition::Version)
    }

    /// Runs a read-check-write `step` until it succeeds or fails for a reason other than a lost
    /// race. A lost race (`VersionMismatch` from the conditional write) is retried on a fresh
    /// read only when the client did not pin a version; with `If-Match` it is the answer (412).
    pub async fn retry_lost_races<T, F, Fut>(
        self,
        attempts: usize,
        mut step: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        for _ in 0..attempts {
            match step().await {
                Err(ApiError::VersionMismatch) if self == Precondition::Any => continue,
                other => return other,
            }
        }
        // Every attempt lost to another writer: a conflict the client resolves by trying
        // again, not an outage.
        Err(ApiError::conflict(
            "write_contended",
            "the resource kept changing while this change was applied; read it and try again",
        ))
    }

    /// Fails with `VersionMismatch` unless the precondition admits `current`.
    pub fn check(self, current: u64) -> Result<(), ApiError> {
        if self.admits(current) {
            Ok(())
        } else {
            Err(ApiError::VersionMismatch)
        }
    }

    /// True when the precondition admits `current`.
    pub fn admits(self, current: u64) -> bool {
        match self {
            Precondition::Any => true,
            Precondition::Version(v) => v == current,
            Precondition::Unsatisfiable => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_match: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_str(if_match).unwrap());
        headers
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(
            Precondition::from_headers(&HeaderMap::new()),
            Precondition::Any
        );
        assert_eq!(Precondition::from_headers(&headers("*")), Precondition::Any);
        assert_eq!(
            Precondition::from_headers(&headers("\"3\"")),
            Precondition::Version(3)
        );
        assert_eq!(
            Precondition::from_headers(&headers("W/\"4\"")),
            Precondition::Version(4)
        );
        assert_eq!(
            Precondition::from_headers(&headers("\"x\", \"5\"")),
            Precondition::Version(5)
        );
        assert_eq!(
            Precondition::from_headers(&headers("3")),
            Precondition::Unsatisfiable
        );
        assert_eq!(
            Precondition::from_headers(&headers("\"abc\"")),
            Precondition::Unsatisfiable
        );
    }

    #[test]
    fn the_caller_is_the_proxys_identity_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(Caller::of(&headers), Err(ApiError::Unauthenticated));
        headers.insert("x-consumer-id", HeaderValue::from_static("  "));
        assert_eq!(Caller::of(&headers), Err(ApiError::Unauthenticated));
        headers.insert("x-consumer-id", HeaderValue::from_static("jwt:alice"));
        headers.insert(
            "x-consumer-scopes",
            HeaderValue::from_static("products  admin"),
        );
        let caller = Caller::of(&headers).unwrap();
        assert_eq!(caller.id, "jwt:alice");
        assert!(caller.has_scope("admin") && !caller.has_scope("users"));
    }

    #[tokio::test]
    async fn writes_that_keep_losing_races_are_a_conflict_not_an_outage() {
        let outcome: Result<(), ApiError> = Precondition::Any
            .retry_lost_races(3, || async { Err(ApiError::VersionMismatch) })
            .await;
        let error = outcome.unwrap_err();
        assert_eq!(
            (error.status(), error.code()),
            (StatusCode::CONFLICT, "write_contended")
        );
    }

    #[test]
    fn admits_only_the_named_version() {
        assert!(Precondition::Any.admits(9));
        assert!(Precondition::Version(2).admits(2));
        assert!(!Precondition::Version(2).admits(3));
        assert!(!Precondition::Unsatisfiable.admits(0));
    }

    #[test]
    fn targets_split_the_path() {
        let request = |path: &str| {
            lambda_http::http::Request::builder()
                .method("GET")
                .uri(path)
                .body(Body::Empty)
                .unwrap()
        };
        assert_eq!(
            Target::of(&request("/products/1/")).segments(),
            ["products", "1"]
        );
        assert_eq!(Target::of(&request("/health")).segments(), ["health"]);
        assert_eq!(Target::of(&request("/")).segments(), Vec::<&str>::new());
    }

    #[tokio::test]
    async fn health_is_answered_before_routing() {
        let request = |method: &str| {
            lambda_http::http::Request::builder()
                .method(method)
                .uri("/health")
                .body(Body::Empty)
                .unwrap()
        };
        let routed = |_| async { Err::<Response<Body>, _>(crate::ApiError::NotFound) };
        assert_eq!(serve(request("GET"), routed).await.status(), 200);
        let head = serve(request("HEAD"), routed).await;
        assert_eq!(head.status(), 200);
        assert!(matches!(head.body(), Body::Empty));
        let post = serve(request("POST"), routed).await;
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()["allow"], "GET, HEAD");
    }

    #[tokio::test]
    async fn a_panicking_handler_costs_its_request_a_json_500() {
        let request = lambda_http::http::Request::builder()
            .method("GET")
            .uri("/users")
            .body(Body::Empty)
            .unwrap();
        let before = crate::telemetry::handler_panics();
        let panicking = |_| async {
            if true {
                panic!("a bug in a handler");
            }
            Ok(no_content())
        };
        let response = serve(request, panicking).await;
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["content-type"], "application/json");
        let Body::Text(text) = response.body() else {
            panic!("expected a JSON body")
        };
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["error"]["code"], "internal_error");
        assert!(
            !text.contains("a bug in a handler"),
            "the panic stays in the log"
        );
        assert!(crate::telemetry::handler_panics() > before, "counted");
        // The next request is served as usual.
        let request = lambda_http::http::Request::builder()
            .method("GET")
            .uri("/health")
            .body(Body::Empty)
            .unwrap();
        let ok = |_| async { Ok(no_content()) };
        assert_eq!(serve(request, ok).await.status(), 200);
    }

    #[test]
    fn json_sets_content_type() {
        let response = json(StatusCode::CREATED, &serde_json::json!({"a": 1}));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}

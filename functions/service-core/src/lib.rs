//! What both functions share, so each service crate holds only its own domain.
//!
//! - [`error`]: the one error type every handler returns, and the single place it becomes HTTP;
//!   [`StoreError`], what a store fails with besides its domain's outcomes.
//! - [`body`]: the JSON request rules (content type, size limit, unknown fields, field-naming errors).
//! - [`validate`]: field rules both services share (names, emails, ids).
//! - [`paging`]: listing parameters and the signed, opaque list cursor.
//! - [`memory`]: what the stores' in-memory stand-ins share (lock, pages, version checks).
//! - [`http`]: serving a request (span, `/health`, `HEAD`, errors), routing targets, JSON and
//!   `ETag` / `If-Match`.
//! - [`dynamo`]: the DynamoDB client built once at cold start, tables, transactions and
//!   uniqueness claims, SDK error classification.
//! - [`telemetry`]: `tracing` set-up and the per-request span.
//! - `testkit` (feature `testkit`, for the services' tests): request/response helpers.
//! - `fuzzing` (feature `fuzzing`): properties shared by the fuzz targets (`functions/fuzz`)
//!   and the seed replays.

pub mod body;
pub mod dynamo;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod memory;
pub mod paging;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod validate;

pub use error::{ApiError, StoreError};

/// What a function serves requests with: built once per cold start, shared by every
/// invocation. A service writes `route`; `handle` wraps it (see [`http::serve`]).
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Routes one request to its handler. `/health` never reaches it, `HEAD` arrives as `GET`.
    async fn route(
        &self,
        request: lambda_http::Request,
    ) -> Result<lambda_http::Response<lambda_http::Body>, ApiError>;

    /// Answers one request; never fails (errors become JSON responses).
    async fn handle(
        &self,
        request: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        http::serve(request, |request| self.route(request)).await
    }
}

/// A function's whole `main`: logs, the table named by `table_env`, the DynamoDB client and
/// the cursor codec, once per cold start; then `build`'s handler serves every invocation.
pub async fn run<H: Handler>(
    table_env: &str,
    build: impl FnOnce(dynamo::Table, paging::CursorCodec) -> H,
) -> Result<(), lambda_http::Error> {
    let (table, cursors) = bootstrap(table_env).await?;
    let handler = std::sync::Arc::new(build(table, cursors));
    lambda_http::run(lambda_http::service_fn(move |request| {
        let handler = std::sync::Arc::clone(&handler);
        async move { Ok::<_, lambda_http::Error>(handler.handle(request).await) }
    }))
    .await
}

/// A function cannot start: its environment is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {0} must be set")]
pub struct MissingEnv(pub String);

/// Reads a required environment variable, naming it in the error when it is missing.
pub fn required_env(name: &str) -> Result<String, MissingEnv> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(MissingEnv(name.to_string())),
    }
}

/// What a function's `main` needs before it can serve: the table name from `table_env` (set by
/// `template.yaml`), the DynamoDB client, and the cursor codec. Cursors are signed with
/// `CURSOR_SECRET` when set; otherwise the table name keys them, which still detects corrupt
/// cursors and cursors reused across listings or tables.
pub async fn bootstrap(
    table_env: &str,
) -> Result<(dynamo::Table, paging::CursorCodec), MissingEnv> {
    telemetry::init();
    let table = required_env(table_env)?;
    let cursor_key = std::env::var("CURSOR_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| table.clone());
    Ok((
        dynamo::Table::new(dynamo::client_from_env().await, table),
        paging::CursorCodec::new(cursor_key),
    ))
}

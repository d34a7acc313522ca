//! What both functions share, so each service crate holds only its own domain.
//!
//! - [`error`]: the one error type every handler returns, and the single place it becomes HTTP;
//!   [`StoreError`], what a store fails with besides its domain's outcomes.
//! - [`capacity`]: item sizes and capacity units by DynamoDB's documented rules.
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
pub mod capacity;
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
    serve(build(table, cursors)).await
}

/// Serves every invocation with `handler` (what [`run`] does after [`bootstrap`], for a
/// function that reads more of its environment in between).
pub async fn serve<H: Handler>(handler: H) -> Result<(), lambda_http::Error> {
    let handler = std::sync::Arc::new(handler);
    lambda_http::run(lambda_http::service_fn(move |request| {
        let handler = std::sync::Arc::clone(&handler);
        async move {
            let response = handler.handle(request).await;
            // The request span has closed: export it (and its DynamoDB spans) before Lambda
            // can freeze the sandbox.
            telemetry::flush().await;
            Ok::<_, lambda_http::Error>(response)
        }
    }))
    .await
}

/// Why a function refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    /// A required environment variable is not set (template.yaml sets them all on AWS; the
    /// local stack writes them to its functions.env).
    #[error("environment variable {0} must be set (template.yaml sets it on AWS)")]
    Missing(String),
    /// `CURSOR_SECRET` is too short to be a key.
    #[error("CURSOR_SECRET must be at least {MIN_CURSOR_SECRET_BYTES} bytes")]
    WeakCursorSecret,
}

#[cfg(test)]
mod startup_tests {
    use super::*;

    use crate::testkit::env_lookup as lookup;

    #[test]
    fn a_function_without_its_cursor_secret_refuses_to_start() {
        let secret = "s".repeat(MIN_CURSOR_SECRET_BYTES);
        assert_eq!(
            Settings::from_env("USERS_TABLE", lookup(&[("USERS_TABLE", "Users")])),
            Err(StartupError::Missing("CURSOR_SECRET".into()))
        );
        assert_eq!(
            Settings::from_env(
                "USERS_TABLE",
                lookup(&[("USERS_TABLE", "Users"), ("CURSOR_SECRET", "short")])
            ),
            Err(StartupError::WeakCursorSecret)
        );
        assert_eq!(
            Settings::from_env("USERS_TABLE", lookup(&[("CURSOR_SECRET", &secret)])),
            Err(StartupError::Missing("USERS_TABLE".into()))
        );
        let settings = Settings::from_env(
            "USERS_TABLE",
            lookup(&[("USERS_TABLE", "Users"), ("CURSOR_SECRET", &secret)]),
        )
        .unwrap();
        assert_eq!(
            (settings.table.as_str(), settings.cursor_secret),
            ("Users", secret)
        );
        let message = StartupError::Missing("CURSOR_SECRET".into()).to_string();
        assert!(message.contains("CURSOR_SECRET"), "{message}");
    }
}

/// Shortest cursor secret accepted (the template generates 64 characters).
pub const MIN_CURSOR_SECRET_BYTES: usize = 32;

/// What a function reads from its environment at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The service's own table (`template.yaml` sets its name).
    pub table: String,
    /// The key list cursors are signed with.
    pub cursor_secret: String,
}

impl Settings {
    /// Reads the table name from `table_env` and the cursor secret from `CURSOR_SECRET`, with
    /// `lookup` (the process environment in `main`). Both are required: a function never
    /// signs cursors with a guessable key.
    pub fn from_env(
        table_env: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, StartupError> {
        let required = |name: &str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| StartupError::Missing(name.to_string()))
        };
        let table = required(table_env)?;
        let cursor_secret = required("CURSOR_SECRET")?;
        if cursor_secret.len() < MIN_CURSOR_SECRET_BYTES {
            return Err(StartupError::WeakCursorSecret);
        }
        Ok(Settings {
            table,
            cursor_secret,
        })
    }
}

/// What a function's `main` needs before it can serve: its [`Settings`], the DynamoDB client,
/// and the cursor codec.
pub async fn bootstrap(
    table_env: &str,
) -> Result<(dynamo::Table, paging::CursorCodec), StartupError> {
    telemetry::init();
    let settings = Settings::from_env(table_env, |name| std::env::var(name).ok())
        .inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    Ok((
        dynamo::Table::new(dynamo::client_from_env().await, settings.table),
        paging::CursorCodec::new(settings.cursor_secret),
    ))
}

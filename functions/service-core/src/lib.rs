//! What both functions share, so each service crate holds only its own domain.
//!
//! - [`error`]: the one error type every handler returns, and the single place it becomes HTTP.
//! - [`body`]: the JSON request rules (content type, size limit, unknown fields, field-naming errors).
//! - [`paging`]: `limit` parsing and the signed, opaque list cursor.
//! - [`http`]: small response helpers (JSON bodies, `ETag` / `If-Match`).
//! - [`dynamo`]: the DynamoDB client built once at cold start, and SDK error classification.
//! - [`telemetry`]: `tracing` set-up and the per-request span.
//! - [`testkit`]: request/response helpers for the services' handler tests.
//! - `fuzzing`: properties shared by the fuzz targets (`functions/fuzz`) and the seed replays.

pub mod body;
pub mod dynamo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod paging;
pub mod telemetry;
pub mod testkit;

pub use error::ApiError;

/// What a function's `main` needs before it can serve: the table name from `table_env` (set by
/// `template.yaml`), the DynamoDB client, and the cursor codec. Cursors are signed with
/// `CURSOR_SECRET` when set; otherwise the table name keys them, which still detects corrupt
/// cursors and cursors reused across listings or tables.
pub async fn bootstrap(
    table_env: &str,
) -> Result<(aws_sdk_dynamodb::Client, String, paging::CursorCodec), String> {
    telemetry::init();
    let table = dynamo::required_env(table_env)?;
    let cursor_key = std::env::var("CURSOR_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| table.clone());
    Ok((
        dynamo::client_from_env().await,
        table,
        paging::CursorCodec::new(cursor_key),
    ))
}

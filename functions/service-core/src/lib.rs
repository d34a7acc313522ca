//! What both functions share, so each service crate holds only its own domain.
//!
//! - [`error`]: the one error type every handler returns, and the single place it becomes HTTP.
//! - [`body`]: the JSON request rules (content type, size limit, unknown fields, field-naming errors).
//! - [`paging`]: `limit` parsing and the signed, opaque list cursor.
//! - [`http`]: small response helpers (JSON bodies, `ETag` / `If-Match`).
//! - [`dynamo`]: the DynamoDB client built once at cold start, and SDK error classification.
//! - [`telemetry`]: `tracing` set-up and the per-request span.

pub mod body;
pub mod dynamo;
pub mod error;
pub mod http;
pub mod paging;
pub mod telemetry;

pub use error::ApiError;

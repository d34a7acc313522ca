//! The single error type handlers return, and the one place it is turned into an HTTP response.
//!
//! Clients get a stable snake_case `code` and a short, plain `message`; anything internal (SDK
//! errors, stack details) goes to the log only.

use lambda_http::{http::StatusCode, Body, Response};
use serde::Serialize;

/// Longest message a client ever sees; anything client-supplied quoted in it is cut to fit.
const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, empty, truncated, not UTF-8).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A field is missing, of the wrong type, out of range or unknown; the message names it.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// A query parameter is malformed; the message names it.
    #[error("{param}: {message}")]
    InvalidQuery { param: String, message: String },
    /// The paging cursor was not produced by this service for this listing.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The request carries no verified caller where one is needed (the edge proxy forwards
    /// it as `x-consumer-id`).
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// A uniqueness or state rule refused the change (`email_taken`, `insufficient_stock`, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// `If-Match` named a version that is not the current one.
    #[error("version mismatch")]
    VersionMismatch,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// A dependency (DynamoDB) could not be reached in time; the detail is logged.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What any store can fail with besides its domain's own outcomes: a conditional write that
/// lost to another writer, a listing asked to continue after a key that is not its own, the
/// database not reachable in time (503), or something wrong (500). Details are logged, never
/// shown to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stored version is no longer the one that was read.
    #[error("version mismatch")]
    VersionMismatch,
    /// A listing was asked to continue after a key that is not one of its items'.
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::VersionMismatch => ApiError::VersionMismatch,
            StoreError::InvalidCursor => ApiError::InvalidCursor,
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            StoreError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

/// The API error code of anything that becomes an [`ApiError`] (a store's domain outcome, say).
pub trait Code {
    fn code(&self) -> &'static str;
}

impl<T: Clone + Into<ApiError>> Code for T {
    fn code(&self) -> &'static str {
        self.clone().into().code()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid_query(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidQuery {
            param: param.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::InvalidCursor => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::VersionMismatch => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::InvalidCursor => "invalid_cursor",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict { code, .. } => code,
            ApiError::VersionMismatch => "version_mismatch",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The message a client sees: plain, bounded, and free of internal detail.
    pub fn public_message(&self) -> String {
        let message = match self {
            ApiError::InvalidJson(detail) => format!("request body is not valid JSON: {detail}"),
            ApiError::InvalidField { field, message } => format!("`{field}` {message}"),
            ApiError::InvalidQuery { param, message } => {
                format!("query parameter `{param}` {message}")
            }
            ApiError::InvalidCursor => "the cursor is invalid or has expired".to_string(),
            ApiError::Unauthenticated => {
                "this request needs a verified caller (through the edge proxy)".to_string()
            }
            ApiError::NotFound => "no such resource".to_string(),
            ApiError::MethodNotAllowed { allow } => {
                format!("method not allowed here; allowed: {allow}")
            }
            ApiError::Conflict { message, .. } => message.clone(),
            ApiError::VersionMismatch => {
                "the resource has changed since the version given in If-Match".to_string()
            }
            ApiError::PayloadTooLarge => format!(
                "request body exceeds the limit of {} bytes",
                crate::body::MAX_BODY_BYTES
            ),
            ApiError::UnsupportedMediaType => {
                "request body must be JSON (Content-Type: application/json)".to_string()
            }
            ApiError::Unavailable(_) => {
                "the service is temporarily unavailable; retry later".to_string()
            }
            ApiError::Internal(_) => "internal server error".to_string(),
        };
        sanitize(&message)
    }

    /// Turns the error into the JSON error response, logging what the client does not see.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "dependency unavailable")
            }
            _ => tracing::info!(
                code = self.code(),
                status = status.as_u16(),
                "request refused"
            ),
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
            },
        };
        let mut response = crate::http::json(status, &body);
        match &self {
            ApiError::MethodNotAllowed { allow } => {
                response.headers_mut().insert(
                    lambda_http::http::header::ALLOW,
                    lambda_http::http::HeaderValue::from_static(allow),
                );
            }
            ApiError::Unavailable(_) => {
                response.headers_mut().insert(
                    lambda_http::http::header::RETRY_AFTER,
                    lambda_http::http::HeaderValue::from_static("1"),
                );
            }
            _ => {}
        }
        response
    }
}

/// Keeps messages printable and short, so nothing a client sent can be echoed back as markup,
/// control characters or an unbounded string.
fn sanitize(message: &str) -> String {
    let mut out: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if message.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: &Response<Body>) -> serde_json::Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("expected a text body, got {other:?}"),
        }
    }

    #[test]
    fn errors_have_the_documented_shape_and_status() {
        let cases = [
            (ApiError::InvalidJson("eof".into()), 400, "invalid_json"),
            (
                ApiError::invalid_field("name", "is required"),
                400,
                "invalid_field",
            ),
            (ApiError::InvalidCursor, 400, "invalid_cursor"),
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (ApiError::NotFound, 404, "not_found"),
            (
                ApiError::MethodNotAllowed { allow: "GET" },
                405,
                "method_not_allowed",
            ),
            (
                ApiError::conflict("email_taken", "taken"),
                409,
                "email_taken",
            ),
            (ApiError::VersionMismatch, 412, "version_mismatch"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::Unavailable("timeout".into()),
                503,
                "service_unavailable",
            ),
            (ApiError::Internal("boom".into()), 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["content-type"], "application/json");
            let json = body_json(&response);
            assert_eq!(json["error"]["code"], code);
            assert!(json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let response =
            ApiError::Internal("secret table arn:aws:dynamodb:xyz".into()).into_response();
        let text = body_json(&response).to_string();
        assert!(!text.contains("arn:aws"), "{text}");
    }

    #[test]
    fn messages_are_bounded_and_printable() {
        let hostile = format!("{}\r\n<script>", "x".repeat(10_000));
        let message = ApiError::invalid_field(hostile, "is unknown").public_message();
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(!message.contains('\r') && !message.contains('\n'));
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed { allow: "GET, POST" }.into_response();
        assert_eq!(response.headers()["allow"], "GET, POST");
    }
}

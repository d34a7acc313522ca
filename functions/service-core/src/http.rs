//! Response helpers shared by the handlers: JSON bodies and the `ETag` / `If-Match` pair that
//! carries a resource's version.

use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::ApiError;

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
        Err(ApiError::Unavailable(
            "too many concurrent writes to one item".into(),
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
    fn admits_only_the_named_version() {
        assert!(Precondition::Any.admits(9));
        assert!(Precondition::Version(2).admits(2));
        assert!(!Precondition::Version(2).admits(3));
        assert!(!Precondition::Unsatisfiable.admits(0));
    }

    #[test]
    fn json_sets_content_type() {
        let response = json(StatusCode::CREATED, &serde_json::json!({"a": 1}));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}

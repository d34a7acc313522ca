//! The proxy's own error responses: one enum, one place that turns it into a JSON answer
//! (`{"error":{"code","message"}}`, the same shape the functions use), so a client never sees
//! Pingora's default HTML/empty error pages. A phase that fails with a [`ProxyError`] returns
//! it as the cause of Pingora's error ([`ProxyError::into_pingora`]); `fail_to_proxy` finds it
//! there ([`ProxyError::from_pingora`]) and answers with exactly that error.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};
use serde::Serialize;

/// Everything the proxy itself may answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// Malformed request or path (traversal, bad encoding).
    BadRequest(&'static str),
    /// No route for the path.
    NotFound,
    /// The body exceeds the configured limit.
    PayloadTooLarge,
    /// The upstream could not be reached or answered with garbage.
    BadGateway,
    /// No instance of the service is usable right now; `retry_after` in seconds.
    Unavailable { retry_after: u64 },
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// A bug or resource problem in the proxy itself.
    Internal,
    /// Credentials missing or invalid; `challenge` goes into `WWW-Authenticate`.
    Unauthorized { challenge: &'static str },
    /// Valid credentials, not allowed on this route.
    Forbidden,
    /// Over the rate limit; `retry_after` in seconds.
    RateLimited { retry_after: u64 },
    /// The request target is longer than the limit.
    UriTooLong,
    /// The header section is larger than the limit.
    HeadersTooLarge,
    /// The request head did not arrive whole in time.
    RequestTimeout,
    /// A method the proxy never forwards (`CONNECT`).
    MethodNotAllowed,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

impl std::error::Error for ProxyError {}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(_) => 400,
            ProxyError::NotFound => 404,
            ProxyError::PayloadTooLarge => 413,
            ProxyError::BadGateway => 502,
            ProxyError::Unavailable { .. } => 503,
            ProxyError::GatewayTimeout => 504,
            ProxyError::Internal => 500,
            ProxyError::Unauthorized { .. } => 401,
            ProxyError::Forbidden => 403,
            ProxyError::RateLimited { .. } => 429,
            ProxyError::UriTooLong => 414,
            ProxyError::HeadersTooLarge => 431,
            ProxyError::RequestTimeout => 408,
            ProxyError::MethodNotAllowed => 405,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::NotFound => "not_found",
            ProxyError::PayloadTooLarge => "payload_too_large",
            ProxyError::BadGateway => "bad_gateway",
            ProxyError::Unavailable { .. } => "upstream_unavailable",
            ProxyError::GatewayTimeout => "upstream_timeout",
            ProxyError::Internal => "internal_error",
            ProxyError::Unauthorized { .. } => "unauthorized",
            ProxyError::Forbidden => "forbidden",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::UriTooLong => "uri_too_long",
            ProxyError::HeadersTooLarge => "request_header_fields_too_large",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::MethodNotAllowed => "method_not_allowed",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(message) => message,
            ProxyError::NotFound => "no route for this path",
            ProxyError::PayloadTooLarge => "request body is too large",
            ProxyError::BadGateway => "the upstream service could not be reached",
            ProxyError::Unavailable { .. } => {
                "no instance of the upstream service is available; retry later"
            }
            ProxyError::GatewayTimeout => "the upstream service did not answer in time",
            ProxyError::Internal => "internal proxy error",
            ProxyError::Unauthorized { .. } => "missing or invalid credentials",
            ProxyError::Forbidden => "these credentials are not allowed on this route",
            ProxyError::RateLimited { .. } => "too many requests; slow down and retry later",
            ProxyError::UriTooLong => "the request target is too long",
            ProxyError::HeadersTooLarge => "the request headers are too large",
            ProxyError::RequestTimeout => "the request was not received in time",
            ProxyError::MethodNotAllowed => "this method is not supported",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let body = Body {
            error: Detail {
                code: self.code(),
                message: self.message(),
            },
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The response header (status, content type, length, `Retry-After` when it applies).
    pub fn header(&self, body_len: usize) -> pingora::Result<ResponseHeader> {
        let mut header = ResponseHeader::build(self.status(), Some(4))?;
        header.insert_header("content-type", "application/json")?;
        header.insert_header("content-length", body_len.to_string())?;
        header.insert_header("cache-control", "no-store")?;
        match self {
            ProxyError::Unavailable { retry_after } | ProxyError::RateLimited { retry_after } => {
                header.insert_header("retry-after", retry_after.to_string())?;
            }
            ProxyError::Unauthorized { challenge } => {
                header.insert_header("www-authenticate", *challenge)?;
            }
            _ => {}
        }
        Ok(header)
    }

    /// The whole HTTP/1.1 response as bytes, closing the connection: for refusals made
    /// before a request is admitted, when there is no Pingora session to write through
    /// (see [`crate::proxy::downstream`]).
    pub fn raw_response(&self, request_id: &str) -> Vec<u8> {
        let body = self.body();
        let status =
            http::StatusCode::from_u16(self.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             cache-control: no-store\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// The response header, with extra headers, and the body.
    fn parts(&self, extra: &[(&'static str, String)]) -> pingora::Result<(ResponseHeader, Bytes)> {
        let body = self.body();
        let mut header = self.header(body.len())?;
        for (name, value) in extra {
            header.insert_header(*name, value.as_str())?;
        }
        Ok((header, body))
    }

    /// Writes the error as the whole response, with extra headers.
    pub async fn respond_with(
        &self,
        session: &mut Session,
        extra: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        let (header, body) = self.parts(extra)?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }

    /// Writes the error as the response to a request that failed while being proxied: says
    /// `Connection: close` (Pingora does not reuse the connection after a failure, and a client
    /// that was not told would send its next request into a closing socket), and writes
    /// nothing if a response has already begun.
    pub async fn respond_and_close(
        &self,
        session: &mut Session,
        extra: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        let (header, body) = self.parts(extra)?;
        session.write_error_response(header, body).await
    }

    /// This error as Pingora's, carrying it as the cause, for a phase to return.
    pub fn into_pingora(self) -> Box<Error> {
        Error::because(ErrorType::HTTPStatus(self.status()), self.message(), self)
    }

    /// The answer to a Pingora error raised while proxying: the [`ProxyError`] it carries, or
    /// else a classification of it. `None` means the client is gone and nothing can be written.
    pub fn from_pingora(error: &Error) -> Option<ProxyError> {
        use ErrorType::*;
        if let Some(ours) = error.root_cause().downcast_ref::<ProxyError>() {
            return Some(ours.clone());
        }
        match error.etype() {
            HTTPStatus(503) => return Some(ProxyError::Unavailable { retry_after: 1 }),
            HTTPStatus(413) => return Some(ProxyError::PayloadTooLarge),
            HTTPStatus(400) => return Some(ProxyError::BadRequest("malformed request")),
            HTTPStatus(504) => return Some(ProxyError::GatewayTimeout),
            HTTPStatus(code) if (400..500).contains(code) => {
                return Some(ProxyError::BadRequest("malformed request"))
            }
            HTTPStatus(_) => return Some(ProxyError::BadGateway),
            _ => {}
        }
        match error.esource() {
            ErrorSource::Upstream => Some(match error.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                    ProxyError::GatewayTimeout
                }
                _ => ProxyError::BadGateway,
            }),
            ErrorSource::Downstream => match error.etype() {
                WriteError | ReadError | ConnectionClosed => None,
                // A client that stalled mid-body is still there: it is told why it is cut off.
                ReadTimedout => Some(ProxyError::RequestTimeout),
                WriteTimedout => None,
                _ => Some(ProxyError::BadRequest("malformed request")),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(ProxyError::Internal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_shared_shape() {
        let json: serde_json::Value = serde_json::from_slice(&ProxyError::NotFound.body()).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
        assert!(json["error"]["message"].is_string());
    }

    #[test]
    fn raw_response_is_complete_http() {
        let raw = ProxyError::RequestTimeout.raw_response("req-1");
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("x-request-id: req-1"));
        assert!(head.contains("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "request_timeout");
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let header = ProxyError::Unavailable { retry_after: 7 }
            .header(10)
            .unwrap();
        assert_eq!(header.status.as_u16(), 503);
        assert_eq!(header.headers["retry-after"], "7");
        assert_eq!(header.headers["content-type"], "application/json");
    }

    #[test]
    fn classifies_pingora_errors() {
        let e = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(ProxyError::from_pingora(&e), Some(ProxyError::BadGateway));
        let e = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(
            ProxyError::from_pingora(&e),
            Some(ProxyError::GatewayTimeout)
        );
        let e = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(ProxyError::from_pingora(&e), None);
        let e = Error::new(ErrorType::HTTPStatus(503));
        assert_eq!(
            ProxyError::from_pingora(&e),
            Some(ProxyError::Unavailable { retry_after: 1 })
        );
    }

    #[test]
    fn our_errors_travel_as_the_cause() {
        let specific = ProxyError::BadRequest("JSON body is not UTF-8");
        let error = specific.clone().into_pingora();
        assert_eq!(error.etype(), &ErrorType::HTTPStatus(400));
        assert_eq!(ProxyError::from_pingora(&error), Some(specific.clone()));
        // Still found once a later phase has wrapped it in more context.
        let wrapped = error.more_context("Peer: 127.0.0.1:1");
        assert_eq!(ProxyError::from_pingora(&wrapped), Some(specific));
        let unavailable = ProxyError::Unavailable { retry_after: 7 }.into_pingora();
        assert_eq!(
            ProxyError::from_pingora(&unavailable),
            Some(ProxyError::Unavailable { retry_after: 7 })
        );
    }
}

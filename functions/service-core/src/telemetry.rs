//! Logging set-up for the functions: structured JSON by default (what CloudWatch and log
//! pipelines want), human-readable text with `LOG_FORMAT=text` for local development.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let text = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let result = if text {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
    if let Err(error) = result {
        eprintln!("logging was already initialised: {error}");
    }
}

/// The span every request runs in, so each log line carries the request id, the W3C trace id
/// and the consumer the edge proxy verified.
pub fn request_span(
    method: &str,
    path: &str,
    request_id: &str,
    trace_id: &str,
    consumer: &str,
) -> tracing::Span {
    tracing::info_span!(
        "request",
        %method,
        %path,
        request_id = %request_id,
        trace_id = %trace_id,
        consumer = %consumer
    )
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (version == "00" && hex(trace_id, 32) && hex(parent, 16)).then_some(trace_id)
}

/// Runs a request's routing inside its span and turns an error into its JSON response, so both
/// functions log and answer failures the same way. `HEAD` is answered as `GET` without the
/// body (HTTP requires it wherever `GET` is served), so handlers never see it.
pub async fn handle_request<F, Fut>(
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
    let trace = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id)
        .unwrap_or("-")
        .to_string();
    let consumer = request
        .headers()
        .get("x-consumer-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let span = request_span(
        request.method().as_str(),
        request.uri().path(),
        &request_id,
        &trace,
        &consumer,
    );
    let head = request.method() == lambda_http::http::Method::HEAD;
    if head {
        *request.method_mut() = lambda_http::http::Method::GET;
    }
    async move {
        let mut response = match route(request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
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
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_from_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(header), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(
            trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
    }
}

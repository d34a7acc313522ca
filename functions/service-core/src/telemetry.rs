//! Logging set-up for the functions: structured JSON by default (what CloudWatch and log
//! pipelines want), human-readable text with `LOG_FORMAT=text` for local development.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Handler panics since the sandbox started.
static HANDLER_PANICS: AtomicU64 = AtomicU64::new(0);

/// How many handler panics this process has answered with a 500.
pub fn handler_panics() -> u64 {
    HANDLER_PANICS.load(Ordering::Relaxed)
}

/// Records a handler's panic: an error log line with its message, and a count, written as a
/// CloudWatch embedded-metric line (`HandlerPanics` in namespace `lambda-edge`, by function),
/// which Lambda's log stream turns into a metric with nothing else to set up. Returns the
/// error the request is answered with.
pub fn handler_panicked(panic: &(dyn std::any::Any + Send)) -> crate::ApiError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    let total = HANDLER_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(panic = %message, handler_panics = total, "handler panicked");
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let metric = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": "lambda-edge",
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": "HandlerPanics", "Unit": "Count"}],
            }],
        },
        "Function": function,
        "HandlerPanics": 1,
    });
    println!("{metric}");
    crate::ApiError::Internal(format!("handler panicked: {message}"))
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

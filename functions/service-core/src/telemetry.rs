//! Logs and traces for the functions.
//!
//! Logs: structured JSON by default (what CloudWatch and log pipelines want), human-readable
//! text with `LOG_FORMAT=text` for local development. Every line a request logs carries its
//! request id, trace id, span id and consumer (the fields of its [`request_span`]).
//!
//! Traces, through tracing-opentelemetry: a server span per invocation, continuing the
//! `traceparent` the proxy sent (OpenTelemetry's W3C propagator), and a client span per
//! DynamoDB call ([`DynamoSpans`], an SDK interceptor, so every call of every store has one).
//! Exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is
//! set, and flushed before each invocation returns ([`flush`]): Lambda freezes the sandbox
//! between invocations, so nothing may wait for a timer. Without an endpoint, spans are still
//! made (their ids are in the logs and go on to DynamoDB's spans) but not exported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The process's tracer provider, and whether it exports.
struct Traces {
    provider: SdkTracerProvider,
    exporting: bool,
}

static TRACES: OnceLock<Traces> = OnceLock::new();

/// Longest an export may hold an invocation up, unless `OTEL_EXPORTER_OTLP_TIMEOUT` says.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Installs the global subscriber (`RUST_LOG` filters, default `info`) and the tracer.
pub fn init() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|_| !disabled);
    let service = var("OTEL_SERVICE_NAME")
        .or_else(|| var("AWS_LAMBDA_FUNCTION_NAME"))
        .unwrap_or_else(|| "lambda-function".into());
    let exporting = endpoint.and_then(|_| {
        exporting_provider(&service)
            .inspect_err(|error| eprintln!("trace export is off: {error}"))
            .ok()
    });
    let traces = match exporting {
        Some(provider) => Traces {
            provider,
            exporting: true,
        },
        None => Traces {
            provider: local_provider(&service),
            exporting: false,
        },
    };
    let tracer = traces.provider.tracer("service-core");
    let _ = TRACES.set(traces);
    // Our spans only: not the SDK's or the runtime's own, nor log events.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && ours(meta.target())
        }));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false);
    let fmt = if text {
        fmt.boxed()
    } else {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    };
    let result = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init();
    if let Err(error) = result {
        eprintln!("logging was already initialised: {error}");
    }
}

/// Whether a span comes from this workspace's function crates.
fn ours(target: &str) -> bool {
    ["service_core", "user_service", "product_service"]
        .iter()
        .any(|krate| target.starts_with(krate))
}

fn resource(service: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build()
}

/// Spans with ids, exported nowhere.
fn local_provider(service: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource(service))
        .build()
}

/// Spans exported in batches over OTLP/HTTP (protobuf), flushed by [`flush`]. One attempt per
/// export: a retry would hold the invocation up.
fn exporting_provider(service: &str) -> Result<SdkTracerProvider, String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled());
    if std::env::var_os("OTEL_EXPORTER_OTLP_TIMEOUT").is_none()
        && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").is_none()
    {
        exporter = exporter.with_timeout(EXPORT_TIMEOUT);
    }
    let exporter = exporter.build().map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build())
}

/// Exports every span ended so far; called once an invocation's response is ready, before it
/// is returned (after which Lambda may freeze the sandbox). A no-op without an endpoint.
pub async fn flush() {
    let Some(traces) = TRACES.get().filter(|t| t.exporting) else {
        return;
    };
    let provider = traces.provider.clone();
    // The batch processor's thread does the export; this waits for it.
    let outcome = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    // Logged when export starts failing and when it recovers, not on every invocation.
    let failed = !matches!(outcome, Ok(Ok(())));
    if EXPORT_FAILING.swap(failed, Ordering::Relaxed) != failed {
        match outcome {
            Ok(Ok(())) => tracing::info!("span export recovered"),
            Ok(Err(error)) => tracing::warn!(%error, "spans not exported (collector unreachable?)"),
            Err(error) => tracing::warn!(%error, "span flush did not finish"),
        }
    }
}

/// Whether the last flush failed.
static EXPORT_FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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

/// The span every request runs in: the invocation's server span, a child of `headers`'
/// `traceparent` when it is valid. Each log line inside it carries the request id, trace id,
/// span id and the consumer the edge proxy verified.
pub fn request_span(
    headers: &lambda_http::http::HeaderMap,
    method: &str,
    path: &str,
    request_id: &str,
    consumer: &str,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "http.request.method" = %method,
        "url.path" = %path,
        "http.response.status_code" = tracing::field::Empty,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        consumer = %consumer
    );
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let incoming = parent.span().span_context().clone();
    let _ = span.set_parent(parent);
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        span.record("trace_id", tracing::field::display(own.trace_id()));
        span.record("span_id", tracing::field::display(own.span_id()));
    } else if incoming.is_valid() {
        // No tracer installed (handler tests): the caller's trace, no span of our own.
        span.record("trace_id", tracing::field::display(incoming.trace_id()));
    }
    span
}

/// The span of a health check: its lines carry the request id; it is not exported (its target
/// is not one of ours), so probes do not fill a tracing backend with one-span traces.
pub fn health_span(request_id: &str) -> tracing::Span {
    tracing::info_span!(target: "health", "request", request_id = %request_id)
}

/// Records the response on the request span: its status, and an error status for a 5xx.
pub fn record_response(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// A client span around every DynamoDB call (one per operation, whatever its SDK retries),
/// a child of the request span: `db.*` and `rpc.*` attributes, an error status on failure.
#[derive(Debug, Default)]
pub struct DynamoSpans;

/// The open span of the operation in progress, kept in the operation's config bag.
#[derive(Debug, Clone)]
struct CallSpan(tracing::Span);

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

impl Intercept for DynamoSpans {
    fn name(&self) -> &'static str {
        "DynamoSpans"
    }

    // Not `read_before_execution`: a client's interceptors run that before the operation's
    // configuration (its name) is in the bag.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_string();
        let tables = table_names(context.input());
        let span = tracing::info_span!(
            "dynamodb",
            otel.name = %format!("DynamoDB.{operation}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            "db.system.name" = "aws.dynamodb",
            "db.operation.name" = %operation,
            "db.collection.name" = %tables.first().map_or("", String::as_str),
            "aws.dynamodb.table_names" = %tables.join(","),
            "rpc.system" = "aws-api",
            "rpc.service" = "DynamoDB",
            "rpc.method" = %operation,
            "error.type" = tracing::field::Empty,
        );
        cfg.interceptor_state().store_put(CallSpan(span));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(CallSpan(span)) = cfg.load::<CallSpan>() {
            if let Some(Err(error)) = context.output_or_error() {
                let kind = error
                    .as_operation_error()
                    .and_then(|e| {
                        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(
                            e.downcast_ref::<aws_sdk_dynamodb::Error>()?,
                        )
                        .map(str::to_string)
                    })
                    .unwrap_or_else(|| "request_failed".to_string());
                span.record("otel.status_code", "error");
                span.record("error.type", kind.as_str());
            }
        }
        // Dropping the bag's copy closes (and ends) the span.
        cfg.interceptor_state().unset::<CallSpan>();
        Ok(())
    }
}

/// The table(s) a DynamoDB operation's input names.
fn table_names(
    input: &aws_smithy_runtime_api::client::interceptors::context::Input,
) -> Vec<String> {
    use aws_sdk_dynamodb::operation::{
        delete_item::DeleteItemInput, get_item::GetItemInput, put_item::PutItemInput,
        query::QueryInput, scan::ScanInput, transact_write_items::TransactWriteItemsInput,
        update_item::UpdateItemInput,
    };
    let one = |name: Option<&str>| name.map(|n| vec![n.to_string()]);
    let single = one(input
        .downcast_ref::<GetItemInput>()
        .and_then(|i| i.table_name()))
    .or_else(|| {
        one(input
            .downcast_ref::<PutItemInput>()
            .and_then(|i| i.table_name()))
    })
    .or_else(|| {
        one(input
            .downcast_ref::<UpdateItemInput>()
            .and_then(|i| i.table_name()))
    })
    .or_else(|| {
        one(input
            .downcast_ref::<DeleteItemInput>()
            .and_then(|i| i.table_name()))
    })
    .or_else(|| {
        one(input
            .downcast_ref::<ScanInput>()
            .and_then(|i| i.table_name()))
    })
    .or_else(|| {
        one(input
            .downcast_ref::<QueryInput>()
            .and_then(|i| i.table_name()))
    });
    if let Some(tables) = single {
        return tables;
    }
    let mut tables: Vec<String> = input
        .downcast_ref::<TransactWriteItemsInput>()
        .map(|i| {
            i.transact_items()
                .iter()
                .filter_map(|item| {
                    item.put()
                        .map(|p| p.table_name())
                        .or_else(|| item.delete().map(|d| d.table_name()))
                        .or_else(|| item.update().map(|u| u.table_name()))
                        .or_else(|| item.condition_check().map(|c| c.table_name()))
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    tables.sort();
    tables.dedup();
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    use opentelemetry_sdk::trace::{SpanData, SpanExporter};
    use std::sync::{Arc, Mutex};

    /// Spans as exported, in memory.
    #[derive(Debug, Clone, Default)]
    struct Memory(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Memory {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    #[test]
    fn a_request_span_continues_the_callers_trace_and_its_ids_are_logged() {
        let memory = Memory::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        let logged = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&logged);
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                        m.is_span() && ours(m.target())
                    })),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(move || Sink(Arc::clone(&sink))),
            );
        let mut headers = lambda_http::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = request_span(&headers, "GET", "/users/1", "r-1", "api-key:ci");
            span.in_scope(|| {
                tracing::info!("inside");
                // Not ours: never exported.
                let _sdk = tracing::info_span!(target: "aws_smithy_runtime", "invoke").entered();
            });
            record_response(&span, 503);
            // A health check's span is logged, never exported.
            health_span("probe").in_scope(|| tracing::info!("healthy"));
        });
        let spans = memory.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 1, "{spans:?}");
        let server = &spans[0];
        assert_eq!(server.span_kind, opentelemetry::trace::SpanKind::Server);
        assert_eq!(
            server.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(matches!(
            server.status,
            opentelemetry::trace::Status::Error { .. }
        ));
        let line = String::from_utf8(logged.lock().unwrap().clone()).unwrap();
        assert!(
            line.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""),
            "{line}"
        );
        let span_id = format!("\"span_id\":\"{}\"", server.span_context.span_id());
        assert!(line.contains(&span_id), "{line}");
    }

    /// A log writer into shared memory.
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_transaction_names_each_table_once() {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
        use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
        let put = |table: &str| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(Default::default()))
                        .build()
                        .unwrap(),
                )
                .build()
        };
        let delete = TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name("Users")
                    .set_key(Some(Default::default()))
                    .build()
                    .unwrap(),
            )
            .build();
        let input = TransactWriteItemsInput::builder()
            .transact_items(put("Users"))
            .transact_items(put("Claims"))
            .transact_items(delete)
            .build()
            .unwrap();
        let input = aws_smithy_runtime_api::client::interceptors::context::Input::erase(input);
        assert_eq!(table_names(&input), ["Claims", "Users"]);
        let get = aws_sdk_dynamodb::operation::get_item::GetItemInput::builder()
            .table_name("Products")
            .build()
            .unwrap();
        let input = aws_smithy_runtime_api::client::interceptors::context::Input::erase(get);
        assert_eq!(table_names(&input), ["Products"]);
    }
}

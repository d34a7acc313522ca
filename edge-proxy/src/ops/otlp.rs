//! OTLP trace export: OpenTelemetry's SDK (batch span processor, OTLP/HTTP protobuf
//! exporter) with two counts the SDK keeps to itself. A gate in front of the batch processor
//! bounds the spans waiting or in export and drops past it (`reason="queue_full"`), and the
//! exporter is wrapped to count what each export delivered or lost (`export_failed`). So a
//! slow or absent collector costs a request nothing: spans wait on the export thread's queue,
//! never on the request, and what cannot wait is dropped and counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

/// How spans are exported (the `[tracing]` section's settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Share of new traces recorded; `None`: `OTEL_TRACES_SAMPLER` decides.
    pub sample_ratio: Option<f64>,
    /// `service.name`, unless `OTEL_SERVICE_NAME` is set.
    pub service_name: String,
    /// Spans that may wait for export.
    pub queue_size: usize,
    /// Longest one export may take.
    pub export_timeout: Duration,
}

/// Where spans go, when they go anywhere: the configured collector (base URL), else the
/// standard variables. `None` when nothing is configured or `OTEL_SDK_DISABLED=true` /
/// `OTEL_TRACES_EXPORTER=none`.
pub fn endpoint(
    configured: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Endpoint> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    if let Some(base) = configured {
        return Some(Endpoint::Url(traces_url(base)));
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
    {
        return Some(Endpoint::FromEnv);
    }
    None
}

/// A collector's base URL with the traces path, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// An export destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The full URL spans are posted to.
    Url(String),
    /// Whatever `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` say (the
    /// exporter reads them, with `OTEL_EXPORTER_OTLP_HEADERS` and friends).
    FromEnv,
}

/// What the export counts into (`edge_trace_spans_*`).
#[derive(Debug, Clone)]
pub struct SpanCounters {
    pub exported: IntCounter,
    pub queue_full: IntCounter,
    pub export_failed: IntCounter,
}

/// A tracer provider exporting to `endpoint` over OTLP/HTTP (protobuf) in batches.
pub fn provider(
    config: &Settings,
    endpoint: &Endpoint,
    counters: SpanCounters,
) -> Result<SdkTracerProvider, String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(config.export_timeout);
    if let Endpoint::Url(url) = endpoint {
        exporter = exporter.with_endpoint(url.clone());
    }
    let exporter = exporter
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::recommended())
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        pending: Arc::clone(&pending),
        counters: counters.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(config.queue_size)
            .build(),
    )
    .build();
    let gate = Gate {
        inner: batch,
        pending,
        limit: config.queue_size,
        counters,
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(config.service_name.clone());
    }
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(gate)
        .with_resource(resource.build());
    if let Some(ratio) = config.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    }
    Ok(builder.build())
}

/// Admits a finished span to the batch processor while fewer than `limit` are waiting or in
/// export; drops and counts it otherwise.
#[derive(Debug)]
struct Gate {
    inner: BatchSpanProcessor,
    pending: Arc<AtomicUsize>,
    limit: usize,
    counters: SpanCounters,
}

impl SpanProcessor for Gate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.counters.queue_full.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, counting each batch as exported or lost.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    counters: SpanCounters,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(spans, Ordering::Relaxed);
        let counter = match result {
            Ok(()) => &self.counters.exported,
            Err(_) => &self.counters.export_failed,
        };
        counter.inc_by(spans as u64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_an_endpoint_is_configured() {
        let none = |_: &str| None;
        assert_eq!(endpoint(None, none), None);
        assert_eq!(
            endpoint(Some("http://collector:4318/"), none),
            Some(Endpoint::Url("http://collector:4318/v1/traces".into()))
        );
        let env = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c".into());
        assert_eq!(endpoint(None, env), Some(Endpoint::FromEnv));
        let disabled = |name: &str| (name == "OTEL_SDK_DISABLED").then(|| "true".into());
        assert_eq!(endpoint(Some("http://c"), disabled), None);
        let none_exporter = |name: &str| (name == "OTEL_TRACES_EXPORTER").then(|| "none".into());
        assert_eq!(endpoint(Some("http://c"), none_exporter), None);
    }
}

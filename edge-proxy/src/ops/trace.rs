//! Request ids and W3C trace context: a server span per request and a client span per
//! upstream attempt, parented with OpenTelemetry's W3C propagator (the upstream's
//! `traceparent` is written directly, see [`RequestTrace::inject`]).
//!
//! A client's `x-request-id` is kept if it is well formed (1–128 characters of letters, digits,
//! `-`, `_`, `.`, `:`), otherwise the proxy makes one. A valid incoming `traceparent` (any
//! version the spec allows) is continued, with its `tracestate`; otherwise a trace starts here.
//! Each attempt sends its own client span as the upstream's parent.
//!
//! Spans are built with OpenTelemetry's API, not as `tracing` spans through
//! tracing-opentelemetry: a request's life is a series of Pingora callbacks, not one future a
//! `tracing` span could be entered around. With export off, ids are still made and propagated
//! (and logged) but nothing is recorded.

use http::header::InvalidHeaderValue;
use http::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

/// The W3C trace context headers.
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest accepted client request id.
const MAX_REQUEST_ID: usize = 128;

/// A request's id, made once as a header value: the upstream's copy of the request and the
/// response carry clones, which share its bytes (a client's well-formed id is the very value
/// it sent).
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id if well formed, else a new one.
    pub fn of(incoming: Option<&HeaderValue>) -> RequestId {
        match incoming {
            Some(id) if well_formed(id.as_bytes()) => RequestId(id.clone()),
            _ => RequestId::new(),
        }
    }

    /// A random v4 UUID from the thread-local PRNG: no syscall per request (ids need to be
    /// unique, not unpredictable).
    pub fn new() -> RequestId {
        let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut text);
        // Owned by a shared allocation from the start, so that its clones (the upstream's
        // header and the response's) only count references: bytes copied from a slice are
        // moved into a shared allocation by their first clone, a second allocation.
        // Hex digits and hyphens: always a valid header value.
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
            .map_or_else(|_| RequestId::default(), RequestId)
    }

    pub fn as_str(&self) -> &str {
        // Only ever made from visible ASCII (see `of` and `new`).
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// The empty id of a request whose head was not read.
impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 1–128 letters, digits, `-`, `_`, `.`, `:`.
fn well_formed(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// Makes each request's trace; exports its spans when built with a provider.
#[derive(Clone)]
pub struct Tracer {
    exporting: Option<(SdkTracerProvider, SdkTracer)>,
}

impl Tracer {
    /// Ids made and propagated, nothing recorded.
    pub fn off() -> Tracer {
        Tracer { exporting: None }
    }

    /// Spans recorded (as the provider's sampler decides) and exported by `provider`.
    pub fn exporting(provider: SdkTracerProvider) -> Tracer {
        let tracer = provider.tracer("edge-proxy");
        Tracer {
            exporting: Some((provider, tracer)),
        }
    }

    pub fn is_exporting(&self) -> bool {
        self.exporting.is_some()
    }

    /// Exports what has ended so far (tests; shutdown).
    pub fn flush(&self) {
        if let Some((provider, _)) = &self.exporting {
            if let Err(error) = provider.force_flush() {
                tracing::debug!(%error, "trace export flush failed");
            }
        }
    }

    /// Exports what is left and stops the export thread.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.exporting {
            if let Err(error) = provider.shutdown() {
                tracing::debug!(%error, "trace export shutdown failed");
            }
        }
    }

    /// The trace of a request with these headers: the proxy's server span, a child of the
    /// client's `traceparent` when it is valid.
    pub fn start(&self, headers: &http::HeaderMap, method: &str) -> RequestTrace {
        // Without a `traceparent` there is nothing to continue: the propagator would only
        // clone the current context (always empty here: the proxy attaches none).
        let parent = if headers.contains_key(&TRACEPARENT) {
            TraceContextPropagator::new().extract(&Headers(headers))
        } else {
            Context::new()
        };
        let incoming = parent.span().span_context().clone();
        let continued = incoming.is_valid();
        let (server, recording) = match &self.exporting {
            Some((_, tracer)) => {
                let span = tracer
                    .span_builder(method.to_string())
                    .with_kind(SpanKind::Server)
                    .start_with_context(tracer, &parent);
                let context = span.span_context().clone();
                (
                    context,
                    Some(span).filter(|s| s.is_recording()).map(Box::new),
                )
            }
            None if continued => (child_of(&incoming), None),
            None => (
                SpanContext::new(
                    TraceId::from(fastrand::u128(1..)),
                    SpanId::from(fastrand::u64(1..)),
                    TraceFlags::SAMPLED,
                    false,
                    Default::default(),
                ),
                None,
            ),
        };
        RequestTrace {
            tracer: self.exporting.as_ref().map(|(_, t)| t.clone()),
            server,
            recording,
            attempt: None,
            continued,
        }
    }
}

/// A new span id in `parent`'s trace, with its flags and state.
fn child_of(parent: &SpanContext) -> SpanContext {
    SpanContext::new(
        parent.trace_id(),
        SpanId::from(fastrand::u64(1..)),
        parent.trace_flags(),
        false,
        parent.trace_state().clone(),
    )
}

/// One upstream attempt's client span.
struct Attempt {
    context: SpanContext,
    span: Option<Box<Span>>,
}

/// One request's trace.
pub struct RequestTrace {
    tracer: Option<SdkTracer>,
    server: SpanContext,
    /// The server span, while the SDK records it. Boxed, as is an attempt's: an SDK span is
    /// most of a kilobyte, and this trace lives in Pingora's per-request future, which is
    /// copied into its box on every request whether or not anything is recorded.
    recording: Option<Box<Span>>,
    attempt: Option<Attempt>,
    /// True when the trace came from the client.
    pub continued: bool,
}

impl RequestTrace {
    pub fn trace_id(&self) -> TraceId {
        self.server.trace_id()
    }

    /// The proxy's server span.
    pub fn span_id(&self) -> SpanId {
        self.server.span_id()
    }

    /// The trace and server span ids as text, without formatting machinery.
    pub fn hex_ids(&self) -> HexIds {
        let mut ids = HexIds {
            trace: [0; 32],
            span: [0; 16],
        };
        hex(&mut ids.trace, &self.trace_id().to_bytes());
        hex(&mut ids.span, &self.span_id().to_bytes());
        ids
    }

    pub fn is_sampled(&self) -> bool {
        self.server.is_sampled()
    }

    /// Whether spans of this request are recorded (so attributes are worth building).
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Starts the client span of an upstream attempt (ending the one before, if still open).
    /// `resend` is 0 for the first attempt.
    pub fn begin_attempt(&mut self, method: &str, address: &str, port: u16, resend: u32) {
        self.end_attempt(None, None);
        let span = match (&self.tracer, &self.recording) {
            (Some(tracer), Some(_)) => {
                let mut attributes = vec![
                    KeyValue::new("http.request.method", method.to_string()),
                    KeyValue::new("server.address", address.to_string()),
                    KeyValue::new("server.port", i64::from(port)),
                ];
                if resend > 0 {
                    attributes.push(KeyValue::new(
                        "http.request.resend_count",
                        i64::from(resend),
                    ));
                }
                let parent = Context::new().with_remote_span_context(self.server.clone());
                Some(Box::new(
                    tracer
                        .span_builder(method.to_string())
                        .with_kind(SpanKind::Client)
                        .with_attributes(attributes)
                        .start_with_context(tracer, &parent),
                ))
            }
            _ => None,
        };
        let context = match &span {
            Some(span) => span.span_context().clone(),
            None => child_of(&self.server),
        };
        self.attempt = Some(Attempt { context, span });
    }

    /// Adds an attribute to the current attempt's span, if recorded.
    pub fn attempt_attribute(&mut self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(span) = self.attempt.as_mut().and_then(|a| a.span.as_mut()) {
            span.set_attribute(attribute());
        }
    }

    /// Records the upstream's response status on the current attempt's span (which ends when
    /// the response has been passed on, or at the next attempt).
    pub fn attempt_status(&mut self, status: u16) {
        if let Some(span) = self.attempt.as_mut().and_then(|a| a.span.as_mut()) {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 400 {
                span.set_attribute(KeyValue::new("error.type", status.to_string()));
                span.set_status(Status::error(status.to_string()));
            }
        }
    }

    /// Ends the current attempt's span with the upstream's status, or the error that ended it.
    pub fn end_attempt(&mut self, status: Option<u16>, error: Option<&str>) {
        let Some(mut span) = self.attempt.as_mut().and_then(|a| a.span.take()) else {
            return;
        };
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let error_type = error
            .map(str::to_string)
            .or_else(|| status.filter(|s| *s >= 400).map(|s| s.to_string()));
        if let Some(error_type) = error_type {
            span.set_attribute(KeyValue::new("error.type", error_type.clone()));
            span.set_status(Status::error(error_type));
        }
        span.end();
    }

    /// Sets `traceparent` / `tracestate` on the upstream request: the current attempt's span
    /// as the parent. The same header OpenTelemetry's W3C propagator writes (a test holds
    /// them equal), written straight into the request: the propagator's way wraps the span
    /// in a `Context` and formats through `format!`, four allocations per request for a
    /// fixed 55-byte value.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        let context = self
            .attempt
            .as_ref()
            .map_or(&self.server, |attempt| &attempt.context);
        if !context.is_valid() {
            return;
        }
        let mut set = |name: &HeaderName, value: Result<HeaderValue, InvalidHeaderValue>| {
            let set = value
                .map_err(http::Error::from)
                .and_then(|value| Ok(headers.try_insert(name.clone(), value)?));
            if let Err(error) = set {
                tracing::debug!(%error, %name, "cannot set trace header");
            }
        };
        set(&TRACEPARENT, HeaderValue::from_bytes(&traceparent(context)));
        let state = context.trace_state().header();
        if !state.is_empty() {
            set(&TRACESTATE, HeaderValue::try_from(state));
        }
    }

    /// Ends the request: the open attempt, then the server span, named `method route`, with
    /// the response's status (`0`: none was written) and the error that ended it, if any.
    pub fn finish(&mut self, method: &str, route: Option<&str>, status: u16, error: Option<&str>) {
        self.end_attempt(None, error);
        let Some(mut span) = self.recording.take() else {
            return;
        };
        if let Some(route) = route {
            span.set_attribute(KeyValue::new("http.route", route.to_string()));
            span.update_name(format!("{method} {route}"));
        }
        if status > 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if status == 0 || status >= 500 {
            let error_type = error.map_or_else(|| status.to_string(), str::to_string);
            span.set_attribute(KeyValue::new("error.type", error_type.clone()));
            span.set_status(Status::error(error_type));
        }
        span.end();
    }

    /// Adds attributes to the server span, if recorded.
    pub fn server_attributes(&mut self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = self.recording.as_mut() {
            span.set_attributes(attributes());
        }
    }
}

impl Drop for RequestTrace {
    /// A request dropped before `finish` (Pingora gave up on it) still ends its spans.
    fn drop(&mut self) {
        if self.recording.is_some() {
            self.finish("", None, 0, Some("dropped"));
        }
    }
}

/// Reads `traceparent` / `tracestate` from a request's headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The W3C `traceparent` value of `context`: version 00, its trace and span ids, and the
/// sampled flag (the only flag version 00 defines).
fn traceparent(context: &SpanContext) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&mut out[3..35], &context.trace_id().to_bytes());
    hex(&mut out[36..52], &context.span_id().to_bytes());
    hex(
        &mut out[53..55],
        &[(context.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    out
}

/// `bytes` as lower-case hex digits into `out` (twice their length).
fn hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// A request's trace and span ids as hex text, for its access-log line.
pub struct HexIds {
    trace: [u8; 32],
    span: [u8; 16],
}

impl HexIds {
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace).unwrap_or("-")
    }

    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.span).unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let id = |text: &[u8]| RequestId::of(Some(&HeaderValue::from_bytes(text).unwrap()));
        assert_eq!(id(b"abc-123_x.y:z").as_str(), "abc-123_x.y:z");
        let longest = "a".repeat(128);
        assert_eq!(id(longest.as_bytes()).as_str(), longest);
        for bad in [
            "",
            "has space",
            "semi;colon",
            "tab\tin",
            &"a".repeat(129),
            "ünï",
        ] {
            let generated = id(bad.as_bytes());
            assert_ne!(generated.as_str(), bad);
            assert!(uuid::Uuid::parse_str(generated.as_str()).is_ok());
        }
        let new = RequestId::new();
        let parsed = uuid::Uuid::parse_str(new.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(new.as_str(), parsed.hyphenated().to_string());
        assert_eq!(new.header_value(), new.as_str());
        assert_ne!(RequestId::new().as_str(), new.as_str());
        assert_eq!(RequestId::of(None).as_str().len(), 36);
    }

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(traceparent: &str, tracestate: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", traceparent.parse().unwrap());
        headers.insert("tracestate", tracestate.parse().unwrap());
        headers
    }

    /// `(traceparent, tracestate)` the upstream gets.
    fn sent(trace: &RequestTrace) -> (String, Option<String>) {
        let mut headers = http::HeaderMap::new();
        trace.inject(&mut headers);
        let header = |name| {
            headers
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
        };
        (header("traceparent").unwrap(), header("tracestate"))
    }

    #[test]
    fn continues_a_valid_trace() {
        let mut trace = Tracer::off().start(&headers(INCOMING, "vendor=x"), "GET");
        assert!(trace.continued);
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(trace.span_id().to_string(), "00f067aa0ba902b7");
        let (parent, state) = sent(&trace);
        assert_eq!(
            parent,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", trace.span_id())
        );
        assert_eq!(state.as_deref(), Some("vendor=x"));
        // Each attempt is the upstream's parent, a new span each time.
        trace.begin_attempt("GET", "10.0.0.1", 80, 0);
        let first = sent(&trace).0;
        trace.begin_attempt("GET", "10.0.0.2", 80, 1);
        let second = sent(&trace).0;
        assert!(first.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(first, parent);
        assert_ne!(first, second);
    }

    #[test]
    fn accepts_future_versions_and_keeps_the_sampled_flag() {
        // W3C: a higher version is parsed as version 00 with anything after it ignored.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        let trace = Tracer::off().start(&headers(future, "a=1"), "GET");
        assert!(trace.continued);
        assert!(!trace.is_sampled());
        assert!(sent(&trace).0.ends_with("-00"));
    }

    #[test]
    fn starts_a_trace_on_invalid_input() {
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let trace = Tracer::off().start(&headers(bad, "vendor=x"), "GET");
            assert!(!trace.continued, "{bad}");
            assert!(trace.is_sampled());
            assert_ne!(trace.trace_id(), TraceId::INVALID);
            assert_ne!(trace.span_id(), SpanId::INVALID);
            assert_eq!(sent(&trace).1, None, "tracestate only with a valid parent");
        }
    }

    /// The headers written by hand are the ones OpenTelemetry's W3C propagator writes, for
    /// contexts of every flag and with or without a trace state.
    #[test]
    fn injects_what_the_w3c_propagator_injects() {
        let states = [
            opentelemetry::trace::TraceState::NONE,
            opentelemetry::trace::TraceState::from_key_value([("vendor", "x"), ("b", "2")])
                .unwrap(),
        ];
        for round in 0..200u32 {
            let flags = TraceFlags::new((round % 4) as u8 * 0x55);
            let state = states[round as usize % 2].clone();
            let trace_id = match round {
                0 => TraceId::from(1),
                1 => TraceId::from(u128::MAX),
                _ => TraceId::from(fastrand::u128(1..)),
            };
            let span_id = match round {
                0 => SpanId::from(1),
                1 => SpanId::from(u64::MAX),
                _ => SpanId::from(fastrand::u64(1..)),
            };
            let context = SpanContext::new(trace_id, span_id, flags, false, state);
            let trace = RequestTrace {
                tracer: None,
                server: context.clone(),
                recording: None,
                attempt: None,
                continued: false,
            };
            let mut expected = std::collections::HashMap::new();
            TraceContextPropagator::new().inject_context(
                &Context::new().with_remote_span_context(context),
                &mut expected,
            );
            let (parent, state) = sent(&trace);
            assert_eq!(Some(&parent), expected.get("traceparent"), "round {round}");
            let ids = trace.hex_ids();
            assert_eq!(ids.trace_id(), trace.trace_id().to_string());
            assert_eq!(ids.span_id(), trace.span_id().to_string());
            assert_eq!(
                state,
                expected
                    .get("tracestate")
                    .filter(|s| !s.is_empty())
                    .cloned()
            );
        }
    }

    /// Spans as exported, in memory.
    #[derive(Debug, Clone, Default)]
    struct Memory(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Memory {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn recording() -> (Tracer, Memory) {
        let memory = Memory::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        (Tracer::exporting(provider), memory)
    }

    fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn records_a_server_span_and_a_client_span_per_attempt() {
        let (tracer, memory) = recording();
        let mut trace = tracer.start(&headers(INCOMING, "vendor=x"), "GET");
        trace.begin_attempt("GET", "10.0.0.1", 9000, 0);
        let first = sent(&trace).0;
        trace.end_attempt(Some(503), None);
        trace.begin_attempt("GET", "10.0.0.2", 9000, 1);
        trace.finish("GET", Some("/api/products"), 200, None);
        let spans = memory.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 3, "{spans:?}");
        let (server, clients): (Vec<_>, Vec<_>) =
            spans.iter().partition(|s| s.span_kind == SpanKind::Server);
        let server = server[0];
        assert_eq!(server.name, "GET /api/products");
        assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(server.parent_span_is_remote);
        assert_eq!(
            attribute(server, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(server.status, Status::Unset);
        for client in &clients {
            assert_eq!(client.span_kind, SpanKind::Client);
            assert_eq!(client.parent_span_id, server.span_context.span_id());
            assert_eq!(
                client.span_context.trace_id(),
                server.span_context.trace_id()
            );
        }
        assert!(first.contains(&clients[0].span_context.span_id().to_string()));
        assert_eq!(attribute(clients[0], "error.type").as_deref(), Some("503"));
        assert_eq!(
            attribute(clients[1], "http.request.resend_count").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn an_unsampled_parent_records_nothing_but_still_propagates() {
        let (tracer, memory) = recording();
        let unsampled = INCOMING.replace("-01", "-00");
        let mut trace = tracer.start(&headers(&unsampled, ""), "GET");
        trace.begin_attempt("GET", "10.0.0.1", 9000, 0);
        assert!(!trace.is_recording());
        assert!(sent(&trace).0.ends_with("-00"));
        trace.finish("GET", None, 200, None);
        assert!(memory.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_dropped_request_still_ends_its_spans() {
        let (tracer, memory) = recording();
        let mut trace = tracer.start(&http::HeaderMap::new(), "GET");
        trace.begin_attempt("GET", "10.0.0.1", 9000, 0);
        drop(trace);
        let spans = memory.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2);
        assert!(spans
            .iter()
            .all(|s| matches!(s.status, Status::Error { .. })));
    }
}

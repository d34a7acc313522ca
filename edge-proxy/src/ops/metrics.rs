//! The proxy's Prometheus metrics, owned by one struct (no global registry) and rendered in the
//! text format by the admin listener.

use std::sync::{Mutex, OnceLock};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// One instance's breaker state and health, for the per-instance gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSeries {
    pub service: String,
    pub instance: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    pub healthy: bool,
}

const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// Why a request was refused before it was routed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedHead {
    /// The head did not arrive whole in time.
    Timeout,
    /// Not valid HTTP/1.1, or `CONNECT`.
    Malformed,
}

impl RefusedHead {
    fn label(self) -> &'static str {
        match self {
            RefusedHead::Timeout => "timeout",
            RefusedHead::Malformed => "malformed",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    upstream_seconds: HistogramVec,
    retries: IntCounterVec,
    rate_limited: IntCounterVec,
    auth_rejected: IntCounterVec,
    breaker_state: IntGaugeVec,
    instance_healthy: IntGaugeVec,
    discovery_refreshes: IntCounterVec,
    registry_rejected: IntCounterVec,
    dns_resolutions: IntCounterVec,
    refused_heads: IntCounterVec,
    panics: IntCounterVec,
    jwks_refreshes: IntCounterVec,
    client_errors: IntCounterVec,
    log_dropped: IntCounterVec,
    limit_store_calls: IntCounterVec,
    limit_store_up: IntGaugeVec,
    config_reloads: IntCounterVec,
    trace_spans: IntCounterVec,
    cache_requests: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_items: IntGaugeVec,
    cache_evictions: IntCounterVec,
    cache_purged: IntCounterVec,
    /// Held while the per-instance series are replaced, so a scrape sees all or none.
    instance_series: Mutex<()>,
    names: Vec<String>,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Every metric family name, as a query may use it (histograms with their series).
        let names = std::cell::RefCell::new(Vec::new());
        let register = |name: &str, collector: Box<dyn Collector>, histogram: bool| {
            for desc in collector.desc() {
                let mut names = names.borrow_mut();
                names.push(desc.fq_name.clone());
                if histogram {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.push(format!("{}{suffix}", desc.fq_name));
                    }
                }
            }
            registry
                .register(collector)
                .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
            register(name, Box::new(metric.clone()), false);
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
            register(name, Box::new(metric.clone()), false);
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let metric = HistogramVec::new(opts, labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
            register(name, Box::new(metric.clone()), true);
            metric
        };
        let build = gauge(
            "edge_build_info",
            "The running build, by version and profile; always 1.",
            &["version", "profile"],
        );
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), profile])
            .set(1);
        // process_cpu_seconds_total, process_resident_memory_bytes, open fds, start time.
        register(
            "process metrics",
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
            false,
        );
        let config_reloads = counter(
            "edge_config_reloads_total",
            "Config reloads (SIGHUP or POST /reload), by outcome: applied or refused (the \
             running config stays).",
            &["outcome"],
        );
        // Both outcomes from the start, so increase() sees the first refusal.
        for outcome in ["applied", "refused"] {
            config_reloads.with_label_values(&[outcome]);
        }
        Metrics {
            requests: counter(
                "edge_requests_total",
                "Requests answered, by route, method and status class.",
                &["route", "method", "status"],
            ),
            request_seconds: histogram(
                "edge_request_duration_seconds",
                "Time from request to response end, by route.",
                &["route"],
            ),
            upstream_seconds: histogram(
                "edge_upstream_duration_seconds",
                "Time spent on the upstream, by service.",
                &["service"],
            ),
            retries: counter(
                "edge_retries_total",
                "Retries on another instance, by service.",
                &["service"],
            ),
            rate_limited: counter(
                "edge_rate_limited_total",
                "Requests refused with 429, by route.",
                &["route"],
            ),
            auth_rejected: counter(
                "edge_auth_rejected_total",
                "Requests refused by authentication or authorization.",
                &["route", "status"],
            ),
            breaker_state: gauge(
                "edge_circuit_breaker_state",
                "Breaker per instance: 1 for its current state (closed, open, half_open), 0 for \
                 the others.",
                &["service", "instance", "state"],
            ),
            instance_healthy: gauge(
                "edge_instance_healthy",
                "Active health per instance: 1 healthy, 0 not.",
                &["service", "instance"],
            ),
            discovery_refreshes: counter(
                "edge_discovery_refresh_total",
                "Registry reads, by service and outcome.",
                &["service", "outcome"],
            ),
            registry_rejected: counter(
                "edge_registry_rejected_total",
                "Registry entries skipped: unparseable, or not allowed to receive signed requests.",
                &["service"],
            ),
            dns_resolutions: counter(
                "edge_dns_resolutions_total",
                "Instance host resolutions, by service and outcome (a failure keeps the last \
                 good addresses).",
                &["service", "outcome"],
            ),
            refused_heads: counter(
                "edge_refused_heads_total",
                "Requests refused before routing: head too slow (timeout) or not valid HTTP \
                 (malformed).",
                &["reason"],
            ),
            panics: counter(
                "edge_panics_total",
                "Requests whose path panicked (answered 500 where a response had not begun).",
                &[],
            ),
            jwks_refreshes: counter(
                "edge_jwks_refresh_total",
                "JWKS fetches, by outcome (a failure keeps the last good keys).",
                &["outcome"],
            ),
            client_errors: counter(
                "edge_auth_failures_limited_total",
                "Requests refused with 429 because their client address failed authentication \
                 too often, by route.",
                &["route"],
            ),
            log_dropped: counter(
                "edge_log_lines_dropped_total",
                "Log lines (access log included) dropped because stderr could not keep up.",
                &[],
            ),
            limit_store_calls: counter(
                "edge_rate_limit_store_calls_total",
                "Calls to the global rate-limit store (Redis), by outcome: ok, error, timeout, \
                 or skipped (not tried while the store is backing off after a failure).",
                &["outcome"],
            ),
            limit_store_up: gauge(
                "edge_rate_limit_store_up",
                "1 while the last call to the global rate-limit store succeeded, 0 after a failure.",
                &[],
            ),
            trace_spans: {
                let spans = counter(
                    "edge_trace_spans_total",
                    "Spans handed to trace export, by outcome: exported, or dropped because the \
                     export queue was full (queue_full) or the collector did not take them \
                     (export_failed). Stays 0 while no OTLP endpoint is configured.",
                    &["outcome"],
                );
                for outcome in ["exported", "queue_full", "export_failed"] {
                    spans.with_label_values(&[outcome]);
                }
                spans
            },
            cache_requests: counter(
                "edge_cache_requests_total",
                "Requests on cached routes, by route and what the edge cache did: hit, stale \
                 (served stale: origin failing or being asked again), miss, expired, \
                 revalidated, uncacheable (fetched, not stored), bypass (not a GET).",
                &["route", "outcome"],
            ),
            cache_bytes: gauge(
                "edge_cache_bytes",
                "Bytes of response bodies the edge cache holds, by route (each route has its \
                 own budget).",
                &["route"],
            ),
            cache_items: gauge(
                "edge_cache_items",
                "Responses the edge cache holds, by route.",
                &["route"],
            ),
            cache_evictions: counter(
                "edge_cache_evictions_total",
                "Responses the edge cache evicted to stay within a route's memory budget, by \
                 route.",
                &["route"],
            ),
            cache_purged: {
                let purged = counter(
                    "edge_cache_purged_total",
                    "Responses purged from the edge cache, by trigger: a write through the \
                     proxy (write), the admin endpoint (admin), or a reload that dropped a \
                     route's cache or changed its budget (reload).",
                    &["trigger"],
                );
                for trigger in ["write", "admin", "reload"] {
                    purged.with_label_values(&[trigger]);
                }
                purged
            },
            instance_series: Mutex::new(()),
            config_reloads,
            names: names.take(),
            registry,
        }
    }

    /// Every metric family this registry exports (histograms with their `_bucket`, `_sum`
    /// and `_count` series), whether or not it has a series yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn config_reload(&self, applied: bool) {
        self.config_reloads
            .with_label_values(&[if applied { "applied" } else { "refused" }])
            .inc();
    }

    /// One call to the global rate-limit store: `ok`, `error`, `timeout` or `skipped`.
    pub fn limit_store_call(&self, outcome: &'static str) {
        self.limit_store_calls.with_label_values(&[outcome]).inc();
    }

    /// A global limiter exists: its series from the start (up, and every outcome at 0).
    pub fn limit_store_ready(&self) {
        for outcome in ["ok", "error", "timeout", "skipped"] {
            self.limit_store_calls.with_label_values(&[outcome]);
        }
        self.limit_store_up(true);
    }

    pub fn limit_store_up(&self, up: bool) {
        self.limit_store_up
            .with_label_values::<&str>(&[])
            .set(i64::from(up));
    }

    /// A request refused before it was routed (see `proxy::downstream`).
    pub fn refused_head(&self, reason: RefusedHead) {
        self.refused_heads
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// One request answered. `method` is the client's: anything outside the standard methods
    /// is counted as `OTHER`, so clients cannot mint label values (and series) at will.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[
                route,
                METHODS[method_index(method)],
                CLASSES[class_index(status)],
            ])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(seconds);
    }

    pub fn upstream(&self, service: &str, seconds: f64) {
        self.upstream_seconds
            .with_label_values(&[service])
            .observe(seconds);
    }

    /// The series of one route (and of the service it goes to), resolved once: counting a
    /// request through them hashes no label values.
    pub fn route(&self, route: &str, service: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_string(),
            requests: self.requests.clone(),
            counters: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            cache_requests: self.cache_requests.clone(),
            cache: std::array::from_fn(|_| OnceLock::new()),
            seconds: self.request_seconds.with_label_values(&[route]),
            upstream_seconds: self.upstream_seconds.with_label_values(&[service]),
        }
    }

    pub fn retry(&self, service: &str) {
        self.retries.with_label_values(&[service]).inc();
    }

    pub fn rate_limited(&self, route: &str) {
        self.rate_limited.with_label_values(&[route]).inc();
    }

    pub fn auth_rejected(&self, route: &str, status: u16) {
        self.auth_rejected
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    /// Replaces every per-instance series (breaker state, health) with `series`: instances
    /// no longer in any pool stop being reported.
    pub fn replace_instance_series(&self, series: &[InstanceSeries]) {
        let _whole = self
            .instance_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.breaker_state.reset();
        self.instance_healthy.reset();
        for entry in series {
            for state in BREAKER_STATES {
                self.breaker_state
                    .with_label_values(&[entry.service.as_str(), &entry.instance, state])
                    .set(i64::from(state == entry.breaker));
            }
            self.instance_health(&entry.service, &entry.instance, entry.healthy);
        }
    }

    pub fn instance_health(&self, service: &str, instance: &str, healthy: bool) {
        self.instance_healthy
            .with_label_values(&[service, instance])
            .set(i64::from(healthy));
    }

    pub fn discovery_refresh(&self, service: &str, ok: bool) {
        self.discovery_refreshes
            .with_label_values(&[service, if ok { "success" } else { "failure" }])
            .inc();
    }

    pub fn jwks_refresh(&self, ok: bool) {
        self.jwks_refreshes
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// A request refused because its client failed authentication too often.
    pub fn auth_failures_limited(&self, route: &str) {
        self.client_errors.with_label_values(&[route]).inc();
    }

    /// A panic on the request path, caught (see `proxy::downstream`).
    pub fn panicked(&self) {
        self.panics.with_label_values::<&str>(&[]).inc();
    }

    pub fn registry_rejected(&self, service: &str) {
        self.registry_rejected.with_label_values(&[service]).inc();
    }

    pub fn dns_resolution(&self, service: &str, ok: bool) {
        self.dns_resolutions
            .with_label_values(&[service, if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Each cached route's size and count, and its evictions since the last call (a scrape
    /// calls this); routes no longer cached leave the gauges.
    pub fn cache_state(&self, routes: &[CacheRouteState]) {
        self.cache_bytes.reset();
        self.cache_items.reset();
        for route in routes {
            let label = [route.route.as_str()];
            self.cache_bytes
                .with_label_values(&label)
                .set(route.bytes as i64);
            self.cache_items
                .with_label_values(&label)
                .set(route.items as i64);
            self.cache_evictions
                .with_label_values(&label)
                .inc_by(route.newly_evicted as u64);
        }
    }

    /// Responses purged, by `write` or `admin`.
    pub fn cache_purged(&self, trigger: &str, count: usize) {
        self.cache_purged
            .with_label_values(&[trigger])
            .inc_by(count as u64);
    }

    /// The counters trace export adds to.
    pub fn span_counters(&self) -> super::otlp::SpanCounters {
        let outcome = |o: &str| self.trace_spans.with_label_values(&[o]);
        super::otlp::SpanCounters {
            exported: outcome("exported"),
            queue_full: outcome("queue_full"),
            export_failed: outcome("export_failed"),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let _whole = self
            .instance_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let dropped = self.log_dropped.with_label_values::<&str>(&[]);
        let now = super::telemetry::dropped_lines();
        if now > dropped.get() {
            dropped.inc_by(now - dropped.get());
        }
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The `method` label values: the standard methods, then `OTHER` for anything else.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// The `status` label values: the class of the status, `none` when no response was written.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn method_index(method: &str) -> usize {
    METHODS[..7].iter().position(|m| *m == method).unwrap_or(7)
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

/// One cached route's part of the edge cache, for a scrape.
pub struct CacheRouteState {
    pub route: String,
    pub bytes: usize,
    pub items: usize,
    /// Evicted since the last scrape.
    pub newly_evicted: usize,
}

/// One route's request series (see [`Metrics::route`]). The counter of each method and status
/// class is looked up the first time it is used, so unused combinations export no series.
pub struct RouteMetrics {
    route: String,
    requests: IntCounterVec,
    counters: [[OnceLock<IntCounter>; 6]; 8],
    cache_requests: IntCounterVec,
    /// `edge_cache_requests_total` of this route, by outcome index, resolved on first use.
    cache: [OnceLock<IntCounter>; 8],
    seconds: Histogram,
    upstream_seconds: Histogram,
}

impl RouteMetrics {
    /// One request on this route answered (as [`Metrics::request`]).
    pub fn request(&self, method: &str, status: u16, seconds: f64) {
        let (m, c) = (method_index(method), class_index(status));
        self.counters[m][c]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[self.route.as_str(), METHODS[m], CLASSES[c]])
            })
            .inc();
        self.seconds.observe(seconds);
    }

    /// One request on this route and what the edge cache did: `outcome` is its label, `index`
    /// its place in a fixed list of at most 8 (the series is looked up once).
    pub fn cache(&self, index: usize, outcome: &str) {
        if let Some(cell) = self.cache.get(index) {
            cell.get_or_init(|| {
                self.cache_requests
                    .with_label_values(&[self.route.as_str(), outcome])
            })
            .inc();
        }
    }

    /// Time spent on an upstream attempt of this route's service.
    pub fn upstream(&self, seconds: f64) {
        self.upstream_seconds.observe(seconds);
    }
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_series() {
        let metrics = Metrics::new();
        for method in ["BREW", "X-RANDOM-1", "X-RANDOM-2", "get"] {
            metrics.request("-", method, 405, 0.001);
        }
        let text = metrics.render();
        assert!(
            text.contains("edge_requests_total{method=\"OTHER\",route=\"-\",status=\"4xx\"} 4"),
            "{text}"
        );
        assert!(!text.contains("BREW") && !text.contains("RANDOM"));
    }

    #[test]
    fn route_handles_count_into_the_same_series() {
        let metrics = Metrics::new();
        let route = metrics.route("/api/users", "users");
        route.request("GET", 200, 0.01);
        route.request("BREW", 0, 0.01);
        metrics.request("/api/users", "GET", 204, 0.01);
        route.upstream(0.002);
        let text = metrics.render();
        assert!(
            text.contains(
                "edge_requests_total{method=\"GET\",route=\"/api/users\",status=\"2xx\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "edge_requests_total{method=\"OTHER\",route=\"/api/users\",status=\"none\"} 1"
        ));
        assert!(text.contains("edge_request_duration_seconds_count{route=\"/api/users\"} 3"));
        assert!(text.contains("edge_upstream_duration_seconds_count{service=\"users\"} 1"));
        // No series for combinations never seen.
        assert!(!text.contains("method=\"POST\""));
    }

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.request("/api/users", "GET", 201, 0.01);
        metrics.request("/api/users", "GET", 404, 0.01);
        metrics.retry("users");
        let text = metrics.render();
        assert!(
            text.contains(
                "edge_requests_total{method=\"GET\",route=\"/api/users\",status=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(text
            .contains("edge_requests_total{method=\"GET\",route=\"/api/users\",status=\"4xx\"} 1"));
        assert!(text.contains("edge_retries_total{service=\"users\"} 1"));
        assert!(text.contains("# TYPE edge_request_duration_seconds histogram"));
    }
}

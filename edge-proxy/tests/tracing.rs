//! Spans exported over OTLP/HTTP, checked as a collector sees them: a receiver in the test
//! decodes the protobuf the proxy posts. One request is a server span and a client span per
//! upstream attempt, parented on the client's `traceparent`, and the upstream gets the client
//! span as its parent; a retry is a second client span; a slow or absent collector changes no
//! answer and its drops are counted.

mod support;

use std::time::Duration;

use otlp_receiver::{Receiver, Span};
use support::{client, eventually, free_port, start_proxy, Behaviour, RunningProxy, Stub};

fn config(upstreams: &[String], tracing: &str) -> String {
    let instances = upstreams
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0

        [tracing]
        {tracing}

        [services.svc]
        instances = [{instances}]
        balancer = "round-robin"
        [services.svc.health-check]
        enabled = false

        [[routes]]
        prefix = "/api"
        service = "svc"
        auth = "public"
        "#
    )
}

fn new_trace_id() -> String {
    format!("{:032x}", fastrand::u128(1..))
}

async fn get(proxy: &RunningProxy, trace_id: &str) -> u16 {
    client()
        .get(format!("{}/api/x", proxy.base))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn of_kind<'a>(spans: &'a [Span], kind: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.kind == kind).collect()
}

fn counter(proxy: &RunningProxy, outcome: &str) -> f64 {
    let text = proxy.handle.metrics.render();
    let series = format!("edge_trace_spans_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_a_server_span_and_a_client_span_the_upstream_continues() {
    let receiver = Receiver::start("127.0.0.1:0").await.unwrap();
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let tracing = format!("endpoint = \"{}\"", receiver.endpoint());
    let proxy = start_proxy(&config(&[stub.url()], &tracing), None).await;
    let trace_id = new_trace_id();
    assert_eq!(get(&proxy, &trace_id).await, 200);
    proxy.handle.tracer.flush();
    let spans = receiver
        .trace(&trace_id, Duration::from_secs(10), |s| s.len() >= 2)
        .await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = of_kind(&spans, "SPAN_KIND_SERVER")[0];
    let client_span = of_kind(&spans, "SPAN_KIND_CLIENT")[0];
    assert_eq!(server.service, "edge-proxy");
    assert_eq!(server.name, "GET /api");
    assert_eq!(
        server.parent_span_id, "00f067aa0ba902b7",
        "the client's span"
    );
    assert_eq!(server.attribute("http.request.method"), Some("GET"));
    assert_eq!(server.attribute("http.route"), Some("/api"));
    assert_eq!(server.attribute("url.path"), Some("/api/x"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
    assert_eq!(server.status, "STATUS_CODE_UNSET");
    assert_eq!(client_span.parent_span_id, server.span_id);
    assert_eq!(client_span.attribute("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client_span.attribute("url.full"),
        Some(format!("http://127.0.0.1:{}/svc/api/x", stub.port).as_str())
    );
    assert_eq!(
        client_span.attribute("http.response.status_code"),
        Some("200")
    );
    let head = stub.head();
    assert!(
        head.contains(&format!(
            "traceparent: 00-{trace_id}-{}-01\r\n",
            client_span.span_id
        )),
        "the upstream's parent is the client span: {head}"
    );
    // The access log line names the same spans; the counter saw them go.
    assert!(counter(&proxy, "exported") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_shows_two_client_spans() {
    let receiver = Receiver::start("127.0.0.1:0").await.unwrap();
    let failing = Stub::start("svc", Behaviour::Status(503)).await;
    let working = Stub::start("svc", Behaviour::Ok).await;
    let tracing = format!("endpoint = \"{}\"", receiver.endpoint());
    let proxy = start_proxy(&config(&[failing.url(), working.url()], &tracing), None).await;
    // Round robin: within two requests one goes to the failing instance first.
    let traces = [new_trace_id(), new_trace_id()];
    for trace_id in &traces {
        assert_eq!(get(&proxy, trace_id).await, 200);
    }
    proxy.handle.tracer.flush();
    let mut retried = None;
    for trace_id in &traces {
        let spans = receiver
            .trace(trace_id, Duration::from_secs(10), |s| s.len() >= 2)
            .await;
        if of_kind(&spans, "SPAN_KIND_CLIENT").len() == 2 {
            retried = Some(spans);
        }
    }
    let spans = retried.expect("one request was retried");
    let server = of_kind(&spans, "SPAN_KIND_SERVER")[0];
    let clients = of_kind(&spans, "SPAN_KIND_CLIENT");
    assert!(clients.iter().all(|c| c.parent_span_id == server.span_id));
    let first = clients
        .iter()
        .find(|c| c.attribute("http.request.resend_count").is_none())
        .unwrap();
    let second = clients
        .iter()
        .find(|c| c.attribute("http.request.resend_count") == Some("1"))
        .unwrap();
    assert_eq!(first.attribute("http.response.status_code"), Some("503"));
    assert_eq!(first.status, "STATUS_CODE_ERROR");
    assert_eq!(second.attribute("http.response.status_code"), Some("200"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_trace_is_propagated_but_not_recorded() {
    let receiver = Receiver::start("127.0.0.1:0").await.unwrap();
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let tracing = format!("endpoint = \"{}\"\nsample-ratio = 0.0", receiver.endpoint());
    let proxy = start_proxy(&config(&[stub.url()], &tracing), None).await;
    // No parent, ratio 0: not sampled.
    let response = client()
        .get(format!("{}/api/x", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(stub.head().contains("-00\r\n"), "{}", stub.head());
    // A sampled parent is honoured whatever the ratio.
    let trace_id = new_trace_id();
    assert_eq!(get(&proxy, &trace_id).await, 200);
    proxy.handle.tracer.flush();
    let spans = receiver
        .trace(&trace_id, Duration::from_secs(10), |s| s.len() >= 2)
        .await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert_eq!(
        receiver.spans().len(),
        2,
        "nothing of the unsampled request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_requests_are_answered_and_drops_counted() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    // Nothing listens here.
    let tracing = format!(
        "endpoint = \"http://127.0.0.1:{}\"\nexport-timeout-ms = 500",
        free_port()
    );
    let proxy = start_proxy(&config(&[stub.url()], &tracing), None).await;
    for _ in 0..20 {
        assert_eq!(get(&proxy, &new_trace_id()).await, 200);
    }
    // The last request's spans end just after its response: flush until all are counted.
    let all_failed = eventually(Duration::from_secs(10), || {
        proxy.handle.tracer.flush();
        counter(&proxy, "export_failed") == 40.0
    })
    .await;
    assert!(
        all_failed,
        "two spans a request: {}",
        counter(&proxy, "export_failed")
    );
    assert_eq!(counter(&proxy, "exported"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_fills_the_queue_and_drops_are_counted() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tracing = format!(
        "endpoint = \"http://{}\"\nqueue-size = 4\nexport-timeout-ms = 5000",
        silent.local_addr().unwrap()
    );
    let proxy = start_proxy(&config(&[stub.url()], &tracing), None).await;
    for _ in 0..20 {
        assert_eq!(get(&proxy, &new_trace_id()).await, 200);
    }
    // The last request's spans end just after its response.
    let dropped = eventually(Duration::from_secs(10), || {
        counter(&proxy, "queue_full") >= 36.0
    })
    .await;
    assert!(
        dropped,
        "at most 4 of 40 spans wait: {} dropped",
        counter(&proxy, "queue_full")
    );
}

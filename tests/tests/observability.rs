//! Request ids, trace context, logs and metrics across the proxy and the functions, checked on
//! the running stack's own log files and admin listener.
//!
//! Needs `STACK_LOG_DIR` (the stack's log folder) and `E2E_ADMIN_URL`: local stack only.

use std::time::Duration;

use e2e::{
    access_log, admin_url, api_key, base_url, client, counter, log_lines, raw_exchange,
    status_json, wait_for_log,
};

#[tokio::test]
async fn one_request_id_in_the_response_the_proxy_log_and_the_function_log() {
    let id = format!("e2e-{}", uuid::Uuid::new_v4());
    let missing_user = format!("{}/api/users/{}", base_url(), uuid::Uuid::new_v4());
    let response = client()
        .get(&missing_user)
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.headers()["x-request-id"], id.as_str());

    let line = access_log(&id)
        .await
        .expect("the proxy's access log has the request id");
    let access = line.to_string();
    for field in [
        "request_id",
        "trace_id",
        "method",
        "route",
        "status",
        "latency_ms",
        "upstream",
        "retries",
        "consumer",
        "auth",
    ] {
        assert!(
            line.get(field).is_some(),
            "access log lacks {field}: {access}"
        );
    }
    assert_eq!(line["status"], 404);
    assert_eq!(line["consumer"], "api-key:dev-client");
    assert!(
        wait_for_log("functions", &id).await.is_some(),
        "the function logged the same request id"
    );

    // Generated when absent or malformed; present on the proxy's own errors too.
    let generated = client()
        .get(format!("{}/api/nowhere", base_url()))
        .header("x-request-id", "bad id;")
        .send()
        .await
        .unwrap();
    let generated_id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        uuid::Uuid::parse_str(&generated_id).is_ok(),
        "{generated_id}"
    );
    let unauthorized = reqwest::Client::new()
        .get(format!("{}/api/users", base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert!(unauthorized.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn a_supplied_trace_reaches_the_function() {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    // A product nobody has: never an edge-cache hit, so the function sees the request.
    let response = client()
        .get(format!(
            "{}/api/products/{}",
            base_url(),
            uuid::Uuid::new_v4()
        ))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let function_line = wait_for_log("functions", &trace_id)
        .await
        .expect("the function logged the trace id");
    assert!(function_line.contains("trace_id"), "{function_line}");
    assert!(
        wait_for_log("proxy", &trace_id).await.is_some(),
        "the proxy logged the trace id"
    );
}

#[tokio::test]
async fn spoofed_identity_never_reaches_a_function() {
    let spoofed = format!("spoofed-admin-{}", uuid::Uuid::new_v4());
    let id = format!("spoof-{}", uuid::Uuid::new_v4());
    let response = client()
        .get(format!("{}/api/users?limit=1", base_url()))
        .header("x-consumer-id", &spoofed)
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let line = wait_for_log("functions", &id)
        .await
        .expect("the function logged the request");
    assert!(
        line.contains("dev-client"),
        "the function saw the verified consumer: {line}"
    );
    assert!(
        log_lines("").iter().all(|l| !l.contains(&spoofed)),
        "the spoofed id appears in no log"
    );
}

#[tokio::test]
async fn secrets_never_reach_any_log() {
    let secret_token = format!("secret-token-{}", uuid::Uuid::new_v4().simple());
    let id = format!("secret-{}", uuid::Uuid::new_v4());
    // An invalid bearer token (refused by the proxy) and a valid key with a stray token.
    let refused = reqwest::Client::new()
        .get(format!("{}/api/users", base_url()))
        .header("authorization", format!("Bearer {secret_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let accepted = client()
        .get(format!("{}/api/users?limit=1", base_url()))
        .header("authorization", format!("Bearer {secret_token}"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 200);
    // A valid JWT and the second (products-only) key on requests that succeed too.
    let jwt = std::env::var("E2E_JWT").unwrap_or_else(|_| panic!("E2E_JWT must be set"));
    let second_key = std::env::var("E2E_PRODUCTS_ONLY_API_KEY")
        .unwrap_or_else(|_| "lambda-edge-products-only-key".into());
    let jwt_id = format!("secret-jwt-{}", uuid::Uuid::new_v4());
    let with_jwt = reqwest::Client::new()
        .get(format!("{}/api/users?limit=1", base_url()))
        .header("authorization", format!("Bearer {jwt}"))
        .header("x-request-id", &jwt_id)
        .send()
        .await
        .unwrap();
    assert_eq!(with_jwt.status().as_u16(), 200);
    let key_id = format!("secret-key-{}", uuid::Uuid::new_v4());
    // A product nobody has: never an edge-cache hit, so the function logs the request too.
    let with_second_key = reqwest::Client::new()
        .get(format!(
            "{}/api/products/{}",
            base_url(),
            uuid::Uuid::new_v4()
        ))
        .header("x-api-key", &second_key)
        .header("x-request-id", &key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(with_second_key.status().as_u16(), 404);
    // Only once every line of these requests is written: the proxy's access lines and the
    // functions' lines.
    for request_id in [&id, &jwt_id, &key_id] {
        assert!(
            access_log(request_id).await.is_some(),
            "no access line for {request_id}"
        );
        assert!(wait_for_log("functions", request_id).await.is_some());
    }
    // The JWT's signature part alone would be enough to replay it: look for that too.
    let signature = jwt.rsplit('.').next().unwrap().to_string();
    for line in log_lines("") {
        assert!(!line.contains(&secret_token), "a token was logged: {line}");
        assert!(!line.contains(&api_key()), "an API key was logged: {line}");
        assert!(
            !line.contains(&second_key),
            "the second API key was logged: {line}"
        );
        assert!(!line.contains(&signature), "a JWT was logged: {line}");
    }
}

#[tokio::test]
async fn metrics_parse_and_move_by_the_right_amount() {
    let before = e2e::scrape_metrics().await;
    // Every sample line is `name{labels} value` or `name value`, values are numbers.
    for line in before
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(
            series.chars().next().unwrap().is_ascii_alphabetic(),
            "bad name in {line}"
        );
        assert!(
            !series.contains('{') || series.ends_with('}'),
            "bad labels in {line}"
        );
    }
    assert!(before.contains("# TYPE edge_request_duration_seconds histogram"));
    assert!(before.contains("edge_circuit_breaker_state{"));
    assert!(before.contains("edge_discovery_refresh_total{"));

    // OPTIONS is a method no other test sends: exactly these three move the counter.
    let labels = [
        ("route", "/api/products"),
        ("method", "OPTIONS"),
        ("status", "4xx"),
    ];
    for _ in 0..3 {
        let response = client()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/products", base_url()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405);
    }
    let after = e2e::scrape_metrics().await;
    assert_eq!(
        counter(&after, "edge_requests_total", &labels)
            - counter(&before, "edge_requests_total", &labels),
        3.0
    );
}

#[tokio::test]
async fn admin_endpoints_live_only_on_the_admin_listener() {
    let admin = reqwest::Client::new();
    let (status, body) = status_json(
        admin
            .get(format!("{}/healthz", admin_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = status_json(
        admin
            .get(format!("{}/readyz", admin_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    for path in ["/metrics", "/healthz", "/readyz"] {
        let response = client()
            .get(format!("{}{path}", base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path} on the public port");
        assert!(!response
            .text()
            .await
            .unwrap()
            .contains("edge_requests_total"));
    }
    // Sent as written: an HTTP client would normalise the dot segments away before sending.
    let host = base_url().trim_start_matches("http://").to_string();
    for target in [
        "/api/../metrics",
        "/api/%2e%2e/metrics",
        "/api/users/../../metrics",
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
            api_key()
        );
        let answer = raw_exchange(request.as_bytes(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{target}: no answer"));
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(answer.contains("\"bad_request\""), "{target}: {answer}");
        assert!(
            !answer.contains("edge_requests_total"),
            "{target}: {answer}"
        );
    }
}

/// One request's whole trace, as a collector receives it: the proxy's server span, its client
/// span, the function's server span and the function's DynamoDB span, each the child of the
/// one before, none orphaned. The stack exports to `E2E_OTLP_ENDPOINT`, where this test runs
/// an OTLP/HTTP receiver (the rest of the suite runs with the collector absent).
#[tokio::test]
async fn one_trace_from_the_proxy_through_the_function_to_dynamodb() {
    let endpoint = std::env::var("E2E_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .expect("E2E_OTLP_ENDPOINT: the stack exports spans there (scripts/stack.sh)");
    let receiver = otlp_receiver::Receiver::start(endpoint.trim_start_matches("http://"))
        .await
        .expect("the receiver binds the stack's OTLP endpoint");
    let trace_id = format!("{}", uuid::Uuid::new_v4().simple());
    let caller = "00f067aa0ba902b7";
    // A product nobody has: never an edge-cache hit, and one DynamoDB read.
    let response = client()
        .get(format!(
            "{}/api/products/{}",
            base_url(),
            uuid::Uuid::new_v4()
        ))
        .header("traceparent", format!("00-{trace_id}-{caller}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let complete = |spans: &[otlp_receiver::Span]| {
        spans
            .iter()
            .any(|s| s.service == "edge-proxy" && s.kind == "SPAN_KIND_SERVER")
            && spans
                .iter()
                .any(|s| s.attribute("rpc.service") == Some("DynamoDB"))
    };
    let spans = receiver
        .trace(&trace_id, Duration::from_secs(20), complete)
        .await;
    let find = |what: &str, pick: &dyn Fn(&otlp_receiver::Span) -> bool| {
        spans
            .iter()
            .find(|s| pick(s))
            .cloned()
            .unwrap_or_else(|| panic!("no {what} span in {spans:#?}"))
    };
    let proxy_server = find("proxy server", &|s| {
        s.service == "edge-proxy" && s.kind == "SPAN_KIND_SERVER"
    });
    let proxy_client = find("proxy client", &|s| {
        s.service == "edge-proxy" && s.kind == "SPAN_KIND_CLIENT"
    });
    let function = find("function", &|s| {
        s.service != "edge-proxy" && s.kind == "SPAN_KIND_SERVER"
    });
    let dynamodb = find("DynamoDB", &|s| {
        s.attribute("rpc.service") == Some("DynamoDB")
    });
    assert_eq!(proxy_server.parent_span_id, caller);
    assert_eq!(proxy_client.parent_span_id, proxy_server.span_id);
    assert_eq!(function.parent_span_id, proxy_client.span_id);
    assert_eq!(dynamodb.parent_span_id, function.span_id);
    assert_eq!(function.service, "product-service");
    assert_eq!(dynamodb.kind, "SPAN_KIND_CLIENT");
    assert_eq!(dynamodb.attribute("db.system.name"), Some("aws.dynamodb"));
    assert_eq!(dynamodb.attribute("db.operation.name"), Some("GetItem"));
    assert!(
        dynamodb
            .attribute("db.collection.name")
            .is_some_and(|t| t.contains("Product")),
        "{dynamodb:?}"
    );
    assert_eq!(
        proxy_server.attribute("http.response.status_code"),
        Some("404")
    );
    assert_eq!(function.attribute("http.response.status_code"), Some("404"));
    // No orphans: every parent is in the trace, or is the caller's span.
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == caller || ids.contains(&span.parent_span_id.as_str()),
            "orphan: {span:?}"
        );
    }
    // The logs name the same spans: the proxy's access line, the function's lines.
    let access = log_lines("proxy")
        .into_iter()
        .find(|l| l.contains(&trace_id) && l.contains("\"request\""))
        .expect("an access line with the trace id");
    assert!(
        access.contains(&format!("\"span_id\":\"{}\"", proxy_server.span_id)),
        "{access}"
    );
    let function_line = wait_for_log("functions", &function.span_id)
        .await
        .expect("the function's log lines carry its span id");
    assert!(function_line.contains(&trace_id), "{function_line}");
}

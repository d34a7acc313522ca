//! Request ids, trace context, logs and metrics across the proxy and the functions, checked on
//! the running stack's own log files and admin listener.
//!
//! Needs `STACK_LOG_DIR` (the stack's log folder) and `E2E_ADMIN_URL`: local stack only.

use e2e::{access_log, api_key, base_url, client, log_lines, status_json, wait_for_log};

fn admin_url() -> String {
    std::env::var("E2E_ADMIN_URL").unwrap_or_else(|_| panic!("E2E_ADMIN_URL must be set"))
}

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
    let response = client()
        .get(format!("{}/api/products?limit=1", base_url()))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
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
    assert!(wait_for_log("functions", &id).await.is_some());
    for line in log_lines("") {
        assert!(!line.contains(&secret_token), "a token was logged: {line}");
        assert!(!line.contains(&api_key()), "an API key was logged: {line}");
    }
}

fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_by_the_right_amount() {
    let admin = reqwest::Client::new();
    let scrape = || async {
        admin
            .get(format!("{}/metrics", admin_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
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
    let after = scrape().await;
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
    for path in ["/metrics", "/healthz", "/readyz", "/api/../metrics"] {
        let response = client()
            .get(format!("{}{path}", base_url()))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            status == 404 || status == 400,
            "{path} on the public port gave {status}"
        );
        assert!(!response
            .text()
            .await
            .unwrap()
            .contains("edge_requests_total"));
    }
}

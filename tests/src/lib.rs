//! Helpers for the end-to-end suite. The suite drives a running stack through the edge proxy,
//! exactly as `curl` would; its target comes from the environment:
//!
//! - `E2E_BASE_URL`: the proxy's base URL (`make test` starts a stack and sets it; point it at a
//!   deployed proxy to run the same suite there).
//!
//! - `E2E_API_KEY`: the API key requests carry (default: the development key from
//!   `edge-proxy/config/dev.toml`).
//!
//! The tests refuse to run without a base URL rather than pass vacuously.

use std::time::Duration;

use reqwest::{Client, Method, Response};
use serde_json::Value;

/// The proxy under test.
pub fn base_url() -> String {
    match std::env::var("E2E_BASE_URL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
        _ => panic!(
            "E2E_BASE_URL is not set: run the end-to-end suite with `make test`, or start a \
             stack with `make stack-up` and `eval \"$(scripts/stack.sh env test)\"`"
        ),
    }
}

/// The development API key (consumer `dev-client`, scopes `users products`).
pub const DEV_API_KEY: &str = "lambda-edge-dev-key";

/// The API key the suite authenticates with.
pub fn api_key() -> String {
    std::env::var("E2E_API_KEY").unwrap_or_else(|_| DEV_API_KEY.to_string())
}

/// An HTTP client with timeouts that sends the suite's API key on every request, so a hung
/// stack fails a test instead of stalling the suite.
pub fn client() -> Client {
    client_sending("x-api-key", api_key())
}

/// A client with the suite's timeouts that sends `name: value` on every request.
fn client_sending(name: &'static str, value: String) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value =
        reqwest::header::HeaderValue::from_str(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
    headers.insert(name, value);
    Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("cannot build HTTP client: {e}"))
}

/// The development HS256 secret (`edge-proxy/config/dev.toml`, `local-aws.toml`).
pub const DEV_JWT_SECRET: &str = "dev-only-hs256-secret-change-me-0123456789";

/// A token the development proxy accepts for `sub` with `scopes` (space-separated), valid for
/// ten minutes: a caller of the suite's own (identity `jwt:<sub>`, its own rate limit).
pub fn dev_jwt(sub: &str, scopes: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = serde_json::json!({
        "sub": sub,
        "scope": scopes,
        "iss": "lambda-edge-dev",
        "aud": "lambda-edge",
        "iat": now,
        "exp": now + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("cannot sign a development token: {e}"))
}

/// An HTTP client like [`client`] that authenticates as `jwt:<sub>` with `scopes`.
pub fn client_as(sub: &str, scopes: &str) -> Client {
    client_sending("authorization", format!("Bearer {}", dev_jwt(sub, scopes)))
}

/// A value unique to this test run, for emails and SKUs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Sends a request to `path` (relative to the proxy), with an optional JSON body and headers.
pub async fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Response {
    let mut request = client.request(method.clone(), format!("{}{path}", base_url()));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A response's status and JSON body (`Value::Null` when empty).
pub async fn status_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"))
    };
    (status, json)
}

/// Asserts the documented error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    code
}

/// The local stack's log folder (`STACK_LOG_DIR`); the tests that read logs need it.
pub fn log_dir() -> String {
    std::env::var("STACK_LOG_DIR")
        .unwrap_or_else(|_| panic!("STACK_LOG_DIR must be set (local stack only)"))
}

/// Every line of the stack's logs matching `file_prefix`.
pub fn log_lines(file_prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(log_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(file_prefix) && name.ends_with(".log") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines
}

/// Polls the logs of `file_prefix` (bounded: about 10 s) until `find` picks something out of a
/// line.
async fn poll_logs<T>(file_prefix: &str, mut find: impl FnMut(&str) -> Option<T>) -> Option<T> {
    for _ in 0..100 {
        if let Some(found) = log_lines(file_prefix).iter().find_map(|line| find(line)) {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Waits (bounded) until some log line of `file_prefix` contains `needle`.
pub async fn wait_for_log(file_prefix: &str, needle: &str) -> Option<String> {
    poll_logs(file_prefix, |line| {
        line.contains(needle).then(|| line.to_string())
    })
    .await
}

/// The proxy's access-log line for `request_id`, parsed (waits for it, bounded).
pub async fn access_log(request_id: &str) -> Option<Value> {
    poll_logs("proxy", |line| {
        if !line.contains(request_id) {
            return None;
        }
        let parsed: Value = serde_json::from_str(line).ok()?;
        (parsed["target"] == "access" && parsed["request_id"] == request_id).then_some(parsed)
    })
    .await
}

/// The proxy's admin listener (`E2E_ADMIN_URL`, local stack only).
pub fn admin_url() -> String {
    std::env::var("E2E_ADMIN_URL").unwrap_or_else(|_| panic!("E2E_ADMIN_URL must be set"))
}

/// The proxy's metrics, as the admin listener renders them now.
pub async fn scrape_metrics() -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", admin_url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("scrape {}: {e}", admin_url()))
        .text()
        .await
        .unwrap_or_default()
}

/// The sum of a metric's samples whose labels include `labels`.
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends raw bytes to the proxy and reads until it closes (bounded): the whole response as
/// text, or `None` when the proxy answered nothing before closing or the bound.
pub async fn raw_exchange(request: &[u8], bound: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base_url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    tokio::time::timeout(bound, stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Every item of a table of the local stack, read strongly consistent (`AWS_ENDPOINT_URL`).
pub async fn scan_all(
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let client = service_core::dynamo::client_from_env().await;
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap_or_else(|e| panic!("scan {table}: {e}"));
        items.extend(page.items().iter().cloned());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// A string (or number) attribute of an item, or "" when it has none.
pub fn attr(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> String {
    match item.get(name) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
        Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n.clone(),
        _ => String::new(),
    }
}

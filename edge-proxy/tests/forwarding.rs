//! What an upstream receives, and what a client gets back, beyond the basics in `edge.rs`:
//! credentials forwarded when configured, ES256 tokens verified with keys from a JWKS file,
//! the proxy's own span in the trace context, rate-limit headers on the upstream's error
//! answers too, and the client's own headers as the upstream sees them.

mod support;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use support::{client, start_proxy, Behaviour, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(upstream: &str, auth_extra: &str) -> String {
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jwks-ec.json");
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0

        [auth]
        {auth_extra}
        [[auth.api-keys]]
        consumer = "ci"
        key-sha256 = "{key}"
        [auth.jwt]
        jwks-file = "{jwks}"
        issuer = "edge-test"

        [rate-limit]
        requests-per-second = 100
        burst = 100

        [services.svc]
        instances = ["{upstream}"]
        [services.svc.health-check]
        enabled = false

        [[routes]]
        prefix = "/api"
        service = "svc"
        auth = "any"
        "#,
        key = support::key_sha256("ci-key"),
    )
}

fn es256_token(sub: &str, kid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({"sub": sub, "iss": "edge-test", "exp": now + 60});
    let key = EncodingKey::from_ec_pem(include_bytes!("data/ec-private.pem")).unwrap();
    encode(&header, &claims, &key).unwrap()
}

async fn get(base: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(format!("{base}/api/x"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_with_keys_from_a_jwks_file() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let token = format!("Bearer {}", es256_token("erin", "test-ec"));
    let response = get(&proxy.base, &[("authorization", &token)]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        stub.head().contains("x-consumer-id: jwt:erin\r\n"),
        "{}",
        stub.head()
    );
    // Signed by the same kind of key, but not the one in the file: refused.
    let mut tampered = es256_token("erin", "test-ec");
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let response = get(
        &proxy.base,
        &[("authorization", &format!("Bearer {tampered}"))],
    )
    .await;
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_upstream_only_when_configured() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let kept = start_proxy(&config(&stub.url(), ""), None).await;
    assert_eq!(
        get(&kept.base, &[("x-api-key", "ci-key")])
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(!stub.head().contains("ci-key"), "{}", stub.head());

    let forwarding = start_proxy(&config(&stub.url(), "forward-credentials = true"), None).await;
    assert_eq!(
        get(&forwarding.base, &[("x-api-key", "ci-key")])
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(
        stub.head().contains("x-api-key: ci-key\r\n"),
        "{}",
        stub.head()
    );
    let token = format!("Bearer {}", es256_token("erin", "test-ec"));
    assert_eq!(
        get(&forwarding.base, &[("authorization", &token)])
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(
        stub.head().contains(&format!(
            "authorization: {}\r\n",
            token.to_ascii_lowercase()
        )),
        "{}",
        stub.head()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_trace_with_the_proxys_own_span() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let client_parent = "00f067aa0ba902b7";
    let incoming = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{client_parent}-01");
    let response = get(
        &proxy.base,
        &[
            ("x-api-key", "ci-key"),
            ("traceparent", &incoming),
            ("tracestate", "vendor=1"),
        ],
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let head = stub.head();
    let forwarded = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent: {head}"));
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts.len(), 4, "{forwarded}");
    assert_eq!(
        parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the same trace"
    );
    assert_ne!(
        parts[2], client_parent,
        "with the proxy's span as the parent"
    );
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01", "sampling decision kept");
    assert!(head.contains("tracestate: vendor=1\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_come_back_on_the_upstreams_errors_too() {
    let stub = Stub::start("svc", Behaviour::Status(404)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let response = get(&proxy.base, &[("x-api-key", "ci-key")]).await;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"default\";q=100;w=1"
    );
    let remaining = response.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(remaining.starts_with("\"default\";r=99;"), "{remaining}");
}

/// Every header a client sends reaches the upstream with its value (a repeated one each time)
/// and its name lower-case: the upstream's copy of the head keeps no case of its own (HTTP
/// names are case-insensitive; Lambda lower-cases them too). `Host` is the instance's, title
/// -cased by Pingora; each of the proxy's own headers is there once. The same of the response
/// the client gets, whose reason phrase is the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_reach_the_upstream_with_their_values_and_lower_case_names() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /api/x?q=1 HTTP/1.1\r\nHost: example.test\r\nX-Api-Key: ci-key\r\n\
              X-Custom-Thing: Mixed Case Value\r\nX-Multi: one\r\nX-Multi: two\r\n\
              Accept: application/json\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    // The upstream's reason phrase is kept; what the proxy adds is there once each.
    assert!(response.starts_with("HTTP/1.1 200 X\r\n"), "{response}");
    assert!(
        response.contains("\r\nContent-Type: application/json\r\n"),
        "{response}"
    );
    for name in ["x-request-id", "ratelimit-policy", "ratelimit"] {
        assert_eq!(
            response.matches(&format!("\r\n{name}: ")).count(),
            1,
            "{name}: {response}"
        );
    }

    let head = stub.last_head.lock().unwrap().clone();
    assert!(
        head.starts_with("GET /svc/api/x?q=1 HTTP/1.1\r\n"),
        "{head}"
    );
    for line in [
        "x-custom-thing: Mixed Case Value",
        "x-multi: one",
        "x-multi: two",
        "accept: application/json",
        "x-consumer-id: api-key:ci",
        "x-forwarded-for: 127.0.0.1",
    ] {
        assert!(head.contains(&format!("\r\n{line}\r\n")), "{line}: {head}");
    }
    assert!(
        head.contains(&format!(
            "\r\nHost: {}\r\n",
            stub.url()["http://".len()..].trim_end_matches("/svc")
        )),
        "{head}"
    );
    assert!(!head.contains("example.test"), "{head}");
    for name in [
        "Host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "traceparent",
        "x-consumer-id",
        "x-consumer-scopes",
        "x-auth-method",
    ] {
        assert_eq!(
            head.matches(&format!("\r\n{name}: ")).count(),
            1,
            "{name}: {head}"
        );
    }
}

/// A client's `X-Forwarded-For` list goes on with the peer's address appended, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_forwarded_for_list_goes_on_with_the_peer_appended() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let sent = [
        ("x-api-key", "ci-key"),
        ("x-forwarded-for", "203.0.113.9, 198.51.100.1"),
    ];
    assert_eq!(get(&proxy.base, &sent).await.status().as_u16(), 200);
    let head = stub.last_head.lock().unwrap().clone();
    assert!(
        head.contains("\r\nx-forwarded-for: 203.0.113.9, 198.51.100.1, 127.0.0.1\r\n"),
        "{head}"
    );
    assert_eq!(head.matches("\r\nx-forwarded-for: ").count(), 1, "{head}");
}

/// A route that changes nothing of the path (no base path, nothing stripped) sends the
/// client's target on as it is, query included; an absolute-form target still goes upstream
/// as a path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_path_goes_upstream_as_the_client_sent_it() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let bare_url = stub.url().trim_end_matches("/svc").to_string();
    let proxy = start_proxy(&config(&bare_url, ""), None).await;
    for (target, expected) in [
        ("/api/x?q=1&r=%20", "GET /api/x?q=1&r=%20 HTTP/1.1\r\n"),
        ("/api/y", "GET /api/y HTTP/1.1\r\n"),
        (
            "http://example.test/api/z?q=2",
            "GET /api/z?q=2 HTTP/1.1\r\n",
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(proxy.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: example.test\r\nX-Api-Key: ci-key\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 200"), "{target}: {response}");
        let head = stub.last_head.lock().unwrap().clone();
        assert!(head.starts_with(expected), "{target}: {head}");
    }
}

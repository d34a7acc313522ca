//! The gaps an attacker tries first, closed: guessing credentials is limited per client address
//! (before any verification), the client address comes from a trusted load balancer only,
//! IPv6 clients count per /64, identities of different kinds cannot collide, JWKS fetching is
//! bounded and stays on its origin, keys not meant for signatures verify nothing, nothing of
//! the client's travels inside a signed upstream request, and the admin listener wants its
//! token. Each against an in-process proxy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use edge_proxy::admission::auth::Authenticator;
use edge_proxy::admission::jwks::JwksRefresher;
use edge_proxy::config::{Config, JwtSettings};
use edge_proxy::ops::metrics::Metrics;
use support::{client, serve_json, serve_response, start_proxy, Behaviour, Stub};

const SECRET: &str = "edge-test-hs256-secret-0123456789abcdef";

fn config(upstream: &str, extra_server: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0
        trusted-proxies = ["127.0.0.1"]
        {extra_server}

        [auth]
        failure-limit = {{ requests-per-second = 0.01, burst = 5 }}
        [[auth.api-keys]]
        consumer = "alice"
        key-sha256 = "{key}"
        scopes = ["users"]
        [auth.jwt]
        hs256-secret = "{SECRET}"

        [rate-limit]
        requests-per-second = 0.01
        burst = 3

        [services.svc]
        instances = ["{upstream}"]
        [services.svc.health-check]
        enabled = false

        [[routes]]
        prefix = "/api/users"
        service = "svc"
        auth = "any"

        [[routes]]
        prefix = "/api/public"
        service = "svc"
        "#,
        key = support::key_sha256("alice-key"),
    )
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_limited_per_client_before_anything_is_verified() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let attacker = [("x-forwarded-for", "198.51.100.66")];
    for guess in 0..5 {
        let key = format!("guess-{guess}");
        let headers = [attacker[0], ("x-api-key", key.as_str())];
        let response = get(&proxy.base, "/api/users/1", &headers).await;
        assert_eq!(response.status().as_u16(), 401, "guess {guess}");
    }
    // Over the budget: 429 whatever is presented, the right key included: no hint.
    for key in ["guess-6", "alice-key"] {
        let headers = [attacker[0], ("x-api-key", key)];
        let response = get(&proxy.base, "/api/users/1", &headers).await;
        assert_eq!(response.status().as_u16(), 429, "{key}");
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // Another client address is not affected.
    let other = [
        ("x-forwarded-for", "198.51.100.67"),
        ("x-api-key", "alice-key"),
    ];
    assert_eq!(
        get(&proxy.base, "/api/users/1", &other)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(stub.count(), 1, "no guess reached the upstream");
    let metrics = proxy.handle.metrics.render();
    assert!(
        metrics.contains("edge_auth_failures_limited_total{route=\"/api/users\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_limits_key_on_the_client_a_trusted_balancer_names() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    // Behind the (trusted) balancer, each client has its own budget of 3...
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..3 {
            let response = get(&proxy.base, "/api/public/x", &[("x-forwarded-for", client)]).await;
            assert_eq!(response.status().as_u16(), 200, "{client}");
        }
        let response = get(&proxy.base, "/api/public/x", &[("x-forwarded-for", client)]).await;
        assert_eq!(response.status().as_u16(), 429, "{client}");
    }
    // ...and an IPv6 client cannot escape it by rotating through its /64.
    for i in 1..=4 {
        let address = format!("2001:db8:1:2::{i}");
        let response = get(
            &proxy.base,
            "/api/public/x",
            &[("x-forwarded-for", &address)],
        )
        .await;
        let expected = if i <= 3 { 200 } else { 429 };
        assert_eq!(response.status().as_u16(), expected, "{address}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_name_itself_without_a_trusted_balancer() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let text = config(&stub.url(), "").replace("trusted-proxies = [\"127.0.0.1\"]", "");
    let proxy = start_proxy(&text, None).await;
    for i in 0..4 {
        // A fresh made-up address each time: not believed, so all count as 127.0.0.1.
        let forged = format!("203.0.113.{i}");
        let response = get(
            &proxy.base,
            "/api/public/x",
            &[("x-forwarded-for", &forged)],
        )
        .await;
        let expected = if i < 3 { 200 } else { 429 };
        assert_eq!(response.status().as_u16(), expected, "{forged}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_sub_equal_to_a_key_consumer_is_not_that_consumer() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let token =
        edge_proxy::admission::auth::mint_hs256(SECRET.as_bytes(), "alice", &[], None, None, 60)
            .unwrap();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        get(&proxy.base, "/api/users/1", &[("authorization", &bearer)])
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(
        stub.head().contains("x-consumer-id: jwt:alice\r\n"),
        "{}",
        stub.head()
    );
    assert_eq!(
        get(&proxy.base, "/api/users/1", &[("x-api-key", "alice-key")])
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(
        stub.head().contains("x-consumer-id: api-key:alice\r\n"),
        "{}",
        stub.head()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_wants_its_token_beyond_health() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let admin_port = support::free_port();
    let extra = format!(
        "admin-listen = \"127.0.0.1:{admin_port}\"\nadmin-token-sha256 = \"{}\"",
        support::key_sha256("admin-secret")
    );
    let _proxy = start_proxy(&config(&stub.url(), &extra), None).await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    for open in ["/healthz", "/readyz"] {
        assert_eq!(
            get(&admin, open, &[]).await.status().as_u16(),
            200,
            "{open}"
        );
    }
    let refused = get(&admin, "/metrics", &[]).await;
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    let wrong = get(&admin, "/metrics", &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status().as_u16(), 401);
    let right = get(
        &admin,
        "/metrics",
        &[("authorization", "Bearer admin-secret")],
    )
    .await;
    assert_eq!(right.status().as_u16(), 200);
}

#[test]
fn a_public_admin_listener_needs_an_explicit_opt_in_and_a_token() {
    let parse =
        |extra: &str| Config::parse(&config("http://127.0.0.1:1", extra).replace("{port}", "8"));
    let error = parse("admin-listen = \"0.0.0.0:9901\"").unwrap_err();
    assert_eq!(error.field, "server.admin-listen");
    let error = parse("admin-listen = \"0.0.0.0:9901\"\nadmin-public = true").unwrap_err();
    assert_eq!(error.field, "server.admin-token-sha256");
    let token = support::key_sha256("t");
    assert!(parse(&format!(
        "admin-listen = \"0.0.0.0:9901\"\nadmin-public = true\nadmin-token-sha256 = \"{token}\""
    ))
    .is_ok());
    let bad_network = config("http://127.0.0.1:1", "")
        .replace("{port}", "8")
        .replace("[\"127.0.0.1\"]", "[\"not-a-network\"]");
    assert_eq!(
        Config::parse(&bad_network).unwrap_err().field,
        "server.trusted-proxies[0]"
    );
}

#[test]
fn jwks_urls_must_be_https_except_to_loopback() {
    let base = config("http://127.0.0.1:1", "").replace("{port}", "8");
    let with_url = |url: &str| {
        Config::parse(&base.replace(
            &format!("hs256-secret = \"{SECRET}\""),
            &format!("jwks-url = \"{url}\""),
        ))
    };
    assert_eq!(
        with_url("http://idp.example.com/jwks.json")
            .unwrap_err()
            .field,
        "auth.jwt.jwks-url"
    );
    assert!(with_url("https://idp.example.com/jwks.json").is_ok());
    assert!(with_url("http://127.0.0.1:8000/jwks.json").is_ok());
}

fn refresher(auth: &Arc<Authenticator>, url: String, metrics: &Arc<Metrics>) -> JwksRefresher {
    JwksRefresher::new(
        Arc::clone(auth),
        url,
        Vec::new(),
        Duration::from_secs(60),
        edge_proxy::config::JwksLimits {
            max_bytes: 4096,
            max_keys: 3,
        },
        Arc::clone(metrics),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetching_is_bounded_and_stays_on_its_origin() {
    let good = include_str!("data/jwks.json").to_string();
    let auth = Arc::new(Authenticator::new(Vec::new(), JwtSettings::default()));
    let metrics = Arc::new(Metrics::new());
    let (port, _good) = serve_json(good.clone()).await;
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    refresher(&auth, url.clone(), &metrics)
        .refresh()
        .await
        .unwrap();
    assert_eq!(auth.jwks.len(), 1);

    // A redirect to another origin (here another port) is not followed.
    let (elsewhere, _other) = serve_json(good.clone()).await;
    let location = format!("http://127.0.0.1:{elsewhere}/jwks.json");
    let (redirecting, _r) = serve_response(302, &[("location", &location)], String::new()).await;
    let redirected = refresher(
        &auth,
        format!("http://127.0.0.1:{redirecting}/jwks.json"),
        &metrics,
    );
    assert!(
        redirected.refresh().await.is_err(),
        "a cross-origin redirect is refused"
    );

    // Too large, or too many keys: refused whole.
    let padded = good.replacen('{', &format!("{{\"pad\":\"{}\",", "x".repeat(8000)), 1);
    let (big, _b) = serve_json(padded).await;
    let too_large = refresher(&auth, format!("http://127.0.0.1:{big}/jwks.json"), &metrics);
    assert!(too_large
        .refresh()
        .await
        .unwrap_err()
        .to_string()
        .contains("larger"));
    let key: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&good).unwrap()["keys"][0].clone();
    let many = serde_json::json!({"keys": [key, key, key, key]}).to_string();
    let (crowded, _c) = serve_json(many).await;
    let too_many = refresher(
        &auth,
        format!("http://127.0.0.1:{crowded}/jwks.json"),
        &metrics,
    );
    assert!(too_many
        .refresh()
        .await
        .unwrap_err()
        .to_string()
        .contains("more than 3"));

    // Every failure kept the last good key, and each was counted.
    assert_eq!(auth.jwks.len(), 1);
    let text = metrics.render();
    assert!(
        text.contains("edge_jwks_refresh_total{outcome=\"failure\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("edge_jwks_refresh_total{outcome=\"success\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_the_clients_travels_inside_a_signed_request() {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    use edge_proxy::server::Overrides;
    use edge_proxy::upstream::sigv4::Signer;

    let stub = Stub::start(
        "fn",
        Behaviour::VerifySigV4("AKIDSTUB", "stub-secret", "eu-west-1"),
    )
    .await;
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0
        [auth]
        forward-credentials = true
        [[auth.api-keys]]
        consumer = "alice"
        key-sha256 = "{key}"
        [services.fn]
        instances = ["{url}"]
        aws-iam = true
        aws-region = "eu-west-1"
        allow-loopback-function-urls = true
        [services.fn.health-check]
        enabled = false
        [[routes]]
        prefix = "/api"
        service = "fn"
        auth = "api-key"
        "#,
        key = support::key_sha256("alice-key"),
        url = stub.url(),
    );
    let signer = Signer::new(SharedCredentialsProvider::new(Credentials::new(
        "AKIDSTUB",
        "stub-secret",
        None,
        None,
        "test",
    )));
    let proxy = support::start_proxy_with(
        &text,
        Overrides {
            signer: Some(Arc::new(signer)),
            ..Overrides::default()
        },
    )
    .await;
    let response = get(
        &proxy.base,
        "/api/x",
        &[
            ("x-api-key", "alice-key"),
            ("x-amz-security-token", "client-supplied-token"),
            ("x-amz-meta-owner", "client-supplied-meta"),
            ("x-amz-date", "20000101T000000Z"),
        ],
    )
    .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "the stub verified the proxy's own signature"
    );
    let head = stub.head();
    assert!(!head.contains("client-supplied"), "{head}");
    assert!(!head.contains("20000101"), "{head}");
    assert!(
        !head.contains("x-api-key") && !head.contains("alice-key"),
        "credentials never go to a signed upstream, whatever forward-credentials says: {head}"
    );
}

//! Authentication, authorization, identity forwarding and rate limiting through an in-process
//! proxy in front of a stub upstream that records what it receives.

mod support;

use std::time::Duration;

use std::sync::Arc;

use edge_proxy::ops::clock::ManualClock;
use edge_proxy::server::Overrides;
use support::{client, serve_json, start_proxy, Behaviour, Stub};

const SECRET: &str = "edge-test-hs256-secret-0123456789abcdef";

fn config(upstream: &str) -> String {
    // Key "good-key" (sha256 below) has scope "users"; "narrow-key" only "products".
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0

        [auth]
        [[auth.api-keys]]
        consumer = "ci"
        key-sha256 = "{good}"
        scopes = ["users"]
        [[auth.api-keys]]
        consumer = "narrow"
        key-sha256 = "{narrow}"
        scopes = ["products"]
        [auth.jwt]
        hs256-secret = "{SECRET}"
        issuer = "edge-test"

        [rate-limit]
        requests-per-second = 1000
        burst = 1000

        [services.svc]
        instances = ["{upstream}"]
        [services.svc.health-check]
        enabled = false

        [[routes]]
        prefix = "/api/users"
        service = "svc"
        strip-prefix = "/api"
        auth = "any"
        scopes = ["users"]

        [[routes]]
        prefix = "/api/keys-only"
        service = "svc"
        strip-prefix = "/api"
        auth = "api-key"

        [[routes]]
        prefix = "/api/public"
        service = "svc"
        strip-prefix = "/api"

        [[routes]]
        prefix = "/api/limited"
        service = "svc"
        strip-prefix = "/api"
        auth = "api-key"
        rate-limit = {{ requests-per-second = 1.0, burst = 3 }}
        "#,
        good = support::key_sha256("good-key"),
        narrow = support::key_sha256("narrow-key"),
    )
}

fn token(scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    edge_proxy::admission::auth::mint_hs256(
        SECRET.as_bytes(),
        "alice",
        &scopes,
        Some("edge-test"),
        None,
        60,
    )
    .unwrap()
}

async fn call(base: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_scopes() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url()), None).await;
    let base = &proxy.base;

    let missing = call(base, "/api/users/1", &[]).await;
    assert_eq!(missing.status().as_u16(), 401);
    assert!(missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("Bearer"));
    assert_eq!(error_code(missing).await, "unauthorized");

    for headers in [
        vec![("x-api-key", "wrong")],
        vec![("authorization", "Bearer not.a.jwt")],
        vec![("authorization", "Basic Zm9vOmJhcg==")],
    ] {
        let response = call(base, "/api/users/1", &headers).await;
        assert_eq!(response.status().as_u16(), 401, "{headers:?}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("signature") && !body.contains("expired"),
            "no detail leaks: {body}"
        );
    }

    assert_eq!(
        call(base, "/api/users/1", &[("x-api-key", "good-key")])
            .await
            .status()
            .as_u16(),
        200
    );
    let forbidden = call(base, "/api/users/1", &[("x-api-key", "narrow-key")]).await;
    assert_eq!(forbidden.status().as_u16(), 403);
    assert_eq!(error_code(forbidden).await, "forbidden");

    let jwt = format!("Bearer {}", token(&["users"]));
    assert_eq!(
        call(base, "/api/users/1", &[("authorization", &jwt)])
            .await
            .status()
            .as_u16(),
        200
    );
    let narrow_jwt = format!("Bearer {}", token(&["products"]));
    assert_eq!(
        call(base, "/api/users/1", &[("authorization", &narrow_jwt)])
            .await
            .status()
            .as_u16(),
        403
    );
    // A JWT is not an API key.
    assert_eq!(
        call(base, "/api/keys-only/1", &[("authorization", &jwt)])
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        call(base, "/api/public/1", &[]).await.status().as_u16(),
        200
    );
    assert_eq!(
        stub.count(),
        3,
        "only the three admitted requests reached the upstream"
    );

    let metrics = proxy.handle.metrics.render();
    assert!(
        metrics.contains("edge_auth_rejected_total{route=\"/api/users\",status=\"401\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_auth_rejected_total{route=\"/api/users\",status=\"403\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_set_by_the_proxy_only_and_credentials_are_not_forwarded() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url()), None).await;
    let spoof = [
        ("x-consumer-id", "admin"),
        ("x-consumer-scopes", "everything"),
        ("x-auth-method", "magic"),
    ];

    let mut headers = spoof.to_vec();
    headers.push(("x-api-key", "good-key"));
    assert_eq!(
        call(&proxy.base, "/api/users/1", &headers)
            .await
            .status()
            .as_u16(),
        200
    );
    let head = stub.head();
    // Qualified by how it was proved, so a JWT `sub` of "ci" is not this consumer.
    assert!(head.contains("x-consumer-id: api-key:ci\r\n"), "{head}");
    assert!(head.contains("x-consumer-scopes: users\r\n"), "{head}");
    assert!(head.contains("x-auth-method: api_key\r\n"), "{head}");
    assert!(
        !head.contains("admin") && !head.contains("everything") && !head.contains("magic"),
        "{head}"
    );
    assert!(
        !head.contains("x-api-key") && !head.contains("good-key"),
        "credentials are not forwarded: {head}"
    );

    // On a public route the spoofed identity is dropped, not passed through.
    assert_eq!(
        call(&proxy.base, "/api/public/1", &spoof)
            .await
            .status()
            .as_u16(),
        200
    );
    let head = stub.head();
    assert!(
        !head.contains("x-consumer-id") && !head.contains("admin"),
        "{head}"
    );
    assert!(head.starts_with("get /svc/public/1 "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_burst_then_429_then_refill() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    // The limiter's clock stands still unless the test moves it: nothing depends on how fast
    // the requests below happen to run.
    let clock = Arc::new(ManualClock::default());
    let proxy = support::start_proxy_with(
        &config(&stub.url()),
        Overrides {
            clock: Some(clock.clone()),
            ..Overrides::default()
        },
    )
    .await;
    let key = [("x-api-key", "good-key")];
    for i in 0..3 {
        let response = call(&proxy.base, "/api/limited/x", &key).await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "request {i} is within the burst"
        );
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"/api/limited\";q=3;w=3"
        );
        assert_eq!(
            response.headers()["ratelimit"].to_str().unwrap(),
            format!("\"/api/limited\";r={};t={}", 2 - i, i + 1)
        );
    }
    let limited = call(&proxy.base, "/api/limited/x", &key).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert!(limited.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .contains(";r=0;"));
    assert_eq!(error_code(limited).await, "rate_limited");
    assert_eq!(
        stub.count(),
        3,
        "the refused request never reached the upstream"
    );

    // Another consumer has its own budget.
    let narrow = call(
        &proxy.base,
        "/api/limited/x",
        &[("x-api-key", "narrow-key")],
    )
    .await;
    assert_eq!(narrow.status().as_u16(), 200);

    // One per second refills: not yet after 999 ms...
    clock.advance(Duration::from_millis(999));
    assert_eq!(
        call(&proxy.base, "/api/limited/x", &key)
            .await
            .status()
            .as_u16(),
        429
    );
    // ...one after a whole second.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        call(&proxy.base, "/api/limited/x", &key)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        call(&proxy.base, "/api/limited/x", &key)
            .await
            .status()
            .as_u16(),
        429
    );
    assert!(proxy
        .handle
        .metrics
        .render()
        .contains("edge_rate_limited_total{route=\"/api/limited\"} 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_refresh_keeps_the_last_good_keys() {
    use edge_proxy::admission::auth::Authenticator;
    use edge_proxy::admission::jwks::JwksRefresher;
    use edge_proxy::config::JwtSettings;

    let (port, server) = serve_json(include_str!("data/jwks.json").to_string()).await;
    let auth = Arc::new(Authenticator::new(Vec::new(), JwtSettings::default()));
    let refresher = |url: String| {
        JwksRefresher::new(
            Arc::clone(&auth),
            url,
            Vec::new(),
            Duration::from_secs(60),
            Default::default(),
            Arc::new(edge_proxy::ops::metrics::Metrics::new()),
        )
        .unwrap()
    };
    let first = refresher(format!("http://127.0.0.1:{port}/jwks.json"));
    assert_eq!(first.refresh().await.map_err(|e| e.to_string()), Ok(1));
    assert_eq!(auth.jwks.len(), 1);

    // The JWKS host goes away: the refresh fails and the keys stay.
    server.abort();
    let _ = server.await;
    assert!(first.refresh().await.is_err());
    assert_eq!(auth.jwks.len(), 1, "an outage keeps the last good keys");

    // A JWKS without usable keys is refused too.
    let (port, _server) = serve_json(r#"{"keys":[]}"#.to_string()).await;
    let empty = refresher(format!("http://127.0.0.1:{port}/jwks.json"));
    assert!(empty.refresh().await.is_err());
    assert_eq!(auth.jwks.len(), 1);
}

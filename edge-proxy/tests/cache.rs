//! The edge cache through the proxy, as a client sees it: hits after a miss, one upstream call
//! for 50 concurrent misses, never stale after a write through the proxy, stale served while
//! the instance is down, `private` never shared, auth before any lookup, a full cache evicting,
//! `304`s from the cache, and the admin purge.

mod support;

use std::time::Duration;

use support::{client, start_proxy, Behaviour, RunningProxy, Stub};

const PUBLIC: &str = "public, max-age=60";

fn config(upstream: &str, cache: &str) -> String {
    config_with_routes(
        upstream,
        cache,
        r#"
        [[routes]]
        prefix = "/api"
        service = "svc"
        auth = "api-key"
        scopes = ["products"]
        cache = { default-ttl-seconds = 0 }
        "#,
    )
}

fn config_with_routes(upstream: &str, cache: &str, routes: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0

        [cache]
        {cache}

        [[auth.api-keys]]
        consumer = "reader"
        key-sha256 = "{reader}"
        scopes = ["products"]
        [[auth.api-keys]]
        consumer = "other"
        key-sha256 = "{other}"
        scopes = ["products"]
        [[auth.api-keys]]
        consumer = "users-only"
        key-sha256 = "{users}"
        scopes = ["users"]

        [services.svc]
        instances = ["{upstream}"]
        [services.svc.health-check]
        enabled = false
        {routes}
        "#,
        reader = support::key_sha256("reader-key"),
        other = support::key_sha256("other-key"),
        users = support::key_sha256("users-key"),
    )
}

struct Answer {
    status: u16,
    cache_status: String,
    age: Option<String>,
    connection: Option<String>,
    body: String,
}

async fn send(proxy: &RunningProxy, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client().request(method.parse().unwrap(), format!("{}{path}", proxy.base));
    if !headers.iter().any(|(name, _)| *name == "x-api-key") {
        request = request.header("x-api-key", "reader-key");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (cache_status, age) = (header("cache-status").unwrap_or_default(), header("age"));
    let connection = header("connection");
    Answer {
        status: response.status().as_u16(),
        cache_status,
        age,
        connection,
        body: response.text().await.unwrap(),
    }
}

async fn get(proxy: &RunningProxy, path: &str) -> Answer {
    send(proxy, "GET", path, &[]).await
}

fn metric(proxy: &RunningProxy, series: &str) -> f64 {
    proxy
        .handle
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_then_hits_whatever_the_parameter_order() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let first = get(&proxy, "/api/products?a=1&b=2").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status, "edge-proxy; fwd=miss; stored");
    let second = get(&proxy, "/api/products?b=2&a=1").await;
    assert_eq!(second.status, 200);
    assert!(
        second.cache_status.starts_with("edge-proxy; hit; ttl="),
        "{}",
        second.cache_status
    );
    assert!(second.age.is_some(), "a hit says its age");
    assert_eq!(second.body, first.body);
    assert_eq!(stub.count(), 1, "one upstream call");
    // Another query is another entry.
    get(&proxy, "/api/products?a=2").await;
    assert_eq!(stub.count(), 2);
    assert_eq!(
        metric(
            &proxy,
            "edge_cache_requests_total{outcome=\"hit\",route=\"/api\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_misses_make_one_upstream_call() {
    let slow = Behaviour::Cached(PUBLIC, Duration::from_millis(300));
    let stub = Stub::start("svc", slow).await;
    let proxy = std::sync::Arc::new(start_proxy(&config(&stub.url(), ""), None).await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let proxy = std::sync::Arc::clone(&proxy);
        tasks.push(tokio::spawn(
            async move { get(&proxy, "/api/products/7").await },
        ));
    }
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.body.contains("\"n\":1"), "{}", answer.body);
    }
    assert_eq!(
        stub.count(),
        1,
        "the others waited on the first one's fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_the_proxy_purges_the_item_and_the_lists_above_it() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let paths = [
        "/api/products/7",
        "/api/products?limit=2",
        "/api/products/8",
    ];
    for path in paths {
        get(&proxy, path).await;
    }
    assert_eq!(stub.count(), 3);
    for (method, path) in [
        ("PATCH", "/api/products/7"),
        ("DELETE", "/api/products/7"),
        ("POST", "/api/products/7/reservations"),
        ("DELETE", "/api/products/7/reservations/r1"),
    ] {
        let before = stub.count();
        assert_eq!(send(&proxy, method, path, &[]).await.status, 200);
        // The item and the list are fetched again; the other item is still a hit.
        let item = get(&proxy, "/api/products/7").await;
        let list = get(&proxy, "/api/products?limit=2").await;
        let other = get(&proxy, "/api/products/8").await;
        assert!(
            item.cache_status.contains("fwd=miss"),
            "{method} {path}: {}",
            item.cache_status
        );
        assert!(
            list.cache_status.contains("fwd=miss"),
            "{method} {path}: {}",
            list.cache_status
        );
        assert!(
            other.cache_status.contains("hit"),
            "{method} {path}: {}",
            other.cache_status
        );
        assert!(
            item.body.contains(&format!("\"n\":{}", before + 2)),
            "{}",
            item.body
        );
        assert_eq!(stub.count(), before + 3);
    }
    assert!(metric(&proxy, "edge_cache_purged_total{trigger=\"write\"}") >= 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_is_served_while_the_instance_is_down_and_says_so() {
    let control = "public, max-age=1, stale-if-error=60";
    let stub = Stub::start("svc", Behaviour::Cached(control, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let fresh = get(&proxy, "/api/products/7").await;
    stub.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = get(&proxy, "/api/products/7").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, fresh.body);
    assert!(
        stale.cache_status.contains("detail=stale"),
        "{}",
        stale.cache_status
    );
    // Pingora closes the connection after it: the answer says so, or a client reusing the
    // connection would race the close.
    assert_eq!(stale.connection.as_deref(), Some("close"));
    assert_eq!(fresh.connection.as_deref(), Some("keep-alive"));
    // Without a stored copy the same outage is an error.
    let uncached = get(&proxy, "/api/products/9").await;
    assert_eq!(uncached.status, 502, "{}", uncached.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_responses_are_never_served_to_anyone_else() {
    let control = "private, max-age=60";
    let stub = Stub::start("svc", Behaviour::Cached(control, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let mine = get(&proxy, "/api/users/me").await;
    let theirs = send(
        &proxy,
        "GET",
        "/api/users/me",
        &[("x-api-key", "other-key")],
    )
    .await;
    assert_eq!((mine.status, theirs.status), (200, 200));
    assert_eq!(stub.count(), 2, "each from the origin");
    assert_eq!(theirs.cache_status, "edge-proxy; fwd=miss");
    assert_ne!(mine.body, theirs.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_scope_is_refused_before_any_lookup() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    assert_eq!(get(&proxy, "/api/products/7").await.status, 200);
    let refused = send(
        &proxy,
        "GET",
        "/api/products/7",
        &[("x-api-key", "users-key")],
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.cache_status, "", "no lookup happened");
    let none = send(&proxy, "GET", "/api/products/7", &[("x-api-key", "nope")]).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        metric(
            &proxy,
            "edge_cache_requests_total{outcome=\"hit\",route=\"/api\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_evicts_instead_of_growing() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), "memory-bytes = 4096"), None).await;
    for i in 0..200 {
        assert_eq!(get(&proxy, &format!("/api/products/{i}")).await.status, 200);
    }
    let admin = &proxy.admin;
    client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap();
    let held = metric(&proxy, r#"edge_cache_bytes{route="/api"}"#);
    assert!(held > 0.0 && held <= 4096.0, "{held}");
    assert!(metric(&proxy, r#"edge_cache_evictions_total{route="/api"}"#) > 0.0);
}

/// Two cached routes, `/api/small` with a 4 KiB budget and `/api/big` with the default, and
/// (on reload) what `small` says `/api/small`'s cache is.
fn two_routes(upstream: &str, small: &str) -> String {
    config_with_routes(
        upstream,
        "",
        &format!(
            r#"
            [[routes]]
            prefix = "/api/small"
            service = "svc"
            auth = "api-key"
            {small}
            [[routes]]
            prefix = "/api/big"
            service = "svc"
            auth = "api-key"
            cache = {{ default-ttl-seconds = 0 }}
            "#
        ),
    )
}

async fn is_hit(proxy: &RunningProxy, path: &str) -> bool {
    get(proxy, path).await.cache_status.contains("; hit")
}

async fn scrape(proxy: &RunningProxy) {
    let admin = &proxy.admin;
    let scraped = client().get(format!("{admin}/metrics")).send().await;
    assert_eq!(scraped.unwrap().status().as_u16(), 200);
}

async fn reload(proxy: &RunningProxy, path: &std::path::Path, text: &str) {
    let port = proxy.base.rsplit(':').next().unwrap();
    std::fs::write(path, text.replace("{port}", port)).unwrap();
    let admin = &proxy.admin;
    let answer = client()
        .post(format!("{admin}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        200,
        "{}",
        answer.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_has_its_own_budget_and_a_reload_resizing_one_purges_only_it() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let small = "cache = { memory-bytes = 4096 }";
    let text = two_routes(&stub.url(), small);
    let dir = std::env::temp_dir().join(format!("cache-budgets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    let overrides = edge_proxy::server::Overrides {
        reload_from: Some(file.clone()),
        ..Default::default()
    };
    let proxy = support::start_proxy_with(&text, overrides).await;
    let admin = proxy.admin.clone();
    // The admin listener was added by the helper; a reload must keep it.
    let text = text.replacen(
        "[server]",
        &format!(
            "[server]\nadmin-listen = \"{}\"",
            admin.trim_start_matches("http://")
        ),
        1,
    );

    get(&proxy, "/api/big/kept").await;
    assert!(is_hit(&proxy, "/api/big/kept").await);
    for i in 0..200 {
        assert_eq!(get(&proxy, &format!("/api/small/{i}")).await.status, 200);
    }
    assert!(
        is_hit(&proxy, "/api/big/kept").await,
        "filling one route's budget evicted another route's entry"
    );
    assert!(is_hit(&proxy, "/api/small/199").await, "the newest stays");
    assert!(!is_hit(&proxy, "/api/small/0").await, "the oldest went");
    scrape(&proxy).await;
    let small_bytes = metric(&proxy, r#"edge_cache_bytes{route="/api/small"}"#);
    assert!(small_bytes > 0.0 && small_bytes <= 4096.0, "{small_bytes}");
    assert!(metric(&proxy, r#"edge_cache_evictions_total{route="/api/small"}"#) > 0.0);
    assert_eq!(
        metric(&proxy, r#"edge_cache_evictions_total{route="/api/big"}"#),
        0.0
    );
    assert!(metric(&proxy, r#"edge_cache_items{route="/api/big"}"#) >= 1.0);

    // A new budget for /api/small: what it held is purged, /api/big's entry stays.
    reload(
        &proxy,
        &file,
        &two_routes(&stub.url(), "cache = { memory-bytes = 8192 }").replacen(
            "[server]",
            &format!(
                "[server]\nadmin-listen = \"{}\"",
                admin.trim_start_matches("http://")
            ),
            1,
        ),
    )
    .await;
    assert!(!is_hit(&proxy, "/api/small/199").await, "resized: purged");
    assert!(is_hit(&proxy, "/api/small/199").await, "and cached again");
    assert!(is_hit(&proxy, "/api/big/kept").await, "unchanged: kept");
    assert!(metric(&proxy, r#"edge_cache_purged_total{trigger="reload"}"#) > 0.0);

    // /api/small no longer cached: not served from the cache, and gone from the gauges;
    // cached again later, it starts empty (nothing from before the first reload comes back).
    reload(&proxy, &file, &text.replace(small, "")).await;
    let uncached = get(&proxy, "/api/small/199").await;
    assert_eq!((uncached.status, uncached.cache_status.as_str()), (200, ""));
    scrape(&proxy).await;
    assert!(!proxy
        .handle
        .metrics
        .render()
        .contains(r#"edge_cache_bytes{route="/api/small"}"#));
    reload(&proxy, &file, &text).await;
    assert!(!is_hit(&proxy, "/api/small/199").await);
    assert!(is_hit(&proxy, "/api/big/kept").await);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_is_answered_304_from_the_cache() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    get(&proxy, "/api/products/7").await;
    let revalidated = send(
        &proxy,
        "GET",
        "/api/products/7",
        &[("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!(revalidated.status, 304);
    assert!(
        revalidated.cache_status.contains("hit"),
        "{}",
        revalidated.cache_status
    );
    let changed = send(
        &proxy,
        "GET",
        "/api/products/7",
        &[("if-none-match", "\"v0\"")],
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(stub.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_purges_by_prefix() {
    let stub = Stub::start("svc", Behaviour::Cached(PUBLIC, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    get(&proxy, "/api/products/7").await;
    get(&proxy, "/api/other").await;
    let admin = &proxy.admin;
    let purged = client()
        .post(format!("{admin}/cache/purge?prefix=/api/products"))
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status().as_u16(), 200);
    let body: serde_json::Value = purged.json().await.unwrap();
    assert_eq!(body["purged"], 1);
    assert!(get(&proxy, "/api/products/7")
        .await
        .cache_status
        .contains("fwd=miss"));
    assert!(get(&proxy, "/api/other").await.cache_status.contains("hit"));
    let bad = client()
        .post(format!("{admin}/cache/purge?prefix=products"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_headers_are_part_of_the_key() {
    // The stub's Cache-Control line carries a second header: `Vary: x-variant`.
    let control = "public, max-age=60\r\nvary: x-variant";
    let stub = Stub::start("svc", Behaviour::Cached(control, Duration::ZERO)).await;
    let proxy = start_proxy(&config(&stub.url(), ""), None).await;
    let a = send(&proxy, "GET", "/api/products/7", &[("x-variant", "a")]).await;
    let b = send(&proxy, "GET", "/api/products/7", &[("x-variant", "b")]).await;
    assert!(b.cache_status.contains("fwd=miss"), "{}", b.cache_status);
    assert_eq!(stub.count(), 2, "another variant, another entry");
    let again = send(&proxy, "GET", "/api/products/7", &[("x-variant", "a")]).await;
    assert!(again.cache_status.contains("hit"), "{}", again.cache_status);
    assert_eq!(again.body, a.body);
    assert_eq!(stub.count(), 2);
}

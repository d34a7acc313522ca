//! Discovery, balancing, health, circuit breaking, retries and timeouts, end to end through an
//! in-process proxy in front of stub upstreams.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_proxy::ops::admin::UpstreamStatus;
use edge_proxy::upstream::breaker::BreakerState;
use edge_proxy::upstream::registry::{epoch_now, MemoryRegistry, Registration, RegistrySource};
use support::{client, eventually, start_proxy, Behaviour, Stub};

fn config(instances: &[String], extra: &str) -> String {
    let list = instances
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
        graceful-shutdown-timeout-seconds = 1

        [services.svc]
        instances = [{list}]
        read-timeout-ms = 2000
        {extra}

        [services.svc.health-check]
        enabled = false

        [services.svc.circuit-breaker]
        consecutive-failures = 3
        failure-rate = 0.9
        window = 20
        minimum-calls = 20
        open-ms = 1000
        max-open-ms = 2000
        half-open-probes = 1

        [[routes]]
        prefix = "/api"
        service = "svc"
        strip-prefix = "/api"
        "#
    )
}

/// True when the service's pool holds the instance on `port`.
fn in_pool(proxy: &support::RunningProxy, port: u16) -> bool {
    proxy
        .handle
        .pool("svc")
        .unwrap()
        .instances()
        .iter()
        .any(|i| i.url.port == port)
}

/// `clients` concurrent clients, each making `each` GETs of `/api/x` that must all succeed.
async fn concurrent_gets(base: &str, clients: usize, each: usize) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                let (status, _) = get(&base, "/api/x").await;
                assert_eq!(status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = client().get(format!("{base}{path}")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn breaker_of(proxy: &support::RunningProxy, port: u16) -> BreakerState {
    let pool = proxy.handle.pool("svc").unwrap();
    let instances = pool.instances();
    let instance = instances.iter().find(|i| i.url.port == port).unwrap();
    instance.breaker.state(Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_routed_around_and_comes_back() {
    let a = Stub::start("a", Behaviour::Ok).await;
    let b = Stub::start("b", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&[a.url(), b.url()], ""), None).await;

    for _ in 0..10 {
        assert_eq!(get(&proxy.base, "/api/x").await.0, 200);
    }
    assert!(a.count() > 0 && b.count() > 0, "both instances get traffic");
    assert_eq!(a.count() + b.count(), 10);

    b.stop();
    let retries = |proxy: &support::RunningProxy| {
        let text = proxy.handle.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix("edge_retries_total{service=\"svc\"} "))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let mut retries_when_opened = None;
    for i in 0..20 {
        let (status, body) = get(&proxy.base, "/api/x").await;
        assert_eq!(status, 200, "request {i} after the kill: {body}");
        if retries_when_opened.is_none() && breaker_of(&proxy, b.port) == BreakerState::Open {
            retries_when_opened = Some(retries(&proxy));
        }
    }
    // Each of b's failures was retried on a; the third opened the breaker.
    assert_eq!(
        retries_when_opened,
        Some(3),
        "b's breaker opens at its threshold of three failures"
    );

    b.restart().await;
    // After open-ms the next request to b is a probe; its success closes the breaker.
    assert!(
        eventually(Duration::from_secs(5), || breaker_of(&proxy, b.port)
            == BreakerState::HalfOpen)
        .await,
        "open turns half-open after open-ms"
    );
    let before = b.count();
    for _ in 0..10 {
        assert_eq!(get(&proxy.base, "/api/x").await.0, 200);
    }
    assert_eq!(breaker_of(&proxy, b.port), BreakerState::Closed);
    assert!(b.count() > before, "b gets traffic again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_failing_gives_503_with_retry_after_and_no_connections() {
    let a = Stub::start("a", Behaviour::Status(503)).await;
    let proxy = start_proxy(&config(&[a.url()], ""), None).await;
    for _ in 0..3 {
        // The upstream's own 503 is passed through while the breaker counts it.
        assert_eq!(get(&proxy.base, "/api/x").await.0, 503);
    }
    assert_eq!(a.count(), 3);
    for _ in 0..5 {
        let response = client()
            .get(format!("{}/api/x", proxy.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after >= 1);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upstream_unavailable");
    }
    assert_eq!(
        a.count(),
        3,
        "no request reached the upstream while the breaker was open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_statuses_are_retried_once_on_another_instance_for_gets_only() {
    let bad = Stub::start("bad", Behaviour::Status(502)).await;
    let good = Stub::start("good", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&[bad.url(), good.url()], ""), None).await;
    // GETs that land on `bad` first are retried on `good`, exactly once each. (Two: a third
    // failure in a row would open `bad`'s breaker, 3 here, and the POSTs below need it closed.)
    for _ in 0..2 {
        let (status, body) = get(&proxy.base, "/api/x").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"good\""));
    }
    assert_eq!(good.count(), 2, "every GET ended on `good`, once");
    assert!(
        bad.count() >= 1,
        "round robin sent some GETs to `bad` first"
    );
    let retries = format!("edge_retries_total{{service=\"svc\"}} {}", bad.count());
    assert!(
        proxy.handle.metrics.render().contains(&retries),
        "one retry per GET that met `bad`, no more"
    );
    // A POST that reached `bad` is not replayed: the client sees bad's 502.
    let mut saw_passthrough = false;
    for _ in 0..2 {
        let response = client()
            .post(format!("{}/api/x", proxy.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if status == 502 {
            assert!(
                body.contains("\"bad\""),
                "the upstream's own answer, not a retry: {body}"
            );
            saw_passthrough = true;
        }
    }
    assert!(
        saw_passthrough,
        "round robin sent one of two POSTs to `bad`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_with_retry_after_is_passed_through_not_retried() {
    // Both instances share what is failing (as the functions share DynamoDB): each says when
    // to come back, and the proxy does not spend the client's time asking the other one.
    let a = Stub::start("a", Behaviour::StatusRetryAfter(503)).await;
    let b = Stub::start("b", Behaviour::StatusRetryAfter(503)).await;
    let proxy = start_proxy(&config(&[a.url(), b.url()], ""), None).await;
    for attempt in 1..=2 {
        let response = client()
            .get(format!("{}/api/x", proxy.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("\"instance\""),
            "the upstream's own answer: {body}"
        );
        assert_eq!(
            a.count() + b.count(),
            attempt,
            "one upstream call per request"
        );
    }
    // The same status without Retry-After is still retried on the other instance.
    a.set(Behaviour::Status(503));
    b.set(Behaviour::Ok);
    let (a_before, b_before) = (a.count(), b.count());
    for _ in 0..4 {
        let (status, body) = get(&proxy.base, "/api/x").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"b\""), "{body}");
    }
    assert_eq!(b.count() - b_before, 4);
    assert!(
        a.count() > a_before,
        "round robin sent some of them to a first, and they were retried on b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_retried_when_it_was_never_sent() {
    let down = Stub::start("down", Behaviour::Ok).await;
    down.stop();
    let up = Stub::start("up", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&[down.url(), up.url()], ""), None).await;
    for _ in 0..2 {
        let response = client()
            .post(format!("{}/api/x", proxy.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "connect failure: the POST goes to the other instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_a_504() {
    let slow = Stub::start("slow", Behaviour::Delay(Duration::from_secs(5))).await;
    let text = config(&[slow.url()], "").replace("read-timeout-ms = 2000", "read-timeout-ms = 300");
    let proxy = start_proxy(&text, None).await;
    let response = client()
        .get(format!("{}/api/x", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_instances_join_and_leave_within_a_poll_interval() {
    let fixed = Stub::start("fixed", Behaviour::Ok).await;
    let joiner = Stub::start("joiner", Behaviour::Ok).await;
    let registry = Arc::new(MemoryRegistry::default());
    let text = format!(
        "[registry]\ntable = \"RegistryTable\"\npoll-interval-ms = 200\n{}",
        config(
            &[fixed.url()],
            "registry = true\nbalancer = \"least-in-flight\""
        )
    );
    let proxy = start_proxy(&text, Some(registry.clone() as Arc<dyn RegistrySource>)).await;

    registry.put(Registration {
        service: "svc".into(),
        url: joiner.url(),
        weight: 1,
        expires_at: epoch_now() + 60,
    });
    assert!(
        eventually(Duration::from_secs(3), || in_pool(&proxy, joiner.port)).await,
        "registered instance joins"
    );
    for _ in 0..20 {
        assert_eq!(get(&proxy.base, "/api/x").await.0, 200);
    }
    assert!(joiner.count() > 0, "and gets traffic");
    // Its series, as the admin listener renders them: one per breaker state, closed = 1.
    let series = |proxy: &support::RunningProxy| {
        proxy.handle.pools.record_gauges(&proxy.handle.metrics);
        let text = proxy.handle.metrics.render();
        text.lines()
            .filter(|l| l.contains(&format!("127.0.0.1:{}", joiner.port)))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let joined = series(&proxy);
    assert!(
        joined
            .iter()
            .any(|l| l.starts_with("edge_circuit_breaker_state{")
                && l.contains("state=\"closed\"")
                && l.ends_with(" 1")),
        "{joined:?}"
    );
    assert!(
        joined
            .iter()
            .any(|l| l.starts_with("edge_circuit_breaker_state{")
                && l.contains("state=\"open\"")
                && l.ends_with(" 0")),
        "{joined:?}"
    );

    // An outage keeps the last good set: failed polls happen (counted), the set stays.
    let failed_polls = |proxy: &support::RunningProxy| {
        let text = proxy.handle.metrics.render();
        text.lines()
            .find(|l| {
                l.starts_with("edge_discovery_refresh_total{") && l.contains("outcome=\"failure\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    registry.set_down(true);
    assert!(
        eventually(Duration::from_secs(5), || failed_polls(&proxy) >= 2).await,
        "polls fail while the registry is down"
    );
    assert!(
        in_pool(&proxy, joiner.port),
        "registry outage keeps the instance"
    );
    registry.set_down(false);

    registry.put(Registration {
        service: "svc".into(),
        url: joiner.url(),
        weight: 1,
        expires_at: epoch_now() - 1,
    });
    assert!(
        eventually(Duration::from_secs(3), || !in_pool(&proxy, joiner.port)).await,
        "expired instance leaves"
    );
    let before = joiner.count();
    for _ in 0..10 {
        assert_eq!(get(&proxy.base, "/api/x").await.0, 200);
    }
    assert_eq!(joiner.count(), before, "and gets no more traffic");
    assert_eq!(
        series(&proxy),
        Vec::<String>::new(),
        "and its series are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_an_instance_out_and_back() {
    let a = Stub::start("a", Behaviour::Ok).await;
    let b = Stub::start("b", Behaviour::Ok).await;
    let text = config(&[a.url(), b.url()], "").replace(
        "[services.svc.health-check]\n        enabled = false",
        "[services.svc.health-check]\n        interval-ms = 100\n        healthy-threshold = 2\n        unhealthy-threshold = 2",
    );
    let proxy = start_proxy(&text, None).await;
    let healthy = |proxy: &support::RunningProxy, port: u16| {
        proxy
            .handle
            .pool("svc")
            .unwrap()
            .instances()
            .iter()
            .find(|i| i.url.port == port)
            .unwrap()
            .is_healthy()
    };
    b.stop();
    assert!(
        eventually(Duration::from_secs(3), || !healthy(&proxy, b.port)).await,
        "b fails its checks"
    );
    b.restart().await;
    assert!(
        eventually(Duration::from_secs(3), || healthy(&proxy, b.port)).await,
        "b passes again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retried_once_on_another_instance() {
    let slow = Stub::start("slow", Behaviour::Delay(Duration::from_secs(5))).await;
    let fast = Stub::start("fast", Behaviour::Ok).await;
    let text = config(&[slow.url(), fast.url()], "")
        .replace("read-timeout-ms = 2000", "read-timeout-ms = 300");
    let proxy = start_proxy(&text, None).await;
    // Round robin: the first GET starts on `slow`, times out, and is answered by `fast`.
    let (status, body) = get(&proxy.base, "/api/x").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"fast\""), "{body}");
    assert_eq!(
        (slow.count(), fast.count()),
        (1, 1),
        "one try each, no more"
    );
    assert!(proxy
        .handle
        .metrics
        .render()
        .contains("edge_retries_total{service=\"svc\"} 1"));

    // Three slow instances: two attempts (never a third, though a third instance is there),
    // then 504.
    fast.set(Behaviour::Delay(Duration::from_secs(5)));
    let third = Stub::start("third", Behaviour::Delay(Duration::from_secs(5))).await;
    let text = config(&[slow.url(), fast.url(), third.url()], "")
        .replace("read-timeout-ms = 2000", "read-timeout-ms = 300");
    let proxy = start_proxy(&text, None).await;
    let before = slow.count() + fast.count() + third.count();
    let (status, body) = get(&proxy.base, "/api/x").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("upstream_timeout"), "{body}");
    assert_eq!(
        slow.count() + fast.count() + third.count() - before,
        2,
        "at most one retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_without_budget_and_the_total_timeout_bounds_both_tries() {
    let slow = Stub::start("slow", Behaviour::Delay(Duration::from_secs(5))).await;
    let other = Stub::start("other", Behaviour::Delay(Duration::from_secs(5))).await;
    // No reserve and no share of traffic for retries: a timeout is not retried.
    let text = config(&[slow.url(), other.url()], "")
        .replace("read-timeout-ms = 2000", "read-timeout-ms = 300")
        .replace(
            "[services.svc.health-check]",
            "[services.svc.retry]\n        budget-ratio = 0.0\n        budget-reserve = 0\n\n        [services.svc.health-check]",
        );
    let proxy = start_proxy(&text, None).await;
    let (status, _) = get(&proxy.base, "/api/x").await;
    assert_eq!(status, 504);
    assert_eq!(
        slow.count() + other.count(),
        1,
        "the empty budget allowed no retry"
    );

    // With budget, the total timeout caps the whole exchange: the first try gets what is
    // left of it (250 ms, under the 300 ms read timeout) and spends it, so no second try is
    // made, though the budget would allow one.
    let text = config(&[slow.url(), other.url()], "").replace(
        "read-timeout-ms = 2000",
        "read-timeout-ms = 300\n        connect-timeout-ms = 100\n        total-timeout-ms = 250",
    );
    let proxy = start_proxy(&text, None).await;
    let before = slow.count() + other.count();
    let (status, body) = get(&proxy.base, "/api/x").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("upstream_timeout"), "{body}");
    assert_eq!(
        slow.count() + other.count() - before,
        1,
        "the total was spent by one try"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_in_flight_steers_load_away_from_a_slow_instance() {
    let slow = Stub::start("slow", Behaviour::Delay(Duration::from_millis(400))).await;
    let fast = Stub::start("fast", Behaviour::Ok).await;
    let text = config(&[slow.url(), fast.url()], "balancer = \"least-in-flight\"");
    let proxy = start_proxy(&text, None).await;
    // Eight clients, five requests each: while `slow` holds requests, new ones go to `fast`.
    concurrent_gets(&proxy.base, 8, 5).await;
    assert_eq!(slow.count() + fast.count(), 40);
    assert!(
        fast.count() > 3 * slow.count(),
        "fast {} vs slow {}",
        fast.count(),
        slow.count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_instance_gets_no_traffic() {
    let sick = Stub::start("sick", Behaviour::FailHealth).await;
    let well = Stub::start("well", Behaviour::Ok).await;
    let text = config(&[sick.url(), well.url()], "").replace(
        "[services.svc.health-check]\n        enabled = false",
        "[services.svc.health-check]\n        interval-ms = 100\n        healthy-threshold = 1\n        unhealthy-threshold = 1",
    );
    let proxy = start_proxy(&text, None).await;
    let pool = proxy.handle.pool("svc").unwrap();
    let sick_healthy = || {
        pool.instances()
            .iter()
            .find(|i| i.url.port == sick.port)
            .unwrap()
            .is_healthy()
    };
    assert!(
        eventually(Duration::from_secs(3), || !sick_healthy()).await,
        "the failing health checks take it out"
    );
    let before = sick.count();
    for _ in 0..10 {
        let (status, body) = get(&proxy.base, "/api/x").await;
        assert_eq!(status, 200);
        assert!(body.contains("\"well\""), "{body}");
    }
    assert_eq!(
        sick.count(),
        before,
        "though it would have answered, it got nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_steer_least_in_flight_traffic() {
    let light = Stub::start("light", Behaviour::Delay(Duration::from_millis(100))).await;
    let heavy = Stub::start("heavy", Behaviour::Delay(Duration::from_millis(100))).await;
    let registry = Arc::new(MemoryRegistry::default());
    // `light` is static (weight 1); `heavy` comes from the registry with weight 4.
    registry.put(Registration {
        service: "svc".into(),
        url: heavy.url(),
        weight: 4,
        expires_at: epoch_now() + 600,
    });
    let text = format!(
        "[registry]\ntable = \"RegistryTable\"\npoll-interval-ms = 200\n{}",
        config(
            &[light.url()],
            "registry = true\nbalancer = \"least-in-flight\""
        )
    );
    let proxy = start_proxy(&text, Some(registry as Arc<dyn RegistrySource>)).await;
    assert!(
        eventually(Duration::from_secs(5), || in_pool(&proxy, heavy.port)).await,
        "the registry instance joins"
    );
    concurrent_gets(&proxy.base, 10, 6).await;
    assert_eq!(light.count() + heavy.count(), 60);
    // Equally fast instances, the heavier one holds four times the in-flight requests.
    assert!(
        heavy.count() > 2 * light.count(),
        "heavy {} vs light {}",
        heavy.count(),
        light.count()
    );
}

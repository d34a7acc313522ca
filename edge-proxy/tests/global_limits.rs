//! Global rate limits against a real Redis (Debian's `redis-server`, started here on a free
//! port): two proxy replicas share one limit within the documented bound; Redis killed and
//! restarted gives each policy its configured failure behaviour, with no hang and no 5xx; a
//! per-replica policy works with Redis absent.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{client, free_port, start_proxy, Behaviour, Stub};

/// A `redis-server` child on a loopback port, without persistence; killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    /// Starts (again) on the same port, empty.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package; scripts/setup.sh installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts nothing and answers nothing (slow), then resumes.
    fn pause(&self, paused: bool) {
        if let Some(child) = &self.child {
            let signal = if paused { "-STOP" } else { "-CONT" };
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// SIGKILL: gone at once, connections reset.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(upstream: &str, redis_url: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0

        [redis]
        url = "{redis_url}"
        timeout-ms = 50
        lease = 4
        lease-ms = 250

        [services.svc]
        instances = ["{upstream}"]
        [services.svc.health-check]
        enabled = false

        [[routes]]
        prefix = "/api/shared"
        service = "svc"
        strip-prefix = "/api"
        rate-limit = {{ requests-per-second = 1.0, burst = 10, scope = "global" }}

        [[routes]]
        prefix = "/api/open"
        service = "svc"
        strip-prefix = "/api"
        rate-limit = {{ requests-per-second = 1.0, burst = 3, scope = "global", on-store-error = "open" }}

        [[routes]]
        prefix = "/api/closed"
        service = "svc"
        strip-prefix = "/api"
        rate-limit = {{ requests-per-second = 1000.0, burst = 1000, scope = "global", on-store-error = "closed" }}

        [[routes]]
        prefix = "/api/local"
        service = "svc"
        strip-prefix = "/api"
        rate-limit = {{ requests-per-second = 1.0, burst = 2 }}
        "#
    )
}

async fn status(base: &str, path: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("every request is answered (no hang)")
}

/// The sum of the samples of `name` (a series name, labels included or not).
fn metric(proxy: &support::RunningProxy, name: &str) -> f64 {
    proxy
        .handle
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_admit_one_limit_between_them() {
    let redis = Redis::start().await;
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let text = config(&stub.url(), &redis.url());
    let replicas = [
        start_proxy(&text, None).await,
        start_proxy(&text, None).await,
    ];

    let started = Instant::now();
    let (mut admitted, mut refused) = (0u32, 0u32);
    for i in 0..40 {
        let response = status(&replicas[i % 2].base, "/api/shared/items").await;
        match response.status().as_u16() {
            200 => admitted += 1,
            429 => {
                refused += 1;
                let headers = response.headers();
                assert!(headers.contains_key("retry-after"));
                assert!(headers["ratelimit"].to_str().unwrap().contains(";r=0;"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // README's bound: burst + rate × (T + lease-ms) = 10 + 1 × (T + 0.25), whatever the number
    // of replicas; per-replica limits would have admitted 10 on each, 20 here.
    let bound = 10.0 + elapsed + 0.25;
    assert!(
        f64::from(admitted) <= bound,
        "admitted {admitted} in {elapsed:.2} s, bound {bound:.2}"
    );
    // Refused early by at most the tokens two leases can strand (2 × lease).
    assert!(admitted >= 10 - 2 * 4, "admitted only {admitted}");
    assert_eq!(admitted + refused, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_fails_open_or_closed_then_limits_again() {
    let mut redis = Redis::start().await;
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), &redis.url()), None).await;
    let base = proxy.base.clone();

    let statuses = |path: &'static str, n: usize| {
        let base = base.clone();
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let response = status(&base, path).await;
                out.push((
                    response.status().as_u16(),
                    response.headers().contains_key("ratelimit"),
                ));
            }
            out
        }
    };
    // Redis up: the open policy limits after its burst of 3, with headers.
    let up = statuses("/api/open/x", 5).await;
    assert_eq!(
        up.iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 200, 200, 429, 429]
    );
    assert!(
        up.iter().all(|s| s.1),
        "RateLimit headers while Redis answers"
    );
    assert_eq!(statuses("/api/closed/x", 1).await[0].0, 200);

    redis.kill();
    // A refusal Redis gave stands locally until its Retry-After, Redis or not.
    assert_eq!(statuses("/api/open/x", 1).await[0], (429, true));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Open: admitted, without RateLimit headers (nothing decided them). Closed: 429 with
    // Retry-After: 1. Never a 5xx, every request answered.
    for (status, has_headers) in statuses("/api/open/x", 10).await {
        assert_eq!((status, has_headers), (200, false));
    }
    for _ in 0..10 {
        let response = status(&base, "/api/closed/x").await;
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(metric(&proxy, "edge_rate_limit_store_up"), 0.0);
    let failed = metric(
        &proxy,
        "edge_rate_limit_store_calls_total{outcome=\"error\"}",
    ) + metric(
        &proxy,
        "edge_rate_limit_store_calls_total{outcome=\"timeout\"}",
    );
    assert!(failed >= 1.0, "failed store calls counted");
    assert!(
        metric(
            &proxy,
            "edge_rate_limit_store_calls_total{outcome=\"skipped\"}"
        ) >= 1.0,
        "calls skipped while backing off"
    );

    // Back (empty): within the backoff (at most 2 s) the closed policy admits again and the
    // open one limits again.
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&base, "/api/closed/x").await.status() != 200 {
        assert!(Instant::now() < deadline, "Redis back, but still refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&proxy, "edge_rate_limit_store_up"), 1.0);
    let again = statuses("/api/open/y", 5).await;
    assert_eq!(
        again.iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 200, 200, 429, 429]
    );
    // What reached the stub: every admitted request (3 + 1 up, 10 open while down, the poll's
    // last, 3 again), none of the refused ones.
    assert_eq!(stub.count(), 3 + 1 + 10 + 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_costs_a_timeout_not_a_hang() {
    let redis = Redis::start().await;
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = start_proxy(&config(&stub.url(), &redis.url()), None).await;
    assert_eq!(status(&proxy.base, "/api/closed/x").await.status(), 200);

    redis.pause(true);
    // Each request is answered (the call gives up after timeout-ms = 50): closed refuses, open
    // admits; later ones skip Redis during the backoff.
    for _ in 0..5 {
        assert_eq!(status(&proxy.base, "/api/closed/p").await.status(), 429);
        assert_eq!(status(&proxy.base, "/api/open/p").await.status(), 200);
    }
    assert!(
        metric(
            &proxy,
            "edge_rate_limit_store_calls_total{outcome=\"timeout\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&proxy, "edge_rate_limit_store_up"), 0.0);

    redis.pause(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&proxy.base, "/api/closed/p").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "Redis answers again, but still refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_replica_limit_works_with_redis_absent() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    // Nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let proxy = start_proxy(&config(&stub.url(), &url), None).await;
    let codes: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(status(&proxy.base, "/api/local/x").await.status().as_u16());
        }
        out
    };
    assert_eq!(codes, [200, 200, 429]);
    // The global open policy admits; nothing answers 5xx.
    assert_eq!(status(&proxy.base, "/api/open/x").await.status(), 200);
}

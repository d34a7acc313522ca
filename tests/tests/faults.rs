//! Faults on the running stack: the DynamoDB endpoint stops answering while everything else
//! runs. The functions must answer a JSON 503 quickly instead of hanging, and recover by
//! themselves when the endpoint answers again.
//!
//! Two ways down: paused with SIGSTOP (a hang: connections open, nothing answers; resumed with
//! SIGCONT, data intact) and killed (connections refused; restarted empty with its tables by
//! `scripts/stack.sh restart-dynamodb`).
//!
//! And one function instance killed under load (SIGKILL to the second `cargo lambda watch`
//! and its functions, and to its function URL stand-in when the stack runs in AWS's shape):
//! the proxy routes around it without failing a read, and sends it traffic again once
//! `scripts/stack.sh restart-instance` brings it back. The in-process
//! resilience tests cover the same against stub upstreams with exact breaker counts; this one
//! is the real stack.
//!
//! And every instance killed at once: product reads stored in the edge cache are served stale
//! (stale-if-error), saying so, until the instances are back.
//!
//! These disturb every other test, so `make test` runs them alone, after the rest of the suite
//! (their tests are named `fault_*`). Needs `STACK_LOG_DIR` and `SECOND_PRODUCTS_URL` (local
//! stack only).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{access_log, client, error_code, log_dir, send, status_json, unique};
use reqwest::Method;
use serde_json::json;

fn pid_of(process: &str) -> String {
    std::fs::read_to_string(format!("{}/{process}.pid", log_dir()))
        .unwrap()
        .trim()
        .to_string()
}

fn dynamodb_pid() -> String {
    pid_of("dynamodb")
}

/// Runs `scripts/stack.sh COMMAND PROFILE` for the stack under test.
fn stack(command: &str) {
    // The stack's profile is the name of its state folder (`.stack/test`).
    let dir = log_dir();
    let profile = std::path::Path::new(&dir)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("test")
        .to_string();
    let mut script = std::process::Command::new("scripts/stack.sh");
    script
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([command, &profile]);
    // Not the variables Cargo sets for this test (CARGO_PKG_VERSION_MAJOR, ...): the functions
    // are started with `cargo run`, and some build scripts (ring's) rerun when those change, so
    // they would rebuild half the dependency tree, now and again at the next normal build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_test = [
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_MANIFEST_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&name.as_ref());
        if set_by_cargo_test {
            script.env_remove(name.as_ref());
        }
    }
    let status = script.status().unwrap();
    assert!(status.success(), "scripts/stack.sh {command} {profile}");
}

fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, "--", pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Resumes the endpoint even if an assertion fails halfway.
struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

/// Answers from the functions while DynamoDB is down: a JSON 503 `service_unavailable` with
/// `Retry-After` each time, within the functions' own DynamoDB timeouts (about 5 s), never a
/// hang; and the proxy passes it on instead of trying the other instance, which shares the
/// same database.
async fn answers_while_down(client: &reqwest::Client, state: &str) {
    let body = json!({"name": "Fault", "email": format!("{}@example.com", unique("f"))});
    // A query no read had before: a miss in the edge cache, so the function answers.
    let read = format!("/api/products?limit=1&probe={}", unique("p"));
    for (method, path, body) in [
        (Method::POST, "/api/users", Some(&body)),
        (Method::GET, read.as_str(), None),
    ] {
        let request_id = unique("fault-");
        let started = Instant::now();
        let response = send(client, method, path, body, &[("x-request-id", &request_id)]).await;
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, json) = status_json(response).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "{path}: {json}");
        assert_eq!(error_code(&json), "service_unavailable", "{path}");
        assert!(retry_after.is_some(), "{path}: a 503 without Retry-After");
        // Hang detection, not a latency claim: the functions give up on DynamoDB after 5 s
        // (two attempts of 2 s); a hang would run into the client's 30 s timeout.
        assert!(took < Duration::from_secs(20), "{path}: took {took:?}");
        let line = access_log(&request_id)
            .await
            .unwrap_or_else(|| panic!("{path}: no access-log line for {request_id}"));
        assert_eq!(
            line["retries"], 0,
            "{path}: the proxy retried an answer that said when to come back: {line}"
        );
        println!("{path} answered {status} after {took:?} with the database {state}");
    }
}

/// Polls until a user can be created again.
async fn recovers(client: &reqwest::Client) -> bool {
    for _ in 0..100 {
        let body = json!({"name": "Back", "email": format!("{}@example.com", unique("b"))});
        let (status, _) =
            status_json(send(client, Method::POST, "/api/users", Some(&body), &[]).await).await;
        if status == 201 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn fault_dynamodb_killed_then_restarted() {
    let client = client();
    signal("-KILL", &dynamodb_pid());
    answers_while_down(&client, "killed").await;

    stack("restart-dynamodb");
    assert!(
        recovers(&client).await,
        "the functions recover once a DynamoDB endpoint answers again"
    );
}

#[tokio::test]
async fn fault_dynamodb_stops_and_comes_back() {
    let client = client();
    // Something written before the outage...
    let email = format!("{}@example.com", unique("before"));
    let (status, before) = status_json(
        send(
            &client,
            Method::POST,
            "/api/users",
            Some(&json!({"name": "Before", "email": email})),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{before}");
    let pid = dynamodb_pid();
    signal("-STOP", &pid);
    let resume = Resume(pid);
    answers_while_down(&client, "paused").await;
    drop(resume);
    // Recovers without restarting anything...
    assert!(
        recovers(&client).await,
        "the functions recover once DynamoDB answers again"
    );
    // ...and what was written before is still there, unchanged.
    let path = format!("/api/users/{}", before["id"].as_str().unwrap());
    let (status, after) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before);
}

/// Polls reads of `path` (bounded, about 40 s) until one is served by the instance at `instance`.
async fn serves_from(client: &reqwest::Client, path: &str, instance: &str) -> bool {
    for _ in 0..200 {
        let request_id = unique("probe-");
        // A new query each time: an edge-cache miss, so an instance answers.
        let response = send(
            client,
            Method::GET,
            &format!("{path}?probe={request_id}"),
            None,
            &[("x-request-id", &request_id)],
        )
        .await;
        assert_eq!(response.status().as_u16(), 200);
        let line = access_log(&request_id).await.expect("an access-log line");
        if line["upstream"]
            .as_str()
            .is_some_and(|upstream| upstream.starts_with(instance))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// One request of the load: its method, status and body, whether it began after the kill, and
/// its request id (to find its access-log line).
struct Outcome {
    method: Method,
    status: u16,
    body: serde_json::Value,
    after_kill: bool,
    request_id: String,
}

#[tokio::test]
async fn fault_instance_killed_under_load() {
    let client = client();
    let second = std::env::var("SECOND_PRODUCTS_URL")
        .unwrap_or_else(|_| panic!("SECOND_PRODUCTS_URL must be set (local stack only)"));
    let sku = unique("SKU-").to_uppercase();
    let product =
        json!({"sku": sku, "name": "Lamp", "price_cents": 999, "currency": "EUR", "stock": 5});
    let (status, created) =
        status_json(send(&client, Method::POST, "/api/products", Some(&product), &[]).await).await;
    assert_eq!(status, 201, "{created}");
    let product_path = format!("/api/products/{}", created["id"].as_str().unwrap());

    // The second instance must be in service before it is killed, or the test proves nothing:
    // an earlier fault test may have emptied the registry's table, which the instance's
    // heartbeat refills within its interval (10 s).
    assert!(
        serves_from(&client, &product_path, &second).await,
        "the second instance never served a read before the kill"
    );

    // Four clients, each: three reads of the product, then one new user; 240 requests in all,
    // within the rate limit's burst. The second instance dies after the first 40.
    let done = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, done, killed, outcomes) = (
            client.clone(),
            Arc::clone(&done),
            Arc::clone(&killed),
            Arc::clone(&outcomes),
        );
        let product_path = product_path.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..60 {
                let after_kill = killed.load(Ordering::SeqCst);
                let user = json!({"name": "Load", "email": format!("{}@example.com", unique("l"))});
                let request_id = unique("load-");
                // Reads with a new query each: edge-cache misses, so they reach an instance.
                let read = format!("{product_path}?load={request_id}");
                let (method, path, body) = if i % 4 == 3 {
                    (Method::POST, "/api/users", Some(&user))
                } else {
                    (Method::GET, read.as_str(), None)
                };
                let (status, body) = status_json(
                    send(
                        &client,
                        method.clone(),
                        path,
                        body,
                        &[("x-request-id", &request_id)],
                    )
                    .await,
                )
                .await;
                outcomes.lock().unwrap().push(Outcome {
                    method,
                    status,
                    body,
                    after_kill,
                    request_id,
                });
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let retries_before = e2e::counter(
        &e2e::scrape_metrics().await,
        "edge_retries_total",
        &[("service", "product-service")],
    );
    while done.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The whole instance at once: in AWS's shape its function URLs first (so none of them
    // is left answering for a function that is gone), then cargo lambda watch and the
    // function processes it started (the whole process group).
    if std::path::Path::new(&format!("{}/front2.pid", log_dir())).exists() {
        signal("-KILL", &format!("-{}", pid_of("front2")));
    }
    signal("-KILL", &format!("-{}", pid_of("functions2")));
    killed.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert_eq!(outcomes.len(), 240);
    assert!(
        outcomes.iter().filter(|o| o.after_kill).count() >= 150,
        "most of the load ran after the kill"
    );
    for outcome in &outcomes {
        if outcome.method == Method::GET {
            // Reads are retried on the live instance, whatever state the dead one was in.
            assert_eq!(outcome.status, 200, "a read failed: {}", outcome.body);
        } else if outcome.status != 201 {
            // A create in flight on the dying instance cannot be replayed (it may have been
            // stored): the client gets a JSON error that says the upstream failed, never a hang.
            assert!(
                matches!(outcome.status, 502..=504),
                "a create got {}: {}",
                outcome.status,
                outcome.body
            );
            assert!(!error_code(&outcome.body).is_empty());
        }
    }
    let created_after_kill = outcomes
        .iter()
        .filter(|o| o.after_kill && o.method == Method::POST && o.status == 201)
        .count();
    assert!(created_after_kill > 0, "creates go on after the kill");

    // The dead instance did carry traffic before it died (so it was not already out of the
    // set), and the proxy did retry reads on the live one after.
    let mut served_by_second_before = 0;
    for outcome in outcomes
        .iter()
        .filter(|o| !o.after_kill && o.method == Method::GET)
    {
        let line = access_log(&outcome.request_id)
            .await
            .unwrap_or_else(|| panic!("no access line for {}", outcome.request_id));
        if line["upstream"]
            .as_str()
            .is_some_and(|upstream| upstream.starts_with(&second))
        {
            served_by_second_before += 1;
        }
    }
    assert!(
        served_by_second_before > 0,
        "the second instance served reads before it was killed"
    );
    let retries = e2e::counter(
        &e2e::scrape_metrics().await,
        "edge_retries_total",
        &[("service", "product-service")],
    ) - retries_before;
    assert!(
        retries >= 1.0,
        "reads that met the dead instance were retried"
    );

    // Back: the proxy finds the instance again (health checks, then a half-open probe). Bounded
    // by the breaker's longest open period (60 s in dev.toml) plus health checks, not a timing
    // assertion: it usually takes a few seconds.
    stack("restart-instance");
    let back = serves_from(&client, &product_path, &second).await;
    assert!(back, "the restarted instance gets traffic again");
}

/// Every instance of the functions killed (both `cargo lambda watch` processes with SIGKILL,
/// and their function URL stand-ins in AWS's shape), then brought back by
/// `scripts/stack.sh restart-instances`, even if the test fails halfway.
struct AllInstancesKilled;

impl AllInstancesKilled {
    fn kill() -> AllInstancesKilled {
        for process in ["front", "front2", "functions", "functions2"] {
            let pidfile = format!("{}/{process}.pid", log_dir());
            // The fronts exist only in AWS's shape.
            if std::path::Path::new(&pidfile).exists() {
                signal("-KILL", &format!("-{}", pid_of(process)));
            }
        }
        AllInstancesKilled
    }
}

impl Drop for AllInstancesKilled {
    fn drop(&mut self) {
        stack("restart-instances");
    }
}

/// A number of seconds in a `Cache-Control` value (`max-age=5` -> 5).
fn directive(control: &str, name: &str) -> u64 {
    control
        .split(',')
        .find_map(|d| d.trim().strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {control:?}"))
}

#[tokio::test]
async fn fault_every_instance_killed_cached_reads_served_stale() {
    let client = client();
    let product = json!({"sku": unique("SKU-").to_uppercase(), "name": "Kept", "price_cents": 500,
                         "currency": "EUR", "stock": 3});
    let (status, created) =
        status_json(send(&client, Method::POST, "/api/products", Some(&product), &[]).await).await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/api/products/{}", created["id"].as_str().unwrap());
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let stored = send(&client, Method::GET, &path, None, &[]).await;
    let control = header(&stored, "cache-control");
    let (status, body) = status_json(stored).await;
    assert_eq!(status, 200, "{body}");
    let hit = send(&client, Method::GET, &path, None, &[]).await;
    assert!(header(&hit, "cache-status").contains("; hit"), "stored");

    let killed = AllInstancesKilled::kill();
    // Past max-age and the stale-while-revalidate window: from here on only stale-if-error
    // (300 s) lets the cache answer.
    let fresh_and_revalidating =
        directive(&control, "max-age") + directive(&control, "stale-while-revalidate");
    tokio::time::sleep(Duration::from_secs(fresh_and_revalidating + 1)).await;
    let request_id = unique("stale-");
    let stale = send(
        &client,
        Method::GET,
        &path,
        None,
        &[("x-request-id", &request_id)],
    )
    .await;
    let cache_status = header(&stale, "cache-status");
    let age: u64 = header(&stale, "age").parse().unwrap();
    let (status, again) = status_json(stale).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, body, "the stored product, unchanged");
    assert!(cache_status.contains("detail=stale"), "{cache_status}");
    assert!(age > fresh_and_revalidating, "age {age}");
    let line = access_log(&request_id).await.expect("an access-log line");
    assert_eq!(line["cache"], "stale", "{line}");

    // What was never stored has nothing to fall back on: a JSON error, not a hang.
    let (status, error) = status_json(
        send(
            &client,
            Method::GET,
            &format!("/api/products?probe={}", unique("p")),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert!(matches!(status, 502..=504), "{status} {error}");
    assert!(!error_code(&error).is_empty(), "{error}");

    drop(killed);
    // Back: a read no one made before is answered by a function again (bounded, not timed:
    // health checks and the breaker's half-open probe bring the instances back).
    let mut back = false;
    for _ in 0..200 {
        let probe = format!("/api/products?probe={}", unique("back"));
        if send(&client, Method::GET, &probe, None, &[]).await.status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "product reads are answered again after the restart");
}

//! Faults on the running stack: the DynamoDB endpoint stops answering while everything else
//! runs. The functions must answer a JSON 503 quickly instead of hanging, and recover by
//! themselves when the endpoint answers again.
//!
//! Two ways down: paused with SIGSTOP (a hang: connections open, nothing answers; resumed with
//! SIGCONT, data intact) and killed (connections refused; restarted empty with its tables by
//! `scripts/stack.sh restart-dynamodb`). This disturbs every other test, so `make test` runs
//! these alone, after the rest of the suite (their tests are named `fault_*`). Needs
//! `STACK_LOG_DIR` (local stack only).

use std::time::{Duration, Instant};

use e2e::{access_log, client, error_code, log_dir, send, status_json, unique};
use reqwest::Method;
use serde_json::json;

fn dynamodb_pid() -> String {
    std::fs::read_to_string(format!("{}/dynamodb.pid", log_dir()))
        .unwrap()
        .trim()
        .to_string()
}

fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
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

/// Answers from the functions while DynamoDB is down: a JSON 5xx each time, never a hang. A
/// 503 says when to come back (Retry-After), and the proxy passes it on instead of trying the
/// other instance, which shares the same database.
async fn answers_while_down(client: &reqwest::Client, state: &str) {
    let body = json!({"name": "Fault", "email": format!("{}@example.com", unique("f"))});
    for (method, path, body) in [
        (Method::POST, "/api/users", Some(&body)),
        (Method::GET, "/api/products?limit=1", None),
    ] {
        let request_id = unique("fault-");
        let started = Instant::now();
        let response = send(client, method, path, body, &[("x-request-id", &request_id)]).await;
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, json) = status_json(response).await;
        let took = started.elapsed();
        assert!(
            status == 503 || status == 500,
            "{path}: got {status}: {json}"
        );
        assert!(!error_code(&json).is_empty());
        if status == 503 {
            assert!(retry_after.is_some(), "{path}: a 503 without Retry-After");
        }
        let line = access_log(&request_id)
            .await
            .unwrap_or_else(|| panic!("{path}: no access-log line for {request_id}"));
        assert_eq!(
            line["retries"], 0,
            "{path}: the proxy retried an answer that said when to come back: {line}"
        );
        // Not a latency assertion: a hang would run into the client's 30 s timeout instead.
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

    // The stack's profile is the name of its state folder (`.stack/test`).
    let dir = log_dir();
    let profile = std::path::Path::new(&dir)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("test")
        .to_string();
    let status = std::process::Command::new("scripts/stack.sh")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["restart-dynamodb", &profile])
        .status()
        .unwrap();
    assert!(status.success(), "restarting the DynamoDB endpoint");
    assert!(
        recovers(&client).await,
        "the functions recover once a DynamoDB endpoint answers again"
    );
}

#[tokio::test]
async fn fault_dynamodb_stops_and_comes_back() {
    let client = client();
    let pid = dynamodb_pid();
    signal("-STOP", &pid);
    let resume = Resume(pid);
    answers_while_down(&client, "paused").await;
    drop(resume);
    // Recovers without restarting anything.
    assert!(
        recovers(&client).await,
        "the functions recover once DynamoDB answers again"
    );
}

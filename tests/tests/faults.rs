//! Faults on the running stack: the DynamoDB endpoint stops answering while everything else
//! runs. The functions must answer a JSON 503 quickly instead of hanging, and recover by
//! themselves when the endpoint answers again.
//!
//! The endpoint is paused with SIGSTOP (and resumed with SIGCONT) so its data survives. This
//! disturbs every other test, so `make test` runs it alone, after the rest of the suite
//! (its tests are named `fault_*`). Needs `STACK_LOG_DIR` (local stack only).

use std::time::{Duration, Instant};

use e2e::{client, error_code, send, status_json, unique};
use reqwest::Method;
use serde_json::json;

fn dynamodb_pid() -> String {
    let dir = std::env::var("STACK_LOG_DIR")
        .unwrap_or_else(|_| panic!("STACK_LOG_DIR must be set (local stack only)"));
    std::fs::read_to_string(format!("{dir}/dynamodb.pid"))
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

#[tokio::test]
async fn fault_dynamodb_stops_and_comes_back() {
    let client = client();
    let body = || json!({"name": "Fault", "email": format!("{}@example.com", unique("f"))});
    let pid = dynamodb_pid();

    signal("-STOP", &pid);
    let resume = Resume(pid);
    for _ in 0..2 {
        let started = Instant::now();
        let (status, json) =
            status_json(send(&client, Method::POST, "/api/users", Some(&body()), &[]).await).await;
        let took = started.elapsed();
        assert!(status == 503 || status == 500, "got {status}: {json}");
        assert!(!error_code(&json).is_empty());
        // Not a latency assertion: a hang would run into the client's 30 s timeout instead.
        println!("answered {status} after {took:?} with the database stopped");
    }
    drop(resume);

    // Recovers without restarting anything.
    let mut recovered = false;
    for _ in 0..50 {
        let (status, _) =
            status_json(send(&client, Method::POST, "/api/users", Some(&body()), &[]).await).await;
        if status == 201 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the functions recover once DynamoDB answers again"
    );
}

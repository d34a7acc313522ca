//! The stack in AWS's shape (what `make test` runs): every function instance is reached through
//! a stand-in for its `AWS_IAM` function URL on a host name. Straight at such a URL, only a
//! request signed as AWS requires gets through; through the proxy, everything does, because
//! the proxy signs requests and health checks, resolves the host names, and finds the second
//! instances in the registry.
//!
//! Needs the local stack's environment in the AWS shape (`FUNCTION_URL_USERS`, the stack's
//! credentials in `AWS_*`, `E2E_ADMIN_URL`).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use e2e::{access_log, client, send, unique};
use function_url::sign::signed_headers;
use reqwest::Method;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} must be set: run with `make test` (the stack in AWS's shape)")
    })
}

/// The stack's identity: what the proxy signs with and the function URLs accept.
fn stack_credentials() -> Credentials {
    Credentials::new(
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        std::env::var("AWS_SESSION_TOKEN").ok(),
        None,
        "stack",
    )
}

/// A request to the user service's function URL, signed with `credentials` for `region`
/// (possibly wrongly), at `time`, then `tamper`ed with.
async fn call(
    method: &str,
    path: &str,
    body: &str,
    credentials: Option<&Credentials>,
    region: &str,
    time: SystemTime,
    tamper: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> u16 {
    let base = env("FUNCTION_URL_USERS");
    let host = base.trim_start_matches("http://");
    // `path` is what is signed; a `?` suffix on it is sent but was not signed.
    let (signed_path, unsigned_suffix) = path.split_once('?').unwrap_or((path, ""));
    let url = format!("{base}{signed_path}");
    let sent = if unsigned_suffix.is_empty() {
        url.clone()
    } else {
        format!("{url}?{unsigned_suffix}")
    };
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), &sent)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(credentials) = credentials {
        for (name, value) in signed_headers(
            credentials,
            region,
            method,
            &url,
            host,
            body.as_bytes(),
            time,
        ) {
            request = request.header(name, value);
        }
    }
    tamper(request).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_function_url_lets_through_only_what_aws_would() {
    let good = stack_credentials();
    let now = SystemTime::now();
    let body = format!(
        r#"{{"name":"Direct","email":"{}@example.com"}}"#,
        unique("d")
    );
    let same = |r: reqwest::RequestBuilder| r;

    assert_eq!(
        call("GET", "/health", "", Some(&good), "us-east-1", now, same).await,
        200
    );
    assert_eq!(
        call("POST", "/users", &body, Some(&good), "us-east-1", now, same).await,
        201
    );

    let refused = [
        (
            "unsigned",
            call("GET", "/health", "", None, "us-east-1", now, same).await,
        ),
        (
            "wrong secret",
            call(
                "GET",
                "/health",
                "",
                Some(&Credentials::new(
                    good.access_key_id(),
                    "not-the-secret",
                    good.session_token().map(str::to_string),
                    None,
                    "test",
                )),
                "us-east-1",
                now,
                same,
            )
            .await,
        ),
        (
            "unknown access key",
            call(
                "GET",
                "/health",
                "",
                Some(&Credentials::new(
                    "ASIAUNKNOWN",
                    good.secret_access_key(),
                    good.session_token().map(str::to_string),
                    None,
                    "test",
                )),
                "us-east-1",
                now,
                same,
            )
            .await,
        ),
        (
            "no session token",
            call(
                "GET",
                "/health",
                "",
                Some(&Credentials::new(
                    good.access_key_id(),
                    good.secret_access_key(),
                    None,
                    None,
                    "test",
                )),
                "us-east-1",
                now,
                same,
            )
            .await,
        ),
        (
            "other region",
            call("GET", "/health", "", Some(&good), "eu-west-1", now, same).await,
        ),
        (
            "ten minutes old",
            call(
                "GET",
                "/health",
                "",
                Some(&good),
                "us-east-1",
                now - Duration::from_secs(600),
                same,
            )
            .await,
        ),
        (
            "body changed after signing",
            call(
                "POST",
                "/users",
                &body,
                Some(&good),
                "us-east-1",
                now,
                |r| r.body(body.replace("Direct", "Forged")),
            )
            .await,
        ),
        (
            "query added after signing",
            call(
                "GET",
                "/health?limit=1",
                "",
                Some(&good),
                "us-east-1",
                now,
                same,
            )
            .await,
        ),
    ];
    for (what, status) in refused {
        assert_eq!(status, 403, "{what}");
    }
}

#[tokio::test]
async fn through_the_proxy_every_instance_is_signed_for_found_and_healthy() {
    // Both instances of each function answer through the proxy: the static one (in the config,
    // on a host name) and the registry's, both checked healthy by signed health checks.
    let metrics = client()
        .get(format!("{}/metrics", env("E2E_ADMIN_URL")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let healthy: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("edge_instance_healthy{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(
        healthy.len(),
        4,
        "two healthy instances per service: {metrics}"
    );
    assert!(
        healthy
            .iter()
            .all(|l| l.contains("instance=\"http://localhost:")),
        "{healthy:?}"
    );

    let http = client();
    let mut upstreams = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let request_id = unique("shape-");
        let response = send(
            &http,
            Method::GET,
            "/api/users?limit=1",
            None,
            &[("x-request-id", &request_id)],
        )
        .await;
        assert_eq!(response.status().as_u16(), 200);
        let line = access_log(&request_id).await.expect("an access-log line");
        upstreams.insert(line["upstream"].as_str().unwrap().to_string());
    }
    assert_eq!(
        upstreams.len(),
        2,
        "both user-service instances served: {upstreams:?}"
    );
}

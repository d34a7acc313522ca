//! SigV4 to IAM-protected upstreams, end to end: a stub upstream checks signatures with known
//! credentials, as a Lambda function URL with `AuthType: AWS_IAM` would.

mod support;

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use edge_proxy::config::Config;
use edge_proxy::server::Overrides;
use edge_proxy::upstream::sigv4::Signer;
use std::time::{Duration, Instant};

use support::{client, eventually, Behaviour, Stub};

const ACCESS_KEY: &str = "AKIDSTUBEXAMPLE";
const SECRET: &str = "stub-secret-key-0123456789";

fn config(upstream: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        admin-listen = "127.0.0.1:{{admin}}"
        threads = 1
        grace-period-seconds = 0

        [services.fn]
        instances = ["{upstream}"]
        aws-iam = true
        aws-region = "eu-west-1"
        allow-loopback-function-urls = true
        [services.fn.health-check]
        enabled = false

        [[routes]]
        prefix = "/api"
        service = "fn"
        strip-prefix = "/api"
        "#
    )
}

/// Starts the proxy with a signer holding the given credentials (or none at all).
async fn proxy(upstream: &str, credentials: Option<Credentials>) -> support::RunningProxy {
    proxy_with(&config(upstream), credentials).await
}

/// Starts the proxy from `text` with a signer holding the given credentials (or none).
async fn proxy_with(text: &str, credentials: Option<Credentials>) -> support::RunningProxy {
    let signer = match credentials {
        Some(credentials) => Signer::new(SharedCredentialsProvider::new(credentials)),
        None => Signer::new(SharedCredentialsProvider::new(NoCredentials)),
    };
    let text = text.replace("{admin}", &support::free_port().to_string());
    support::start_proxy_with(
        &text,
        Overrides {
            signer: Some(Arc::new(signer)),
            ..Overrides::default()
        },
    )
    .await
}

#[derive(Debug)]
struct NoCredentials;

impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded("none"),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_are_accepted_with_their_body() {
    let stub = Stub::start(
        "fn",
        Behaviour::VerifySigV4(ACCESS_KEY, SECRET, "eu-west-1"),
    )
    .await;
    let proxy = proxy(
        &stub.url(),
        Some(Credentials::new(ACCESS_KEY, SECRET, None, None, "test")),
    )
    .await;
    let get = client()
        .get(format!("{}/api/users?limit=2", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 200);
    let post = client()
        .post(format!("{}/api/users", proxy.base))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-token-must-not-be-forwarded")
        .header("x-extra", "added after signing is fine")
        .body(r#"{"name":"Ada","email":"ada@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status().as_u16(),
        200,
        "the stub verified the signature over the body"
    );
    let head = stub.head();
    assert!(head.contains("x-amz-content-sha256: "), "{head}");
    assert!(
        !head.contains("client-token"),
        "the client's Authorization is replaced: {head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_is_a_json_502() {
    let stub = Stub::start(
        "fn",
        Behaviour::VerifySigV4(ACCESS_KEY, SECRET, "eu-west-1"),
    )
    .await;
    let proxy = proxy(
        &stub.url(),
        Some(Credentials::new(
            ACCESS_KEY,
            "the-wrong-secret",
            None,
            None,
            "test",
        )),
    )
    .await;
    let response = client()
        .get(format!("{}/api/users", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert_eq!(stub.count(), 1, "refused once, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_means_no_unsigned_request_is_sent() {
    let stub = Stub::start(
        "fn",
        Behaviour::VerifySigV4(ACCESS_KEY, SECRET, "eu-west-1"),
    )
    .await;
    let proxy = proxy(&stub.url(), None).await;
    let response = client()
        .get(format!("{}/api/users", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert_eq!(stub.count(), 0);
}

#[test]
fn aws_iam_instances_need_a_region() {
    let text = config("http://127.0.0.1:1").replace("aws-region = \"eu-west-1\"\n", "");
    let error = Config::parse(&text.replace("{admin}", "9").replace("{port}", "8")).unwrap_err();
    assert_eq!(error.field, "services.fn.instances[0]");
    let text = config("https://abc.lambda-url.us-east-2.on.aws")
        .replace("aws-region = \"eu-west-1\"\n", "");
    assert!(Config::parse(&text.replace("{admin}", "9").replace("{port}", "8")).is_ok());
}

/// A function URL answers unsigned health checks 403: checks of `aws-iam` services are signed,
/// so a healthy instance stays healthy; one that refuses the signature goes unhealthy and comes
/// back once it accepts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_are_signed() {
    let stub = Stub::start(
        "fn",
        Behaviour::VerifySigV4(ACCESS_KEY, SECRET, "eu-west-1"),
    )
    .await;
    let text = config(&stub.url()).replace(
        "[services.fn.health-check]\n        enabled = false",
        "[services.fn.health-check]\n        interval-ms = 100\n        timeout-ms = 500\n        healthy-threshold = 1\n        unhealthy-threshold = 2",
    );
    assert!(text.contains("interval-ms = 100"));
    let proxy = proxy_with(
        &text,
        Some(Credentials::new(ACCESS_KEY, SECRET, None, None, "test")),
    )
    .await;
    let pool = proxy.handle.pool("fn").unwrap();
    let healthy = || pool.instances().iter().all(|i| i.is_healthy());

    // Many check rounds later, the signed instance is still healthy and serves.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(healthy(), "signed health checks pass");
    let response = client()
        .get(format!("{}/api/users", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The instance stops accepting the proxy's signature: out of rotation...
    stub.set(Behaviour::VerifySigV4(
        ACCESS_KEY,
        "rotated-secret",
        "eu-west-1",
    ));
    assert!(
        eventually(Duration::from_secs(5), || !healthy()).await,
        "refused health checks take the instance out"
    );
    assert!(!pool.has_usable(Instant::now()));
    let response = client()
        .get(format!("{}/api/users", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);

    // ...and back once it accepts it again.
    stub.set(Behaviour::VerifySigV4(ACCESS_KEY, SECRET, "eu-west-1"));
    assert!(
        eventually(Duration::from_secs(5), healthy).await,
        "accepted health checks bring it back"
    );
}

/// Signed requests (with bodies) go only where the config or the registry may send them.
#[test]
fn aws_iam_instances_must_be_function_urls_or_allowed_loopback() {
    let parse = |text: String| Config::parse(&text.replace("{admin}", "9").replace("{port}", "8"));
    let without_loopback =
        |url: &str| config(url).replace("allow-loopback-function-urls = true\n", "");
    for refused in [
        "http://127.0.0.1:1",
        "https://attacker.example.com",
        "http://abc.lambda-url.us-east-2.on.aws",
    ] {
        let error = parse(without_loopback(refused)).unwrap_err();
        assert_eq!(error.field, "services.fn.instances[0]", "{refused}");
    }
    assert!(parse(without_loopback("https://abc.lambda-url.us-east-2.on.aws")).is_ok());
    assert!(parse(config("http://localhost:9200")).is_ok());
    let error = parse(config("http://10.1.2.3:9200")).unwrap_err();
    assert_eq!(error.field, "services.fn.instances[0]", "not loopback");
}

//! SigV4 to IAM-protected upstreams, end to end: a stub upstream checks signatures with known
//! credentials, as a Lambda function URL with `AuthType: AWS_IAM` would.

mod support;

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use edge_proxy::config::Config;
use edge_proxy::server::Overrides;
use edge_proxy::upstream::sigv4::Signer;
use support::{client, Behaviour, Stub};

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
    let signer = match credentials {
        Some(credentials) => Signer::new(SharedCredentialsProvider::new(credentials)),
        None => Signer::new(SharedCredentialsProvider::new(NoCredentials)),
    };
    let text = config(upstream).replace("{admin}", &support::free_port().to_string());
    support::start_proxy_with(
        &text,
        Overrides {
            registry: None,
            signer: Some(Arc::new(signer)),
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

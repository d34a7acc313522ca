//! Authentication and authorization through the real stack.
//!
//! Needs `E2E_JWT` (a token the proxy accepts for scopes `users products`; `make test` mints one
//! with `edge-proxy token`) and uses the development keys unless `E2E_API_KEY` /
//! `E2E_PRODUCTS_ONLY_API_KEY` say otherwise.

use e2e::{base_url, client, error_code, status_json};
use reqwest::Client;

fn bare_client() -> Client {
    Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

fn jwt() -> String {
    std::env::var("E2E_JWT").unwrap_or_else(|_| panic!("E2E_JWT must be set (make test mints one)"))
}

fn products_only_key() -> String {
    std::env::var("E2E_PRODUCTS_ONLY_API_KEY")
        .unwrap_or_else(|_| "lambda-edge-products-only-key".into())
}

#[tokio::test]
async fn no_or_bad_credentials_are_401_with_a_challenge() {
    let client = bare_client();
    for (name, value) in [
        ("x-none", "x"),
        ("x-api-key", "not-a-key"),
        ("authorization", "Bearer abc.def.ghi"),
    ] {
        let response = client
            .get(format!("{}/api/users", base_url()))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{name}");
        assert!(response.headers().contains_key("www-authenticate"));
        let (_, body) = status_json(response).await;
        assert_eq!(error_code(&body), "unauthorized");
    }
}

#[tokio::test]
async fn a_key_without_the_scope_is_403_and_with_it_passes() {
    let client = bare_client();
    let users = client
        .get(format!("{}/api/users", base_url()))
        .header("x-api-key", products_only_key())
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(users).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let products = client
        .get(format!("{}/api/products", base_url()))
        .header("x-api-key", products_only_key())
        .send()
        .await
        .unwrap();
    assert_eq!(products.status().as_u16(), 200);
}

#[tokio::test]
async fn a_jwt_works_and_rate_limit_headers_come_back() {
    let response = bare_client()
        .get(format!("{}/api/users?limit=1", base_url()))
        .header("authorization", format!("Bearer {}", jwt()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("ratelimit-policy"));
    assert!(response.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .contains(";r="));
    // The default client's API key works too.
    assert_eq!(
        client()
            .get(format!("{}/api/products?limit=1", base_url()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

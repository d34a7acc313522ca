//! The thinnest slice through the whole system: a user and a product are created and read back
//! through the proxy, and the proxy and functions answer errors as JSON.

use e2e::{client, error_code, send, status_json, unique};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn user_round_trip_through_the_proxy() {
    let client = client();
    let email = format!("{}@example.com", unique("ada"));
    let response = send(
        &client,
        Method::POST,
        "/api/users",
        Some(&json!({"name": "Ada", "email": email})),
        &[],
    )
    .await;
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, user) = status_json(response).await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap();
    assert_eq!(
        location.as_deref(),
        Some(format!("/api/users/{id}").as_str())
    );

    let (status, fetched) =
        status_json(send(&client, Method::GET, &format!("/api/users/{id}"), None, &[]).await).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, user);
}

#[tokio::test]
async fn product_round_trip_through_the_proxy() {
    let client = client();
    let sku = unique("SKU-").to_uppercase();
    let body = json!({"sku": sku, "name": "Desk lamp", "price_cents": 1999, "currency": "EUR", "stock": 5});
    let (status, product) =
        status_json(send(&client, Method::POST, "/api/products", Some(&body), &[]).await).await;
    assert_eq!(status, 201, "{product}");
    let id = product["id"].as_str().unwrap();
    let (status, fetched) = status_json(
        send(
            &client,
            Method::GET,
            &format!("/api/products/{id}"),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(fetched, product);
}

#[tokio::test]
async fn unknown_things_are_json_404s() {
    let client = client();
    for path in [
        "/api/nothing-here",
        "/",
        "/api/users/00000000-0000-0000-0000-000000000000",
        "/api/products/not-an-id",
    ] {
        let (status, body) = status_json(send(&client, Method::GET, path, None, &[]).await).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(error_code(&body), "not_found", "{path}");
    }
}

#[tokio::test]
async fn bad_json_is_a_400() {
    let client = client();
    for path in ["/api/users", "/api/products"] {
        let response = client
            .post(format!("{}{path}", e2e::base_url()))
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(error_code(&body), "invalid_json");
    }
}

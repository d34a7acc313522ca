//! The product API end to end, through the proxy: statuses, SKU uniqueness, category paging and
//! the delete rule for reservations (tests/reservations.rs has the rest of them).

use std::collections::BTreeSet;

use e2e::{client, error_code, send, status_json, unique};
use reqwest::{Client, Method};
use serde_json::{json, Value};

fn sku() -> String {
    unique("SKU-").to_uppercase()
}

async fn create(client: &Client, body: Value) -> (u16, Value) {
    status_json(send(client, Method::POST, "/api/products", Some(&body), &[]).await).await
}

fn product(sku: &str, stock: u32) -> Value {
    json!({"sku": sku, "name": "Desk lamp", "price_cents": 1999, "currency": "EUR", "stock": stock})
}

#[tokio::test]
async fn releasing_twice_returns_stock_once_and_delete_rule() {
    let client = client();
    let (_, created) = create(&client, product(&sku(), 5)).await;
    let id = created["id"].as_str().unwrap();
    let (status, reservation) = status_json(
        send(
            &client,
            Method::POST,
            &format!("/api/products/{id}/reservations"),
            Some(&json!({"quantity": 4})),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(reservation["owner"], "api-key:dev-client");
    let (status, body) = status_json(
        send(
            &client,
            Method::POST,
            &format!("/api/products/{id}/reservations"),
            Some(&json!({"quantity": 2})),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (409, "insufficient_stock"));

    // Deleting a product with an open reservation is refused.
    let (status, body) = status_json(
        send(
            &client,
            Method::DELETE,
            &format!("/api/products/{id}"),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (409, "has_open_reservations"));

    let release = format!(
        "/api/products/{id}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    );
    let first = send(&client, Method::DELETE, &release, None, &[]);
    let second = send(&client, Method::DELETE, &release, None, &[]);
    let (first, second) = tokio::join!(first, second);
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [204, 409],
        "one release wins, the other is a conflict"
    );
    let (_, after) = status_json(
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
    assert_eq!(after["stock"], 5, "stock returned exactly once");
    assert_eq!(after["open_reservations"], 0);

    let (status, _) = status_json(
        send(
            &client,
            Method::DELETE,
            &format!("/api/products/{id}"),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn sku_uniqueness_and_validation() {
    let client = client();
    let code = sku();
    assert_eq!(create(&client, product(&code, 1)).await.0, 201);
    let (status, body) = create(&client, product(&code, 1)).await;
    assert_eq!((status, error_code(&body)), (409, "sku_taken"));

    let mut cases = Vec::new();
    for (field, value) in [
        ("sku", json!("lower-case")),
        ("price_cents", json!(-1)),
        ("price_cents", json!(19.99)),
        ("currency", json!("euro")),
        ("stock", json!(4_294_967_296u64)),
        ("name", json!("")),
    ] {
        let mut body = product(&sku(), 1);
        body[field] = value;
        cases.push((field, body));
    }
    for (field, body) in cases {
        let (status, json) = create(&client, body.clone()).await;
        assert_eq!(
            (status, error_code(&json)),
            (400, "invalid_field"),
            "{body}"
        );
        assert!(
            json["error"]["message"].as_str().unwrap().contains(field),
            "{json}"
        );
    }
}

#[tokio::test]
async fn patch_with_if_match_and_category_paging() {
    let client = client();
    let category = unique("cat");
    let mut ids = BTreeSet::new();
    for _ in 0..7 {
        let mut body = product(&sku(), 1);
        body["category"] = json!(category);
        let (status, created) = create(&client, body).await;
        assert_eq!(status, 201);
        ids.insert(created["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/products?category={category}&limit=3&cursor={c}"),
            None => format!("/api/products?category={category}&limit=3"),
        };
        let (status, page) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), ids);

    let id = ids.iter().next().unwrap();
    let path = format!("/api/products/{id}");
    let (status, body) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"stock": 9})),
            &[("if-match", "\"7\"")],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (412, "version_mismatch"));
    let (status, patched) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"stock": 9, "category": null})),
            &[("if-match", "\"1\"")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["stock"].as_u64(), patched["version"].as_u64()),
        (Some(9), Some(2))
    );
    assert!(patched.get("category").is_none());
    let (status, body) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"sku": "NEW"})),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_field"));
}

#[tokio::test]
async fn method_and_media_errors() {
    let client = client();
    let (_, created) = create(&client, product(&sku(), 1)).await;
    let id = created["id"].as_str().unwrap();
    for (method, path, want) in [
        (Method::PUT, "/api/products".to_string(), 405),
        (Method::GET, format!("/api/products/{id}/reservations"), 405),
        (Method::GET, "/api/products?limit=500".to_string(), 400),
        (Method::GET, "/api/products?cursor=%%%".to_string(), 400),
        (
            Method::DELETE,
            format!("/api/products/{id}/reservations/{}", uuid::Uuid::new_v4()),
            404,
        ),
    ] {
        let (status, body) =
            status_json(send(&client, method.clone(), &path, None, &[]).await).await;
        assert_eq!(status, want, "{method} {path}: {body}");
        error_code(&body);
    }
    let response = client
        .post(format!(
            "{}/api/products/{id}/reservations",
            e2e::base_url()
        ))
        .header("content-type", "text/plain")
        .body("{\"quantity\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
}

#[tokio::test]
async fn delete_honours_if_match_and_nulls_are_refused() {
    let client = client();
    let (status, created) = create(&client, product(&sku(), 3)).await;
    assert_eq!(status, 201);
    let path = format!("/api/products/{}", created["id"].as_str().unwrap());

    // `null` for a field that cannot be removed is refused, naming it; nothing changes.
    for field in ["name", "price_cents", "currency", "stock"] {
        let (status, body) = status_json(
            send(
                &client,
                Method::PATCH,
                &path,
                Some(&json!({ field: null })),
                &[],
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "invalid_field"),
            "{field}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("`{field}`")),
            "{body}"
        );
    }
    // A currency off the ISO 4217 list is refused too.
    let (status, body) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"currency": "XYZ"})),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "invalid_field"),
        "{body}"
    );

    // A stale If-Match: 412 and the product stays.
    let (status, body) = status_json(
        send(
            &client,
            Method::DELETE,
            &path,
            None,
            &[("if-match", "\"2\"")],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (412, "version_mismatch"));
    let (status, still) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
    assert_eq!(status, 200);
    assert_eq!(still, created, "nothing changed");
    // The current one: deleted.
    let response = send(
        &client,
        Method::DELETE,
        &path,
        None,
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 204);
    let (status, _) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
    assert_eq!(status, 404);
}

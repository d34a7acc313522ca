//! The edge cache end to end, through the proxy in front of the real functions: product reads
//! come from the cache (and say so), and no kind of write through the proxy leaves a stale
//! read behind it: create, PATCH, a reservation made and released, DELETE. User data is never
//! cached. (Stampedes, eviction and auth-before-lookup are in `edge-proxy/tests/cache.rs`,
//! where the upstream can be counted and stopped; stale reads with every instance killed are
//! in `faults.rs`, which runs alone.)

use reqwest::Method;
use serde_json::{json, Value};

use e2e::{access_log, client, send, status_json, unique};

/// GET `path`: status, body and `Cache-Status`.
async fn read(path: &str) -> (u16, Value, String) {
    let response = send(&client(), Method::GET, path, None, &[]).await;
    let cache_status = response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let (status, body) = status_json(response).await;
    (status, body, cache_status)
}

async fn write(
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    status_json(send(&client(), method, path, body.as_ref(), headers).await).await
}

/// The items of a list page, by id.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn reads_come_from_the_cache_and_no_write_leaves_them_stale() {
    let category = unique("cached");
    let list = format!("/api/products?category={category}&limit=10");
    let (_, empty, _) = read(&list).await;
    assert!(ids(&empty).is_empty());
    let (status, first) = write(
        Method::POST,
        "/api/products",
        Some(
            json!({"sku": unique("SKU-").to_uppercase(), "name": "Lamp", "price_cents": 1000,
                    "currency": "EUR", "stock": 5, "category": category}),
        ),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    let item = format!("/api/products/{id}");

    // Created: the cached (empty) list is gone.
    let (_, listed, _) = read(&list).await;
    assert_eq!(
        ids(&listed),
        std::slice::from_ref(&id),
        "the list after a create"
    );
    let (status, _, miss) = read(&item).await;
    assert_eq!(status, 200);
    assert!(miss.contains("fwd=miss"), "{miss}");
    let (_, cached, hit) = read(&item).await;
    assert!(hit.contains("; hit"), "the second read is a hit: {hit}");
    assert_eq!(cached["name"], "Lamp");
    // The access log says so too.
    let request_id = unique("hit-");
    send(
        &client(),
        Method::GET,
        &item,
        None,
        &[("x-request-id", &request_id)],
    )
    .await;
    let line = access_log(&request_id).await.expect("an access line");
    assert_eq!(line["cache"], "hit", "{line}");
    assert_eq!(line["upstream"], "-", "a hit goes nowhere: {line}");

    // PATCH: the next read has the new name.
    let (status, patched) = write(
        Method::PATCH,
        &item,
        Some(json!({"name": "Desk lamp"})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let (_, after, _) = read(&item).await;
    assert_eq!(after["name"], "Desk lamp", "read after PATCH");
    let (_, page, _) = read(&list).await;
    assert_eq!(
        page["items"][0]["name"], "Desk lamp",
        "the list after PATCH"
    );

    // A reservation: the stock the next read shows is the new one; then released.
    read(&item).await;
    let (status, reserved) = write(
        Method::POST,
        &format!("{item}/reservations"),
        Some(json!({"quantity": 2})),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{reserved}");
    let (_, after, _) = read(&item).await;
    assert_eq!(after["stock"], 3, "read after a reservation: {after}");
    let reservation = reserved["reservation_id"].as_str().unwrap();
    let (status, _) = write(
        Method::DELETE,
        &format!("{item}/reservations/{reservation}"),
        None,
        &[],
    )
    .await;
    assert!(status < 300, "release: {status}");
    let (_, after, _) = read(&item).await;
    assert_eq!(after["stock"], 5, "read after the release: {after}");

    // DELETE: gone, from the item and the list.
    let version = after["version"].as_u64().unwrap().to_string();
    let (status, _) = write(
        Method::DELETE,
        &item,
        None,
        &[("if-match", &format!("\"{version}\""))],
    )
    .await;
    assert!(status < 300, "delete: {status}");
    let (status, _, _) = read(&item).await;
    assert_eq!(status, 404, "read after DELETE");
    let (_, listed, _) = read(&list).await;
    assert!(ids(&listed).is_empty(), "the list after DELETE");
}

#[tokio::test]
async fn user_data_is_never_cached() {
    let (status, user) = write(
        Method::POST,
        "/api/users",
        Some(json!({"name": "Ada", "email": format!("{}@example.com", unique("ada"))})),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());
    let response = send(&client(), Method::GET, &path, None, &[]).await;
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert!(
        response.headers().get("cache-status").is_none(),
        "the users route has no cache"
    );
}

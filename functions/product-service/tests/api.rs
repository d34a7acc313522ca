//! The product API over the in-memory store: every documented status, SKU uniqueness, versioned
//! updates, paging with and without a category, and reservations that never oversell.

use std::collections::BTreeSet;
use std::sync::Arc;

use lambda_http::http::Method;
use lambda_http::{Body, Response};
use product_service::api::App;
use product_service::store::MemoryProductStore;
use serde_json::{json, Value};
use service_core::paging::CursorCodec;
use service_core::testkit::{error_code, json_of, raw_request, request};
use service_core::Handler;

fn app() -> App {
    App::new(
        Arc::new(MemoryProductStore::new()),
        CursorCodec::new("test-key"),
    )
}

fn product_body(sku: &str, stock: u32) -> Value {
    json!({"sku": sku, "name": "Desk lamp", "price_cents": 1999, "currency": "EUR", "stock": stock})
}

async fn call(app: &App, method: Method, uri: &str, body: Option<Value>) -> Response<Body> {
    app.handle(request(method, uri, body, &[])).await
}

async fn create(app: &App, body: Value) -> Value {
    let response = call(app, Method::POST, "/products", Some(body)).await;
    assert_eq!(response.status(), 201, "{:?}", response.body());
    json_of(&response)
}

#[tokio::test]
async fn create_get_and_location() {
    let app = app();
    let response = call(
        &app,
        Method::POST,
        "/products",
        Some(product_body("LAMP-1", 3)),
    )
    .await;
    assert_eq!(response.status(), 201);
    let product = json_of(&response);
    let id = product["id"].as_str().unwrap();
    assert_eq!(response.headers()["location"], format!("/products/{id}"));
    assert_eq!(product["price_cents"], 1999);
    assert_eq!(product["open_reservations"], 0);
    let fetched = call(&app, Method::GET, &format!("/products/{id}"), None).await;
    assert_eq!(fetched.headers()["etag"], "\"1\"");
    assert_eq!(json_of(&fetched), product);
}

#[tokio::test]
async fn head_follows_get_and_only_where_get_is_served() {
    let app = app();
    let id = create(&app, product_body("LAMP-H", 1)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let head = call(&app, Method::HEAD, &format!("/products/{id}"), None).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"], "\"1\"");
    assert!(matches!(head.body(), Body::Empty));
    // Reservations are created with POST only: HEAD there is a 405 like GET, without a body.
    let reservations = format!("/products/{id}/reservations");
    let refused = call(&app, Method::HEAD, &reservations, None).await;
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "POST");
    assert!(matches!(refused.body(), Body::Empty));
}

#[tokio::test]
async fn sku_is_unique() {
    let app = app();
    create(&app, product_body("LAMP-1", 1)).await;
    let second = call(
        &app,
        Method::POST,
        "/products",
        Some(product_body("LAMP-1", 1)),
    )
    .await;
    assert_eq!(second.status(), 409);
    assert_eq!(error_code(&second), "sku_taken");
}

#[tokio::test]
async fn validation_names_the_field() {
    let app = app();
    let base = product_body("OK-1", 1);
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("sku", json!("lower")), "sku"),
        (with("sku", json!("")), "sku"),
        (with("name", json!(" ")), "name"),
        (with("price_cents", json!(-1)), "price_cents"),
        (with("price_cents", json!(19.99)), "price_cents"),
        (with("price_cents", json!("1999")), "price_cents"),
        (with("currency", json!("eur")), "currency"),
        (with("stock", json!(-5)), "stock"),
        (with("stock", json!(4_294_967_296u64)), "stock"),
        (with("category", json!("a/b")), "category"),
        (with("colour", json!("red")), "colour"),
    ];
    for (body, field) in cases {
        let response = call(&app, Method::POST, "/products", Some(body.clone())).await;
        assert_eq!(response.status(), 400, "{body}");
        let message = json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains(&format!("`{field}`")),
            "{body} -> {message}"
        );
    }
    let huge_number = raw_request(
        Method::POST,
        "/products",
        "application/json",
        Body::Text(
            r#"{"sku":"A","name":"n","price_cents":1e400,"currency":"EUR","stock":1}"#.into(),
        ),
    );
    assert_eq!(app.handle(huge_number).await.status(), 400);
    let not_json = raw_request(
        Method::POST,
        "/products",
        "text/plain",
        Body::Text("{}".into()),
    );
    assert_eq!(app.handle(not_json).await.status(), 415);
}

#[tokio::test]
async fn patch_honours_if_match_and_keeps_sku() {
    let app = app();
    let product = create(&app, product_body("LAMP-1", 3)).await;
    let uri = format!("/products/{}", product["id"].as_str().unwrap());
    let stale = app
        .handle(request(
            Method::PATCH,
            &uri,
            Some(json!({"price_cents": 1})),
            &[("if-match", "\"9\"")],
        ))
        .await;
    assert_eq!(stale.status(), 412);
    assert_eq!(json_of(&call(&app, Method::GET, &uri, None).await), product);

    let ok = app
        .handle(request(
            Method::PATCH,
            &uri,
            Some(json!({"price_cents": 2500, "category": "home"})),
            &[("if-match", "\"1\"")],
        ))
        .await;
    assert_eq!(ok.status(), 200);
    let patched = json_of(&ok);
    assert_eq!(
        (patched["price_cents"].as_u64(), patched["version"].as_u64()),
        (Some(2500), Some(2))
    );
    assert_eq!(patched["category"], "home");

    let cleared = call(&app, Method::PATCH, &uri, Some(json!({"category": null}))).await;
    assert!(json_of(&cleared).get("category").is_none());

    let sku = call(&app, Method::PATCH, &uri, Some(json!({"sku": "OTHER"}))).await;
    assert_eq!(sku.status(), 400);
}

#[tokio::test]
async fn fifty_concurrent_reservations_on_ten_units() {
    let app = Arc::new(app());
    let product = create(&app, product_body("HOT-1", 10)).await;
    let uri = format!("/products/{}/reservations", product["id"].as_str().unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, uri) = (Arc::clone(&app), uri.clone());
            tokio::spawn(async move {
                let response = call(&app, Method::POST, &uri, Some(json!({"quantity": 1}))).await;
                (response.status().as_u16(), json_of(&response))
            })
        })
        .collect();
    let mut remaining = BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => {
                created += 1;
                remaining.insert(body["remaining_stock"].as_u64().unwrap());
            }
            409 => assert_eq!(body["error"]["code"], "insufficient_stock"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 10);
    // Each success saw a distinct stock level: 9, 8, ..., 0.
    assert_eq!(remaining, (0..10).collect());
    let after = json_of(
        &call(
            &app,
            Method::GET,
            &format!("/products/{}", product["id"].as_str().unwrap()),
            None,
        )
        .await,
    );
    assert_eq!(after["stock"], 0);
    assert_eq!(after["open_reservations"], 10);
}

#[tokio::test]
async fn release_returns_stock_once() {
    let app = app();
    let product = create(&app, product_body("R-1", 5)).await;
    let id = product["id"].as_str().unwrap();
    let reserved = call(
        &app,
        Method::POST,
        &format!("/products/{id}/reservations"),
        Some(json!({"quantity": 3})),
    )
    .await;
    assert_eq!(reserved.status(), 201);
    let reservation = json_of(&reserved);
    assert_eq!(reservation["remaining_stock"], 2);
    assert_eq!(reservation["product_id"], id);

    let too_many = call(
        &app,
        Method::POST,
        &format!("/products/{id}/reservations"),
        Some(json!({"quantity": 3})),
    )
    .await;
    assert_eq!(too_many.status(), 409);
    assert_eq!(error_code(&too_many), "insufficient_stock");

    for bad in [
        json!({"quantity": 0}),
        json!({"quantity": 1001}),
        json!({"quantity": 1.5}),
        json!({}),
    ] {
        let response = call(
            &app,
            Method::POST,
            &format!("/products/{id}/reservations"),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(response.status(), 400, "{bad}");
    }

    let release_uri = format!(
        "/products/{id}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    );
    assert_eq!(
        call(&app, Method::DELETE, &release_uri, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        call(&app, Method::DELETE, &release_uri, None)
            .await
            .status(),
        404
    );
    let after = json_of(&call(&app, Method::GET, &format!("/products/{id}"), None).await);
    assert_eq!(after["stock"], 5);
    assert_eq!(after["open_reservations"], 0);

    let missing_product = format!("/products/{}/reservations", uuid::Uuid::new_v4());
    assert_eq!(
        call(
            &app,
            Method::POST,
            &missing_product,
            Some(json!({"quantity": 1}))
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/products/{id}/reservations"),
            None
        )
        .await
        .status(),
        405
    );
}

#[tokio::test]
async fn a_product_takes_at_most_a_thousand_open_reservations() {
    let app = app();
    let product = create(&app, product_body("MANY-1", 5000)).await;
    let path = format!("/products/{}/reservations", product["id"].as_str().unwrap());
    for i in 0..1000 {
        let reserved = call(&app, Method::POST, &path, Some(json!({"quantity": 1}))).await;
        assert_eq!(reserved.status(), 201, "reservation {i}");
    }
    let refused = call(&app, Method::POST, &path, Some(json!({"quantity": 1}))).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(error_code(&refused), "too_many_reservations");
    let after = json_of(
        &call(
            &app,
            Method::GET,
            &format!("/products/{}", product["id"].as_str().unwrap()),
            None,
        )
        .await,
    );
    assert_eq!(
        (after["stock"].clone(), after["open_reservations"].clone()),
        (json!(4000), json!(1000))
    );
}

#[tokio::test]
async fn a_product_with_open_reservations_cannot_be_deleted() {
    let app = app();
    let product = create(&app, product_body("D-1", 5)).await;
    let id = product["id"].as_str().unwrap();
    let reservation = json_of(
        &call(
            &app,
            Method::POST,
            &format!("/products/{id}/reservations"),
            Some(json!({"quantity": 1})),
        )
        .await,
    );
    let refused = call(&app, Method::DELETE, &format!("/products/{id}"), None).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(error_code(&refused), "has_open_reservations");
    let release_uri = format!(
        "/products/{id}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    );
    assert_eq!(
        call(&app, Method::DELETE, &release_uri, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        call(&app, Method::DELETE, &format!("/products/{id}"), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        call(&app, Method::GET, &format!("/products/{id}"), None)
            .await
            .status(),
        404
    );
    // The SKU is free again.
    create(&app, product_body("D-1", 1)).await;
}

async fn collect_all(app: &App, base: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if base.contains('?') { '&' } else { '?' };
        let uri = match &cursor {
            Some(c) => format!("{base}{sep}limit=4&cursor={c}"),
            None => format!("{base}{sep}limit=4"),
        };
        let response = call(app, Method::GET, &uri, None).await;
        assert_eq!(response.status(), 200, "{uri}");
        let page = json_of(&response);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn paging_with_and_without_category() {
    let app = app();
    let mut books = BTreeSet::new();
    for i in 0..15 {
        let mut body = product_body(&format!("P-{i}"), 1);
        if i % 2 == 0 {
            body["category"] = json!("books");
        }
        let product = create(&app, body).await;
        if i % 2 == 0 {
            books.insert(product["id"].as_str().unwrap().to_string());
        }
    }
    let all = collect_all(&app, "/products").await;
    assert_eq!(all.len(), 15);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 15);
    let only_books = collect_all(&app, "/products?category=books").await;
    assert_eq!(only_books.into_iter().collect::<BTreeSet<_>>(), books);

    // A cursor from one listing is refused by another.
    let first = json_of(&call(&app, Method::GET, "/products?limit=2", None).await);
    let cursor = first["next_cursor"].as_str().unwrap();
    let reused = call(
        &app,
        Method::GET,
        &format!("/products?category=books&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(reused.status(), 400);
    assert_eq!(error_code(&reused), "invalid_cursor");
    let bad_category = call(&app, Method::GET, "/products?category=a%2Fb", None).await;
    assert_eq!(bad_category.status(), 400);
}

#[tokio::test]
async fn reads_are_shareable_by_the_edge_cache_and_nothing_else_is() {
    let shared = app().with_max_age(30);
    let app = &shared;
    let product = create(app, product_body("CACHE-1", 2)).await;
    let id = product["id"].as_str().unwrap();
    let control = "public, max-age=30, stale-while-revalidate=30, stale-if-error=300";
    let item = call(app, Method::GET, &format!("/products/{id}"), None).await;
    assert_eq!(item.headers()["cache-control"], control);
    assert_eq!(
        item.headers()["etag"],
        "\"1\"",
        "the item keeps its version tag"
    );
    let list = call(app, Method::GET, "/products?limit=1", None).await;
    assert_eq!(list.headers()["cache-control"], control);
    let tag = list.headers()["etag"].to_str().unwrap().to_string();
    assert!(tag.starts_with("\"b-") && tag.len() == 20, "{tag}");
    let again = call(app, Method::GET, "/products?limit=1", None).await;
    assert_eq!(
        again.headers()["etag"],
        tag.as_str(),
        "the same body, the same tag"
    );
    // Writes, misses and errors are for their caller only.
    let patch = json!({"name": "Lamp"});
    let headers = [("if-match", "\"1\"")];
    let uri = format!("/products/{id}");
    let updated = app
        .handle(request(Method::PATCH, &uri, Some(patch), &headers))
        .await;
    assert_eq!(updated.headers()["cache-control"], "private, no-store");
    let missing = call(app, Method::GET, "/products/nope", None).await;
    assert_eq!(missing.headers()["cache-control"], "private, no-store");
    // Off: nothing shared.
    let off = self::app().with_max_age(0);
    let list = call(&off, Method::GET, "/products", None).await;
    assert_eq!(list.headers()["cache-control"], "private, no-store");
}

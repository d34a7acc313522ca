//! The product API over the in-memory store: every documented status, SKU uniqueness, versioned
//! updates, paging with and without a category, and reservations that never oversell, belong to
//! their owner, hold for a while and give their stock back exactly once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use lambda_http::http::Method;
use lambda_http::{Body, Response};
use product_service::api::App;
use product_service::store::MemoryProductStore;
use product_service::sweeper;
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

/// A test's own clock, moved by hand.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn new() -> TestClock {
        TestClock(Arc::new(Mutex::new(Utc::now())))
    }

    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }

    fn advance(&self, seconds: i64) {
        *self.0.lock().unwrap() += chrono::Duration::seconds(seconds);
    }

    fn clock(&self) -> product_service::api::Clock {
        let shared = Arc::clone(&self.0);
        Arc::new(move || *shared.lock().unwrap())
    }
}

/// An app over a store the test can also reach (for sweeps), on a test clock.
fn app_with_store() -> (App, Arc<MemoryProductStore>, TestClock) {
    let store = Arc::new(MemoryProductStore::new());
    let clock = TestClock::new();
    let app = App::new(store.clone(), CursorCodec::new("test-key")).with_clock(clock.clock());
    (app, store, clock)
}

const ALICE: &str = "jwt:alice";
const BOB: &str = "api-key:bob";

/// A request as the edge proxy forwards it for `caller` (with `scopes`).
async fn call_as(
    app: &App,
    caller: &str,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> Response<Body> {
    let headers = [("x-consumer-id", caller), ("x-consumer-scopes", "products")];
    app.handle(request(method, uri, body, &headers)).await
}

async fn reserve_as(app: &App, caller: &str, id: &str, body: Value) -> Response<Body> {
    call_as(
        app,
        caller,
        Method::POST,
        &format!("/products/{id}/reservations"),
        Some(body),
    )
    .await
}

async fn stock_and_open(app: &App, id: &str) -> (u64, u64) {
    let product = json_of(&call(app, Method::GET, &format!("/products/{id}"), None).await);
    (
        product["stock"].as_u64().unwrap(),
        product["open_reservations"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn two_hundred_concurrent_reservations_on_a_hundred_and_fifty_units() {
    let app = Arc::new(app());
    let product = create(&app, product_body("LAMP-C", 150)).await;
    let id = product["id"].as_str().unwrap().to_string();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (app, id) = (Arc::clone(&app), id.clone());
            tokio::spawn(async move {
                let caller = format!("api-key:client-{}", i % 7);
                let response = reserve_as(&app, &caller, &id, json!({"quantity": 1})).await;
                (response.status().as_u16(), json_of(&response))
            })
        })
        .collect();
    let (mut created, mut refused) = (BTreeSet::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            (201, body) => {
                assert_eq!(body["status"], "open");
                created.insert(body["reservation_id"].as_str().unwrap().to_string());
            }
            (409, body) => {
                assert_eq!(body["error"]["code"], "insufficient_stock");
                refused += 1;
            }
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!((created.len(), refused), (150, 50));
    assert_eq!(stock_and_open(&app, &id).await, (0, 150));
}

#[tokio::test]
async fn reservations_have_an_owner_a_hold_and_a_location() {
    let (app, _, clock) = app_with_store();
    let id = create(&app, product_body("LAMP-O", 3)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reserved = reserve_as(
        &app,
        ALICE,
        &id,
        json!({"quantity": 2, "hold_seconds": 120}),
    )
    .await;
    assert_eq!(reserved.status(), 201);
    let body = json_of(&reserved);
    let rid = body["reservation_id"].as_str().unwrap();
    assert_eq!(
        reserved.headers()["location"],
        format!("/products/{id}/reservations/{rid}")
    );
    assert_eq!(
        (&body["owner"], &body["quantity"], &body["status"]),
        (&json!(ALICE), &json!(2), &json!("open"))
    );
    let hold_until: DateTime<Utc> = body["hold_until"].as_str().unwrap().parse().unwrap();
    assert_eq!(hold_until, clock.now() + chrono::Duration::seconds(120));
    // The default hold, and the bounds.
    let default = json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 1})).await);
    let hold_until: DateTime<Utc> = default["hold_until"].as_str().unwrap().parse().unwrap();
    assert_eq!(hold_until, clock.now() + chrono::Duration::seconds(900));
    for bad in [
        json!({"quantity": 1, "hold_seconds": 0}),
        json!({"quantity": 1, "hold_seconds": 3601}),
    ] {
        let refused = reserve_as(&app, ALICE, &id, bad).await;
        assert_eq!(
            (refused.status().as_u16(), error_code(&refused)),
            (400, "invalid_field".to_string())
        );
    }
    // Without a verified caller there is no owner: refused, nothing taken.
    let anonymous = call(
        &app,
        Method::POST,
        &format!("/products/{id}/reservations"),
        Some(json!({"quantity": 1})),
    )
    .await;
    assert_eq!(
        (anonymous.status().as_u16(), error_code(&anonymous)),
        (401, "unauthenticated".to_string())
    );
    assert_eq!(stock_and_open(&app, &id).await, (0, 2));
    // Reservations are the caller's: never shared by a cache.
    let read = call_as(
        &app,
        ALICE,
        Method::GET,
        &format!("/products/{id}/reservations/{rid}"),
        None,
    )
    .await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["cache-control"], "private, no-store");
}

#[tokio::test]
async fn only_the_owner_or_an_admin_sees_releases_or_confirms() {
    let (app, _, _) = app_with_store();
    let id = create(&app, product_body("LAMP-P", 5)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mine = json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 1})).await);
    let path = format!(
        "/products/{id}/reservations/{}",
        mine["reservation_id"].as_str().unwrap()
    );
    for (method, uri) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/confirm")),
    ] {
        let other = call_as(&app, BOB, method.clone(), &uri, None).await;
        assert_eq!(other.status(), 404, "{method} {uri}");
    }
    assert_eq!(stock_and_open(&app, &id).await, (4, 1), "nothing changed");
    // Under another product's path it does not exist either.
    let other_id = create(&app, product_body("LAMP-Q", 1)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let elsewhere = path.replace(&id, &other_id);
    assert_eq!(
        call_as(&app, ALICE, Method::GET, &elsewhere, None)
            .await
            .status(),
        404
    );
    // Bob's listing has none of Alice's.
    let listing = json_of(&call_as(&app, BOB, Method::GET, "/reservations", None).await);
    assert_eq!(listing["items"], json!([]));
    let refused = call_as(
        &app,
        BOB,
        Method::GET,
        &format!("/reservations?owner={ALICE}"),
        None,
    )
    .await;
    assert_eq!(refused.status(), 400);
    // An admin may see and end anyone's.
    let admin = [
        ("x-consumer-id", "jwt:support"),
        ("x-consumer-scopes", "products reservations-admin"),
    ];
    let seen = app.handle(request(Method::GET, &path, None, &admin)).await;
    assert_eq!(json_of(&seen)["owner"], ALICE);
    let listed = app
        .handle(request(
            Method::GET,
            &format!("/reservations?owner={ALICE}"),
            None,
            &admin,
        ))
        .await;
    assert_eq!(json_of(&listed)["items"].as_array().unwrap().len(), 1);
    let released = app
        .handle(request(Method::DELETE, &path, None, &admin))
        .await;
    assert_eq!(released.status(), 204);
    assert_eq!(stock_and_open(&app, &id).await, (5, 0));
}

#[tokio::test]
async fn twenty_concurrent_releases_return_the_stock_once() {
    let app = Arc::new(app());
    let id = create(&app, product_body("LAMP-R", 4)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reservation = json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 3})).await);
    let path = format!(
        "/products/{id}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, path) = (Arc::clone(&app), path.clone());
            tokio::spawn(async move {
                let response = call_as(&app, ALICE, Method::DELETE, &path, None).await;
                let code = (response.status() != 204).then(|| error_code(&response));
                (response.status().as_u16(), code)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|(status, _)| *status == 204).count(),
        1
    );
    assert!(outcomes
        .iter()
        .filter(|(status, _)| *status != 204)
        .all(|outcome| *outcome == (409, Some("reservation_released".to_string()))));
    assert_eq!(stock_and_open(&app, &id).await, (4, 0));
    let read = json_of(&call_as(&app, ALICE, Method::GET, &path, None).await);
    assert_eq!(read["status"], "released");
    assert!(read["ended_at"].is_string());
}

#[tokio::test]
async fn confirm_keeps_the_stock_and_ends_the_hold() {
    let (app, _, _) = app_with_store();
    let id = create(&app, product_body("LAMP-S", 2)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reservation = json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 2})).await);
    let path = format!(
        "/products/{id}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    );
    let confirmed = call_as(&app, ALICE, Method::POST, &format!("{path}/confirm"), None).await;
    assert_eq!(confirmed.status(), 200);
    assert_eq!(json_of(&confirmed)["status"], "confirmed");
    assert_eq!(
        stock_and_open(&app, &id).await,
        (0, 0),
        "sold: the stock stays taken"
    );
    let again = call_as(&app, ALICE, Method::POST, &format!("{path}/confirm"), None).await;
    assert_eq!(
        (again.status().as_u16(), error_code(&again)),
        (409, "reservation_confirmed".to_string())
    );
    let release = call_as(&app, ALICE, Method::DELETE, &path, None).await;
    assert_eq!(
        (release.status().as_u16(), error_code(&release)),
        (409, "reservation_confirmed".to_string())
    );
    assert_eq!(stock_and_open(&app, &id).await, (0, 0));
    // A sold-out product with no open reservations can go.
    assert_eq!(
        call(&app, Method::DELETE, &format!("/products/{id}"), None)
            .await
            .status(),
        204
    );
}

#[tokio::test]
async fn a_hold_that_ran_out_reads_expired_and_the_sweep_gives_the_stock_back_once() {
    let (app, store, clock) = app_with_store();
    let id = create(&app, product_body("LAMP-T", 5)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let short =
        json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 2, "hold_seconds": 2})).await);
    let long =
        json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 1, "hold_seconds": 60})).await);
    let path = format!(
        "/products/{id}/reservations/{}",
        short["reservation_id"].as_str().unwrap()
    );
    clock.advance(2);
    // Past the hold, before any sweep: it reads expired and can no longer be confirmed.
    let read = json_of(&call_as(&app, ALICE, Method::GET, &path, None).await);
    assert_eq!(read["status"], "expired");
    let late = call_as(&app, ALICE, Method::POST, &format!("{path}/confirm"), None).await;
    assert_eq!(
        (late.status().as_u16(), error_code(&late)),
        (409, "reservation_expired".to_string())
    );
    let listing = json_of(&call_as(&app, ALICE, Method::GET, "/reservations", None).await);
    assert_eq!(
        listing["items"].as_array().unwrap().len(),
        1,
        "only the one still held"
    );
    assert_eq!(
        listing["items"][0]["reservation_id"],
        long["reservation_id"]
    );
    assert_eq!(stock_and_open(&app, &id).await, (2, 2), "not swept yet");

    let sweep = |now| {
        let store = Arc::clone(&store);
        async move {
            sweeper::sweep(store.as_ref(), now, 100, 1000)
                .await
                .unwrap()
        }
    };
    assert_eq!(sweep(clock.now()).await.expired, 1);
    assert_eq!(stock_and_open(&app, &id).await, (4, 1));
    assert_eq!(
        sweep(clock.now()).await,
        sweeper::Sweep::default(),
        "a second sweep changes nothing"
    );
    assert_eq!(stock_and_open(&app, &id).await, (4, 1));
    let read = json_of(&call_as(&app, ALICE, Method::GET, &path, None).await);
    assert_eq!(read["status"], "expired");
}

#[tokio::test]
async fn confirm_racing_expiry_ends_in_exactly_one_of_the_two() {
    for round in 0..50 {
        let (app, store, clock) = app_with_store();
        let app = Arc::new(app);
        let id = create(&app, product_body(&format!("EDGE-{round}"), 1)).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let reservation =
            json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 1, "hold_seconds": 1})).await);
        let path = format!(
            "/products/{id}/reservations/{}/confirm",
            reservation["reservation_id"].as_str().unwrap()
        );
        // The sweeper's clock is at the hold's end; the confirm's just before it.
        let at_end = clock.now() + chrono::Duration::seconds(1);
        clock.advance(1);
        *clock.0.lock().unwrap() -= chrono::Duration::milliseconds(1);
        let confirm = {
            let (app, path) = (Arc::clone(&app), path.clone());
            async move {
                call_as(&app, ALICE, Method::POST, &path, None)
                    .await
                    .status()
                    .as_u16()
            }
        };
        let sweep = {
            let store = Arc::clone(&store);
            async move {
                sweeper::sweep(store.as_ref(), at_end, 10, 10)
                    .await
                    .unwrap()
            }
        };
        // Half the rounds start the sweep first, half the confirm.
        let (confirmed, swept) = if round % 2 == 0 {
            let sweep = tokio::spawn(sweep);
            let confirm = tokio::spawn(confirm);
            (confirm.await.unwrap(), sweep.await.unwrap())
        } else {
            let confirm = tokio::spawn(confirm);
            let sweep = tokio::spawn(sweep);
            (confirm.await.unwrap(), sweep.await.unwrap())
        };
        let (stock, open) = stock_and_open(&app, &id).await;
        match (confirmed, swept.expired) {
            (200, 0) => assert_eq!((stock, open), (0, 0), "sold"),
            (409, 1) => assert_eq!((stock, open), (1, 0), "expired, stock back"),
            other => panic!("round {round}: both or neither won: {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_cap_on_open_reservations_below_the_stock() {
    let app = app();
    let id = create(&app, product_body("SALE-1", 5000)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..=5000 {
        let reserved = reserve_as(&app, ALICE, &id, json!({"quantity": 1})).await;
        assert_eq!(reserved.status(), 201, "reservation {i}");
    }
    assert_eq!(stock_and_open(&app, &id).await, (0, 5000));
    let refused = reserve_as(&app, ALICE, &id, json!({"quantity": 1})).await;
    assert_eq!(error_code(&refused), "insufficient_stock");
    // The owner's listing pages through all of them, soonest hold first, without repeats.
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/reservations?limit=100&cursor={c}"),
            None => "/reservations?limit=100".to_string(),
        };
        let page = json_of(&call_as(&app, ALICE, Method::GET, &uri, None).await);
        for item in page["items"].as_array().unwrap() {
            assert!(seen.insert(item["reservation_id"].as_str().unwrap().to_string()));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5000);
    // Another owner's cursor is not one of Bob's listing.
    let alice_page =
        json_of(&call_as(&app, ALICE, Method::GET, "/reservations?limit=1", None).await);
    let foreign = alice_page["next_cursor"].as_str().unwrap();
    let reused = call_as(
        &app,
        BOB,
        Method::GET,
        &format!("/reservations?cursor={foreign}"),
        None,
    )
    .await;
    assert_eq!(
        (reused.status().as_u16(), error_code(&reused)),
        (400, "invalid_cursor".to_string())
    );
}

#[tokio::test]
async fn patches_and_deletes_do_not_fail_because_of_reservations() {
    let (app, _, _) = app_with_store();
    let product = create(&app, product_body("LAMP-U", 10)).await;
    let id = product["id"].as_str().unwrap().to_string();
    let uri = format!("/products/{id}");
    let reservation = json_of(&reserve_as(&app, ALICE, &id, json!({"quantity": 3})).await);
    // Without If-Match a patch applies to whatever is current, the counters included.
    let renamed = call(&app, Method::PATCH, &uri, Some(json!({"name": "Lamp II"}))).await;
    assert_eq!(renamed.status(), 200);
    let renamed = json_of(&renamed);
    assert_eq!(
        (renamed["name"].as_str(), renamed["stock"].as_u64()),
        (Some("Lamp II"), Some(7))
    );
    // If-Match pins what the client read; a reservation since then moved the version.
    let pinned = app
        .handle(request(
            Method::PATCH,
            &uri,
            Some(json!({"stock": 20})),
            &[("if-match", "\"1\"")],
        ))
        .await;
    assert_eq!(pinned.status(), 412);
    // Delete is refused while a reservation is open, and allowed once none is.
    let refused = call(&app, Method::DELETE, &uri, None).await;
    assert_eq!(
        (refused.status().as_u16(), error_code(&refused)),
        (409, "has_open_reservations".to_string())
    );
    let release = format!(
        "{uri}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    );
    assert_eq!(
        call_as(&app, ALICE, Method::DELETE, &release, None)
            .await
            .status(),
        204
    );
    assert_eq!(stock_and_open(&app, &id).await, (10, 0));
    let stale = app
        .handle(request(
            Method::DELETE,
            &uri,
            None,
            &[("if-match", "\"2\"")],
        ))
        .await;
    assert_eq!(stale.status(), 412);
    assert_eq!(call(&app, Method::DELETE, &uri, None).await.status(), 204);
    assert_eq!(call(&app, Method::GET, &uri, None).await.status(), 404);
    // Gone: its reservations' paths are 404s.
    let gone = reserve_as(&app, ALICE, &id, json!({"quantity": 1})).await;
    assert_eq!(gone.status(), 404);
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

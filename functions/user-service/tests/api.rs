//! The user API over the in-memory store: every status code the service documents, the JSON
//! error shape, and the integrity rules (uniqueness, versions) without any AWS dependency.

use std::sync::Arc;

use lambda_http::http::Method;
use lambda_http::{Body, Response};
use serde_json::json;
use service_core::paging::CursorCodec;
use service_core::testkit::{error_code, json_of, raw_request, request};
use service_core::Handler;
use user_service::api::App;
use user_service::domain::{User, UserError};
use user_service::store::{MemoryUserStore, UserStore};

fn app() -> (App, Arc<MemoryUserStore>) {
    let store = Arc::new(MemoryUserStore::new());
    (App::new(store.clone(), CursorCodec::new("test-key")), store)
}

async fn create(app: &App, name: &str, email: &str) -> Response<Body> {
    app.handle(request(
        Method::POST,
        "/users",
        Some(json!({"name": name, "email": email})),
        &[],
    ))
    .await
}

#[tokio::test]
async fn create_then_get() {
    let (app, _) = app();
    let created = create(&app, "  Ada ", "ada@example.com").await;
    assert_eq!(created.status(), 201);
    let user = json_of(&created);
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["version"], 1);
    let id = user["id"].as_str().unwrap();
    assert_eq!(created.headers()["location"], format!("/users/{id}"));
    assert_eq!(created.headers()["etag"], "\"1\"");
    for field in ["id", "name", "email", "created_at", "updated_at", "version"] {
        assert!(user.get(field).is_some(), "missing {field}");
    }

    let fetched = app
        .handle(request(Method::GET, &format!("/users/{id}"), None, &[]))
        .await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["etag"], "\"1\"");
    assert_eq!(json_of(&fetched), user);
}

#[tokio::test]
async fn head_is_get_without_the_body() {
    let (app, _) = app();
    let user = json_of(&create(&app, "Ada", "head@example.com").await);
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let get = app.handle(request(Method::GET, &path, None, &[])).await;
    let head = app.handle(request(Method::HEAD, &path, None, &[])).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"], "\"1\"");
    assert_eq!(head.headers()["content-type"], "application/json");
    let Body::Text(get_body) = get.body() else {
        panic!("GET answers with a text body")
    };
    assert_eq!(
        head.headers()["content-length"],
        get_body.len().to_string().as_str(),
        "the length GET would send"
    );
    assert!(matches!(head.body(), Body::Empty));

    let missing = app
        .handle(request(Method::HEAD, "/users/no-such-user", None, &[]))
        .await;
    assert_eq!(missing.status(), 404);
    assert!(matches!(missing.body(), Body::Empty));

    let list = app.handle(request(Method::HEAD, "/users", None, &[])).await;
    assert_eq!(list.status(), 200);
    assert!(matches!(list.body(), Body::Empty));
}

#[tokio::test]
async fn a_real_function_url_event_is_served() {
    let (app, _) = app();
    let event = include_str!("data/function-url-post.json");
    let request = lambda_http::request::from_str(event).unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 201);
    assert_eq!(json_of(&response)["name"], "Ada Lovelace");
}

#[tokio::test]
async fn health_answers_without_the_store() {
    let (app, _) = app();
    let response = app.handle(request(Method::GET, "/health", None, &[])).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(&response)["status"], "ok");
}

#[tokio::test]
async fn email_is_unique_case_insensitively() {
    let (app, store) = app();
    assert_eq!(create(&app, "Ada", "ada@example.com").await.status(), 201);
    let second = create(&app, "Eve", "ADA@Example.COM").await;
    assert_eq!(second.status(), 409);
    assert_eq!(error_code(&second), "email_taken");
    assert_eq!(store.email_records(), 1);
}

/// A store where another writer gets in between every read and the next write: before the
/// handler's first `replace` lands, the stored user is renamed (a new version), as a
/// concurrent PATCH would. The in-memory store alone cannot race, so the race is made here.
struct RacingStore {
    inner: MemoryUserStore,
    raced: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl UserStore for RacingStore {
    async fn create(&self, user: &User) -> Result<(), UserError> {
        self.inner.create(user).await
    }

    async fn get(&self, id: &str) -> Result<Option<User>, service_core::StoreError> {
        self.inner.get(id).await
    }

    async fn list(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<service_core::paging::Page<User>, UserError> {
        self.inner.list(limit, after).await
    }

    async fn replace(&self, current: &User, next: &User) -> Result<(), UserError> {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let stored = self.inner.get(&current.id).await?.unwrap();
            let renamed = User {
                name: "Renamed meanwhile".into(),
                version: stored.version + 1,
                ..stored.clone()
            };
            self.inner.replace(&stored, &renamed).await?;
        }
        self.inner.replace(current, next).await
    }

    async fn delete(&self, current: &User) -> Result<(), UserError> {
        self.inner.delete(current).await
    }
}

fn racing_app() -> (App, Arc<RacingStore>) {
    let store = Arc::new(RacingStore {
        inner: MemoryUserStore::new(),
        raced: std::sync::atomic::AtomicBool::new(true),
    });
    (App::new(store.clone(), CursorCodec::new("test-key")), store)
}

#[tokio::test]
async fn a_patch_that_loses_a_race_is_applied_on_the_winner_or_refused_if_pinned() {
    let (app, store) = racing_app();
    let created = json_of(&create(&app, "Ada", "ada@example.com").await);
    let path = format!("/users/{}", created["id"].as_str().unwrap());

    // Not pinned: the lost race is retried on a fresh read, and neither change is lost.
    store
        .raced
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let patched = app
        .handle(request(
            Method::PATCH,
            &path,
            Some(json!({"email": "new@example.com"})),
            &[],
        ))
        .await;
    assert_eq!(patched.status(), 200);
    let body = json_of(&patched);
    assert_eq!(
        body["name"], "Renamed meanwhile",
        "the other writer's change stays"
    );
    assert_eq!(body["email"], "new@example.com", "and ours is on top of it");
    assert_eq!(body["version"], 3);

    // Pinned with If-Match to the version read: the lost race is the answer, nothing written.
    store
        .raced
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let pinned = app
        .handle(request(
            Method::PATCH,
            &path,
            Some(json!({"email": "pinned@example.com"})),
            &[("if-match", "\"3\"")],
        ))
        .await;
    assert_eq!(pinned.status(), 412);
    assert_eq!(error_code(&pinned), "version_mismatch");
    let stored = json_of(&app.handle(request(Method::GET, &path, None, &[])).await);
    assert_eq!(stored["email"], "new@example.com");
    assert_eq!(
        stored["version"], 4,
        "only the other writer's change landed"
    );
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let (app, _) = app();
    let cases = [
        (json!({"name": "", "email": "a@b.co"}), "name"),
        (json!({"name": "x".repeat(101), "email": "a@b.co"}), "name"),
        (json!({"name": "A", "email": "nope"}), "email"),
        (json!({"name": "A"}), "email"),
        (json!({"email": "a@b.co"}), "name"),
        (json!({"name": 5, "email": "a@b.co"}), "name"),
        (
            json!({"name": "A", "email": "a@b.co", "role": "admin"}),
            "role",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .handle(request(Method::POST, "/users", Some(body.clone()), &[]))
            .await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(&response), "invalid_field");
        let message = json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains(&format!("`{field}`")),
            "{body} -> {message}"
        );
    }
}

#[tokio::test]
async fn transport_errors() {
    let (app, _) = app();
    let not_json = raw_request(
        Method::POST,
        "/users",
        "text/plain",
        Body::Text("name=a".into()),
    );
    assert_eq!(app.handle(not_json).await.status(), 415);

    let bad_json = raw_request(
        Method::POST,
        "/users",
        "application/json",
        Body::Text("{\"name\":".into()),
    );
    let response = app.handle(bad_json).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(&response), "invalid_json");

    let huge = raw_request(
        Method::POST,
        "/users",
        "application/json",
        Body::Text(format!("{{\"name\":\"{}\"}}", "a".repeat(70_000))),
    );
    assert_eq!(app.handle(huge).await.status(), 413);

    let wrong_method = app.handle(request(Method::PUT, "/users", None, &[])).await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(error_code(&wrong_method), "method_not_allowed");
    assert_eq!(wrong_method.headers()["allow"], "GET, HEAD, POST");

    let unknown = app.handle(request(Method::GET, "/nope", None, &[])).await;
    assert_eq!(unknown.status(), 404);
    let not_an_id = app
        .handle(request(Method::GET, "/users/../../etc", None, &[]))
        .await;
    assert_eq!(not_an_id.status(), 404);
    let missing = app
        .handle(request(
            Method::GET,
            &format!("/users/{}", uuid::Uuid::new_v4()),
            None,
            &[],
        ))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(error_code(&missing), "not_found");
}

#[tokio::test]
async fn patch_honours_if_match_and_moves_the_email() {
    let (app, store) = app();
    let user = json_of(&create(&app, "Ada", "ada@example.com").await);
    let id = user["id"].as_str().unwrap().to_string();
    let uri = format!("/users/{id}");

    let stale = app
        .handle(request(
            Method::PATCH,
            &uri,
            Some(json!({"name": "X"})),
            &[("if-match", "\"7\"")],
        ))
        .await;
    assert_eq!(stale.status(), 412);
    assert_eq!(error_code(&stale), "version_mismatch");
    let unchanged = json_of(&app.handle(request(Method::GET, &uri, None, &[])).await);
    assert_eq!(unchanged, user);

    let patched = app
        .handle(request(
            Method::PATCH,
            &uri,
            Some(json!({"email": "Ada.L@example.com"})),
            &[("if-match", "\"1\"")],
        ))
        .await;
    assert_eq!(patched.status(), 200);
    let patched = json_of(&patched);
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["email"], "Ada.L@example.com");
    assert_eq!(patched["created_at"], user["created_at"]);

    // The old address is free again; the new one is taken.
    assert_eq!(create(&app, "Other", "ada@example.com").await.status(), 201);
    assert_eq!(
        create(&app, "Other", "ada.l@EXAMPLE.com").await.status(),
        409
    );
    assert_eq!(store.email_records(), 2);

    let empty = app
        .handle(request(Method::PATCH, &uri, Some(json!({})), &[]))
        .await;
    assert_eq!(empty.status(), 400);
}

#[tokio::test]
async fn patch_to_a_taken_email_changes_nothing() {
    let (app, _) = app();
    create(&app, "Ada", "ada@example.com").await;
    let eve = json_of(&create(&app, "Eve", "eve@example.com").await);
    let uri = format!("/users/{}", eve["id"].as_str().unwrap());
    let response = app
        .handle(request(
            Method::PATCH,
            &uri,
            Some(json!({"name": "E", "email": "ADA@example.com"})),
            &[],
        ))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        json_of(&app.handle(request(Method::GET, &uri, None, &[])).await),
        eve
    );
}

#[tokio::test]
async fn delete_frees_the_email() {
    let (app, store) = app();
    let user = json_of(&create(&app, "Ada", "ada@example.com").await);
    let uri = format!("/users/{}", user["id"].as_str().unwrap());
    assert_eq!(
        app.handle(request(
            Method::DELETE,
            &uri,
            None,
            &[("if-match", "\"2\"")]
        ))
        .await
        .status(),
        412
    );
    assert_eq!(
        app.handle(request(Method::DELETE, &uri, None, &[]))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.handle(request(Method::DELETE, &uri, None, &[]))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.handle(request(Method::GET, &uri, None, &[]))
            .await
            .status(),
        404
    );
    assert_eq!(store.email_records(), 0);
    assert_eq!(
        create(&app, "Ada again", "ada@example.com").await.status(),
        201
    );
}

#[tokio::test]
async fn paging_returns_every_user_exactly_once() {
    let (app, _) = app();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..23 {
        let user = json_of(&create(&app, "U", &format!("u{i}@example.com")).await);
        ids.insert(user["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/users?limit=5&cursor={c}"),
            None => "/users?limit=5".to_string(),
        };
        let page = json_of(&app.handle(request(Method::GET, &uri, None, &[])).await);
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert_eq!(
        seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
        ids
    );
}

#[tokio::test]
async fn bad_paging_parameters_are_400() {
    let (app, _) = app();
    for uri in [
        "/users?limit=0",
        "/users?limit=101",
        "/users?limit=abc",
        "/users?limit=1&limit=2",
        "/users?cursor=forged",
        "/users?cursor=YWJj.ZGVm",
    ] {
        let response = app.handle(request(Method::GET, uri, None, &[])).await;
        assert_eq!(response.status(), 400, "{uri}");
        let code = error_code(&response);
        assert!(
            code == "invalid_query" || code == "invalid_cursor",
            "{uri}: {code}"
        );
    }
}

#[tokio::test]
async fn user_data_is_never_shared_by_a_cache() {
    let (app, _) = app();
    let created = create(&app, "Ada", "ada@example.com").await;
    assert_eq!(created.headers()["cache-control"], "private, no-store");
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let read = app.handle(request(Method::GET, &location, None, &[])).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["cache-control"], "private, no-store");
    let list = app.handle(request(Method::GET, "/users", None, &[])).await;
    assert_eq!(list.headers()["cache-control"], "private, no-store");
}

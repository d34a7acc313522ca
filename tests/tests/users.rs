//! The user API end to end, through the proxy: every documented status, uniqueness under
//! concurrency, paging over more than one page, and If-Match.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use e2e::{base_url, client, error_code, send, status_json, unique};
use reqwest::{Client, Method};
use serde_json::{json, Value};

fn email() -> String {
    format!("{}@example.com", unique("u"))
}

async fn create(client: &Client, name: &str, email: &str) -> (u16, Value) {
    status_json(
        send(
            client,
            Method::POST,
            "/api/users",
            Some(&json!({"name": name, "email": email})),
            &[],
        )
        .await,
    )
    .await
}

#[tokio::test]
async fn create_get_patch_delete() {
    let client = client();
    let address = email();
    let (status, user) = create(&client, "  Ada  ", &address).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["version"], 1);
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());

    let response = send(&client, Method::GET, &path, None, &[]).await;
    assert_eq!(response.headers()["etag"], "\"1\"");
    // HEAD: the same status and headers, no body.
    let head = send(&client, Method::HEAD, &path, None, &[]).await;
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["etag"], "\"1\"");
    assert!(head.bytes().await.unwrap().is_empty());

    // Stale If-Match: 412 and nothing changes.
    let (status, body) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"name": "X"})),
            &[("if-match", "\"5\"")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 412);
    assert_eq!(error_code(&body), "version_mismatch");
    let (_, unchanged) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
    assert_eq!(unchanged, user);

    // Email change with the right version frees the old address.
    let new_address = email();
    let (status, patched) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"email": new_address.to_uppercase()})),
            &[("if-match", "\"1\"")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["version"], 2);
    let (status, other) = create(&client, "Other", &address).await;
    assert_eq!(status, 201, "old address should be free: {other}");
    let (status, body) = create(&client, "Third", &new_address).await;
    assert_eq!((status, error_code(&body)), (409, "email_taken"));

    let (status, _) = status_json(send(&client, Method::DELETE, &path, None, &[]).await).await;
    assert_eq!(status, 204);
    let (status, body) = status_json(send(&client, Method::DELETE, &path, None, &[]).await).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, _) = create(&client, "Fourth", &new_address).await;
    assert_eq!(status, 201, "deleting a user frees its email");
}

#[tokio::test]
async fn fifty_concurrent_creates_with_one_email_give_one_user() {
    let client = Arc::new(client());
    let address = Arc::new(email());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (client, address) = (Arc::clone(&client), Arc::clone(&address));
            // Vary the case: uniqueness is case-insensitive.
            let address = if i % 2 == 0 {
                address.to_uppercase()
            } else {
                address.to_string()
            };
            tokio::spawn(async move { create(&client, &format!("n{i}"), &address).await })
        })
        .collect();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut winner = None;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == 409 {
            assert_eq!(error_code(&body), "email_taken");
        }
        if status == 201 {
            winner = Some(body["id"].as_str().unwrap().to_string());
        }
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(statuses.get(&201), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&49), "{statuses:?}");

    // What the table holds, read directly: one user with the address, one claim on it, and
    // the claim names the winner (no loser left a half-written item behind).
    let winner = winner.unwrap();
    let table = std::env::var("USERS_TABLE").unwrap_or_else(|_| panic!("USERS_TABLE must be set"));
    let items = e2e::scan_all(&table).await;
    let lower = address.to_lowercase();
    let users: Vec<_> = items
        .iter()
        .filter(|item| {
            e2e::attr(item, "pk").starts_with("USER#")
                && e2e::attr(item, "email").to_lowercase() == lower
        })
        .collect();
    assert_eq!(users.len(), 1, "one user item with the address");
    assert_eq!(e2e::attr(users[0], "id"), winner);
    let claims: Vec<_> = items
        .iter()
        .filter(|item| e2e::attr(item, "pk") == format!("EMAIL#{lower}"))
        .collect();
    assert_eq!(claims.len(), 1, "one email claim");
    assert_eq!(e2e::attr(claims[0], "user_id"), winner);
}

#[tokio::test]
async fn paging_returns_every_user_exactly_once() {
    let client = client();
    let mut mine = BTreeSet::new();
    for i in 0..12 {
        let (status, user) = create(&client, &format!("pager {i}"), &email()).await;
        assert_eq!(status, 201);
        mine.insert(user["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/users?limit=5&cursor={c}"),
            None => "/api/users?limit=5".to_string(),
        };
        let (status, page) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 5);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert!(
        pages >= 3,
        "12 users at 5 a page need at least 3 pages, got {pages}"
    );
    let unique_seen: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique_seen.len(), seen.len(), "a user appeared twice");
    assert!(mine.is_subset(&unique_seen), "a user was skipped");
}

/// method, path, content type, body, expected status, expected code.
type ErrorCase = (
    Method,
    &'static str,
    Option<&'static str>,
    Option<String>,
    u16,
    &'static str,
);

#[tokio::test]
async fn every_error_status() {
    let client = client();
    let base = base_url();

    let cases: Vec<ErrorCase> = vec![
        (
            Method::POST,
            "/api/users",
            Some("application/json"),
            Some("{\"name\":".into()),
            400,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/users",
            Some("application/json"),
            Some("".into()),
            400,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/users",
            Some("application/json"),
            Some(r#"{"name":"","email":"a@b.co"}"#.into()),
            400,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/users",
            Some("application/json"),
            Some(r#"{"name":"A","email":"nope"}"#.into()),
            400,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/users",
            Some("application/json"),
            Some(r#"{"name":"A","email":"a@b.co","admin":true}"#.into()),
            400,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/users",
            Some("text/plain"),
            Some(r#"{"name":"A","email":"a@b.co"}"#.into()),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/users",
            None,
            Some(r#"{"name":"A","email":"a@b.co"}"#.into()),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/users",
            Some("application/json"),
            Some(format!(
                r#"{{"name":"{}","email":"a@b.co"}}"#,
                "a".repeat(70_000)
            )),
            413,
            "payload_too_large",
        ),
        (
            Method::PUT,
            "/api/users",
            None,
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/api/users/00000000-0000-0000-0000-000000000000",
            None,
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/users?limit=0",
            None,
            None,
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/users?limit=101",
            None,
            None,
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/users?limit=ten",
            None,
            None,
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/users?cursor=forged",
            None,
            None,
            400,
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/api/users?cursor=VVNFUiN4.AAAAAAAAAAAAAAAAAAAAAA",
            None,
            None,
            400,
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/api/users/00000000-0000-0000-0000-000000000000",
            None,
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, content_type, body, want_status, want_code) in cases {
        let mut request = client.request(method.clone(), format!("{base}{path}"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let (status, json) = status_json(response).await;
        assert_eq!(status, want_status, "{method} {path}: {json}");
        assert_eq!(error_code(&json), want_code, "{method} {path}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn concurrent_patches_lose_no_update() {
    let client = Arc::new(client());
    let (_, user) = create(&client, "counter", &email()).await;
    let path = Arc::new(format!("/api/users/{}", user["id"].as_str().unwrap()));
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let (client, path) = (Arc::clone(&client), Arc::clone(&path));
            tokio::spawn(async move {
                status_json(
                    send(
                        &client,
                        Method::PATCH,
                        &path,
                        Some(&json!({"name": format!("writer {i}")})),
                        &[],
                    )
                    .await,
                )
                .await
                .0
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let (_, after) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
    // Every one of the five writes was applied on top of the previous one.
    assert_eq!(after["version"], 6, "{after}");
}

#[tokio::test]
async fn a_cursor_signed_with_another_secret_is_refused() {
    // Well formed, for the right listing and a plausible key, but not signed with this
    // stack's secret: the kind of cursor someone forges after reading the code.
    let forged = service_core::paging::CursorCodec::new("not-the-stacks-secret-0123456789abcdef")
        .encode("users", &format!("USER#{}", uuid::Uuid::new_v4()));
    let (status, body) = status_json(
        send(
            &client(),
            Method::GET,
            &format!("/api/users?cursor={forged}"),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_cursor"));
}

#[tokio::test]
async fn null_for_a_field_that_cannot_be_removed_is_refused() {
    let client = client();
    let (status, user) = create(&client, "Nully", &email()).await;
    assert_eq!(status, 201);
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());
    let (status, body) = status_json(
        send(
            &client,
            Method::PATCH,
            &path,
            Some(&json!({"email": null, "name": "B"})),
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
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("`email`"),
        "{body}"
    );
    let (_, after) = status_json(send(&client, Method::GET, &path, None, &[]).await).await;
    assert_eq!(after, user, "nothing changed, the name included");
}

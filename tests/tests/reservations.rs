//! Reservations end to end, through the proxy to the local stack: they never oversell, have no
//! cap below the stock, belong to their owner, end exactly once (release, confirm, or expiry by
//! the sweeper the stack runs on an interval), and a busy product answers conflicts, never 5xx.
//!
//! Callers are JWT identities of the suite's own (`jwt:<sub>`), each with its own rate limit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{client, client_as, error_code, send, status_json, unique};
use reqwest::{Client, Method};
use serde_json::{json, Value};

fn caller(name: &str) -> Client {
    client_as(name, "products")
}

async fn create_product(stock: u32) -> String {
    let sku = unique("RSV-").to_uppercase();
    let body = json!({"sku": sku, "name": "Reserved lamp", "price_cents": 1999, "currency": "EUR", "stock": stock});
    let (status, created) =
        status_json(send(&client(), Method::POST, "/api/products", Some(&body), &[]).await).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// The product as the function has it now (past the edge cache: `no-cache` makes it ask).
async fn product(id: &str) -> Value {
    let (status, body) = status_json(
        send(
            &client(),
            Method::GET,
            &format!("/api/products/{id}?fresh={}", unique("")),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn stock_and_open(id: &str) -> (u64, u64) {
    let body = product(id).await;
    (
        body["stock"].as_u64().unwrap(),
        body["open_reservations"].as_u64().unwrap(),
    )
}

async fn reserve(client: &Client, id: &str, quantity: u32, hold_seconds: u32) -> (u16, Value) {
    status_json(
        send(
            client,
            Method::POST,
            &format!("/api/products/{id}/reservations"),
            Some(&json!({"quantity": quantity, "hold_seconds": hold_seconds})),
            &[],
        )
        .await,
    )
    .await
}

fn reservation_path(id: &str, reservation: &Value) -> String {
    format!(
        "/api/products/{id}/reservations/{}",
        reservation["reservation_id"].as_str().unwrap()
    )
}

/// Polls (bounded) until `done` holds for the product's (stock, open) or the time is up.
async fn wait_for_counts(id: &str, seconds: u64, done: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let counts = stock_and_open(id).await;
        if done(counts) || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn two_hundred_concurrent_reservations_on_a_hundred_and_fifty_units() {
    let id = Arc::new(create_product(150).await);
    let callers: Arc<Vec<Client>> =
        Arc::new((0..4).map(|i| caller(&unique(&format!("c{i}-")))).collect());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (id, callers) = (Arc::clone(&id), Arc::clone(&callers));
            tokio::spawn(async move { reserve(&callers[i % 4], &id, 1, 30).await })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (201, body) => {
                assert_eq!(body["status"], "open");
                created += 1;
            }
            (409, body) => {
                assert_eq!(error_code(&body), "insufficient_stock");
                refused += 1;
            }
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!((created, refused), (150, 50));
    assert_eq!(stock_and_open(&id).await, (0, 150));
}

#[tokio::test]
async fn the_thousand_and_first_and_the_five_thousandth_open_reservation_succeed() {
    const UNITS: usize = 5000;
    let id = Arc::new(create_product(UNITS as u32).await);
    // Five callers (each limited on its own), sixteen requests in flight.
    let callers: Arc<Vec<Client>> = Arc::new(
        (0..5)
            .map(|i| caller(&unique(&format!("sale{i}-"))))
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (id, callers, next) = (Arc::clone(&id), Arc::clone(&callers), Arc::clone(&next));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= UNITS {
                        return failures;
                    }
                    let (status, body) = reserve(&callers[n % callers.len()], &id, 1, 600).await;
                    if status != 201 {
                        failures.push((n + 1, status, body));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(
            failures.is_empty(),
            "refused: {:?}",
            &failures[..failures.len().min(3)]
        );
    }
    assert_eq!(stock_and_open(&id).await, (0, UNITS as u64));
    // One more is refused for stock, not for a count.
    let (status, body) = reserve(&callers[0], &id, 1, 600).await;
    assert_eq!((status, error_code(&body)), (409, "insufficient_stock"));
}

#[tokio::test]
async fn twenty_concurrent_releases_return_the_stock_once() {
    let id = create_product(5).await;
    let alice = Arc::new(caller(&unique("alice-")));
    let (status, reservation) = reserve(&alice, &id, 3, 600).await;
    assert_eq!(status, 201);
    let path = Arc::new(reservation_path(&id, &reservation));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (alice, path) = (Arc::clone(&alice), Arc::clone(&path));
            tokio::spawn(async move {
                status_json(send(&alice, Method::DELETE, &path, None, &[]).await).await
            })
        })
        .collect();
    let mut released = 0;
    for task in tasks {
        match task.await.unwrap() {
            (204, _) => released += 1,
            (409, body) => assert_eq!(error_code(&body), "reservation_released"),
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!(released, 1);
    assert_eq!(stock_and_open(&id).await, (5, 0));
    let (_, read) = status_json(send(&alice, Method::GET, &path, None, &[]).await).await;
    assert_eq!(read["status"], "released");
}

#[tokio::test]
async fn a_two_second_hold_expires_and_its_stock_comes_back_once() {
    let id = create_product(4).await;
    let alice = caller(&unique("alice-"));
    let (status, reservation) = reserve(&alice, &id, 3, 2).await;
    assert_eq!(status, 201, "{reservation}");
    let path = reservation_path(&id, &reservation);
    assert_eq!(stock_and_open(&id).await, (1, 1));
    // The sweeper runs every two seconds: within a few seconds of the hold's end the stock is back.
    let counts = wait_for_counts(&id, 20, |counts| counts == (4, 0)).await;
    assert_eq!(counts, (4, 0), "the hold ended and the stock came back");
    let (_, read) = status_json(send(&alice, Method::GET, &path, None, &[]).await).await;
    assert_eq!(read["status"], "expired");
    assert!(read["ended_at"].is_string(), "swept: {read}");
    // More sweeps (the stack's, and one invoked here) change nothing.
    let invoke =
        std::env::var("SWEEPER_INVOKE_URL").expect("SWEEPER_INVOKE_URL (make test sets it)");
    let event = json!({"version": "0", "id": unique("e2e-"), "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {}});
    let swept = reqwest::Client::new()
        .post(invoke)
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert!(swept.status().is_success(), "{}", swept.status());
    let outcome: Value = swept.json().await.unwrap();
    assert_eq!(outcome["failed"], 0, "{outcome}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stock_and_open(&id).await, (4, 0));
    let (status, body) =
        status_json(send(&alice, Method::POST, &format!("{path}/confirm"), None, &[]).await).await;
    assert_eq!((status, error_code(&body)), (409, "reservation_expired"));
}

#[tokio::test]
async fn confirm_at_the_edge_of_the_hold_ends_in_exactly_one_state() {
    let id = create_product(1).await;
    let alice = caller(&unique("alice-"));
    let (_, reservation) = reserve(&alice, &id, 1, 1).await;
    let path = reservation_path(&id, &reservation);
    tokio::time::sleep(Duration::from_millis(950)).await;
    let (status, body) =
        status_json(send(&alice, Method::POST, &format!("{path}/confirm"), None, &[]).await).await;
    let want = match status {
        200 => ("confirmed", (0, 0)),
        409 => {
            assert_eq!(error_code(&body), "reservation_expired");
            ("expired", (1, 0))
        }
        other => panic!("unexpected {other}: {body}"),
    };
    // Whatever the sweeper does meanwhile, the outcome stands and the books follow it.
    let counts = wait_for_counts(&id, 20, |counts| counts == want.1).await;
    assert_eq!(counts, want.1, "{want:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, read) = status_json(send(&alice, Method::GET, &path, None, &[]).await).await;
    assert_eq!(read["status"], want.0);
    assert_eq!(stock_and_open(&id).await, want.1);
}

#[tokio::test]
async fn another_consumer_can_neither_see_nor_end_your_reservation() {
    let id = create_product(3).await;
    let (alice_name, bob_name) = (unique("alice-"), unique("bob-"));
    let (alice, bob) = (caller(&alice_name), caller(&bob_name));
    let (_, reservation) = reserve(&alice, &id, 2, 600).await;
    assert_eq!(reservation["owner"], format!("jwt:{alice_name}"));
    let path = reservation_path(&id, &reservation);
    for (method, target) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/confirm")),
    ] {
        let (status, body) =
            status_json(send(&bob, method.clone(), &target, None, &[]).await).await;
        assert_eq!(
            (status, error_code(&body)),
            (404, "not_found"),
            "{method} {target}"
        );
    }
    assert_eq!(stock_and_open(&id).await, (1, 1), "nothing changed");
    let (_, mine) =
        status_json(send(&alice, Method::GET, "/api/reservations", None, &[]).await).await;
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reservation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [reservation["reservation_id"].as_str().unwrap()]);
    let (_, theirs) =
        status_json(send(&bob, Method::GET, "/api/reservations", None, &[]).await).await;
    assert_eq!(theirs["items"], json!([]));
    let (status, _) = status_json(
        send(
            &bob,
            Method::GET,
            &format!("/api/reservations?owner=jwt:{alice_name}"),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "another owner's listing needs the admin scope");
    // The owner confirms: a sale.
    let (status, confirmed) =
        status_json(send(&alice, Method::POST, &format!("{path}/confirm"), None, &[]).await).await;
    assert_eq!(
        (status, confirmed["status"].as_str()),
        (200, Some("confirmed"))
    );
    assert_eq!(stock_and_open(&id).await, (1, 0));
}

/// What one client of the contention test saw and did.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, usize>,
    /// Units of its reservations that are still open.
    open: Vec<(String, u32)>,
    confirmed_units: u64,
    restocked: i64,
}

#[tokio::test]
async fn eight_clients_on_one_product_for_twenty_seconds_get_no_5xx_and_the_books_balance() {
    const INITIAL: u32 = 400;
    let id = Arc::new(create_product(INITIAL).await);
    // One reservation stays open throughout, so every DELETE meets open reservations.
    let keeper = caller(&unique("keeper-"));
    let (status, anchor) = reserve(&keeper, &id, 1, 600).await;
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> = (0..8)
        .map(|n| {
            let id = Arc::clone(&id);
            tokio::spawn(async move {
                let me = caller(&unique(&format!("busy{n}-")));
                let mut tally = Tally::default();
                let mut step = 0usize;
                while Instant::now() < deadline {
                    step += 1;
                    let product_path = format!("/api/products/{id}");
                    let status = match (step + n) % 6 {
                        0 | 1 => {
                            let (status, body) = reserve(&me, &id, 1 + (step % 3) as u32, 60).await;
                            if status == 201 {
                                tally.open.push((reservation_path(&id, &body), body["quantity"].as_u64().unwrap() as u32));
                            }
                            status
                        }
                        2 => match tally.open.pop() {
                            Some((path, quantity)) => {
                                let confirm = step.is_multiple_of(4);
                                let (method, target) = if confirm {
                                    (Method::POST, format!("{path}/confirm"))
                                } else {
                                    (Method::DELETE, path.clone())
                                };
                                let (status, _) = status_json(send(&me, method, &target, None, &[]).await).await;
                                match (status, confirm) {
                                    (200, true) => tally.confirmed_units += u64::from(quantity),
                                    (204, false) => {}
                                    _ => tally.open.push((path, quantity)),
                                }
                                status
                            }
                            None => continue,
                        },
                        3 => {
                            let body = json!({"name": format!("Busy lamp {n}-{step}"), "price_cents": 1000 + step});
                            status_json(send(&me, Method::PATCH, &product_path, Some(&body), &[]).await).await.0
                        }
                        4 => {
                            // A restock pinned to the version read: applied exactly or 412.
                            let current = product(&id).await;
                            let (stock, version) = (current["stock"].as_u64().unwrap(), current["version"].as_u64().unwrap());
                            let tag = format!("\"{version}\"");
                            let body = json!({"stock": stock + 3});
                            let (status, _) = status_json(send(&me, Method::PATCH, &product_path, Some(&body), &[("if-match", &tag)]).await).await;
                            if status == 200 {
                                tally.restocked += 3;
                            }
                            status
                        }
                        _ => status_json(send(&me, Method::DELETE, &product_path, None, &[]).await).await.0,
                    };
                    *tally.statuses.entry(status).or_default() += 1;
                }
                tally
            })
        })
        .collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let (mut open_units, mut open_count, mut confirmed_units, mut restocked) =
        (1u64, 1u64, 0u64, 0i64);
    for client in clients {
        let tally = client.await.unwrap();
        for (status, count) in tally.statuses {
            *statuses.entry(status).or_default() += count;
        }
        open_units += tally.open.iter().map(|(_, q)| u64::from(*q)).sum::<u64>();
        open_count += tally.open.len() as u64;
        confirmed_units += tally.confirmed_units;
        restocked += tally.restocked;
    }
    let server_errors: usize = statuses.range(500..).map(|(_, count)| count).sum();
    assert_eq!(server_errors, 0, "statuses: {statuses:?}");
    assert!(
        statuses.get(&201).copied().unwrap_or(0) > 10,
        "it did reserve: {statuses:?}"
    );
    let allowed: BTreeSet<u16> = [200, 201, 204, 409, 412].into();
    assert!(
        statuses.keys().all(|s| allowed.contains(s)),
        "statuses: {statuses:?}"
    );
    let (stock, open) = stock_and_open(&id).await;
    assert_eq!(open, open_count, "statuses: {statuses:?}");
    assert_eq!(
        (stock + open_units + confirmed_units) as i64,
        i64::from(INITIAL) + restocked,
        "stock + open + confirmed = initial + restocks ({statuses:?})"
    );
    // Tidy: the anchor goes, and with the rest ended the product can be deleted.
    let (status, _) = status_json(
        send(
            &keeper,
            Method::DELETE,
            &reservation_path(&id, &anchor),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 204);
}

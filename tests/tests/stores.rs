//! The DynamoDB stores against the local DynamoDB endpoint (moto or LocalStack), on the tables
//! the stack created from template.yaml. These check the conditional writes directly, below
//! the HTTP layer: uniqueness claims, version conditions, and that a refused write changes
//! nothing.
//!
//! Needs `AWS_ENDPOINT_URL`, `USERS_TABLE`, `PRODUCTS_TABLE` and `RESERVATIONS_TABLE` (set by
//! `make test`).

use chrono::{Duration, Utc};
use product_service::domain::{
    Ending, Product, ProductError, ProductPatch, Reservation, ReservationStatus,
};
use product_service::store::{DynamoProductStore, ProductStore};
use product_service::testkit::{self, product};
use service_core::error::Code;
use service_core::StoreError;
use user_service::domain::{User, UserError};
use user_service::store::{DynamoUserStore, UserStore};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set: run with `make test`"))
}

async fn client() -> aws_sdk_dynamodb::Client {
    assert!(
        env("AWS_ENDPOINT_URL").starts_with("http://127.0.0.1"),
        "store tests only run against the local endpoint"
    );
    service_core::dynamo::client_from_env().await
}

fn user(email: &str) -> User {
    let now = Utc::now();
    User {
        id: uuid::Uuid::new_v4().to_string(),
        name: "Store test".into(),
        email: email.into(),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

#[tokio::test]
async fn user_store_enforces_uniqueness_and_versions() {
    let store = DynamoUserStore::new(client().await, env("USERS_TABLE"));
    let address = format!("{}@Example.com", uuid::Uuid::new_v4().simple());
    let ada = user(&address);
    store.create(&ada).await.unwrap();
    assert_eq!(store.get(&ada.id).await.unwrap().as_ref(), Some(&ada));

    // Same address, other case: refused, and the second user was not written.
    let eve = user(&address.to_lowercase());
    assert_eq!(store.create(&eve).await.unwrap_err().code(), "email_taken");
    assert_eq!(store.get(&eve.id).await.unwrap(), None);

    // A replace from a stale version changes nothing.
    let mut renamed = ada.clone();
    renamed.name = "Renamed".into();
    renamed.version = 2;
    let stale = User {
        version: 7,
        ..ada.clone()
    };
    assert_eq!(
        store.replace(&stale, &renamed).await.unwrap_err(),
        UserError::Store(StoreError::VersionMismatch)
    );
    assert_eq!(
        store.get(&ada.id).await.unwrap().unwrap().name,
        "Store test"
    );
    store.replace(&ada, &renamed).await.unwrap();

    // An email move to a taken address fails as a whole.
    let other = user(&format!("{}@example.com", uuid::Uuid::new_v4().simple()));
    store.create(&other).await.unwrap();
    let moved = User {
        email: other.email.clone(),
        version: 3,
        ..renamed.clone()
    };
    assert_eq!(
        store.replace(&renamed, &moved).await.unwrap_err().code(),
        "email_taken"
    );
    assert_eq!(store.get(&ada.id).await.unwrap().unwrap(), renamed);

    // Deleting frees the address.
    store.delete(&renamed).await.unwrap();
    store.create(&user(&address)).await.unwrap();
}

fn product_store(client: aws_sdk_dynamodb::Client) -> DynamoProductStore {
    DynamoProductStore::new(client, env("PRODUCTS_TABLE"), env("RESERVATIONS_TABLE"))
}

fn reservation(product: &Product, owner: &str, quantity: u32, hold_seconds: i64) -> Reservation {
    testkit::reservation(
        product,
        owner,
        quantity,
        Utc::now() + Duration::seconds(hold_seconds),
    )
}

#[tokio::test]
async fn product_store_reserves_and_ends_reservations_atomically() {
    let store = product_store(client().await);
    let lamp = product(3);
    store.create(&lamp).await.unwrap();
    let duplicate = Product {
        id: uuid::Uuid::new_v4().to_string(),
        ..lamp.clone()
    };
    assert_eq!(
        store.create(&duplicate).await.unwrap_err().code(),
        "sku_taken"
    );
    assert_eq!(store.get(&duplicate.id).await.unwrap(), None);

    let owner = format!("jwt:{}", uuid::Uuid::new_v4().simple());
    let first = reservation(&lamp, &owner, 2, 600);
    store.reserve(&first).await.unwrap();
    assert_eq!(
        store
            .reservation(&first.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .hold_until
            .timestamp_millis(),
        first.hold_until.timestamp_millis()
    );
    // Refused from the item the transaction found (no second read): nothing changed.
    let greedy = reservation(&lamp, &owner, 2, 600);
    assert_eq!(
        store.reserve(&greedy).await.unwrap_err(),
        ProductError::InsufficientStock
    );
    assert_eq!(
        store.reservation(&greedy.reservation_id).await.unwrap(),
        None
    );
    let after = store.get(&lamp.id).await.unwrap().unwrap();
    assert_eq!(
        (after.stock, after.open_reservations, after.version),
        (1, 1, 2)
    );
    let nowhere = reservation(&product(1), &owner, 1, 600);
    assert_eq!(
        store.reserve(&nowhere).await.unwrap_err(),
        ProductError::NotFound
    );

    // Delete: a stale pinned version is a 412, an open reservation a 409; nothing changes.
    assert_eq!(
        store.delete(&after, Some(1)).await.unwrap_err(),
        ProductError::Store(StoreError::VersionMismatch)
    );
    assert_eq!(
        store.delete(&after, None).await.unwrap_err(),
        ProductError::HasOpenReservations
    );
    assert_eq!(store.get(&lamp.id).await.unwrap().unwrap(), after);

    // A patch names only its fields; a pinned stale version or a missing product refuse it.
    let rename = ProductPatch {
        name: Some("Renamed".into()),
        ..Default::default()
    };
    let renamed = store
        .patch(&lamp.id, &rename, None, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.stock, renamed.version),
        ("Renamed", 1, 3)
    );
    assert_eq!(
        store
            .patch(&lamp.id, &rename, Some(2), Utc::now())
            .await
            .unwrap_err(),
        ProductError::Store(StoreError::VersionMismatch)
    );
    assert_eq!(
        store
            .patch(&nowhere.product_id, &rename, None, Utc::now())
            .await
            .unwrap_err(),
        ProductError::NotFound
    );

    // The owner's listing.
    let listed = store
        .open_reservations_of(&owner, Utc::now(), 10, None)
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .items
        .iter()
        .map(|r| r.reservation_id.as_str())
        .collect();
    assert_eq!(ids, [first.reservation_id.as_str()]);

    // Released once: the second attempt learns why from the item it found.
    let now = Utc::now();
    let released = store.end(&first, Ending::Release, now).await.unwrap();
    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(
        store.end(&first, Ending::Release, now).await.unwrap_err(),
        ProductError::ReservationEnded(ReservationStatus::Released)
    );
    assert_eq!(
        store.end(&first, Ending::Confirm, now).await.unwrap_err(),
        ProductError::ReservationEnded(ReservationStatus::Released)
    );
    let after = store.get(&lamp.id).await.unwrap().unwrap();
    assert_eq!((after.stock, after.open_reservations), (3, 0));
    assert!(store
        .open_reservations_of(&owner, Utc::now(), 10, None)
        .await
        .unwrap()
        .items
        .is_empty());

    // A hold that ran out: not confirmable, found by the sweeper's index, expired once.
    let lapsed = reservation(&lamp, &owner, 1, -1);
    store.reserve(&lapsed).await.unwrap();
    let now = Utc::now();
    assert_eq!(
        store.end(&lapsed, Ending::Confirm, now).await.unwrap_err(),
        ProductError::ReservationEnded(ReservationStatus::Expired)
    );
    let due = store.due(now, 10_000).await.unwrap();
    assert!(due
        .iter()
        .any(|r| r.reservation_id == lapsed.reservation_id));
    store.end(&lapsed, Ending::Expire, now).await.unwrap();
    assert_eq!(
        store.end(&lapsed, Ending::Expire, now).await.unwrap_err(),
        ProductError::ReservationEnded(ReservationStatus::Expired)
    );
    let due = store.due(now, 10_000).await.unwrap();
    assert!(!due
        .iter()
        .any(|r| r.reservation_id == lapsed.reservation_id));
    let after = store.get(&lamp.id).await.unwrap().unwrap();
    assert_eq!((after.stock, after.open_reservations), (3, 0));

    // A confirmed one keeps its stock.
    let sold = reservation(&lamp, &owner, 3, 600);
    store.reserve(&sold).await.unwrap();
    store.end(&sold, Ending::Confirm, Utc::now()).await.unwrap();
    let after = store.get(&lamp.id).await.unwrap().unwrap();
    assert_eq!((after.stock, after.open_reservations), (0, 0));

    store.delete(&after, Some(after.version)).await.unwrap();
    assert_eq!(store.get(&lamp.id).await.unwrap(), None);
    assert_eq!(
        store.delete(&after, None).await.unwrap_err(),
        ProductError::NotFound
    );
}

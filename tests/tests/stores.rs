//! The DynamoDB stores against the local DynamoDB endpoint (moto or LocalStack), on the tables
//! the stack created from template.yaml. These check the conditional writes directly, below
//! the HTTP layer: uniqueness claims, version conditions, and that a refused write changes
//! nothing.
//!
//! Needs `AWS_ENDPOINT_URL`, `USERS_TABLE` and `PRODUCTS_TABLE` (set by `make test`).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use product_service::domain::{Product, ProductError};
use product_service::store::{DynamoProductStore, ProductStore};
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

#[tokio::test]
async fn product_store_reserves_and_releases_atomically() {
    let store = DynamoProductStore::new(client().await, env("PRODUCTS_TABLE"));
    let now = Utc::now();
    let product = Product {
        id: uuid::Uuid::new_v4().to_string(),
        sku: format!("ST-{}", uuid::Uuid::new_v4().simple()).to_uppercase(),
        name: "Store lamp".into(),
        price_cents: 500,
        currency: "EUR".into(),
        stock: 3,
        category: None,
        open_reservations: 0,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    store.create(&product).await.unwrap();
    let duplicate = Product {
        id: uuid::Uuid::new_v4().to_string(),
        ..product.clone()
    };
    assert_eq!(
        store.create(&duplicate).await.unwrap_err().code(),
        "sku_taken"
    );
    assert_eq!(store.get(&duplicate.id).await.unwrap(), None);

    assert_eq!(store.reserve(&product.id, "r1", 2).await.unwrap(), 1);
    assert_eq!(
        store
            .reserve(&product.id, "r2", 2)
            .await
            .unwrap_err()
            .code(),
        "insufficient_stock"
    );
    let after = store.get(&product.id).await.unwrap().unwrap();
    assert_eq!(
        (after.stock, after.open_reservations, after.version),
        (1, 1, 2)
    );

    // A delete from the version read before the reservation loses to it...
    assert_eq!(
        store.delete(&product).await.unwrap_err(),
        ProductError::Store(StoreError::VersionMismatch)
    );
    // ...and one from the current version meets the rule itself: not while a reservation is
    // open. Nothing changed.
    let current = store.get(&product.id).await.unwrap().unwrap();
    assert_eq!(
        store.delete(&current).await.unwrap_err(),
        ProductError::HasOpenReservations
    );
    assert_eq!(store.get(&product.id).await.unwrap().unwrap(), current);

    store.release(&product.id, "r1").await.unwrap();
    assert_eq!(
        store.release(&product.id, "r1").await.unwrap_err(),
        ProductError::NotFound
    );
    let after = store.get(&product.id).await.unwrap().unwrap();
    assert_eq!((after.stock, after.open_reservations), (3, 0));
    assert_eq!(
        store
            .reserve(&uuid::Uuid::new_v4().to_string(), "r3", 1)
            .await
            .unwrap_err(),
        ProductError::NotFound
    );

    store.delete(&after).await.unwrap();
    assert_eq!(store.get(&product.id).await.unwrap(), None);
}

#[tokio::test]
async fn product_store_caps_open_reservations() {
    let client = client().await;
    let table = env("PRODUCTS_TABLE");
    let store = DynamoProductStore::new(client.clone(), table.clone());
    let now = Utc::now();
    let product = Product {
        id: uuid::Uuid::new_v4().to_string(),
        sku: format!("CAP-{}", uuid::Uuid::new_v4().simple()).to_uppercase(),
        name: "Capped".into(),
        price_cents: 1,
        currency: "EUR".into(),
        stock: 10,
        category: None,
        open_reservations: 0,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    store.create(&product).await.unwrap();
    // A thousand reservations would take a minute against the local endpoint: start at 999.
    client
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("PRODUCT#{}", product.id)))
        .update_expression("SET open_reservations = :n")
        .expression_attribute_values(":n", AttributeValue::N("999".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(store.reserve(&product.id, "last", 1).await.unwrap(), 9);
    assert_eq!(
        store
            .reserve(&product.id, "one-too-many", 1)
            .await
            .unwrap_err(),
        ProductError::TooManyReservations
    );
    let after = store.get(&product.id).await.unwrap().unwrap();
    assert_eq!(
        (after.stock, after.open_reservations),
        (9, 1000),
        "the refused one changed nothing"
    );
}

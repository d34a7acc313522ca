//! What each product-service operation costs in DynamoDB capacity at 0, 1,000 and 10,000 open
//! reservations on one product, by DynamoDB's documented rules (`service_core::capacity`): the
//! local endpoint reports no real consumed capacity, so this computes it from the items the
//! store really writes. Beside it, the same operations in the design before reservations had
//! items of their own (a `reservations` map on the product item, ~98 bytes an entry), modelled
//! from that item's shape, for comparison.
//!
//! Run: `cargo run -p product-service --example capacity` (`make bench` writes its output to
//! bench/results/reservation-capacity.md).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use product_service::domain::{Product, Reservation, ReservationStatus};
use product_service::store::dynamo::{product_item, reservation_item};
use service_core::capacity::{consistent_read_units, item_bytes, write_units};

/// DynamoDB's item size limit.
const MAX_ITEM_BYTES: usize = 400 * 1024;

fn product(open_reservations: u32) -> Product {
    let now = Utc::now();
    Product {
        id: uuid::Uuid::new_v4().to_string(),
        sku: "LAMP-2026-XL".into(),
        name: "Desk lamp, brushed steel".into(),
        price_cents: 4_999,
        currency: "EUR".into(),
        stock: 25_000,
        category: Some("lighting".into()),
        open_reservations,
        created_at: now,
        updated_at: now,
        version: 12_345,
    }
}

fn reservation(product: &Product) -> Reservation {
    let now = Utc::now();
    Reservation {
        reservation_id: uuid::Uuid::new_v4().to_string(),
        product_id: product.id.clone(),
        owner: "jwt:alice@example.com".into(),
        quantity: 2,
        status: ReservationStatus::Open,
        created_at: now,
        hold_until: now + chrono::Duration::seconds(900),
        ended_at: None,
    }
}

/// The product item of the design before: the same product with `open` entries of
/// `reservation id -> {quantity, created_at}` in a `reservations` map.
fn product_item_before(open: u32) -> HashMap<String, AttributeValue> {
    let mut item = product_item(&product(open)).expect("a product encodes");
    let entry = AttributeValue::M(HashMap::from([
        ("quantity".to_string(), AttributeValue::N("2".into())),
        (
            "created_at".to_string(),
            AttributeValue::S(Utc::now().to_rfc3339()),
        ),
    ]));
    let map = (0..open)
        .map(|_| (uuid::Uuid::new_v4().to_string(), entry.clone()))
        .collect();
    item.insert("reservations".into(), AttributeValue::M(map));
    item
}

/// Write units of one write of an item of `bytes` to the table and to each of `indexes`
/// projecting it whole.
fn written(bytes: usize, indexes: u64) -> u64 {
    write_units(bytes) * (1 + indexes)
}

fn main() {
    println!("| open reservations | operation | design | item bytes | WCU | RCU |");
    println!("|---:|---|---|---:|---:|---:|");
    for open in [0u32, 1_000, 10_000] {
        let lamp = product(open);
        let product_bytes = item_bytes(&product_item(&lamp).expect("a product encodes"));
        let reservation_bytes = item_bytes(&reservation_item(&reservation(&lamp)));
        let before = item_bytes(&product_item_before(open));
        // Now: reserve and each ending are one transaction over the product and the
        // reservation (each write costs double in a transaction), plus the index writes: the
        // product's by-category entry, and the reservation entering or leaving both sparse
        // indexes. Ending reads the reservation first (strongly consistent).
        let transaction = 2 * (write_units(product_bytes) + write_units(reservation_bytes));
        let now_rows = [
            (
                "reserve",
                product_bytes,
                transaction + write_units(product_bytes) + 2 * write_units(reservation_bytes),
                0,
            ),
            (
                "release / confirm / expire",
                product_bytes,
                transaction + write_units(product_bytes) + 2 * write_units(reservation_bytes),
                consistent_read_units(reservation_bytes),
            ),
            (
                "product read",
                product_bytes,
                0,
                consistent_read_units(product_bytes),
            ),
            ("product PATCH", product_bytes, written(product_bytes, 1), 0),
        ];
        // Before: every reservation write rewrote the whole product item and its by-category
        // copy (projection ALL); a release read it first; a refusal cost a write anyway.
        let before_rows = [
            ("reserve", before, written(before, 1), 0),
            (
                "release / confirm / expire",
                before,
                written(before, 1),
                consistent_read_units(before),
            ),
            ("product read", before, 0, consistent_read_units(before)),
            (
                "product PATCH",
                before,
                written(before, 1),
                consistent_read_units(before),
            ),
        ];
        for ((name, bytes, wcu, rcu), (_, old_bytes, old_wcu, old_rcu)) in
            now_rows.iter().zip(before_rows.iter())
        {
            println!("| {open} | {name} | now | {bytes} (+{reservation_bytes} reservation) | {wcu} | {rcu} |");
            if *old_bytes > MAX_ITEM_BYTES {
                println!("| {open} | {name} | before | {old_bytes}: over the 400 KB item limit, cannot exist | - | - |");
            } else {
                println!("| {open} | {name} | before | {old_bytes} | {old_wcu} | {old_rcu} |");
            }
        }
    }
    println!();
    let per_product =
        |bytes: usize, transactional: u64| 1000 / (transactional * write_units(bytes));
    println!(
        "A partition takes at most 1,000 WCU/s, and every reservation write lands on its \
         product's partition: before, a product with 1,000 open reservations sustained about \
         {} of them per second, with 10,000 it could not exist (the item would pass 400 KB); \
         now about {} at any number (the transaction's 2 WCU on a product item under 1 KB; the \
         reservation items and the index shards are spread over other partitions).",
        per_product(item_bytes(&product_item_before(1000)), 1),
        per_product(
            item_bytes(&product_item(&product(10_000)).expect("encodes")),
            2
        ),
    );
}

//! The product service's two DynamoDB tables.
//!
//! `ProductsTable`, items under the partition key `pk`:
//! - `PRODUCT#<id>`: the product, with its counters `stock` and `open_reservations`;
//! - `SKU#<sku>`: `{product_id}`, the uniqueness claim on a SKU.
//!
//! The sparse GSI `by-category` (`category`, `pk`) serves `?category=` listings.
//!
//! `ReservationsTable`, items `RESERVATION#<id>`: one per reservation, with its product, owner,
//! quantity, status and `hold_until_ms`. Reservations have a table of their own, not a key
//! space in the products table, because they are many and short-lived: listing products scans
//! the products table, which would otherwise read past every reservation ever made, and
//! reservations get their own TTL (`purge_at`, set when one ends) without touching products.
//! Reserving and ending are transactions across both tables (same account and region, one
//! function's policy), so the product item stays a few hundred bytes at any number of
//! reservations, and each write to it costs one WCU instead of one per KB of reservations.
//!
//! While a reservation is open it carries `open_shard` (its id's first hex digit) and
//! `open_owner`, the keys of two sparse GSIs (both ranged by `hold_until_ms`): `open-by-hold`,
//! which the sweeper queries shard by shard for holds that ran out (a query, not a scan; sixteen
//! shards so expiring holds are not one hot index partition), and `open-by-owner`, the caller's
//! listing. Ending a reservation removes both, so neither index holds anything but open ones.
//! Index reads are eventually consistent: a reservation made a moment ago may be missing from
//! a listing, and one the sweeper finds may have ended meanwhile (its transaction checks).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use service_core::dynamo::{from_item, key, sdk_failure, string_attr, to_item, Item, Table, PK};
use service_core::paging::Page;
use service_core::StoreError;

use super::{listing_key, parse_listing_key, ProductStore};
use crate::domain::{Ending, Product, ProductError, ProductPatch, Reservation, ReservationStatus};

const PRODUCT_PREFIX: &str = "PRODUCT#";
const SKU_PREFIX: &str = "SKU#";
const RESERVATION_PREFIX: &str = "RESERVATION#";
/// The attribute of a SKU claim that names the product holding it.
const CLAIM_OWNER: &str = "product_id";
pub const CATEGORY_INDEX: &str = "by-category";
/// Open reservations by shard and hold end: what the sweeper queries.
pub const HOLD_INDEX: &str = "open-by-hold";
/// Open reservations by owner and hold end: the caller's listing.
pub const OWNER_INDEX: &str = "open-by-owner";
/// Shards of [`HOLD_INDEX`]: a reservation's is its id's first hex digit.
pub const HOLD_SHARDS: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
];
/// How long an ended reservation is kept before DynamoDB's TTL may delete it (`purge_at`).
pub const ENDED_RETENTION_DAYS: i64 = 30;

fn product_pk(id: &str) -> String {
    format!("{PRODUCT_PREFIX}{id}")
}

fn sku_pk(sku: &str) -> String {
    format!("{SKU_PREFIX}{sku}")
}

fn reservation_pk(id: &str) -> String {
    format!("{RESERVATION_PREFIX}{id}")
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn number_attr(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The shard of [`HOLD_INDEX`] a reservation id falls in.
fn hold_shard(id: &str) -> String {
    id.get(..1).unwrap_or("0").to_ascii_lowercase()
}

/// The product as its table item.
pub fn product_item(product: &Product) -> Result<Item, StoreError> {
    to_item(product, product_pk(&product.id))
}

/// A reservation as its table item (an open one with the keys of both sparse indexes).
pub fn reservation_item(reservation: &Reservation) -> Item {
    let mut item = HashMap::from([
        (
            PK.to_string(),
            s(reservation_pk(&reservation.reservation_id)),
        ),
        ("reservation_id".to_string(), s(&reservation.reservation_id)),
        ("product_id".to_string(), s(&reservation.product_id)),
        ("owner".to_string(), s(&reservation.owner)),
        ("quantity".to_string(), n(reservation.quantity)),
        ("status".to_string(), s(reservation.status.as_str())),
        (
            "created_at".to_string(),
            s(reservation.created_at.to_rfc3339()),
        ),
        (
            "hold_until_ms".to_string(),
            n(millis(reservation.hold_until)),
        ),
    ]);
    if reservation.status == ReservationStatus::Open {
        item.insert(
            "open_shard".into(),
            s(hold_shard(&reservation.reservation_id)),
        );
        item.insert("open_owner".into(), s(&reservation.owner));
    }
    if let Some(ended_at) = reservation.ended_at {
        item.insert("ended_at".into(), s(ended_at.to_rfc3339()));
    }
    item
}

/// A reservation read back from its item; a malformed one is an internal error.
pub fn reservation_from_item(item: &Item) -> Result<Reservation, StoreError> {
    let malformed = |what: &str| StoreError::Internal(format!("malformed reservation: {what}"));
    let text = |name: &str| string_attr(item, name).ok_or_else(|| malformed(name));
    let time = |name: &str| {
        text(name).and_then(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| malformed(name))
        })
    };
    let hold_ms = item
        .get("hold_until_ms")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| malformed("hold_until_ms"))?;
    Ok(Reservation {
        reservation_id: text("reservation_id")?.to_string(),
        product_id: text("product_id")?.to_string(),
        owner: text("owner")?.to_string(),
        quantity: number_attr(item, "quantity")
            .and_then(|q| u32::try_from(q).ok())
            .ok_or_else(|| malformed("quantity"))?,
        status: ReservationStatus::parse(text("status")?).ok_or_else(|| malformed("status"))?,
        created_at: time("created_at")?,
        hold_until: DateTime::from_timestamp_millis(hold_ms)
            .ok_or_else(|| malformed("hold_until_ms"))?,
        ended_at: match item.get("ended_at") {
            None => None,
            Some(_) => Some(time("ended_at")?),
        },
    })
}

#[derive(Clone)]
pub struct DynamoProductStore {
    products: Table,
    reservations: Table,
}

impl DynamoProductStore {
    pub fn new(
        client: Client,
        products: impl Into<String>,
        reservations: impl Into<String>,
    ) -> Self {
        DynamoProductStore {
            products: Table::new(client.clone(), products),
            reservations: Table::new(client, reservations),
        }
    }

    pub fn from_tables(products: Table, reservations: Table) -> Self {
        DynamoProductStore {
            products,
            reservations,
        }
    }

    fn client(&self) -> &Client {
        &self.products.client
    }

    /// One page of an index query, as reservations.
    async fn query_reservations(
        &self,
        index: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Reservation>, bool), StoreError> {
        let mut request = self
            .client()
            .query()
            .table_name(&self.reservations.name)
            .index_name(index)
            .key_condition_expression(condition)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        let output = request.send().await.map_err(|e| sdk_failure("Query", e))?;
        let more = output.last_evaluated_key.is_some();
        let reservations = output
            .items
            .unwrap_or_default()
            .iter()
            .map(reservation_from_item)
            .collect::<Result<_, _>>()?;
        Ok((reservations, more))
    }
}

#[async_trait]
impl ProductStore for DynamoProductStore {
    async fn create(&self, product: &Product) -> Result<(), ProductError> {
        let item = product_item(product)?;
        let claim = sku_pk(&product.sku);
        let outcome = self
            .products
            .transaction()
            .put(item, "attribute_not_exists(pk)", &[])
            .claim(&claim, CLAIM_OWNER, &product.id)
            .commit()
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.condition_failed_on(&claim) => Err(ProductError::SkuTaken),
            Err(cancelled) if cancelled.conflict() => Err(ProductError::Contended),
            Err(cancelled) => Err(cancelled.unexpected("create product").into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        self.products
            .get(product_pk(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list(
        &self,
        limit: usize,
        after: Option<&str>,
        category: Option<&str>,
    ) -> Result<Page<Product>, ProductError> {
        let page = match category {
            None => {
                if after
                    .is_some_and(|a| !a.starts_with(PRODUCT_PREFIX) && !a.starts_with(SKU_PREFIX))
                {
                    return Err(StoreError::InvalidCursor.into());
                }
                self.products
                    .scan_prefix(PRODUCT_PREFIX, limit, after)
                    .await?
            }
            Some(category) => {
                if after.is_some_and(|a| !a.starts_with(PRODUCT_PREFIX)) {
                    return Err(StoreError::InvalidCursor.into());
                }
                let start = after.map(|after| {
                    HashMap::from([
                        (PK.to_string(), s(after)),
                        ("category".to_string(), s(category)),
                    ])
                });
                let output = self
                    .client()
                    .query()
                    .table_name(&self.products.name)
                    .index_name(CATEGORY_INDEX)
                    .key_condition_expression("category = :category")
                    .expression_attribute_values(":category", s(category))
                    .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| sdk_failure("Query", e))?;
                Page {
                    items: output.items.unwrap_or_default(),
                    next: output
                        .last_evaluated_key
                        .and_then(|k| string_attr(&k, PK).map(str::to_string)),
                }
            }
        };
        Ok(page.try_map(from_item)?)
    }

    async fn patch(
        &self,
        id: &str,
        patch: &ProductPatch,
        expected: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Product, ProductError> {
        let mut sets = vec!["version = version + :one", "updated_at = :now"];
        let mut request = self
            .client()
            .update_item()
            .table_name(&self.products.name)
            .set_key(Some(key(product_pk(id))))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_rfc3339()));
        if let Some(name) = &patch.name {
            sets.push("#name = :name");
            request = request
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":name", s(name));
        }
        if let Some(price) = patch.price_cents {
            sets.push("price_cents = :price");
            request = request.expression_attribute_values(":price", n(price));
        }
        if let Some(currency) = &patch.currency {
            sets.push("currency = :currency");
            request = request.expression_attribute_values(":currency", s(currency));
        }
        if let Some(stock) = patch.stock {
            sets.push("stock = :stock");
            request = request.expression_attribute_values(":stock", n(stock));
        }
        let mut update = format!("SET {}", sets.join(", "));
        match &patch.category {
            Some(Some(category)) => {
                update.push_str(", category = :category");
                request = request.expression_attribute_values(":category", s(category));
            }
            Some(None) => update.push_str(" REMOVE category"),
            None => {}
        }
        let condition = match expected {
            Some(version) => {
                request = request.expression_attribute_values(":version", n(version));
                "attribute_exists(pk) AND version = :version"
            }
            None => "attribute_exists(pk)",
        };
        let result = request
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(from_item(output.attributes.unwrap_or_default())?),
            Err(error) => match condition_failure(&error) {
                Some(None) => Err(ProductError::NotFound),
                Some(Some(_)) => Err(StoreError::VersionMismatch.into()),
                None => Err(sdk_failure("UpdateItem", error).into()),
            },
        }
    }

    async fn delete(&self, current: &Product, expected: Option<u64>) -> Result<(), ProductError> {
        let product = product_pk(&current.id);
        let (condition, values) = match expected {
            Some(version) => (
                "open_reservations = :zero AND version = :version",
                vec![(":zero", n(0)), (":version", n(version))],
            ),
            None => ("open_reservations = :zero", vec![(":zero", n(0))]),
        };
        let outcome = self
            .products
            .transaction()
            .delete(&product, condition, &values)
            .release(sku_pk(&current.sku), CLAIM_OWNER, &current.id)
            .commit()
            .await?;
        let Err(cancelled) = outcome else {
            return Ok(());
        };
        match cancelled.failed_item(&product) {
            Some(None) => Err(ProductError::NotFound),
            Some(Some(stored)) => {
                let version = number_attr(stored, "version");
                if expected.is_some_and(|v| version != Some(v)) {
                    Err(StoreError::VersionMismatch.into())
                } else {
                    Err(ProductError::HasOpenReservations)
                }
            }
            None if cancelled.conflict() => Err(ProductError::Contended),
            None => Err(cancelled.unexpected("delete product").into()),
        }
    }

    async fn reserve(&self, reservation: &Reservation) -> Result<(), ProductError> {
        let product = product_pk(&reservation.product_id);
        let outcome = self
            .products
            .transaction()
            .update(
                &product,
                "SET stock = stock - :q, open_reservations = open_reservations + :one, \
                 version = version + :one, updated_at = :now",
                "attribute_exists(pk) AND stock >= :q",
                &[],
                &[
                    (":q", n(reservation.quantity)),
                    (":one", n(1)),
                    (":now", s(reservation.created_at.to_rfc3339())),
                ],
            )
            .on(&self.reservations)
            .put(
                reservation_item(reservation),
                "attribute_not_exists(pk)",
                &[],
            )
            .commit()
            .await?;
        let Err(cancelled) = outcome else {
            return Ok(());
        };
        match cancelled.failed_item(&product) {
            Some(None) => Err(ProductError::NotFound),
            Some(Some(_)) => Err(ProductError::InsufficientStock),
            None if cancelled.conflict() => Err(ProductError::Contended),
            None => Err(cancelled.unexpected("reserve").into()),
        }
    }

    async fn reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        self.reservations
            .get(reservation_pk(id))
            .await?
            .as_ref()
            .map(reservation_from_item)
            .transpose()
    }

    async fn open_reservations_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page<Reservation>, ProductError> {
        let start = match after {
            None => None,
            Some(after) => {
                let (hold_ms, id) = parse_listing_key(after).ok_or(StoreError::InvalidCursor)?;
                Some(HashMap::from([
                    (PK.to_string(), s(reservation_pk(id))),
                    ("open_owner".to_string(), s(owner)),
                    ("hold_until_ms".to_string(), n(hold_ms)),
                ]))
            }
        };
        let (items, more) = self
            .query_reservations(
                OWNER_INDEX,
                "open_owner = :owner AND hold_until_ms > :now",
                vec![(":owner", s(owner)), (":now", n(millis(now)))],
                limit,
                start,
            )
            .await?;
        let next = if more {
            items.last().map(listing_key)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn end(
        &self,
        reservation: &Reservation,
        ending: Ending,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ProductError> {
        let ended = reservation.ended(ending, now);
        let record = reservation_pk(&reservation.reservation_id);
        let hold = match ending {
            Ending::Expire => "hold_until_ms <= :now_ms",
            Ending::Release | Ending::Confirm => "hold_until_ms > :now_ms",
        };
        let purge_at = (now + chrono::Duration::days(ENDED_RETENTION_DAYS)).timestamp();
        let product = product_pk(&reservation.product_id);
        let mut product_values = vec![(":one", n(1)), (":now", s(now.to_rfc3339()))];
        let (product_update, product_condition) = if ending.returns_stock() {
            let ceiling = u64::from(u32::MAX) - u64::from(reservation.quantity);
            product_values.push((":q", n(reservation.quantity)));
            product_values.push((":ceiling", n(ceiling)));
            (
                "SET stock = stock + :q, open_reservations = open_reservations - :one, \
                 version = version + :one, updated_at = :now",
                "attribute_exists(pk) AND stock <= :ceiling",
            )
        } else {
            (
                "SET open_reservations = open_reservations - :one, version = version + :one, \
                 updated_at = :now",
                "attribute_exists(pk)",
            )
        };
        let outcome = self
            .reservations
            .transaction()
            .update(
                &record,
                "SET #status = :ended, ended_at = :now, purge_at = :purge \
                 REMOVE open_shard, open_owner",
                &format!("#status = :open AND {hold}"),
                &[("#status", "status")],
                &[
                    (":ended", s(ending.status().as_str())),
                    (":open", s(ReservationStatus::Open.as_str())),
                    (":now", s(now.to_rfc3339())),
                    (":now_ms", n(millis(now))),
                    (":purge", n(purge_at)),
                ],
            )
            .on(&self.products)
            .update(
                &product,
                product_update,
                product_condition,
                &[],
                &product_values,
            )
            .commit()
            .await?;
        let Err(cancelled) = outcome else {
            return Ok(ended);
        };
        match (
            cancelled.failed_item(&record),
            cancelled.failed_item(&product),
        ) {
            (Some(None), _) => Err(ProductError::NotFound),
            (Some(Some(stored)), _) => {
                let stored = reservation_from_item(stored)?;
                stored.may_end(ending, now)?;
                // Its condition failed on a state that allows it: it changed in between.
                Err(ProductError::ReservationEnded(stored.status_at(now)))
            }
            (None, Some(Some(_))) => Err(ProductError::StockOverflow),
            _ if cancelled.conflict() => Err(ProductError::Contended),
            _ => Err(cancelled.unexpected("end reservation").into()),
        }
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Reservation>, StoreError> {
        let mut due = Vec::new();
        for shard in HOLD_SHARDS {
            if due.len() >= limit {
                break;
            }
            let (items, _) = self
                .query_reservations(
                    HOLD_INDEX,
                    "open_shard = :shard AND hold_until_ms <= :now",
                    vec![(":shard", s(shard)), (":now", n(millis(now)))],
                    limit - due.len(),
                    None,
                )
                .await?;
            due.extend(items);
        }
        Ok(due)
    }
}

/// The item a refused `UpdateItem` found (`Some(None)`: there was none), or `None` when it
/// failed for another reason.
fn condition_failure<R>(
    error: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, R>,
) -> Option<Option<&Item>> {
    match error {
        aws_sdk_dynamodb::error::SdkError::ServiceError(service) => match service.err() {
            UpdateItemError::ConditionalCheckFailedException(failed) => {
                Some(failed.item().filter(|item| !item.is_empty()))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use service_core::capacity::{consistent_read_units, item_bytes, write_units};

    use super::*;

    fn product(open_reservations: u32, stock: u32) -> Product {
        let now = Utc::now();
        Product {
            id: uuid::Uuid::new_v4().to_string(),
            sku: "Z".repeat(crate::domain::MAX_SKU_CHARS),
            name: "N".repeat(crate::domain::MAX_NAME_CHARS),
            price_cents: u64::MAX,
            currency: "EUR".into(),
            stock,
            category: Some("c".repeat(crate::domain::MAX_CATEGORY_CHARS)),
            open_reservations,
            created_at: now,
            updated_at: now,
            version: u64::MAX,
        }
    }

    fn reservation() -> Reservation {
        let now = Utc::now();
        Reservation {
            reservation_id: uuid::Uuid::new_v4().to_string(),
            product_id: uuid::Uuid::new_v4().to_string(),
            owner: format!("jwt:{}", "o".repeat(128)),
            quantity: crate::domain::MAX_RESERVATION_QUANTITY,
            status: ReservationStatus::Open,
            created_at: now,
            hold_until: now + chrono::Duration::seconds(900),
            ended_at: None,
        }
    }

    #[test]
    fn the_product_item_does_not_grow_with_its_reservations() {
        let size = |open, stock| item_bytes(&product_item(&product(open, stock)).unwrap());
        // By DynamoDB's rules 0 and 10,000 are the same size (one significant digit each).
        assert_eq!(size(0, 10_000), size(10_000, 0));
        // The largest product there can be, with any count, stays within one write unit.
        let largest = size(u32::MAX, u32::MAX);
        assert!(largest < 1024, "{largest} bytes");
        assert_eq!(write_units(largest), 1);
        assert_eq!(consistent_read_units(largest), 1);
    }

    #[test]
    fn a_reservation_item_is_small_open_or_ended() {
        let open = reservation();
        let ended = open.ended(Ending::Confirm, Utc::now());
        for reservation in [&open, &ended] {
            let bytes = item_bytes(&reservation_item(reservation));
            assert!(bytes < 1024, "{bytes} bytes");
        }
    }

    #[test]
    fn reservation_items_round_trip_and_open_ones_carry_both_index_keys() {
        let open = reservation();
        let item = reservation_item(&open);
        let back = reservation_from_item(&item).unwrap();
        // Stored to the millisecond.
        assert_eq!(
            back.hold_until.timestamp_millis(),
            open.hold_until.timestamp_millis()
        );
        assert_eq!(
            Reservation {
                hold_until: open.hold_until,
                created_at: open.created_at,
                ..back
            },
            open
        );
        assert_eq!(string_attr(&item, "open_owner"), Some(open.owner.as_str()));
        assert_eq!(
            string_attr(&item, "open_shard"),
            Some(&open.reservation_id[..1])
        );
        let ended = reservation_item(&open.ended(Ending::Release, Utc::now()));
        assert!(!ended.contains_key("open_owner") && !ended.contains_key("open_shard"));
        let mut broken = item.clone();
        broken.insert("status".into(), s("lost"));
        assert!(reservation_from_item(&broken).is_err());
    }
}

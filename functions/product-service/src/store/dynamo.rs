//! The products table in DynamoDB.
//!
//! Items under the partition key `pk`:
//! - `PRODUCT#<id>`: the product, with `open_reservations` and a `reservations` map
//!   (`reservation id -> {quantity, created_at}`);
//! - `SKU#<sku>`: `{product_id}`, the uniqueness claim on a SKU.
//!
//! Keeping reservations on the product item makes reserve and release single-item conditional
//! updates: the stock decrement and the reservation record are one atomic write, and
//! `ReturnValues` gives the exact stock left after *this* reservation. The item size limit is
//! why open reservations per product are capped.
//!
//! The sparse GSI `by-category` (`category`, `pk`) serves `?category=` listings.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use service_core::dynamo::{from_item, key, sdk_failure, string_attr, to_item, Item, Table, PK};
use service_core::paging::Page;
use service_core::StoreError;

use super::ProductStore;
use crate::domain::{Product, ProductError, MAX_OPEN_RESERVATIONS};

const PRODUCT_PREFIX: &str = "PRODUCT#";
const SKU_PREFIX: &str = "SKU#";
/// The attribute of a SKU claim that names the product holding it.
const CLAIM_OWNER: &str = "product_id";
pub const CATEGORY_INDEX: &str = "by-category";

fn product_pk(id: &str) -> String {
    format!("{PRODUCT_PREFIX}{id}")
}

fn sku_pk(sku: &str) -> String {
    format!("{SKU_PREFIX}{sku}")
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

#[derive(Clone)]
pub struct DynamoProductStore {
    table: Table,
}

impl DynamoProductStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoProductStore {
            table: Table::new(client, table),
        }
    }

    pub fn from_table(table: Table) -> Self {
        DynamoProductStore { table }
    }

    fn client(&self) -> &Client {
        &self.table.client
    }

    async fn get_raw(&self, id: &str) -> Result<Option<Item>, StoreError> {
        self.table.get(product_pk(id)).await
    }
}

fn is_condition_failure<R>(error: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, R>) -> bool {
    matches!(
        error,
        aws_sdk_dynamodb::error::SdkError::ServiceError(service)
            if matches!(service.err(), UpdateItemError::ConditionalCheckFailedException(_))
    )
}

/// How often a reservation whose condition failed for a reason that vanished on re-read (the
/// product changed in between) is tried again.
const RESERVE_ATTEMPTS: usize = 3;

#[async_trait]
impl ProductStore for DynamoProductStore {
    async fn create(&self, product: &Product) -> Result<(), ProductError> {
        let mut item = to_item(product, product_pk(&product.id))?;
        item.insert("reservations".into(), AttributeValue::M(HashMap::new()));
        let claim = sku_pk(&product.sku);
        let outcome = self
            .table
            .transaction()
            .put(item, "attribute_not_exists(pk)", &[])
            .claim(&claim, CLAIM_OWNER, &product.id)
            .commit()
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.condition_failed_on(&claim) => Err(ProductError::SkuTaken),
            Err(cancelled) => Err(cancelled.unexpected("create product").into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        self.get_raw(id).await?.map(from_item).transpose()
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
                self.table.scan_prefix(PRODUCT_PREFIX, limit, after).await?
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
                    .table_name(&self.table.name)
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

    async fn replace(&self, current: &Product, next: &Product) -> Result<(), ProductError> {
        let mut update = String::from(
            "SET #name = :name, price_cents = :price, currency = :currency, stock = :stock, \
             updated_at = :updated, version = :next_version",
        );
        let mut request = self
            .client()
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key(product_pk(&current.id))))
            .condition_expression("attribute_exists(pk) AND version = :version")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(&next.name))
            .expression_attribute_values(":price", n(next.price_cents))
            .expression_attribute_values(":currency", s(&next.currency))
            .expression_attribute_values(":stock", n(next.stock))
            .expression_attribute_values(":updated", s(next.updated_at.to_rfc3339()))
            .expression_attribute_values(":next_version", n(next.version))
            .expression_attribute_values(":version", n(current.version));
        match &next.category {
            Some(category) => {
                update.push_str(", category = :category");
                request = request.expression_attribute_values(":category", s(category));
            }
            None => update.push_str(" REMOVE category"),
        }
        match request.update_expression(update).send().await {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Err(StoreError::VersionMismatch.into()),
            Err(error) => Err(sdk_failure("UpdateItem", error).into()),
        }
    }

    async fn delete(&self, current: &Product) -> Result<(), ProductError> {
        let product = product_pk(&current.id);
        let outcome = self
            .table
            .transaction()
            .delete(
                &product,
                "version = :version AND open_reservations = :zero",
                &[(":version", n(current.version)), (":zero", n(0))],
            )
            .release(sku_pk(&current.sku), CLAIM_OWNER, &current.id)
            .commit()
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.condition_failed_on(&product) => {
                // Which half of the condition failed, from a fresh read: still this version
                // with reservations open, or changed since (a reservation taken since the read
                // also moves the version: the caller re-reads).
                let stored = self.get_raw(&current.id).await?;
                let same_version = stored
                    .as_ref()
                    .and_then(|item| number_attr(item, "version"))
                    == Some(current.version);
                let open = stored
                    .as_ref()
                    .and_then(|item| number_attr(item, "open_reservations"))
                    .unwrap_or(0);
                if same_version && open > 0 {
                    Err(ProductError::HasOpenReservations)
                } else {
                    Err(StoreError::VersionMismatch.into())
                }
            }
            Err(cancelled) => Err(cancelled.unexpected("delete product").into()),
        }
    }

    async fn reserve(
        &self,
        product_id: &str,
        reservation_id: &str,
        quantity: u32,
    ) -> Result<u32, ProductError> {
        let now = chrono::Utc::now().to_rfc3339();
        let record = AttributeValue::M(HashMap::from([
            ("quantity".to_string(), n(quantity)),
            ("created_at".to_string(), s(&now)),
        ]));
        for _ in 0..RESERVE_ATTEMPTS {
            let result = self
                .client()
                .update_item()
                .table_name(&self.table.name)
                .set_key(Some(key(product_pk(product_id))))
                .update_expression(
                    "SET stock = stock - :q, open_reservations = open_reservations + :one, \
                     version = version + :one, updated_at = :now, reservations.#rid = :record",
                )
                .condition_expression(
                    "attribute_exists(pk) AND stock >= :q AND open_reservations < :max",
                )
                .expression_attribute_names("#rid", reservation_id)
                .expression_attribute_values(":q", n(quantity))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", s(&now))
                .expression_attribute_values(":max", n(MAX_OPEN_RESERVATIONS))
                .expression_attribute_values(":record", record.clone())
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
            match result {
                Ok(output) => {
                    let remaining = output
                        .attributes
                        .as_ref()
                        .and_then(|a| number_attr(a, "stock"))
                        .ok_or_else(|| StoreError::Internal("reserve returned no stock".into()))?;
                    return u32::try_from(remaining).map_err(|_| {
                        StoreError::Internal(format!("stock out of range: {remaining}")).into()
                    });
                }
                Err(error) if is_condition_failure(&error) => {
                    // Find out which part of the condition failed, from a fresh read.
                    let Some(item) = self.get_raw(product_id).await? else {
                        return Err(ProductError::NotFound);
                    };
                    if number_attr(&item, "stock").unwrap_or(0) < u64::from(quantity) {
                        return Err(ProductError::InsufficientStock);
                    }
                    if number_attr(&item, "open_reservations").unwrap_or(0)
                        >= u64::from(MAX_OPEN_RESERVATIONS)
                    {
                        return Err(ProductError::TooManyReservations);
                    }
                    // The product changed between the write and the read; try again.
                }
                Err(error) => return Err(sdk_failure("UpdateItem", error).into()),
            }
        }
        tracing::warn!(%product_id, "too many concurrent reservations");
        Err(ProductError::Contended)
    }

    async fn release(&self, product_id: &str, reservation_id: &str) -> Result<(), ProductError> {
        let item = self
            .get_raw(product_id)
            .await?
            .ok_or(ProductError::NotFound)?;
        let quantity = item
            .get("reservations")
            .and_then(|r| r.as_m().ok())
            .and_then(|r| r.get(reservation_id))
            .and_then(|r| r.as_m().ok())
            .and_then(|r| number_attr(r, "quantity"))
            .ok_or(ProductError::NotFound)?;
        let stock_ceiling = u64::from(u32::MAX) - quantity;
        let result = self
            .client()
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key(product_pk(product_id))))
            .update_expression(
                "SET stock = stock + :q, open_reservations = open_reservations - :one, \
                 version = version + :one, updated_at = :now REMOVE reservations.#rid",
            )
            .condition_expression("attribute_exists(reservations.#rid) AND stock <= :ceiling")
            .expression_attribute_names("#rid", reservation_id)
            .expression_attribute_values(":q", n(quantity))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ceiling", n(stock_ceiling))
            .expression_attribute_values(":now", s(chrono::Utc::now().to_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => {
                let still_there = self
                    .get_raw(product_id)
                    .await?
                    .and_then(|item| item.get("reservations").cloned())
                    .and_then(|r| r.as_m().ok().map(|m| m.contains_key(reservation_id)))
                    .unwrap_or(false);
                if still_there {
                    Err(ProductError::StockOverflow)
                } else {
                    // Released by a concurrent request: this one must not return stock again.
                    Err(ProductError::NotFound)
                }
            }
            Err(error) => Err(sdk_failure("UpdateItem", error).into()),
        }
    }
}

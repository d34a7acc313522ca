//! The DynamoDB side both stores share: the client built once per cold start, a [`Table`] with
//! the few operations the stores use (consistent reads, prefix scans, transactions), uniqueness
//! claims, and the classification of SDK failures into "unreachable right now" (503) and
//! "something is wrong" (500).
//!
//! Timeouts are short on purpose: a function whose table is unreachable answers a JSON error
//! within a few seconds instead of hanging until the Lambda timeout.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;

use crate::paging::Page;
use crate::StoreError;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Name of the partition key attribute in every table of this project.
pub const PK: &str = "pk";

/// Error codes DynamoDB answers when a table or account is over its throughput: the request
/// may succeed later, so it is "unavailable", not "broken".
const THROTTLING_CODES: [&str; 3] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// How many times a write cancelled by a conflicting transaction is retried.
pub const CONFLICT_RETRIES: usize = 8;

/// Builds the client from the standard AWS configuration chain. `AWS_ENDPOINT_URL` (set by the
/// local stack) points it at moto or LocalStack; on AWS it is unset. Every call is a span
/// ([`crate::telemetry::DynamoSpans`]).
pub async fn client_from_env() -> Client {
    let config = aws_config::from_env()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    let config = aws_sdk_dynamodb::config::Builder::from(&config)
        .interceptor(crate::telemetry::DynamoSpans)
        .build();
    Client::from_conf(config)
}

/// Maps an SDK failure that is not a modelled business outcome to a [`StoreError`]:
/// timeouts, connection failures and throttling (by the error's code) are `Unavailable`.
pub fn sdk_failure<E, R>(operation: &str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let detail = format!(
        "{operation}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&error)
    );
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable(detail),
        SdkError::ServiceError(service) if is_throttling(service.err().code()) => {
            StoreError::Unavailable(detail)
        }
        _ => StoreError::Internal(detail),
    }
}

fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|code| THROTTLING_CODES.contains(&code))
}

/// The key map for a partition key value.
pub fn key(pk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), AttributeValue::S(pk.into()))])
}

/// Reads a string attribute.
pub fn string_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Converts a stored item into a domain value; a malformed item is an internal error.
pub fn from_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Internal(format!("malformed item: {e}")))
}

/// Converts a domain value into an item under partition key `pk`.
pub fn to_item<T: serde::Serialize>(value: &T, pk: impl Into<String>) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Internal(format!("encode item: {e}")))?;
    item.insert(PK.to_string(), AttributeValue::S(pk.into()));
    Ok(item)
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Internal(format!("request build: {error}"))
}

/// One of the services' tables.
#[derive(Clone, Debug)]
pub struct Table {
    pub client: Client,
    pub name: String,
}

impl Table {
    pub fn new(client: Client, name: impl Into<String>) -> Table {
        Table {
            client,
            name: name.into(),
        }
    }

    /// Another table on the same client (a service with more than one table).
    pub fn with_name(&self, name: impl Into<String>) -> Table {
        Table::new(self.client.clone(), name)
    }

    /// The item under `pk`, read strongly consistent.
    pub async fn get(&self, pk: impl Into<String>) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_failure("GetItem", e))?;
        Ok(output.item)
    }

    /// Scans for items whose key starts with `prefix`, strongly consistent, returning at most
    /// `limit` of them and the key to continue after. DynamoDB applies `Limit` before the
    /// filter, so this keeps scanning until it has `limit` items or the table ends; it never
    /// asks for more than it still needs, so no item is skipped between pages.
    pub async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page<Item>, StoreError> {
        let mut items = Vec::with_capacity(limit);
        let mut start = after.map(key);
        loop {
            let remaining = i32::try_from(limit - items.len()).unwrap_or(i32::MAX);
            let output = self
                .client
                .scan()
                .table_name(&self.name)
                .filter_expression("begins_with(#pk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string()))
                .consistent_read(true)
                .limit(remaining)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_failure("Scan", e))?;
            items.extend(output.items.unwrap_or_default());
            start = output.last_evaluated_key;
            if items.len() >= limit || start.is_none() {
                break;
            }
        }
        let next = start.and_then(|k| string_attr(&k, PK).map(str::to_string));
        Ok(Page { items, next })
    }

    /// A transaction whose actions go to this table (until [`Transaction::on`] names another).
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            table: self,
            actions: Vec::new(),
            error: None,
        }
    }
}

/// A `TransactWriteItems` call whose actions are known by the item each one writes, so a
/// cancellation is read as "the condition on this item failed", never by position. Every
/// action asks for the item as it was when its condition failed
/// (`ReturnValuesOnConditionCheckFailure`), so a refusal can say why without a second read.
pub struct Transaction<'a> {
    /// The table the next action goes to.
    table: &'a Table,
    /// The partition key each action touches, and the action.
    actions: Vec<(String, TransactWriteItem)>,
    /// A request that could not be built (a bug), reported when the transaction runs.
    error: Option<StoreError>,
}

/// Condition values, as `(":name", value)`.
pub type Values<'v> = &'v [(&'v str, AttributeValue)];

/// Attribute-name placeholders, as `("#name", "attribute")`.
pub type Names<'v> = &'v [(&'v str, &'v str)];

fn values_map(values: Values<'_>) -> Option<HashMap<String, AttributeValue>> {
    (!values.is_empty()).then(|| {
        values
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    })
}

fn names_map(names: Names<'_>) -> Option<HashMap<String, String>> {
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|(placeholder, name)| (placeholder.to_string(), name.to_string()))
            .collect()
    })
}

impl<'a> Transaction<'a> {
    /// The actions after this one go to `table` (a transaction may span a service's tables).
    pub fn on(mut self, table: &'a Table) -> Self {
        self.table = table;
        self
    }

    fn push(
        mut self,
        pk: String,
        action: Result<TransactWriteItem, aws_sdk_dynamodb::error::BuildError>,
    ) -> Self {
        match action {
            Ok(action) => self.actions.push((pk, action)),
            Err(error) => {
                self.error.get_or_insert(build_error(error));
            }
        }
        self
    }

    /// Puts `item` (which carries its partition key) if `condition` holds.
    pub fn put(self, item: Item, condition: &str, values: Values<'_>) -> Self {
        let pk = string_attr(&item, PK).unwrap_or_default().to_string();
        let put = Put::builder()
            .table_name(&self.table.name)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values_map(values))
            .return_values_on_condition_check_failure(ALL_OLD)
            .build()
            .map(|put| TransactWriteItem::builder().put(put).build());
        self.push(pk, put)
    }

    /// Applies `update` to the item under `pk` if `condition` holds.
    pub fn update(
        self,
        pk: impl Into<String>,
        update: &str,
        condition: &str,
        names: Names<'_>,
        values: Values<'_>,
    ) -> Self {
        let pk = pk.into();
        let action = Update::builder()
            .table_name(&self.table.name)
            .set_key(Some(key(pk.clone())))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names_map(names))
            .set_expression_attribute_values(values_map(values))
            .return_values_on_condition_check_failure(ALL_OLD)
            .build()
            .map(|update| TransactWriteItem::builder().update(update).build());
        self.push(pk, action)
    }

    /// Deletes the item under `pk` if `condition` holds.
    pub fn delete(self, pk: impl Into<String>, condition: &str, values: Values<'_>) -> Self {
        let pk = pk.into();
        let delete = Delete::builder()
            .table_name(&self.table.name)
            .set_key(Some(key(pk.clone())))
            .condition_expression(condition)
            .set_expression_attribute_values(values_map(values))
            .return_values_on_condition_check_failure(ALL_OLD)
            .build()
            .map(|delete| TransactWriteItem::builder().delete(delete).build());
        self.push(pk, delete)
    }

    /// Claims `pk` for `owner` (a uniqueness claim: `{pk, <owner_attribute>: owner}`), only if
    /// nobody holds it.
    pub fn claim(self, pk: impl Into<String>, owner_attribute: &str, owner: &str) -> Self {
        let mut item = key(pk);
        item.insert(
            owner_attribute.to_string(),
            AttributeValue::S(owner.to_string()),
        );
        self.put(item, "attribute_not_exists(pk)", &[])
    }

    /// Frees the claim on `pk`, only if `owner` still holds it.
    pub fn release(self, pk: impl Into<String>, owner_attribute: &str, owner: &str) -> Self {
        let condition = format!("{owner_attribute} = :owner");
        self.delete(
            pk,
            &condition,
            &[(":owner", AttributeValue::S(owner.to_string()))],
        )
    }

    /// Runs the transaction, retrying (after a short, growing, random pause) while DynamoDB
    /// cancels it for a conflict with another transaction on the same items. `Ok(Err(cancelled))`
    /// when it was cancelled for anything else, or when the conflicts outlasted the retries
    /// ([`Cancelled::conflict`]).
    pub async fn commit(self) -> Result<Result<(), Cancelled>, StoreError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let (keys, actions): (Vec<String>, Vec<TransactWriteItem>) =
            self.actions.into_iter().unzip();
        let client = &self.table.client;
        let mut attempt = 0;
        loop {
            let result = client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(Ok(())),
                Err(error) => error,
            };
            let cancelled = match Cancelled::from_error(&keys, &error) {
                Some(cancelled) => cancelled,
                None => return Err(sdk_failure("TransactWriteItems", error)),
            };
            if cancelled.conflict() && attempt < CONFLICT_RETRIES {
                attempt += 1;
                tokio::time::sleep(conflict_pause(attempt)).await;
                continue;
            }
            return Ok(Err(cancelled));
        }
    }
}

/// The pause before retry `attempt` of a transaction that lost to another on the same items:
/// "full jitter" (uniform up to a ceiling that doubles from 10 ms to 640 ms), so writers that
/// collided once do not collide again in step.
fn conflict_pause(attempt: usize) -> Duration {
    let ceiling = 10u64 << attempt.min(6);
    Duration::from_millis(fastrand::u64(1..=ceiling))
}

const ALL_OLD: ReturnValuesOnConditionCheckFailure = ReturnValuesOnConditionCheckFailure::AllOld;

/// Why DynamoDB cancelled a transaction: for each item the transaction touched, a reason code
/// (`None` for those that were fine, `ConditionalCheckFailed`, `TransactionConflict`, ...) and,
/// when its condition failed, the item as it was then (absent if there was none).
#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
struct Reason {
    pk: String,
    code: String,
    item: Option<Item>,
}

impl Cancelled {
    /// DynamoDB answers one reason per action, in the order the actions were sent: paired
    /// here with the item each action touched.
    fn from_error<R>(
        keys: &[String],
        error: &SdkError<TransactWriteItemsError, R>,
    ) -> Option<Self> {
        let SdkError::ServiceError(service) = error else {
            return None;
        };
        let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() else {
            return None;
        };
        let reasons = keys
            .iter()
            .zip(cancelled.cancellation_reasons())
            .map(|(pk, reason)| Reason {
                pk: pk.clone(),
                code: reason.code().unwrap_or("None").to_string(),
                item: reason.item().cloned().filter(|item| !item.is_empty()),
            })
            .collect();
        Some(Cancelled { reasons })
    }

    /// A cancellation with these `(pk, code, item)` reasons (what the in-memory stand-ins and
    /// tests build).
    pub fn with_reasons(reasons: Vec<(String, String, Option<Item>)>) -> Cancelled {
        Cancelled {
            reasons: reasons
                .into_iter()
                .map(|(pk, code, item)| Reason { pk, code, item })
                .collect(),
        }
    }

    /// True when the condition on the item under `pk` failed.
    pub fn condition_failed_on(&self, pk: &str) -> bool {
        self.reasons
            .iter()
            .any(|reason| reason.pk == pk && reason.code == "ConditionalCheckFailed")
    }

    /// The item under `pk` as it was when its condition failed: `Some(None)` when there was no
    /// such item, `None` when its condition did not fail.
    pub fn failed_item(&self, pk: &str) -> Option<Option<&Item>> {
        self.reasons
            .iter()
            .find(|reason| reason.pk == pk && reason.code == "ConditionalCheckFailed")
            .map(|reason| reason.item.as_ref())
    }

    /// True when another transaction touched the same items (worth trying again, and what
    /// is left when the retries ran out).
    pub fn conflict(&self) -> bool {
        self.reasons
            .iter()
            .any(|reason| reason.code == "TransactionConflict")
    }

    /// The cancellation as an internal error, for outcomes the caller did not expect.
    pub fn unexpected(&self, operation: &str) -> StoreError {
        let codes: Vec<(&str, &str)> = self
            .reasons
            .iter()
            .map(|reason| (reason.pk.as_str(), reason.code.as_str()))
            .collect();
        StoreError::Internal(format!("{operation} cancelled: {codes:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_failures_are_unavailable_or_internal() {
        use aws_sdk_dynamodb::error::ErrorMetadata;
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;

        let timeout = SdkError::<GetItemError, ()>::timeout_error(std::io::Error::other("slow"));
        assert!(matches!(
            sdk_failure("GetItem", timeout),
            StoreError::Unavailable(_)
        ));
        let throttled = GetItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .meta(
                    ErrorMetadata::builder()
                        .code("ProvisionedThroughputExceededException")
                        .build(),
                )
                .build(),
        );
        let throttled = SdkError::service_error(throttled, ());
        assert!(matches!(
            sdk_failure("GetItem", throttled),
            StoreError::Unavailable(_)
        ));
        let broken =
            SdkError::<GetItemError, ()>::construction_failure(std::io::Error::other("bug"));
        assert!(matches!(
            sdk_failure("GetItem", broken),
            StoreError::Internal(_)
        ));
        // And what a client sees of the unavailable kind: 503 with Retry-After.
        let response =
            crate::ApiError::from(StoreError::Unavailable("down".into())).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
    }

    #[test]
    fn throttling_is_read_from_the_error_code() {
        assert!(is_throttling(Some("ThrottlingException")));
        assert!(is_throttling(Some(
            "ProvisionedThroughputExceededException"
        )));
        assert!(!is_throttling(Some("ValidationException")));
        assert!(!is_throttling(None));
    }

    #[test]
    fn cancellations_name_the_item_whose_condition_failed() {
        let claim = key("EMAIL#a@b.co");
        let cancelled = Cancelled::with_reasons(vec![
            ("USER#1".into(), "None".into(), None),
            (
                "EMAIL#a@b.co".into(),
                "ConditionalCheckFailed".into(),
                Some(claim.clone()),
            ),
        ]);
        assert!(cancelled.condition_failed_on("EMAIL#a@b.co"));
        assert!(!cancelled.condition_failed_on("USER#1"));
        assert_eq!(cancelled.failed_item("EMAIL#a@b.co"), Some(Some(&claim)));
        assert_eq!(cancelled.failed_item("USER#1"), None);
        assert!(!cancelled.conflict());
        let lost =
            Cancelled::with_reasons(vec![("USER#1".into(), "TransactionConflict".into(), None)]);
        assert!(lost.conflict());
    }

    #[test]
    fn conflict_pauses_are_jittered_under_a_doubling_ceiling() {
        for attempt in 1..=CONFLICT_RETRIES {
            let ceiling = Duration::from_millis(10u64 << attempt.min(6));
            for _ in 0..50 {
                let pause = conflict_pause(attempt);
                assert!(
                    pause > Duration::ZERO && pause <= ceiling,
                    "{attempt}: {pause:?}"
                );
            }
        }
    }
}

//! The DynamoDB client, built once per cold start, and the classification of SDK failures into
//! "the database is unreachable right now" (503) and "something is wrong" (500).
//!
//! Timeouts are short on purpose: a function whose table is unreachable answers a JSON error
//! within a few seconds instead of hanging until the Lambda timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::SdkError;

use crate::ApiError;

/// Reads a required environment variable, naming it in the error when it is missing.
pub fn required_env(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("environment variable {name} must be set")),
    }
}

/// Builds the client from the standard AWS configuration chain. `AWS_ENDPOINT_URL` (set by the
/// local stack) points it at moto or LocalStack; on AWS it is unset.
pub async fn client_from_env() -> aws_sdk_dynamodb::Client {
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
    aws_sdk_dynamodb::Client::new(&config)
}

/// Maps an SDK failure that is not a modelled business outcome to an [`ApiError`].
pub fn sdk_failure<E, R>(operation: &str, error: SdkError<E, R>) -> ApiError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let detail = format!(
        "{operation}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&error)
    );
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ApiError::Unavailable(detail),
        SdkError::ServiceError(ref service) if is_throttling(service.raw()) => {
            ApiError::Unavailable(detail)
        }
        _ => ApiError::Internal(detail),
    }
}

fn is_throttling<R: std::fmt::Debug>(raw: &R) -> bool {
    let text = format!("{raw:?}");
    text.contains("ThrottlingException") || text.contains("ProvisionedThroughputExceeded")
}

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::paging::Page;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Name of the partition key attribute in every table of this project.
pub const PK: &str = "pk";

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

/// How a transaction ended when DynamoDB cancelled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// Cancelled: one reason code per action, in order (`"None"` for actions that were fine,
    /// `"ConditionalCheckFailed"`, `"TransactionConflict"`, ...).
    Cancelled(Vec<String>),
    /// Any other failure, already classified.
    Failed(ApiError),
}

impl TransactionOutcome {
    /// Classifies a `TransactWriteItems` error.
    pub fn from_error<R: std::fmt::Debug>(error: SdkError<TransactWriteItemsError, R>) -> Self {
        if let SdkError::ServiceError(service) = &error {
            if let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err()
            {
                let codes = cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|reason| reason.code().unwrap_or("None").to_string())
                    .collect();
                return TransactionOutcome::Cancelled(codes);
            }
        }
        TransactionOutcome::Failed(sdk_failure("TransactWriteItems", error))
    }
}

/// True when the action at `index` failed its condition.
pub fn condition_failed_at(codes: &[String], index: usize) -> bool {
    codes
        .get(index)
        .is_some_and(|code| code == "ConditionalCheckFailed")
}

/// True when DynamoDB cancelled because another transaction touched the same items: the caller
/// may retry.
pub fn is_conflict(codes: &[String]) -> bool {
    codes.iter().any(|code| code == "TransactionConflict")
}

/// How many times a write cancelled by a conflicting transaction is retried.
pub const CONFLICT_RETRIES: usize = 8;

/// A short, growing pause between conflict retries.
pub async fn conflict_backoff(attempt: usize) {
    let millis = 5u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// Runs a transaction, retrying (with a short backoff) while DynamoDB cancels it for a conflict
/// with another transaction. `Ok(Err(codes))` when it was cancelled for anything else: one
/// reason code per action, for the caller to map (`ConditionalCheckFailed` at index i, ...).
pub async fn transact(
    client: &aws_sdk_dynamodb::Client,
    actions: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
) -> Result<Result<(), Vec<String>>, ApiError> {
    let mut attempt = 0;
    loop {
        let result = client
            .transact_write_items()
            .set_transact_items(Some(actions.clone()))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(Ok(())),
            Err(error) => match TransactionOutcome::from_error(error) {
                TransactionOutcome::Cancelled(codes)
                    if is_conflict(&codes) && attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    conflict_backoff(attempt).await;
                }
                TransactionOutcome::Cancelled(codes) => return Ok(Err(codes)),
                TransactionOutcome::Failed(error) => return Err(error),
            },
        }
    }
}

/// Scans for items whose key starts with `prefix`, strongly consistent, returning at most
/// `limit` of them and the key to continue after. DynamoDB applies `Limit` before the filter, so
/// this keeps scanning until it has `limit` items or the table ends; it never asks for more than
/// it still needs, so no item is skipped between pages.
pub async fn scan_prefix(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    prefix: &str,
    limit: usize,
    after: Option<&str>,
) -> Result<Page<Item>, ApiError> {
    let mut items = Vec::with_capacity(limit);
    let mut start = after.map(key);
    loop {
        let remaining = i32::try_from(limit - items.len()).unwrap_or(i32::MAX);
        let output = client
            .scan()
            .table_name(table)
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

/// Converts a stored item into a domain value; a malformed item is an internal error.
pub fn from_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, ApiError> {
    serde_dynamo::from_item(item).map_err(|e| ApiError::Internal(format!("malformed item: {e}")))
}

/// Converts a domain value into an item under partition key `pk`.
pub fn to_item<T: serde::Serialize>(value: &T, pk: impl Into<String>) -> Result<Item, ApiError> {
    let mut item: Item = serde_dynamo::to_item(value)
        .map_err(|e| ApiError::Internal(format!("encode item: {e}")))?;
    item.insert(PK.to_string(), AttributeValue::S(pk.into()));
    Ok(item)
}

/// Turns an SDK builder error (a missing required field: a bug) into an internal error.
pub fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> ApiError {
    ApiError::Internal(format!("request build: {error}"))
}

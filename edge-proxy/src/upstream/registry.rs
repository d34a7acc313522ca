//! The discovery registry: a DynamoDB table (`RegistryTable` in template.yaml) of
//! `{service, url, weight, expires_at}` items. Instances or deploy scripts register and renew
//! themselves; entries whose `expires_at` (epoch seconds, also the table's TTL attribute) has
//! passed are ignored at once, whether or not DynamoDB has deleted them yet.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::config::UpstreamUrl;
use crate::error::Error;

/// One registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub service: String,
    pub url: String,
    pub weight: u32,
    /// Epoch seconds after which the entry no longer counts.
    pub expires_at: i64,
}

impl Registration {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// Seconds since the epoch.
pub fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where discovery reads registrations from.
#[async_trait]
pub trait RegistrySource: Send + Sync {
    /// Every registration of `service` (live or not).
    async fn registrations(&self, service: &str) -> Result<Vec<Registration>, Error>;
}

/// The registry table.
#[derive(Clone)]
pub struct DynamoRegistry {
    client: Client,
    table: String,
}

impl DynamoRegistry {
    /// Uses the standard AWS configuration chain (`AWS_ENDPOINT_URL` locally), with short
    /// timeouts so an unreachable registry fails fast and the proxy keeps its last good set.
    pub async fn from_env(table: impl Into<String>) -> DynamoRegistry {
        let config = aws_config::from_env()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(3))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .load()
            .await;
        DynamoRegistry {
            client: Client::new(&config),
            table: table.into(),
        }
    }

    /// Registers (or renews) an instance for `ttl`.
    pub async fn register(
        &self,
        service: &str,
        url: &str,
        weight: u32,
        ttl: Duration,
    ) -> Result<Registration, Error> {
        UpstreamUrl::parse(url)?;
        if service.is_empty() || weight == 0 {
            return Err(Error::Registration(
                "service must be non-empty and weight at least 1",
            ));
        }
        let registration = Registration {
            service: service.to_string(),
            url: url.to_string(),
            weight,
            expires_at: epoch_now() + ttl.as_secs() as i64,
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .item("service", AttributeValue::S(registration.service.clone()))
            .item("url", AttributeValue::S(registration.url.clone()))
            .item("weight", AttributeValue::N(weight.to_string()))
            .item(
                "expires_at",
                AttributeValue::N(registration.expires_at.to_string()),
            )
            .send()
            .await
            .map_err(|e| Error::registry("register", e))?;
        Ok(registration)
    }

    pub async fn deregister(&self, service: &str, url: &str) -> Result<(), Error> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("service", AttributeValue::S(service.to_string()))
            .key("url", AttributeValue::S(url.to_string()))
            .send()
            .await
            .map_err(|e| Error::registry("deregister", e))?;
        Ok(())
    }

    /// Every registration of every service.
    pub async fn list(&self) -> Result<Vec<Registration>, Error> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::registry("list", e))?;
            out.extend(page.items().iter().filter_map(parse));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Option<Registration> {
    let s = |name: &str| item.get(name)?.as_s().ok().cloned();
    let n = |name: &str| item.get(name)?.as_n().ok()?.parse::<i64>().ok();
    Some(Registration {
        service: s("service")?,
        url: s("url")?,
        weight: n("weight")
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(1)
            .max(1),
        expires_at: n("expires_at")?,
    })
}

#[async_trait]
impl RegistrySource for DynamoRegistry {
    async fn registrations(&self, service: &str) -> Result<Vec<Registration>, Error> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("service = :service")
                .expression_attribute_values(":service", AttributeValue::S(service.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::registry("query", e))?;
            out.extend(page.items().iter().filter_map(parse));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

/// An in-memory registry for tests, with a switch to simulate an outage.
#[derive(Default)]
pub struct MemoryRegistry {
    entries: std::sync::Mutex<Vec<Registration>>,
    down: std::sync::atomic::AtomicBool,
}

impl MemoryRegistry {
    pub fn put(&self, registration: Registration) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !(e.service == registration.service && e.url == registration.url));
        entries.push(registration);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait]
impl RegistrySource for MemoryRegistry {
    async fn registrations(&self, service: &str) -> Result<Vec<Registration>, Error> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::registry(
                "query",
                std::io::Error::other("registry unreachable"),
            ));
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(entries
            .iter()
            .filter(|e| e.service == service)
            .cloned()
            .collect())
    }
}

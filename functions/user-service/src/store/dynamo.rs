//! The users table in DynamoDB.
//!
//! One table, two kinds of item under the partition key `pk`:
//! - `USER#<id>`: the user;
//! - `EMAIL#<lower-cased email>`: `{user_id}`, the uniqueness claim on an address.
//!
//! A GSI could not enforce uniqueness (it is eventually consistent), so every write that touches
//! an address is a transaction that puts/deletes the claim under a condition together with the
//! user item under its version condition: either all of it happens or none of it does.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use service_core::dynamo::{from_item, to_item, Table};
use service_core::paging::Page;
use service_core::StoreError;

use super::UserStore;
use crate::domain::{User, UserError};

const USER_PREFIX: &str = "USER#";
const EMAIL_PREFIX: &str = "EMAIL#";
/// The attribute of an email claim that names the user holding it.
const CLAIM_OWNER: &str = "user_id";

fn user_pk(id: &str) -> String {
    format!("{USER_PREFIX}{id}")
}

fn email_pk(user: &User) -> String {
    format!("{EMAIL_PREFIX}{}", user.email_key())
}

fn version(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[derive(Clone)]
pub struct DynamoUserStore {
    table: Table,
}

impl DynamoUserStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoUserStore {
            table: Table::new(client, table),
        }
    }

    pub fn from_table(table: Table) -> Self {
        DynamoUserStore { table }
    }
}

#[async_trait]
impl UserStore for DynamoUserStore {
    async fn create(&self, user: &User) -> Result<(), UserError> {
        let claim = email_pk(user);
        let outcome = self
            .table
            .transaction()
            .put(
                to_item(user, user_pk(&user.id))?,
                "attribute_not_exists(pk)",
                &[],
            )
            .claim(&claim, CLAIM_OWNER, &user.id)
            .commit()
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.condition_failed_on(&claim) => Err(UserError::EmailTaken),
            Err(cancelled) => Err(cancelled.unexpected("create user").into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.table
            .get(user_pk(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page<User>, UserError> {
        if after.is_some_and(|a| !a.starts_with(USER_PREFIX) && !a.starts_with(EMAIL_PREFIX)) {
            return Err(StoreError::InvalidCursor.into());
        }
        let page = self.table.scan_prefix(USER_PREFIX, limit, after).await?;
        Ok(page.try_map(from_item)?)
    }

    async fn replace(&self, current: &User, next: &User) -> Result<(), UserError> {
        let user = user_pk(&current.id);
        let mut transaction = self.table.transaction().put(
            to_item(next, &user)?,
            "version = :v",
            &[(":v", version(current.version))],
        );
        let (old_claim, new_claim) = (email_pk(current), email_pk(next));
        let moves = old_claim != new_claim;
        if moves {
            transaction = transaction
                .claim(&new_claim, CLAIM_OWNER, &next.id)
                .release(&old_claim, CLAIM_OWNER, &current.id);
        }
        match transaction.commit().await? {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.condition_failed_on(&user) => {
                Err(StoreError::VersionMismatch.into())
            }
            Err(cancelled) if moves && cancelled.condition_failed_on(&new_claim) => {
                Err(UserError::EmailTaken)
            }
            Err(cancelled) => Err(cancelled.unexpected("update user").into()),
        }
    }

    async fn delete(&self, current: &User) -> Result<(), UserError> {
        let user = user_pk(&current.id);
        let outcome = self
            .table
            .transaction()
            .delete(&user, "version = :v", &[(":v", version(current.version))])
            .release(email_pk(current), CLAIM_OWNER, &current.id)
            .commit()
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.condition_failed_on(&user) => {
                Err(StoreError::VersionMismatch.into())
            }
            Err(cancelled) => Err(cancelled.unexpected("delete user").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_kinds_apart() {
        assert_eq!(user_pk("1"), "USER#1");
        let now = chrono::Utc::now();
        let user = User {
            id: "1".into(),
            name: "A".into(),
            email: "A@B.co".into(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        assert_eq!(email_pk(&user), "EMAIL#a@b.co");
        assert_eq!(service_core::dynamo::PK, "pk");
    }
}

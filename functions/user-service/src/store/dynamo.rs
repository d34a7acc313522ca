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
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use service_core::dynamo::{
    build_error, condition_failed_at, from_item, key, scan_prefix, sdk_failure, to_item,
};
use service_core::paging::Page;
use service_core::ApiError;

use super::{email_taken, UserStore};
use crate::domain::User;

const USER_PREFIX: &str = "USER#";
const EMAIL_PREFIX: &str = "EMAIL#";

fn user_pk(id: &str) -> String {
    format!("{USER_PREFIX}{id}")
}

fn email_pk(email_key: &str) -> String {
    format!("{EMAIL_PREFIX}{email_key}")
}

#[derive(Clone)]
pub struct DynamoUserStore {
    client: Client,
    table: String,
}

impl DynamoUserStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoUserStore {
            client,
            table: table.into(),
        }
    }

    fn put_user(
        &self,
        user: &User,
        condition: &str,
        version: Option<u64>,
    ) -> Result<TransactWriteItem, ApiError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(user, user_pk(&user.id))?))
            .condition_expression(condition);
        if let Some(version) = version {
            put = put.expression_attribute_values(":v", AttributeValue::N(version.to_string()));
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_error)?)
            .build())
    }

    fn claim_email(&self, user: &User) -> Result<TransactWriteItem, ApiError> {
        let mut item = key(email_pk(&user.email_key()));
        item.insert("user_id".into(), AttributeValue::S(user.id.clone()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn release_email(&self, user: &User) -> Result<TransactWriteItem, ApiError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(email_pk(&user.email_key()))))
            .condition_expression("user_id = :id")
            .expression_attribute_values(":id", AttributeValue::S(user.id.clone()))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn delete_user(&self, user: &User) -> Result<TransactWriteItem, ApiError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(&user.id))))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(user.version.to_string()))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<String>>, ApiError> {
        service_core::dynamo::transact(&self.client, actions).await
    }
}

fn unexpected(operation: &str, codes: &[String]) -> ApiError {
    ApiError::Internal(format!("{operation} cancelled: {codes:?}"))
}

#[async_trait]
impl UserStore for DynamoUserStore {
    async fn create(&self, user: &User) -> Result<(), ApiError> {
        let actions = vec![
            self.put_user(user, "attribute_not_exists(pk)", None)?,
            self.claim_email(user)?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(codes) if condition_failed_at(&codes, 1) => Err(email_taken()),
            Err(codes) => Err(unexpected("create user", &codes)),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<User>, ApiError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_failure("GetItem", e))?;
        output.item.map(from_item).transpose()
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page<User>, ApiError> {
        if after.is_some_and(|a| !a.starts_with(USER_PREFIX) && !a.starts_with(EMAIL_PREFIX)) {
            return Err(ApiError::InvalidCursor);
        }
        let page = scan_prefix(&self.client, &self.table, USER_PREFIX, limit, after).await?;
        page.try_map(from_item)
    }

    async fn replace(&self, current: &User, next: &User) -> Result<(), ApiError> {
        let condition = "version = :v";
        if current.email_key() == next.email_key() {
            let put = self.put_user(next, condition, Some(current.version))?;
            return match self.transact(vec![put]).await? {
                Ok(()) => Ok(()),
                Err(codes) if condition_failed_at(&codes, 0) => Err(ApiError::VersionMismatch),
                Err(codes) => Err(unexpected("update user", &codes)),
            };
        }
        let actions = vec![
            self.put_user(next, condition, Some(current.version))?,
            self.claim_email(next)?,
            self.release_email(current)?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(codes) if condition_failed_at(&codes, 0) => Err(ApiError::VersionMismatch),
            Err(codes) if condition_failed_at(&codes, 1) => Err(email_taken()),
            Err(codes) => Err(unexpected("update user email", &codes)),
        }
    }

    async fn delete(&self, current: &User) -> Result<(), ApiError> {
        let actions = vec![self.delete_user(current)?, self.release_email(current)?];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(codes) if condition_failed_at(&codes, 0) => Err(ApiError::VersionMismatch),
            Err(codes) => Err(unexpected("delete user", &codes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_kinds_apart() {
        assert_eq!(user_pk("1"), "USER#1");
        assert_eq!(email_pk("a@b.co"), "EMAIL#a@b.co");
        assert_eq!(service_core::dynamo::PK, "pk");
    }
}

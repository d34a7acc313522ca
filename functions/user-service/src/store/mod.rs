//! Where users live. The trait is the seam: [`dynamo::DynamoUserStore`] is the real table,
//! [`memory::MemoryUserStore`] the in-memory stand-in the handler and domain tests use.
//!
//! Every write is conditional: a store never overwrites a version it did not read, and the email
//! uniqueness record moves in the same atomic write as the user it belongs to. Stores answer in
//! the domain's terms ([`UserError`]); the HTTP layer maps those to responses.

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use service_core::paging::Page;
use service_core::StoreError;

use crate::domain::{User, UserError};

pub use dynamo::DynamoUserStore;
pub use memory::MemoryUserStore;

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. Fails with `EmailTaken` if the address (case-insensitively) is in use.
    async fn create(&self, user: &User) -> Result<(), UserError>;

    /// The user with this id, if any.
    async fn get(&self, id: &str) -> Result<Option<User>, StoreError>;

    /// Up to `limit` users after the store key `after`, in a stable order.
    async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page<User>, UserError>;

    /// Replaces `current` by `next` if `current.version` is still the stored version
    /// (otherwise `VersionMismatch`). An email change claims the new address and frees the old
    /// one in the same atomic write (`EmailTaken` if the new one is in use).
    async fn replace(&self, current: &User, next: &User) -> Result<(), UserError>;

    /// Deletes `current` and frees its email, if `current.version` is still the stored version.
    async fn delete(&self, current: &User) -> Result<(), UserError>;
}

//! Where users live. The trait is the seam: [`dynamo::DynamoUserStore`] is the real table,
//! [`memory::MemoryUserStore`] the in-memory stand-in the handler and domain tests use.
//!
//! Every write is conditional: a store never overwrites a version it did not read, and the email
//! uniqueness record moves in the same atomic write as the user it belongs to.

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use service_core::paging::Page;
use service_core::ApiError;

use crate::domain::User;

pub use dynamo::DynamoUserStore;
pub use memory::MemoryUserStore;

/// The conflict a create or email change meets when the address is in use.
pub fn email_taken() -> ApiError {
    ApiError::conflict(
        "email_taken",
        "a user with this email address already exists",
    )
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. Fails with `email_taken` if the address (case-insensitively) is in use.
    async fn create(&self, user: &User) -> Result<(), ApiError>;

    /// The user with this id, if any.
    async fn get(&self, id: &str) -> Result<Option<User>, ApiError>;

    /// Up to `limit` users after the store key `after`, in a stable order.
    async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page<User>, ApiError>;

    /// Replaces `current` by `next` if `current.version` is still the stored version
    /// (otherwise `VersionMismatch`). An email change claims the new address and frees the old
    /// one in the same atomic write (`email_taken` if the new one is in use).
    async fn replace(&self, current: &User, next: &User) -> Result<(), ApiError>;

    /// Deletes `current` and frees its email, if `current.version` is still the stored version.
    async fn delete(&self, current: &User) -> Result<(), ApiError>;
}

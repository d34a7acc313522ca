//! Where products and their reservations live. The trait is the seam:
//! [`dynamo::DynamoProductStore`] is the real table, [`memory::MemoryProductStore`] the
//! in-memory stand-in for unit tests. Both give the same guarantees:
//!
//! - a SKU is claimed in the same atomic write that creates the product;
//! - every change is conditional on the version that was read;
//! - a reservation decrements stock and records itself in one conditional write, so stock never
//!   goes negative; releasing removes the record and returns the stock in one conditional write,
//!   so stock is never returned twice;
//! - a product with open reservations cannot be deleted (`409 has_open_reservations`): release
//!   them first, so no reservation ever points at a product that is gone.
//!
//! Stores answer in the domain's terms ([`ProductError`]); the HTTP layer maps those to
//! responses.

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use service_core::paging::Page;
use service_core::StoreError;

use crate::domain::{Product, ProductError};

pub use dynamo::DynamoProductStore;
pub use memory::MemoryProductStore;

#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Stores a new product; `SkuTaken` if the SKU is in use.
    async fn create(&self, product: &Product) -> Result<(), ProductError>;

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError>;

    /// Up to `limit` products after the store key `after`, optionally only one category.
    async fn list(
        &self,
        limit: usize,
        after: Option<&str>,
        category: Option<&str>,
    ) -> Result<Page<Product>, ProductError>;

    /// Replaces the mutable fields of `current` by those of `next` if `current.version` is still
    /// the stored version (otherwise `VersionMismatch`).
    async fn replace(&self, current: &Product, next: &Product) -> Result<(), ProductError>;

    /// Deletes `current` and frees its SKU if `current.version` is still the stored version and
    /// it has no open reservations.
    async fn delete(&self, current: &Product) -> Result<(), ProductError>;

    /// Takes `quantity` units from product `product_id` under `reservation_id`; returns the
    /// stock left. `NotFound`, `InsufficientStock` or `TooManyReservations` change nothing.
    async fn reserve(
        &self,
        product_id: &str,
        reservation_id: &str,
        quantity: u32,
    ) -> Result<u32, ProductError>;

    /// Releases a reservation, returning its units to stock; `NotFound` if the product or the
    /// reservation does not exist (including when it was already released).
    async fn release(&self, product_id: &str, reservation_id: &str) -> Result<(), ProductError>;
}

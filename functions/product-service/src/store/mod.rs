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

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use service_core::paging::Page;
use service_core::ApiError;

use crate::domain::{Product, MAX_OPEN_RESERVATIONS};

pub use dynamo::DynamoProductStore;
pub use memory::MemoryProductStore;

pub fn sku_taken() -> ApiError {
    ApiError::conflict("sku_taken", "a product with this sku already exists")
}

pub fn insufficient_stock() -> ApiError {
    ApiError::conflict(
        "insufficient_stock",
        "not enough stock for this reservation",
    )
}

pub fn too_many_reservations() -> ApiError {
    ApiError::conflict(
        "too_many_reservations",
        format!("a product can have at most {MAX_OPEN_RESERVATIONS} open reservations"),
    )
}

pub fn has_open_reservations() -> ApiError {
    ApiError::conflict(
        "has_open_reservations",
        "the product has open reservations; release them before deleting it",
    )
}

#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Stores a new product; `sku_taken` if the SKU is in use.
    async fn create(&self, product: &Product) -> Result<(), ApiError>;

    async fn get(&self, id: &str) -> Result<Option<Product>, ApiError>;

    /// Up to `limit` products after the store key `after`, optionally only one category.
    async fn list(
        &self,
        limit: usize,
        after: Option<&str>,
        category: Option<&str>,
    ) -> Result<Page<Product>, ApiError>;

    /// Replaces the mutable fields of `current` by those of `next` if `current.version` is still
    /// the stored version (otherwise `VersionMismatch`).
    async fn replace(&self, current: &Product, next: &Product) -> Result<(), ApiError>;

    /// Deletes `current` and frees its SKU if `current.version` is still the stored version and
    /// it has no open reservations.
    async fn delete(&self, current: &Product) -> Result<(), ApiError>;

    /// Takes `quantity` units from product `product_id` under `reservation_id`; returns the
    /// stock left. `NotFound`, `insufficient_stock` or `too_many_reservations` change nothing.
    async fn reserve(
        &self,
        product_id: &str,
        reservation_id: &str,
        quantity: u32,
    ) -> Result<u32, ApiError>;

    /// Releases a reservation, returning its units to stock; `NotFound` if the product or the
    /// reservation does not exist (including when it was already released).
    async fn release(&self, product_id: &str, reservation_id: &str) -> Result<(), ApiError>;
}

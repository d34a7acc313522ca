//! Where products and their reservations live. The trait is the seam:
//! [`dynamo::DynamoProductStore`] is the real tables, [`memory::MemoryProductStore`] the
//! in-memory stand-in for unit tests. Both give the same guarantees:
//!
//! - a SKU is claimed in the same atomic write that creates the product;
//! - a product's own fields change only as a patch names them, and only from the version the
//!   client pinned (`If-Match`), if it pinned one; a reservation never makes a patch or a delete
//!   fail unless the client pinned the version it read;
//! - a reservation is its own record: reserving takes the stock and writes the record in one
//!   transaction, conditional on the stock, so stock never goes negative; ending one (release,
//!   confirm, expiry) moves it out of `open` and settles the stock in one transaction,
//!   conditional on it still being open, so stock is never returned twice and exactly one of
//!   two racing endings wins;
//! - the product item holds only counters (stock, open reservations), whatever the number of
//!   reservations;
//! - a product with open reservations cannot be deleted (`409 has_open_reservations`), so no
//!   reservation ever points at a product that is gone.
//!
//! Stores answer in the domain's terms ([`ProductError`]); the HTTP layer maps those to
//! responses. Time is the caller's (`now`), so tests decide it.

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_core::paging::Page;
use service_core::StoreError;

use crate::domain::{Ending, Product, ProductError, ProductPatch, Reservation};

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

    /// Applies `patch` to the stored product at `now` (the fields it names, nothing else) and
    /// returns the product as stored. With `expected`, only if that is still the version
    /// (otherwise `VersionMismatch`); `NotFound` if there is no such product.
    async fn patch(
        &self,
        id: &str,
        patch: &ProductPatch,
        expected: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Product, ProductError>;

    /// Deletes `current` and frees its SKU, unless it has open reservations
    /// (`HasOpenReservations`) or, with `expected`, its version is no longer that one
    /// (`VersionMismatch`); `NotFound` if it is already gone.
    async fn delete(&self, current: &Product, expected: Option<u64>) -> Result<(), ProductError>;

    /// Takes `reservation.quantity` units from its product and stores the (open) reservation,
    /// as one change. `NotFound` or `InsufficientStock` change nothing.
    async fn reserve(&self, reservation: &Reservation) -> Result<(), ProductError>;

    /// The reservation `id` as stored.
    async fn reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError>;

    /// Up to `limit` of `owner`'s reservations that are still open at `now`, soonest hold end
    /// first, after the key `after` (a page's `next`).
    async fn open_reservations_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page<Reservation>, ProductError>;

    /// Ends `reservation` (as read) as `ending` at `now`, settling its product's stock, if
    /// it is still open and [`Reservation::may_end`] allows it at `now`; otherwise
    /// `ReservationEnded` with what it is now, and nothing changes. Returns it as ended.
    async fn end(
        &self,
        reservation: &Reservation,
        ending: Ending,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ProductError>;

    /// Up to `limit` open reservations whose hold ended at or before `now` (what the sweeper
    /// expires). May include some that ended meanwhile: [`ProductStore::end`] checks again.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Reservation>, StoreError>;
}

/// The key a listing of open reservations continues after: the hold's end in milliseconds
/// since the epoch (zero-padded, so keys sort as the holds do) and the reservation id.
pub fn listing_key(reservation: &Reservation) -> String {
    format!(
        "{:020}:{}",
        reservation.hold_until.timestamp_millis().max(0),
        reservation.reservation_id
    )
}

/// The hold end and id a [`listing_key`] holds; `None` for anything else.
pub fn parse_listing_key(key: &str) -> Option<(i64, &str)> {
    let (millis, id) = key.split_once(':')?;
    let millis = millis.parse().ok()?;
    service_core::validate::is_id(id).then_some((millis, id))
}

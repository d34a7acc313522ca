//! The product service: a catalogue with unique SKUs and stock reservations that never oversell,
//! on the service's own DynamoDB table.
//!
//! - [`domain`]: products, reservations, validation, patches.
//! - [`store`]: the storage trait, with a DynamoDB and an in-memory implementation.
//! - [`api`]: routing and the HTTP handlers; the binary only builds clients and calls [`api::App`].

pub mod api;
pub mod domain;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod store;

//! The product service: a catalogue with unique SKUs and stock reservations that never oversell,
//! hold for a while and then give their stock back, on the service's own DynamoDB tables.
//!
//! - [`domain`]: products, reservations, validation, patches.
//! - [`store`]: the storage trait, with a DynamoDB and an in-memory implementation.
//! - [`sweeper`]: expires reservations whose hold ran out (the `reservation-sweeper` binary).
//! - [`settings`]: what the binaries read from the environment.
//! - [`api`]: routing and the HTTP handlers; the binary only builds clients and calls [`api::App`].

pub mod api;
pub mod domain;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod settings;
pub mod store;
pub mod sweeper;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

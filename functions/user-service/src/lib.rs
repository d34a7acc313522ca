//! The user service: users with case-insensitively unique email addresses, on the service's own
//! DynamoDB table.
//!
//! - [`domain`]: the user, validation of input, and patches.
//! - [`store`]: the storage trait, with a DynamoDB and an in-memory implementation.
//! - [`api`]: routing and the HTTP handlers; the binary only builds clients and calls [`api::App`].

pub mod api;
pub mod domain;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod store;

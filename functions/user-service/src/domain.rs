//! The user and the rules its fields follow. Everything here is pure, so it is tested without
//! any store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_core::body::not_null;
use service_core::http::{Patch, Versioned};
use service_core::{validate, ApiError, StoreError};

pub const MAX_NAME_CHARS: usize = 100;
pub use service_core::validate::MAX_EMAIL_CHARS;

/// What a write to a user can meet besides bad input: the outcomes the store reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// Another user holds the address (case-insensitively).
    #[error("email taken")]
    EmailTaken,
    /// Any store's outcomes: a lost race (`VersionMismatch`), an unreachable database, ...
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> ApiError {
        match error {
            UserError::EmailTaken => ApiError::conflict(
                "email_taken",
                "a user with this email address already exists",
            ),
            UserError::Store(error) => error.into(),
        }
    }
}

/// A stored user, exactly as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl Versioned for User {
    fn version(&self) -> u64 {
        self.version
    }
}

impl User {
    /// The key uniqueness is enforced on.
    pub fn email_key(&self) -> String {
        email_key(&self.email)
    }
}

/// The form of an address uniqueness is enforced on: case-insensitive.
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// Body of `POST /users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    pub email: String,
}

/// Body of `PATCH /users/{id}`: any subset of the fields (neither can be removed: `null` is
/// refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "not_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub email: Option<String>,
}

/// Validated input for a new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub email: String,
}

/// A validated change to a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl CreateUser {
    pub fn validate(self) -> Result<NewUser, ApiError> {
        Ok(NewUser {
            name: validate_name(&self.name)?,
            email: validate_email(&self.email)?,
        })
    }
}

impl UpdateUser {
    pub fn validate(self) -> Result<UserPatch, ApiError> {
        if self.name.is_none() && self.email.is_none() {
            return Err(ApiError::invalid_field(
                "body",
                "must contain at least one of `name`, `email`",
            ));
        }
        Ok(UserPatch {
            name: self.name.as_deref().map(validate_name).transpose()?,
            email: self.email.as_deref().map(validate_email).transpose()?,
        })
    }
}

impl Patch<User> for UserPatch {
    fn apply(&self, current: &User) -> User {
        self.apply_at(current, Utc::now())
    }
}

impl UserPatch {
    /// The user after this patch, with a new version and `updated_at`.
    pub fn apply_at(&self, user: &User, now: DateTime<Utc>) -> User {
        User {
            id: user.id.clone(),
            name: self.name.clone().unwrap_or_else(|| user.name.clone()),
            email: self.email.clone().unwrap_or_else(|| user.email.clone()),
            created_at: user.created_at,
            updated_at: now,
            version: user.version + 1,
        }
    }
}

/// Trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn validate_name(raw: &str) -> Result<String, ApiError> {
    validate::name(raw, MAX_NAME_CHARS)
}

/// A well-formed address, trimmed (see [`validate::email`]).
pub fn validate_email(raw: &str) -> Result<String, ApiError> {
    validate::email(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_by_the_user_limit() {
        assert_eq!(validate_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(
            validate_name(&"é".repeat(100)).unwrap().chars().count(),
            100
        );
        assert!(validate_name(&"é".repeat(101)).is_err());
    }

    #[test]
    fn uniqueness_is_case_insensitive() {
        assert_eq!(email_key("Ada@Example.COM"), email_key("ada@example.com"));
    }

    #[test]
    fn empty_patch_is_refused() {
        assert!(UpdateUser::default().validate().is_err());
    }

    #[test]
    fn patch_bumps_version_and_keeps_identity() {
        let now = Utc::now();
        let user = User {
            id: "u1".into(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let patch = UserPatch {
            name: Some("Grace".into()),
            email: None,
        };
        let later = now + chrono::Duration::seconds(5);
        let updated = patch.apply_at(&user, later);
        assert_eq!(updated.name, "Grace");
        assert_eq!(updated.email, user.email);
        assert_eq!(updated.version, 2);
        assert_eq!(updated.created_at, now);
        assert_eq!(updated.updated_at, later);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn accepted_emails_are_well_formed(raw in "\\PC{0,300}") {
            if let Ok(email) = validate_email(&raw) {
                prop_assert!(email.len() <= MAX_EMAIL_CHARS);
                prop_assert_eq!(email.matches('@').count(), 1);
                prop_assert!(!email.chars().any(char::is_whitespace));
            }
        }

        #[test]
        fn plausible_addresses_are_accepted(local in "[a-z0-9]{1,20}", domain in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            let email = format!("{local}@{domain}.{tld}");
            prop_assert_eq!(validate_email(&email).unwrap(), email);
        }

        #[test]
        fn accepted_names_are_trimmed_and_bounded(raw in "\\PC{0,150}") {
            if let Ok(name) = validate_name(&raw) {
                prop_assert_eq!(name.trim(), name.as_str());
                prop_assert!((1..=MAX_NAME_CHARS).contains(&name.chars().count()));
            }
        }
    }
}

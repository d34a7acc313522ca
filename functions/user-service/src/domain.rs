//! The user and the rules its fields follow. Everything here is pure, so it is tested without
//! any store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_core::ApiError;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_EMAIL_CHARS: usize = 254;

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

/// Body of `PATCH /users/{id}`: any subset of the fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub name: Option<String>,
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

impl UserPatch {
    /// The user after this patch, with a new version and `updated_at`.
    pub fn apply(&self, user: &User, now: DateTime<Utc>) -> User {
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
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters after trimming"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

/// A pragmatic address check: one `@`, a non-empty local part of printable non-space characters
/// (at most 64), and a domain of dot-separated labels (letters, digits, hyphens; no label empty,
/// none starting or ending with a hyphen) with at least one dot; at most [`MAX_EMAIL_CHARS`].
pub fn validate_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim();
    let invalid = || ApiError::invalid_field("email", "must be a valid email address");
    if email.len() > MAX_EMAIL_CHARS {
        return Err(ApiError::invalid_field(
            "email",
            format!("must be at most {MAX_EMAIL_CHARS} characters"),
        ));
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(email.to_string())
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(validate_name("   ").is_err());
        assert!(validate_name("").is_err());
        assert_eq!(
            validate_name(&"é".repeat(100)).unwrap().chars().count(),
            100
        );
        assert!(validate_name(&"é".repeat(101)).is_err());
        assert!(validate_name("a\u{0}b").is_err());
    }

    #[test]
    fn emails() {
        for good in ["ada@example.com", "A.B+tag@sub.example.co.uk", "x@a-b.io"] {
            assert_eq!(validate_email(good).unwrap(), good);
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            ".a@b.com",
            "a..b@c.com",
            "a@b.com\n",
            "a@b_c.com",
            "<a>@b.com",
        ] {
            let trimmed_valid = bad == "a@b.com\n"; // trailing whitespace is trimmed away
            assert_eq!(validate_email(bad).is_ok(), trimmed_valid, "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(validate_email(&long_local).is_err());
        let too_long = format!("a@{}.com", "b".repeat(260));
        let error = validate_email(&too_long).unwrap_err();
        assert!(error.public_message().contains("254"));
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
        let updated = patch.apply(&user, later);
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

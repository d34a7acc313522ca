//! Field rules both services share: display names, email addresses and resource ids, so one
//! rule has one spelling and one message wherever it applies.

use crate::ApiError;

/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// A display name (`name`): trimmed, 1 to `max_chars` characters, no control characters.
pub fn name(raw: &str, max_chars: usize) -> Result<String, ApiError> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > max_chars {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be 1 to {max_chars} characters after trimming"),
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

/// An email address (`email`), trimmed. A pragmatic check: one `@`, a non-empty local part of
/// printable non-space characters (at most 64), and a domain of dot-separated labels (letters,
/// digits, hyphens; no label empty, none starting or ending with a hyphen) with at least one
/// dot; at most [`MAX_EMAIL_CHARS`].
pub fn email(raw: &str) -> Result<String, ApiError> {
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

/// A new resource id (a random UUID).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// True for ids these services could have minted (UUIDs); anything else is never looked up,
/// so it is a plain 404.
pub fn is_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// The resource `id` names, read with `get` (called only for an id that is one of ours): 404
/// for an id that is not, and for one that does not exist.
pub async fn find<T, E, F, Fut>(id: &str, get: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
    ApiError: From<E>,
{
    if !is_id(id) {
        return Err(ApiError::NotFound);
    }
    get().await?.ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Ada Lovelace ", 100).unwrap(), "Ada Lovelace");
        assert!(name("   ", 100).is_err());
        assert!(name("", 100).is_err());
        assert_eq!(name(&"é".repeat(100), 100).unwrap().chars().count(), 100);
        assert!(name(&"é".repeat(101), 100).is_err());
        assert!(name("a\u{0}b", 100).is_err());
        let error = name(&"x".repeat(201), 200).unwrap_err();
        assert!(error.public_message().contains("200"), "{error}");
    }

    #[test]
    fn emails() {
        for good in ["ada@example.com", "A.B+tag@sub.example.co.uk", "x@a-b.io"] {
            assert_eq!(email(good).unwrap(), good);
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
            "a@b_c.com",
            "<a>@b.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert_eq!(email("a@b.com\n").unwrap(), "a@b.com", "trimmed");
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        let too_long = format!("a@{}.com", "b".repeat(260));
        assert!(email(&too_long)
            .unwrap_err()
            .public_message()
            .contains("254"));
    }

    #[test]
    fn ids() {
        assert!(is_id(&new_id()));
        for bad in ["", "1", "not-a-uuid", "../x"] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn find_refuses_foreign_ids_without_a_lookup() {
        let looked_up = std::cell::Cell::new(false);
        let result = find("nope", || async {
            looked_up.set(true);
            Ok::<_, ApiError>(Some(1))
        })
        .await;
        assert_eq!(result, Err(ApiError::NotFound));
        assert!(!looked_up.get());
        let id = new_id();
        assert_eq!(
            find(&id, || async { Ok::<_, ApiError>(Some(7)) }).await,
            Ok(7)
        );
        assert_eq!(
            find(&id, || async { Ok::<Option<u8>, ApiError>(None) }).await,
            Err(ApiError::NotFound)
        );
    }
}

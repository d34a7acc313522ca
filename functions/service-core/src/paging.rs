//! List paging: the `limit` parameter and the opaque cursor.
//!
//! A cursor carries the last key a page stopped at, bound to the listing it came from (its
//! `scope`, e.g. `products|category=books`) and signed with HMAC-SHA256. Anything not minted by
//! this service for this listing (corrupt, truncated, forged, or from another listing) decodes to
//! [`ApiError::InvalidCursor`], a 400, and never reaches the database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use sha2::Sha256;

use crate::ApiError;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Longest cursor accepted; real ones are far shorter.
const MAX_CURSOR_CHARS: usize = 1024;
/// Bytes of the HMAC tag kept in the cursor (128 bits).
const TAG_BYTES: usize = 16;

/// Parses `limit`: absent means [`DEFAULT_LIMIT`], otherwise an integer in `1..=MAX_LIMIT`.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::invalid_query(
            "limit",
            format!("must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// Mints and checks cursors with one secret.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec { key: <redacted> }")
    }
}

impl CursorCodec {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        CursorCodec { key: key.into() }
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// The cursor for "continue `scope` after `last_key`".
    pub fn encode(&self, scope: &str, last_key: &str) -> String {
        let payload = format!("{scope}\n{last_key}");
        let tag = self.tag(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(last_key.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The key a cursor continues after, if this codec minted it for `scope`.
    pub fn decode(&self, scope: &str, cursor: &str) -> Result<String, ApiError> {
        if cursor.is_empty() || cursor.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::InvalidCursor);
        }
        let (key_part, tag_part) = cursor.split_once('.').ok_or(ApiError::InvalidCursor)?;
        let key_bytes = URL_SAFE_NO_PAD
            .decode(key_part)
            .map_err(|_| ApiError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_part)
            .map_err(|_| ApiError::InvalidCursor)?;
        let last_key = String::from_utf8(key_bytes).map_err(|_| ApiError::InvalidCursor)?;
        let payload = format!("{scope}\n{last_key}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        if tag.len() != TAG_BYTES {
            return Err(ApiError::InvalidCursor);
        }
        Ok(last_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_rules() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in [
            "0",
            "101",
            "-1",
            "abc",
            "",
            "1.5",
            "99999999999999999999999",
        ] {
            assert_eq!(
                parse_limit(Some(bad)).unwrap_err().code(),
                "invalid_query",
                "{bad}"
            );
        }
    }

    #[test]
    fn cursor_round_trips_within_its_scope() {
        let codec = CursorCodec::new("secret");
        let cursor = codec.encode("users", "USER#abc");
        assert_eq!(codec.decode("users", &cursor).unwrap(), "USER#abc");
    }

    #[test]
    fn cursor_from_another_scope_or_key_is_refused() {
        let codec = CursorCodec::new("secret");
        let cursor = codec.encode("products|category=a", "PRODUCT#1");
        assert!(codec.decode("products|category=b", &cursor).is_err());
        assert!(CursorCodec::new("other")
            .decode("products|category=a", &cursor)
            .is_err());
    }

    #[test]
    fn forged_and_corrupt_cursors_are_refused() {
        let codec = CursorCodec::new("secret");
        let good = codec.encode("users", "USER#abc");
        let (_, tag) = good.split_once('.').unwrap();
        let forged = format!("{}.{}", URL_SAFE_NO_PAD.encode("USER#zzz"), tag);
        let truncated_tag = &good[..good.len() - 3];
        for bad in [
            "",
            "garbage",
            ".",
            "!!!.###",
            forged.as_str(),
            truncated_tag,
            &"a".repeat(5000),
        ] {
            assert_eq!(
                codec.decode("users", bad).unwrap_err().code(),
                "invalid_cursor",
                "{bad:?}"
            );
        }
    }
}

/// One page of a listing as a store returns it: the items and, when there may be more, the
/// store-level key to continue after (the HTTP layer wraps it in a signed cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The JSON shape of a listing response.
#[derive(Debug, serde::Serialize)]
pub struct PageBody<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Converts every item (e.g. a stored item into a domain value), failing on the first error.
    pub fn try_map<U, E>(self, convert: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self
                .items
                .into_iter()
                .map(convert)
                .collect::<Result<_, _>>()?,
            next: self.next,
        })
    }

    /// The response body, with `next` turned into a cursor for `scope`.
    pub fn into_body(self, codec: &CursorCodec, scope: &str) -> PageBody<T> {
        PageBody {
            next_cursor: self.next.map(|key| codec.encode(scope, &key)),
            items: self.items,
        }
    }
}

/// The parameters every listing takes: `limit`, and the `cursor` of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub limit: usize,
    cursor: Option<String>,
}

impl Listing {
    /// Reads `limit` and `cursor`, refusing either (or any of `also_single`, the listing's own
    /// filters) given more than once: `?limit=1&limit=100` has no single meaning.
    pub fn from_query(query: &QueryMap, also_single: &[&str]) -> Result<Listing, ApiError> {
        for name in ["limit", "cursor"].iter().chain(also_single) {
            if query.all(name).is_some_and(|values| values.len() > 1) {
                return Err(ApiError::invalid_query(*name, "must be given at most once"));
            }
        }
        Ok(Listing {
            limit: parse_limit(query.first("limit"))?,
            cursor: query.first("cursor").map(str::to_string),
        })
    }

    /// The store key to continue after: the cursor's, if `codec` minted it for `scope`.
    pub fn after(&self, codec: &CursorCodec, scope: &str) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|cursor| codec.decode(scope, cursor))
            .transpose()
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> QueryMap {
        let mut map: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (k, v) in pairs {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        QueryMap::from(map)
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let error = Listing::from_query(&query(&[("limit", "1"), ("limit", "2")]), &[]);
        assert_eq!(error.unwrap_err().code(), "invalid_query");
        let error = Listing::from_query(
            &query(&[("category", "a"), ("category", "b")]),
            &["category"],
        );
        assert_eq!(error.unwrap_err().code(), "invalid_query");
        let listing = Listing::from_query(&query(&[("limit", "5")]), &["category"]).unwrap();
        assert_eq!(listing.limit, 5);
        assert_eq!(
            listing.after(&CursorCodec::new("k"), "users").unwrap(),
            None
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends as a cursor, decoding never panics, and only a cursor this
        /// codec minted for this scope is accepted.
        #[test]
        fn arbitrary_cursors_never_panic_and_are_refused(cursor in ".{0,300}") {
            let codec = CursorCodec::new("k");
            prop_assert!(codec.decode("users", &cursor).is_err());
        }

        #[test]
        fn minted_cursors_round_trip(key in "\\PC{0,200}", scope in "[a-z|=]{1,40}") {
            let codec = CursorCodec::new("k");
            let cursor = codec.encode(&scope, &key);
            prop_assert_eq!(codec.decode(&scope, &cursor).unwrap(), key);
        }

        #[test]
        fn limits_parse_or_refuse(raw in ".{0,30}") {
            match parse_limit(Some(&raw)) {
                Ok(limit) => prop_assert!((1..=MAX_LIMIT).contains(&limit)),
                Err(error) => prop_assert_eq!(error.code(), "invalid_query"),
            }
        }
    }
}

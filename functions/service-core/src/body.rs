//! The rules every JSON request body follows, in one place: it must be declared as JSON, fit in
//! [`MAX_BODY_BYTES`], parse, and match the target type exactly (unknown fields are refused by
//! the types themselves with `#[serde(deny_unknown_fields)]`). Errors name the offending field.

use lambda_http::http::{header, HeaderMap};
use lambda_http::Body;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::ApiError;

/// Largest request body accepted: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// True when `Content-Type` declares JSON (`application/json`, or any `+json` media type),
/// whatever its parameters.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media_type = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// Parses a JSON request body into `T`, applying the content-type, size and shape rules.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &Body) -> Result<T, ApiError> {
    if !is_json_content_type(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes: &[u8] = match body {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::InvalidJson("the body is empty".into())),
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::InvalidJson(
                "the body must be a JSON object".into(),
            ))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return ApiError::InvalidJson(describe(&inner));
        }
        match (missing_or_unknown_field(&inner), path.as_str()) {
            // serde reports a missing field at the object that lacks it, an unknown one at the
            // key itself: name the field either way.
            (Some(FieldRule::Missing(field)), ".") => ApiError::invalid_field(field, "is required"),
            (Some(FieldRule::Missing(field)), object) => {
                ApiError::invalid_field(format!("{object}.{field}"), "is required")
            }
            (Some(FieldRule::Unknown { field, expected }), at) => {
                let field = if at == "." { field } else { at.to_string() };
                let message = match expected {
                    Some(expected) => format!("is not a known field (expected {expected})"),
                    None => "is not a known field".to_string(),
                };
                ApiError::invalid_field(field, message)
            }
            // The body is JSON but not an object of the right shape.
            (None, ".") => ApiError::InvalidJson(describe(&inner)),
            (None, field) => ApiError::invalid_field(field, describe(&inner)),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::InvalidJson(describe(&error)))?;
    Ok(value)
}

/// For a `PATCH` field that can be changed but not removed: absent is `None` (keep it), a value
/// is `Some`, and `null` is refused (`` `email` cannot be null ``) rather than read as "keep".
/// Use with `#[serde(default, deserialize_with = "not_null")]`.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "cannot be null (leave it out to keep the current value)",
        )),
    }
}

/// serde's message without the "at line X column Y" suffix, which helps nobody over HTTP.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text,
    }
}

/// A field rule serde reports in its message: "missing field `x`", or "unknown field `x`,
/// expected `a` or `b`" (or "there are no fields").
enum FieldRule {
    Missing(String),
    Unknown {
        field: String,
        expected: Option<String>,
    },
}

fn missing_or_unknown_field(error: &serde_json::Error) -> Option<FieldRule> {
    let text = describe(error);
    if let Some(rest) = text.strip_prefix("missing field `") {
        return Some(FieldRule::Missing(rest.split('`').next()?.to_string()));
    }
    let rest = text.strip_prefix("unknown field `")?;
    let (field, after) = rest.split_once('`')?;
    Some(FieldRule::Unknown {
        field: field.to_string(),
        expected: after.strip_prefix(", expected ").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        count: u32,
    }

    fn json_headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    fn parse(body: &str) -> Result<Input, ApiError> {
        parse_json(
            &json_headers("application/json"),
            &Body::Text(body.to_string()),
        )
    }

    fn code_and_message(result: Result<Input, ApiError>) -> (&'static str, String) {
        let error = result.unwrap_err();
        (error.code(), error.public_message())
    }

    #[test]
    fn accepts_a_good_body() {
        let input = parse(r#"{"name":"a","count":2}"#).unwrap();
        assert_eq!(input.count, 2);
    }

    #[test]
    fn content_type_must_be_json() {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            let result: Result<Input, _> =
                parse_json(&json_headers(content_type), &Body::Text("{}".into()));
            assert_eq!(
                result.unwrap_err().code(),
                "unsupported_media_type",
                "{content_type}"
            );
        }
        let result: Result<Input, _> = parse_json(&HeaderMap::new(), &Body::Text("{}".into()));
        assert_eq!(result.unwrap_err().code(), "unsupported_media_type");
        assert!(is_json_content_type(&json_headers(
            "application/json; charset=utf-8"
        )));
        assert!(is_json_content_type(&json_headers(
            "application/merge-patch+json"
        )));
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let big = format!(r#"{{"name":"{}","count":1}}"#, "a".repeat(MAX_BODY_BYTES));
        assert_eq!(code_and_message(parse(&big)).0, "payload_too_large");
    }

    #[test]
    fn errors_name_the_field() {
        let (code, message) = code_and_message(parse(r#"{"name":"a","count":"x"}"#));
        assert_eq!(code, "invalid_field");
        assert!(message.contains("`count`"), "{message}");

        let (code, message) = code_and_message(parse(r#"{"name":"a"}"#));
        assert_eq!(code, "invalid_field");
        assert!(
            message.contains("`count`") && message.contains("required"),
            "{message}"
        );

        let (code, message) = code_and_message(parse(r#"{"name":"a","count":1,"admin":true}"#));
        assert_eq!(code, "invalid_field");
        assert_eq!(
            message,
            "`admin` is not a known field (expected `name` or `count`)"
        );

        let (code, message) = code_and_message(parse(r#"{"name":"a","count":-1}"#));
        assert_eq!(code, "invalid_field");
        assert!(message.contains("`count`"), "{message}");
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            inner: Input,
        }
        let parse_outer = |body: &str| -> Result<Outer, ApiError> {
            parse_json(&json_headers("application/json"), &Body::Text(body.into()))
        };
        let message = |result: Result<Outer, ApiError>| result.unwrap_err().public_message();
        assert_eq!(
            message(parse_outer(r#"{"inner":{"name":"a"}}"#)),
            "`inner.count` is required"
        );
        assert_eq!(
            message(parse_outer(r#"{"inner":{"name":"a","count":1,"x":1}}"#)),
            "`inner.x` is not a known field (expected `name` or `count`)"
        );
        assert_eq!(
            message(parse_outer(r#"{"inner":{"name":"a","count":"1"}}"#)),
            "`inner.count` invalid type: string \"1\", expected u32"
        );
    }

    #[test]
    fn malformed_bodies_are_invalid_json() {
        for body in [
            "",
            "   ",
            "{",
            "{\"name\":",
            "null",
            "[]",
            "[\"a\",1]",
            "42",
            "{\"name\":\"a\",\"count\":1} trailing",
        ] {
            let (code, _) = code_and_message(parse(body));
            assert_eq!(code, "invalid_json", "{body:?}");
        }
        let invalid_utf8: Result<Input, _> = parse_json(
            &json_headers("application/json"),
            &Body::Binary(vec![b'{', 0xff, 0xfe, b'}']),
        );
        assert_eq!(invalid_utf8.unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn deep_nesting_is_a_client_error() {
        let deep = format!(r#"{{"name":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        let (code, _) = code_and_message(parse(&deep));
        assert!(code == "invalid_json" || code == "invalid_field", "{code}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        #[serde(default, deserialize_with = "not_null")]
        email: Option<String>,
    }

    #[test]
    fn null_for_a_field_that_cannot_be_removed_is_named() {
        let headers = json_headers("application/json");
        let parse = |text: &str| parse_json::<Patch>(&headers, &Body::Text(text.into()));
        assert_eq!(parse("{}").unwrap().email, None);
        assert_eq!(
            parse(r#"{"email":"a@b.co"}"#).unwrap().email.as_deref(),
            Some("a@b.co")
        );
        let error = parse(r#"{"email":null}"#).unwrap_err();
        assert_eq!(error.code(), "invalid_field");
        assert!(
            error.public_message().starts_with("`email` cannot be null"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use lambda_http::http::HeaderValue;
    use proptest::prelude::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        count: u32,
    }

    proptest! {
        /// Arbitrary bytes as a JSON body always give a 4xx error or a value, never a panic.
        #[test]
        fn arbitrary_bodies_are_client_errors(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Err(error) = parse_json::<Input>(&headers, &Body::Binary(bytes)) {
                prop_assert!(error.status().is_client_error());
                prop_assert!(error.public_message().chars().count() <= 201);
            }
        }
    }
}

//! Entry points shared by the cargo-fuzz targets (`functions/fuzz`) and the seed-replay tests,
//! so the properties live beside the code they check and every input a fuzzer ever found stays
//! a regression test on the stable toolchain. Each function takes raw bytes and panics only
//! when a property fails.

use std::path::Path;

use lambda_http::http::{header, HeaderMap, HeaderValue};
use lambda_http::Body;
use serde::de::DeserializeOwned;

use crate::body::parse_json;
use crate::paging::CursorCodec;
use crate::ApiError;

/// Longest public error message (characters), ellipsis included.
const MAX_PUBLIC_MESSAGE: usize = 201;

/// A refusal of client input is a 4xx with a plain, bounded message.
pub fn assert_client_error(error: &ApiError) {
    assert!(
        error.status().is_client_error(),
        "client input answered with {}: {error:?}",
        error.status()
    );
    let message = error.public_message();
    assert!(!message.is_empty());
    assert!(
        message.chars().count() <= MAX_PUBLIC_MESSAGE,
        "message of {} characters",
        message.chars().count()
    );
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

/// Runs a request body through the JSON rules into `T`, then `validate`. Returns the validated
/// value; any refusal must be a client error.
pub fn json_body<T: DeserializeOwned, V>(
    data: &[u8],
    validate: impl FnOnce(T) -> Result<V, ApiError>,
) -> Option<V> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let outcome = parse_json::<T>(&headers, &Body::Binary(data.to_vec())).and_then(validate);
    match outcome {
        Ok(value) => Some(value),
        Err(error) => {
            assert_client_error(&error);
            None
        }
    }
}

/// Cursor decoding: any string is refused cleanly unless it is a cursor this key minted for
/// this scope, and whatever decodes re-encodes to a cursor that decodes to the same key.
pub fn cursor(data: &[u8]) {
    let codec = CursorCodec::new(b"fuzzing-key".to_vec());
    let text = String::from_utf8_lossy(data);
    match codec.decode("users", &text) {
        Ok(last_key) => {
            let again = codec.encode("users", &last_key);
            assert_eq!(codec.decode("users", &again).ok(), Some(last_key));
            // Minted for one scope, useless in another.
            assert!(codec.decode("products", &text).is_err());
        }
        Err(error) => assert_client_error(&error),
    }
    // Any key of a realistic length survives a round trip.
    if text.len() <= 512 {
        let minted = codec.encode("users", &text);
        assert_eq!(codec.decode("users", &minted).ok().as_deref(), Some(&*text));
    }
}

/// Calls `target` on every file under `dir` (the checked-in seeds and regressions of one
/// fuzz target); returns how many there were.
pub fn replay(dir: &Path, target: impl Fn(&[u8])) -> usize {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    entries.sort();
    for path in &entries {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&data)));
        assert!(outcome.is_ok(), "fuzz seed {} fails", path.display());
    }
    entries.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_seeds_hold() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/cursor");
        assert!(replay(&dir, cursor) > 0);
    }
}

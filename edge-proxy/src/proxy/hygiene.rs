//! Request hygiene at the edge, before routing: requests whose framing is ambiguous or whose
//! size is unreasonable are refused with a JSON error instead of being passed on.
//!
//! - HTTP/1.1 without `Host` → 400.
//! - A transfer coding other than plain `chunked` → 400. (`Content-Length` together with
//!   `Transfer-Encoding`, the classic smuggling vector, is settled by Pingora before this runs,
//!   as RFC 9112 asks: `Content-Length` is dropped and the connection closes after the response.
//!   The check below stays for any path where both would still arrive.)
//! - URI longer than the limit → 414; header section larger than the limit → 431.
//! - Declared body larger than the limit → 413 (streamed bodies are counted as they arrive).
//!
//! - A body declared as JSON must be UTF-8 (RFC 8259): checked as it streams, 400 otherwise.
//!
//! Requests that are not valid HTTP at all never reach this code: Pingora answers those with a
//! bare 400 and closes the connection.

use pingora::http::RequestHeader;

use super::error::ProxyError;
use crate::config::Limits;

/// Checks a request head against the rules above.
pub fn check(request: &RequestHeader, limits: &Limits) -> Result<(), ProxyError> {
    let uri_len = request.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(ProxyError::UriTooLong);
    }
    // One pass over the headers gathers what the rules below look at (a lookup by name hashes
    // the name again, three times a request).
    let mut header_bytes = 0;
    let mut host = false;
    let (mut encodings, mut first_encoding) = (0usize, None);
    let (mut lengths, mut first_length) = (0usize, None);
    for (name, value) in &request.headers {
        header_bytes += name.as_str().len() + value.len() + 4;
        if name == http::header::HOST {
            host = true;
        } else if name == http::header::TRANSFER_ENCODING {
            encodings += 1;
            first_encoding.get_or_insert(value.as_bytes());
        } else if name == http::header::CONTENT_LENGTH {
            lengths += 1;
            first_length.get_or_insert(value.as_bytes());
        }
    }
    if header_bytes > limits.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    if request.version == http::Version::HTTP_11 && !host {
        return Err(ProxyError::BadRequest(
            "HTTP/1.1 requests need a Host header",
        ));
    }
    if let Some(encoding) = first_encoding {
        if lengths > 0 {
            return Err(ProxyError::BadRequest(
                "Content-Length and Transfer-Encoding together are refused",
            ));
        }
        let chunked_only = encodings == 1 && encoding.trim_ascii().eq_ignore_ascii_case(b"chunked");
        if !chunked_only {
            return Err(ProxyError::BadRequest(
                "only Transfer-Encoding: chunked is accepted",
            ));
        }
    }
    if lengths > 1 {
        return Err(ProxyError::BadRequest("more than one Content-Length"));
    }
    if let Some(length) = first_length {
        let length = std::str::from_utf8(length)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(ProxyError::BadRequest("invalid Content-Length"))?;
        if length > limits.max_body_bytes as u64 {
            return Err(ProxyError::PayloadTooLarge);
        }
    }
    Ok(())
}

/// True when the request declares a JSON body (`application/json` or `+json`).
pub fn declares_json(request: &RequestHeader) -> bool {
    let Some(value) = request
        .headers
        .get(http::header::CONTENT_TYPE)
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

/// Incremental UTF-8 validation over body chunks, carrying an incomplete trailing sequence
/// (at most 3 bytes) from one chunk to the next.
#[derive(Debug, Default)]
pub struct Utf8Check {
    carry: Vec<u8>,
}

impl Utf8Check {
    /// Feeds the next chunk; false as soon as the bytes cannot be UTF-8.
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> bool {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk);
        match std::str::from_utf8(&data) {
            Ok(_) => {}
            Err(error) if error.error_len().is_none() => {
                self.carry = data[error.valid_up_to()..].to_vec()
            }
            Err(_) => return false,
        }
        !end_of_stream || self.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("POST", b"/api/users", None).unwrap();
        for (name, value) in headers {
            request.append_header(name.to_string(), *value).unwrap();
        }
        request
    }

    fn code(headers: &[(&str, &str)]) -> Result<(), &'static str> {
        check(&request(headers), &Limits::default()).map_err(|e| e.code())
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(code(&[("host", "x"), ("content-length", "10")]), Ok(()));
        assert_eq!(
            code(&[("host", "x"), ("transfer-encoding", "chunked")]),
            Ok(())
        );
        assert_eq!(
            code(&[("host", "x"), ("transfer-encoding", "Chunked ")]),
            Ok(())
        );
    }

    #[test]
    fn framing_ambiguities_are_refused() {
        assert_eq!(
            code(&[("content-length", "1")]),
            Err("bad_request"),
            "no host"
        );
        assert_eq!(
            code(&[
                ("host", "x"),
                ("content-length", "4"),
                ("transfer-encoding", "chunked")
            ]),
            Err("bad_request")
        );
        assert_eq!(
            code(&[("host", "x"), ("transfer-encoding", "gzip, chunked")]),
            Err("bad_request")
        );
        assert_eq!(
            code(&[
                ("host", "x"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err("bad_request")
        );
        assert_eq!(
            code(&[
                ("host", "x"),
                ("content-length", "4"),
                ("content-length", "4")
            ]),
            Err("bad_request")
        );
        for bad in ["-1", "+4", "4 ", "0x10", "", "99999999999999999999999"] {
            assert_eq!(
                code(&[("host", "x"), ("content-length", bad)]),
                Err("bad_request"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn utf8_across_chunks() {
        let text = "prix: 12 € — ok 💩".as_bytes();
        for split in 0..text.len() {
            let mut check = Utf8Check::default();
            assert!(check.feed(&text[..split], false), "split {split}");
            assert!(check.feed(&text[split..], true), "split {split}");
        }
        let mut check = Utf8Check::default();
        assert!(!check.feed(b"{\"a\":\"\xff\"}", true));
        let mut truncated = Utf8Check::default();
        assert!(
            !truncated.feed(&"€".as_bytes()[..2], true),
            "a cut sequence at the end is invalid"
        );
        let mut overlong = Utf8Check::default();
        assert!(!overlong.feed(b"\xc0\xaf", false));
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(
            code(&[("host", "x"), ("content-length", "10485760")]),
            Err("payload_too_large")
        );
        let big = "a".repeat(40 * 1024);
        assert_eq!(
            code(&[("host", "x"), ("x-big", big.as_str())]),
            Err("request_header_fields_too_large")
        );
        let long = format!("/api/users/{}", "a".repeat(9000));
        let request = RequestHeader::build("GET", long.as_bytes(), None).unwrap();
        assert_eq!(
            check(&request, &Limits::default()).map_err(|e| e.code()),
            Err("uri_too_long")
        );
    }
}

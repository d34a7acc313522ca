//! Helpers for handler tests in the service crates: build a Lambda HTTP request the way the
//! runtime would, and read a JSON response back.

use std::collections::HashMap;

use lambda_http::http::{header, Method};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

/// A request with an optional JSON body (sent as `application/json`), extra headers, and the
/// query string of `uri` parsed into the query parameters the runtime would provide.
pub fn request(
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Request {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = body.map_or(Body::Empty, |b| Body::Text(b.to_string()));
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(k.to_string()).or_default().push(v.to_string());
    }
    match builder.body(body) {
        Ok(request) => request.with_query_string_parameters(params),
        Err(error) => panic!("test request {uri} is malformed: {error}"),
    }
}

/// A request with a raw body and content type.
pub fn raw_request(method: Method, uri: &str, content_type: &str, body: Body) -> Request {
    match lambda_http::http::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
    {
        Ok(request) => request,
        Err(error) => panic!("test request {uri} is malformed: {error}"),
    }
}

/// The response body as JSON (`null` for an empty body).
pub fn json_of(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => {
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        }
        Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    }
}

/// The `error.code` of a JSON error response.
pub fn error_code(response: &Response<Body>) -> String {
    json_of(response)["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error response: {:?}", response.body()))
        .to_string()
}

/// An environment of `(name, value)` pairs, as the settings' `lookup` reads one.
pub fn env_lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    }
}

//! Hostile input, table driven, against the real stack through the proxy: malformed bodies,
//! paths, HTTP framing and credentials. Every case has its expected status; no case may get a
//! 5xx; every response the proxy or a function writes is the JSON error shape with a short,
//! plain message that does not echo the payload; and nothing is stored (item counts of every
//! table are the same before and after). Afterwards proxy and functions still answer.
//!
//! Requests go over raw TCP so that malformed HTTP can be sent exactly as written.
//! Needs `AWS_ENDPOINT_URL` and the table names (local stack) for the item counts.

use std::time::Duration;

use e2e::{api_key, base_url};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on the wire.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
    /// Responses on the connection (one request, so one; a second would be a smuggled one).
    responses: usize,
}

fn authority() -> String {
    base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// How many status lines (`HTTP/1.x NNN `) the text holds.
fn status_lines(text: &str) -> usize {
    text.match_indices("HTTP/1.")
        .filter(|(at, _)| {
            let rest = text.as_bytes().get(at + 7..at + 13).unwrap_or_default();
            rest.len() == 6
                && rest[1] == b' '
                && rest[2..5].iter().all(u8::is_ascii_digit)
                && rest[5] == b' '
        })
        .count()
}

async fn send_raw(bytes: &[u8]) -> Option<Reply> {
    let mut stream = TcpStream::connect(authority()).await.ok()?;
    // The peer may close before reading everything (413 on a huge body): ignore write errors.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    // Every case ends with `Connection: close` or a refusal that closes: a connection still
    // open after 20 s is a hang, not an answer.
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let head_end = text.find("\r\n\r\n")?;
    let status = text.get(9..12)?.parse().ok()?;
    Some(Reply {
        status,
        headers: text[..head_end].to_ascii_lowercase(),
        body: out[head_end + 4..].to_vec(),
        responses: status_lines(&text),
    })
}

/// One case: a full request and the status it must get, with the JSON error `code` it must
/// carry (none for 200), including requests that are not valid HTTP, which Pingora refuses
/// before routing.
struct Case {
    name: String,
    request: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
}

fn http(method: &str, target: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        authority()
    )
    .into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    }) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn key() -> (&'static str, String) {
    ("x-api-key", api_key())
}

fn json_ct() -> (&'static str, String) {
    ("content-type", "application/json".to_string())
}

/// A case whose status has one error code (every status but 400, which proxy and functions
/// answer with several: use [`rejected`]).
fn case(name: impl Into<String>, request: Vec<u8>, status: u16) -> Case {
    let code = match status {
        200 | 201 | 204 => None,
        401 => Some("unauthorized"),
        403 => Some("forbidden"),
        404 => Some("not_found"),
        405 => Some("method_not_allowed"),
        408 => Some("request_timeout"),
        412 => Some("version_mismatch"),
        413 => Some("payload_too_large"),
        414 => Some("uri_too_long"),
        415 => Some("unsupported_media_type"),
        429 => Some("rate_limited"),
        431 => Some("request_header_fields_too_large"),
        other => panic!("case with status {other} needs its code: use rejected()"),
    };
    Case {
        name: name.into(),
        request,
        status,
        code,
    }
}

/// A 400 case and the code it must carry.
fn rejected(name: impl Into<String>, request: Vec<u8>, code: &'static str) -> Case {
    Case {
        name: name.into(),
        request,
        status: 400,
        code: Some(code),
    }
}

fn post_json(path: &str, body: &[u8]) -> Vec<u8> {
    http("POST", path, &[key(), json_ct()], body)
}

fn body_cases(existing_user: &str, existing_product: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    // Each with the code it gets: the JSON parser's, the field rules', or the proxy's own
    // UTF-8 check (bad_request) before the body reaches a function.
    let malformed: &[(&[u8], &str)] = &[
        (b"", "invalid_json"),
        (b" ", "invalid_json"),
        (b"{", "invalid_json"),
        (b"}", "invalid_json"),
        (b"{\"name\":", "invalid_json"),
        (b"{\"name\":\"a\"", "invalid_json"),
        (b"{\"name\" \"a\"}", "invalid_json"),
        (b"{'name':'a'}", "invalid_json"),
        (b"{name:\"a\"}", "invalid_json"),
        (b"null", "invalid_json"),
        (b"[]", "invalid_json"),
        (b"\"str\"", "invalid_json"),
        (b"42", "invalid_json"),
        (b"true", "invalid_json"),
        (b"{\"a\":1,}", "invalid_field"),
        (b"{\"a\":01}", "invalid_field"),
        (b"\xff\xfe{}", "bad_request"),
        (b"{\"name\":\"\xc3\x28\"}", "bad_request"),
        (b"{\"name\":\"a\"}garbage", "invalid_field"),
        (b"\x00{}", "invalid_json"),
        (
            b"{\"name\":\"a\\u0000b\",\"email\":\"a@b.co\"}",
            "invalid_field",
        ),
    ];
    for (path, field_set) in [("/api/users", "users"), ("/api/products", "products")] {
        for (i, (body, code)) in malformed.iter().enumerate() {
            cases.push(rejected(
                format!("{field_set} malformed #{i}"),
                post_json(path, body),
                code,
            ));
        }
        let deep = format!("{{\"name\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        cases.push(rejected(
            format!("{field_set} 10000-deep nesting"),
            post_json(path, deep.as_bytes()),
            "invalid_field",
        ));
        cases.push(case(
            format!("{field_set} 10 MB body"),
            post_json(path, &vec![b' '; 10 * 1024 * 1024]),
            413,
        ));
        cases.push(case(
            format!("{field_set} 100 KB body"),
            post_json(
                path,
                format!("{{\"name\":\"{}\"}}", "a".repeat(100_000)).as_bytes(),
            ),
            413,
        ));
        for (ct, status) in [
            ("text/plain", 415),
            ("application/xml", 415),
            ("multipart/form-data; boundary=x", 415),
            ("application/x-www-form-urlencoded", 415),
            ("application/jsonp", 415),
        ] {
            cases.push(case(
                format!("{field_set} content-type {ct}"),
                http("POST", path, &[key(), ("content-type", ct.into())], b"{}"),
                status,
            ));
        }
        cases.push(case(
            format!("{field_set} no content-type"),
            http("POST", path, &[key()], b"{\"name\":\"a\"}"),
            415,
        ));
        cases.push(rejected(
            format!("{field_set} json type, form body"),
            post_json(path, b"name=a&email=b"),
            "invalid_json",
        ));
    }

    let user_fields: &[(&str, &str)] = &[
        ("name", "5"),
        ("name", "true"),
        ("name", "null"),
        ("name", "[]"),
        ("name", "{}"),
        ("name", "\"\""),
        ("email", "5"),
        ("email", "null"),
        ("email", "\"no-at-sign\""),
        ("email", "\"a@b\""),
        ("email", "\"<script>@x.io\""),
    ];
    for (field, value) in user_fields {
        let mut body: Value = serde_json::json!({"name": "Ada", "email": "ada@example.com"});
        body[*field] = serde_json::from_str(value).unwrap();
        cases.push(rejected(
            format!("user {field}={value}"),
            post_json("/api/users", body.to_string().as_bytes()),
            "invalid_field",
        ));
    }
    cases.push(rejected(
        "user name 101 chars",
        post_json(
            "/api/users",
            format!("{{\"name\":\"{}\",\"email\":\"a@b.co\"}}", "n".repeat(101)).as_bytes(),
        ),
        "invalid_field",
    ));
    cases.push(rejected(
        "user email 300 chars",
        post_json(
            "/api/users",
            format!("{{\"name\":\"n\",\"email\":\"a@{}.com\"}}", "b".repeat(300)).as_bytes(),
        ),
        "invalid_field",
    ));
    cases.push(rejected(
        "user missing email",
        post_json("/api/users", b"{\"name\":\"Ada\"}"),
        "invalid_field",
    ));
    cases.push(rejected(
        "user missing name",
        post_json("/api/users", b"{\"email\":\"a@b.co\"}"),
        "invalid_field",
    ));
    cases.push(rejected(
        "user unknown field",
        post_json(
            "/api/users",
            b"{\"name\":\"A\",\"email\":\"a@b.co\",\"role\":\"admin\"}",
        ),
        "invalid_field",
    ));
    cases.push(rejected(
        "user duplicate key",
        post_json(
            "/api/users",
            b"{\"name\":\"A\",\"name\":\"B\",\"email\":\"a@b.co\"}",
        ),
        "invalid_json",
    ));

    let product_fields: &[(&str, &str)] = &[
        ("sku", "\"lower\""),
        ("sku", "\"\""),
        ("sku", "123"),
        ("sku", "\"A B\""),
        ("name", "\"\""),
        ("name", "7"),
        ("price_cents", "-1"),
        ("price_cents", "19.99"),
        ("price_cents", "1e400"),
        ("price_cents", "\"100\""),
        ("price_cents", "18446744073709551616"),
        ("price_cents", "1.0"),
        ("currency", "\"eur\""),
        ("currency", "\"EURO\""),
        ("currency", "null"),
        ("stock", "-1"),
        ("stock", "4294967296"),
        ("stock", "2.5"),
        ("stock", "\"5\""),
        ("stock", "1e3"),
        ("category", "\"a/b\""),
        ("category", "5"),
        ("category", "\"\""),
    ];
    for (field, value) in product_fields {
        let mut body = format!("{{\"sku\":\"S-1\",\"name\":\"Lamp\",\"price_cents\":100,\"currency\":\"EUR\",\"stock\":1,\"{field}\":{value}}}");
        if *field != "category" {
            // Replace the default value for this field instead of adding a duplicate key.
            let mut v: Value =
                serde_json::from_str(&body.replace(&format!(",\"{field}\":{value}"), "")).unwrap();
            v[*field] = Value::Null;
            body = v.to_string().replace(
                &format!("\"{field}\":null"),
                &format!("\"{field}\":{value}"),
            );
        }
        // A number no JSON parser takes is a syntax error; every other value breaks a rule.
        let code = if *value == "1e400" {
            "invalid_json"
        } else {
            "invalid_field"
        };
        cases.push(rejected(
            format!("product {field}={value}"),
            post_json("/api/products", body.as_bytes()),
            code,
        ));
    }
    for missing in ["sku", "name", "price_cents", "currency", "stock"] {
        let mut v = serde_json::json!({"sku":"S-1","name":"Lamp","price_cents":100,"currency":"EUR","stock":1});
        v.as_object_mut().unwrap().remove(missing);
        cases.push(rejected(
            format!("product missing {missing}"),
            post_json("/api/products", v.to_string().as_bytes()),
            "invalid_field",
        ));
    }

    let patch = |path: String, body: &[u8]| http("PATCH", &path, &[key(), json_ct()], body);
    let user = format!("/api/users/{existing_user}");
    let product = format!("/api/products/{existing_product}");
    cases.push(rejected(
        "patch user empty object",
        patch(user.clone(), b"{}"),
        "invalid_field",
    ));
    cases.push(rejected(
        "patch user bad email",
        patch(user.clone(), b"{\"email\":\"x\"}"),
        "invalid_field",
    ));
    cases.push(rejected(
        "patch user unknown field",
        patch(user.clone(), b"{\"id\":\"other\"}"),
        "invalid_field",
    ));
    cases.push(case(
        "patch user if-match garbage",
        http(
            "PATCH",
            &user,
            &[key(), json_ct(), ("if-match", "nonsense".into())],
            b"{\"name\":\"X\"}",
        ),
        412,
    ));
    cases.push(rejected(
        "patch product sku",
        patch(product.clone(), b"{\"sku\":\"NEW\"}"),
        "invalid_field",
    ));
    cases.push(rejected(
        "patch product negative stock",
        patch(product.clone(), b"{\"stock\":-3}"),
        "invalid_field",
    ));
    cases.push(rejected(
        "patch product null json",
        patch(product.clone(), b"null"),
        "invalid_json",
    ));
    let reservations = format!("{product}/reservations");
    for (name, body) in [
        ("reserve 0", &b"{\"quantity\":0}"[..]),
        ("reserve 1001", b"{\"quantity\":1001}"),
        ("reserve -1", b"{\"quantity\":-1}"),
        ("reserve 1.5", b"{\"quantity\":1.5}"),
        ("reserve string", b"{\"quantity\":\"1\"}"),
        ("reserve missing", b"{}"),
        ("reserve extra", b"{\"quantity\":1,\"free\":true}"),
    ] {
        cases.push(rejected(
            name,
            post_json(&reservations, body),
            "invalid_field",
        ));
    }
    cases.push(rejected(
        "reserve huge",
        post_json(&reservations, b"{\"quantity\":99999999999999999999}"),
        "invalid_field",
    ));
    cases
}

fn path_cases() -> Vec<Case> {
    let get = |target: &str| http("GET", target, &[key()], b"");
    let mut cases = Vec::new();
    for target in [
        "/api/users/../products",
        "/api/users/./x",
        "/api/users/%2e%2e/products",
        "/api/users/%2E%2E/%2E%2E/etc/passwd",
        "/api/users%2F..%2Fproducts",
        "/api/users/%252e%252e/products",
        "/api/users/..%2fproducts",
        "/api/users\\..\\products",
        "//api/users",
        "/api//users",
        "/api/users/%00",
        "/api/users/%5c..%5cproducts",
        "/api/users/.%2e/products",
    ] {
        cases.push(rejected(
            format!("traversal {target}"),
            get(target),
            "bad_request",
        ));
    }
    // 400s here: the proxy's path checks (bad_request), the functions' query rules
    // (invalid_query) and cursor check (invalid_cursor).
    for (target, status, code) in [
        (format!("/api/users/{}", "a".repeat(5000)), 404, "not_found"),
        (
            format!("/api/users/{}", "a".repeat(9000)),
            414,
            "uri_too_long",
        ),
        (
            format!("/api/users?q={}", "x".repeat(9000)),
            414,
            "uri_too_long",
        ),
        (format!("/{}", "seg/".repeat(2100)), 414, "uri_too_long"),
        ("/api/users/'%20OR%201=1--".to_string(), 404, "not_found"),
        (
            "/api/users/%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_string(),
            400,
            "bad_request",
        ),
        ("/api/users/%F0%9F%92%A9".to_string(), 404, "not_found"),
        ("/api/users/%ZZ".to_string(), 404, "not_found"),
        (
            "/api/users/00000000-0000-0000-0000-00000000000g".to_string(),
            404,
            "not_found",
        ),
        ("/api/products/%20".to_string(), 404, "not_found"),
        (
            "/api/products/x/reservations/y/z".to_string(),
            404,
            "not_found",
        ),
        ("/api/nothing".to_string(), 404, "not_found"),
        ("/api".to_string(), 404, "not_found"),
        ("/api/users?limit=0".to_string(), 400, "invalid_query"),
        ("/api/users?limit=-5".to_string(), 400, "invalid_query"),
        ("/api/users?limit=1e2".to_string(), 400, "invalid_query"),
        (
            "/api/users?limit=99999999999999999999".to_string(),
            400,
            "invalid_query",
        ),
        ("/api/users?limit=".to_string(), 400, "invalid_query"),
        (
            "/api/users?limit=5&limit=6".to_string(),
            400,
            "invalid_query",
        ),
        ("/api/users?cursor=".to_string(), 400, "invalid_cursor"),
        (
            "/api/users?cursor=%00%00".to_string(),
            400,
            "invalid_cursor",
        ),
        (
            "/api/users?cursor=eyJrIjoiVVNFUiN4In0.AAAA".to_string(),
            400,
            "invalid_cursor",
        ),
        (
            format!("/api/users?cursor={}", "A".repeat(2000)),
            400,
            "invalid_cursor",
        ),
        (
            "/api/products?category=../../x".to_string(),
            400,
            "invalid_query",
        ),
        (
            "/api/products?category=%3Cb%3E".to_string(),
            400,
            "invalid_query",
        ),
        (
            "/api/products?limit=abc&category=ok".to_string(),
            400,
            "invalid_query",
        ),
    ] {
        cases.push(Case {
            name: format!("path {}", &target[..target.len().min(60)]),
            request: get(&target),
            status,
            code: Some(code),
        });
    }
    cases
}

fn http_cases() -> Vec<Case> {
    let host = authority();
    let k = api_key();
    let mut cases = Vec::new();
    for method in ["BREW", "PROPFIND", "TRACE", "PUT", "FOO-BAR"] {
        cases.push(case(
            format!("method {method}"),
            http(method, "/api/users", &[key()], b""),
            405,
        ));
    }
    // Framing the proxy (or Pingora before it) refuses: its 400 is always `bad_request`.
    let raw = |name: &str, bytes: String, status: u16| {
        if status == 400 {
            rejected(name, bytes.into_bytes(), "bad_request")
        } else {
            case(name, bytes.into_bytes(), status)
        }
    };
    cases.push(raw(
        "no host",
        format!("GET /api/users HTTP/1.1\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"),
        400,
    ));
    cases.push(raw("64 KB header", format!("GET /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(65536)), 431));
    cases.push(raw("many headers", format!("GET /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\n{}Connection: close\r\n\r\n", "X-A: b\r\n".repeat(300)), 400));
    cases.push(raw("CR in header value", format!("GET /api/users HTTP/1.1\r\nHost: {host}\r\nX-A: a\rb\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"), 400));
    cases.push(raw("header injection attempt", format!("GET /api/users HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n\rX-B: c\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"), 400));
    cases.push(raw("space before colon", format!("GET /api/users HTTP/1.1\r\nHost: {host}\r\nX-A : a\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"), 400));
    cases.push(raw("conflicting content-length", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{}}x"), 400));
    cases.push(raw("duplicate equal content-length", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"), 400));
    cases.push(raw("negative content-length", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Length: -1\r\nConnection: close\r\n\r\n"), 400));
    // Content-Length beside Transfer-Encoding, the classic smuggling vector: handled as RFC
    // 9112 asks (chunked wins, Content-Length is dropped, the connection closes after the one
    // response), so the empty chunked body reaches the function, and the request smuggled
    // after it is never answered (every case is checked for exactly one response).
    cases.push(rejected("content-length + transfer-encoding", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /api/products HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(), "invalid_json"));
    cases.push(raw("transfer-encoding gzip,chunked", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"), 400));
    cases.push(raw("transfer-encoding twice", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\n0\r\n\r\n"), 400));
    cases.push(raw("bad chunk size", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"), 400));
    cases.push(raw("chunk longer than declared", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n{{}}\r\n0\r\n\r\n"), 400));
    cases.push(raw("chunked body 2 MB", format!("POST /api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n200000\r\n{}\r\n0\r\n\r\n", " ".repeat(0x200000)), 413));
    cases.push(raw(
        "garbage request line",
        "\x01\x02 nonsense\r\n\r\n".to_string(),
        400,
    ));
    cases.push(raw("HTTP/0.9", "GET /api/users\r\n\r\n".to_string(), 400));
    cases.push(raw("absolute-form target", format!("GET http://evil.example/api/users HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"), 400));
    cases.push(raw(
        "asterisk target",
        format!(
            "OPTIONS * HTTP/1.1\r\nHost: {host}\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"
        ),
        400,
    ));
    cases.push(raw("unknown version", format!("GET /api/users HTTP/7.3\r\nHost: {host}\r\nx-api-key: {k}\r\nConnection: close\r\n\r\n"), 400));
    cases
}

/// The development HS256 secret (`edge-proxy/config/dev.toml`, also in local-aws.toml): the
/// cases below sign tokens with it that are wrong in one claim each.
use e2e::DEV_JWT_SECRET;

/// An HS256 token signed with the development secret, with the development issuer, audience
/// and scopes, then `change`d.
fn dev_token(change: impl FnOnce(&mut serde_json::Value)) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({
        "sub": "hostile",
        "scope": "users products",
        "iss": "lambda-edge-dev",
        "aud": "lambda-edge",
        "iat": now,
        "exp": now + 300,
    });
    change(&mut claims);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Request headers, as the cases write them.
type Headers = Vec<(&'static str, String)>;

fn bearer(token: String) -> Headers {
    vec![("authorization", format!("Bearer {token}"))]
}

fn jwt_claim_cases() -> Vec<(&'static str, Headers, u16)> {
    let remove = |name: &'static str| {
        move |c: &mut serde_json::Value| {
            c.as_object_mut().unwrap().remove(name);
        }
    };
    vec![
        ("jwt as minted", bearer(dev_token(|_| {})), 200),
        ("jwt without iss", bearer(dev_token(remove("iss"))), 401),
        ("jwt without aud", bearer(dev_token(remove("aud"))), 401),
        (
            "jwt with iss as an array",
            bearer(dev_token(|c| {
                c["iss"] = serde_json::json!(["lambda-edge-dev"])
            })),
            401,
        ),
        (
            "jwt with another issuer",
            bearer(dev_token(|c| c["iss"] = "someone-else".into())),
            401,
        ),
        (
            "jwt with aud array containing ours",
            bearer(dev_token(|c| {
                c["aud"] = serde_json::json!(["other", "lambda-edge"])
            })),
            200,
        ),
        (
            "jwt with aud array without ours",
            bearer(dev_token(|c| c["aud"] = serde_json::json!(["other"]))),
            401,
        ),
        (
            "jwt with client_id instead of aud",
            bearer(dev_token(|c| {
                c.as_object_mut().unwrap().remove("aud");
                c["client_id"] = "lambda-edge".into();
            })),
            401,
        ),
        ("jwt without exp", bearer(dev_token(remove("exp"))), 401),
        ("jwt without sub", bearer(dev_token(remove("sub"))), 401),
    ]
}

fn auth_cases() -> Vec<Case> {
    let get = |headers: &[(&str, String)]| http("GET", "/api/users", headers, b"");
    let none_alg = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsInNjb3BlIjoidXNlcnMiLCJleHAiOjQxMDI0NDQ4MDB9.";
    let mut cases = Vec::new();
    for (name, headers, status) in [
        ("no credentials", vec![], 401),
        ("empty api key", vec![("x-api-key", String::new())], 401),
        (
            "wrong api key",
            vec![("x-api-key", "nope".to_string())],
            401,
        ),
        (
            "api key with spaces",
            vec![("x-api-key", format!(" {} ", api_key()))],
            200,
        ),
        (
            "16 KB api key",
            vec![("x-api-key", "k".repeat(16 * 1024))],
            401,
        ),
        (
            "bearer only",
            vec![("authorization", "Bearer".to_string())],
            401,
        ),
        (
            "bearer empty",
            vec![("authorization", "Bearer ".to_string())],
            401,
        ),
        (
            "basic auth",
            vec![("authorization", "Basic YWRtaW46YWRtaW4=".to_string())],
            401,
        ),
        (
            "two-part token",
            vec![("authorization", "Bearer a.b".to_string())],
            401,
        ),
        (
            "garbage token",
            vec![("authorization", "Bearer !!!.@@@.###".to_string())],
            401,
        ),
        (
            "alg none token",
            vec![("authorization", format!("Bearer {none_alg}"))],
            401,
        ),
        (
            "20 KB token",
            vec![(
                "authorization",
                format!(
                    "Bearer {}.{}.{}",
                    "a".repeat(10_000),
                    "b".repeat(10_000),
                    "c"
                ),
            )],
            401,
        ),
        (
            "spoofed identity only",
            vec![
                ("x-consumer-id", "admin".to_string()),
                ("x-consumer-scopes", "users".to_string()),
            ],
            401,
        ),
        (
            "spoofed identity and bad key",
            vec![
                ("x-consumer-id", "admin".to_string()),
                ("x-api-key", "bad".to_string()),
            ],
            401,
        ),
        (
            "products-only key on users",
            vec![("x-api-key", "lambda-edge-products-only-key".to_string())],
            403,
        ),
    ]
    .into_iter()
    .chain(jwt_claim_cases())
    {
        cases.push(case(format!("auth {name}"), get(&headers), status));
    }
    cases
}

async fn item_counts() -> Vec<(String, i32)> {
    let client = service_core::dynamo::client_from_env().await;
    let mut counts = Vec::new();
    for table in ["UsersTable", "ProductsTable", "RegistryTable"] {
        let mut total = 0;
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("count {table}: {e}"));
            total += page.count();
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        counts.push((table.to_string(), total));
    }
    counts
}

async fn create(path: &str, body: &str) -> String {
    let reply = send_raw(&post_json(path, body.as_bytes())).await.unwrap();
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let json: Value = serde_json::from_slice(&reply.body).unwrap();
    json["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn hostile_inputs_get_4xx_json_and_store_nothing() {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let user = create(
        "/api/users",
        &format!("{{\"name\":\"Target\",\"email\":\"t{unique}@example.com\"}}"),
    )
    .await;
    let product = create(
        "/api/products",
        &format!("{{\"sku\":\"H-{}\",\"name\":\"Target\",\"price_cents\":1,\"currency\":\"EUR\",\"stock\":5}}", &unique[..12].to_uppercase()),
    )
    .await;

    let mut cases = body_cases(&user, &product);
    cases.extend(path_cases());
    cases.extend(http_cases());
    cases.extend(auth_cases());
    assert!(cases.len() >= 150, "the suite has {} cases", cases.len());

    let before = item_counts().await;
    let mut failures = Vec::new();
    for case in &cases {
        let Some(reply) = send_raw(&case.request).await else {
            failures.push(format!("{}: no HTTP response", case.name));
            continue;
        };
        if reply.status >= 500 {
            failures.push(format!("{}: server error {}", case.name, reply.status));
        }
        if reply.responses != 1 {
            failures.push(format!(
                "{}: {} responses to one request",
                case.name, reply.responses
            ));
        }
        if reply.status != case.status {
            failures.push(format!(
                "{}: expected {}, got {} {}",
                case.name,
                case.status,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
            continue;
        }
        if reply.status == 200 {
            continue;
        }
        if !reply.headers.contains("content-type: application/json") {
            failures.push(format!("{}: not JSON: {}", case.name, reply.headers));
            continue;
        }
        match serde_json::from_slice::<Value>(&reply.body) {
            Ok(json) => {
                let code = json["error"]["code"].as_str().unwrap_or("");
                if Some(code) != case.code {
                    failures.push(format!(
                        "{}: expected code {:?}, got {code:?}",
                        case.name, case.code
                    ));
                }
                let message = json["error"]["message"].as_str().unwrap_or("");
                if code.is_empty() || message.is_empty() || message.chars().count() > 250 {
                    failures.push(format!("{}: bad error shape {json}", case.name));
                }
                if message.contains('<') || message.contains("\r") || message.contains("aaaaaaaaaa")
                {
                    failures.push(format!(
                        "{}: message echoes the payload: {message}",
                        case.name
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: body is not JSON ({e})", case.name)),
        }
    }
    let after = item_counts().await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(before, after, "hostile requests stored something");
    println!("{} hostile cases passed", cases.len());

    // Hostile methods and paths do not become metric labels (bounded series), where the
    // admin listener is reachable (the local stack).
    if let Ok(admin) = std::env::var("E2E_ADMIN_URL") {
        let metrics = e2e::client()
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for method in ["BREW", "PROPFIND", "FOO-BAR"] {
            assert!(!metrics.contains(method), "method {method} became a label");
        }
        assert!(metrics.contains("edge_refused_heads_total{reason=\"malformed\"}"));
    }

    // Still alive: proxy and both functions answer.
    for path in ["/api/users?limit=1", "/api/products?limit=1"] {
        let reply = send_raw(&http("GET", path, &[key()], b"")).await.unwrap();
        assert_eq!(reply.status, 200, "{path} after the suite");
    }
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_is_cut_off() {
    let mut stream = TcpStream::connect(authority()).await.unwrap();
    let head = format!(
        "POST /api/users HTTP/1.1\r\nHost: {}\r\nx-api-key: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        authority(),
        api_key()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The test stack cuts clients that stall for 3 s (client-timeout-ms): well within 10 s,
    // with a JSON 408 that says why.
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the proxy kept a stalled connection open");
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], "request_timeout");
}

#[tokio::test]
async fn a_client_that_sends_its_head_slowly_is_cut_off_with_408() {
    let mut stream = TcpStream::connect(authority()).await.unwrap();
    let head = format!(
        "GET /api/users HTTP/1.1\r\nHost: {}\r\nx-api-key: {}\r\n",
        authority(),
        api_key()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // One byte every 200 ms: every read is quick, the head never ends. The test stack gives a
    // head 2 s (head-timeout-ms); the drip would take 60 s. Cut off well within 5 s.
    let started = std::time::Instant::now();
    let mut dripped = 0;
    for _ in 0..300 {
        if stream.write_all(b"a").await.is_err() {
            break;
        }
        dripped += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut probe)).await
        {
            break;
        }
    }
    assert!(
        dripped < 300,
        "the proxy let the slow head go on for a minute"
    );
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a 2 s head deadline took {:?}",
        started.elapsed()
    );
    assert!(closed.is_ok(), "the proxy kept the slow connection open");
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], "request_timeout");
}

//! SigV4 verification the way a Lambda function URL with `AuthType: AWS_IAM` does it: the
//! request must carry a signature for service `lambda` in this front's region, by a known
//! access key (with its session token, if it has one), dated within five minutes, over
//! `host`, `x-amz-date` and `x-amz-content-sha256`, whose body hash matches the body.
//!
//! The signature is recomputed with `aws-sigv4` from what arrived (method, path and query,
//! the headers the request says it signed, the body), never with the code that produced it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a request's `x-amz-date` may be from the front's clock.
const MAX_SKEW: Duration = Duration::from_secs(300);

/// What a front accepts: one identity, one region, one host name.
#[derive(Debug, Clone)]
pub struct Expected {
    pub access_key: String,
    pub secret_key: String,
    /// Required as `x-amz-security-token` when set (temporary credentials).
    pub session_token: Option<String>,
    pub region: String,
    /// The `Host` the front is reached by (`localhost:9200`).
    pub host: String,
}

/// Why a request was refused (AWS answers every one of them with 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization`, or not a SigV4 one.
    Unsigned,
    /// The `Authorization` header or `x-amz-date` is malformed.
    Malformed,
    /// Signed by an access key this front does not know.
    UnknownAccessKey,
    /// Signed for another service, region or day.
    WrongScope,
    /// Dated more than five minutes from now.
    Skewed,
    /// `host`, `x-amz-date` or `x-amz-content-sha256` is not signed.
    MissingSignedHeader,
    /// The request is for another host.
    WrongHost,
    /// The session token is missing or not the one issued with the key.
    WrongSessionToken,
    /// `x-amz-content-sha256` is not the hash of the body.
    BodyHash,
    /// The signature does not match.
    Signature,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Malformed => "malformed",
            Refusal::UnknownAccessKey => "unknown access key",
            Refusal::WrongScope => "wrong scope",
            Refusal::Skewed => "clock skew",
            Refusal::MissingSignedHeader => "missing signed header",
            Refusal::WrongHost => "wrong host",
            Refusal::WrongSessionToken => "wrong session token",
            Refusal::BodyHash => "body hash",
            Refusal::Signature => "signature mismatch",
        }
    }
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refusal> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(Refusal::Unsigned)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(Refusal::Malformed)?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(Refusal::Malformed),
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(Refusal::Malformed);
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope[..] else {
        return Err(Refusal::Malformed);
    };
    if terminator != "aws4_request" {
        return Err(Refusal::WrongScope);
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// `20150830T123600Z` as a time.
pub fn parse_amz_date(date: &str) -> Option<SystemTime> {
    if date.len() != 16 || !date.is_ascii() || &date[8..9] != "T" || &date[15..] != "Z" {
        return None;
    }
    let n = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a request as an `AWS_IAM` function URL would; `path_and_query` as it arrived.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    expected: &Expected,
    now: SystemTime,
) -> Result<(), Refusal> {
    let authorization = header(headers, "authorization").ok_or(Refusal::Unsigned)?;
    let auth = parse_authorization(authorization)?;
    if auth.access_key != expected.access_key {
        return Err(Refusal::UnknownAccessKey);
    }
    let date_text = header(headers, "x-amz-date").ok_or(Refusal::Malformed)?;
    let date = parse_amz_date(date_text).ok_or(Refusal::Malformed)?;
    if auth.service != "lambda"
        || auth.region != expected.region
        || Some(auth.date) != date_text.get(..8)
    {
        return Err(Refusal::WrongScope);
    }
    let skew = now.duration_since(date).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(Refusal::Skewed);
    }
    for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if !auth.signed_headers.contains(&required) {
            return Err(Refusal::MissingSignedHeader);
        }
    }
    let host = header(headers, "host").ok_or(Refusal::WrongHost)?;
    if !host.eq_ignore_ascii_case(&expected.host) {
        return Err(Refusal::WrongHost);
    }
    if let Some(token) = &expected.session_token {
        let sent = header(headers, "x-amz-security-token").unwrap_or_default();
        if !auth.signed_headers.contains(&"x-amz-security-token")
            || !bool::from(sent.as_bytes().ct_eq(token.as_bytes()))
        {
            return Err(Refusal::WrongSessionToken);
        }
    }
    let body_hash = hex::encode(Sha256::digest(body));
    if header(headers, "x-amz-content-sha256") != Some(body_hash.as_str()) {
        return Err(Refusal::BodyHash);
    }

    // Recompute over exactly the headers the request says it signed.
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        let value = header(headers, name).ok_or(Refusal::MissingSignedHeader)?;
        signed.push((name, value));
    }
    let credentials = Credentials::new(
        &expected.access_key,
        &expected.secret_key,
        expected.session_token.clone(),
        None,
        "function-url",
    );
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&expected.region)
        .name("lambda")
        .time(date)
        .settings(settings)
        .build()
        .map_err(|_| Refusal::Malformed)?
        .into();
    let url = format!("http://{host}{path_and_query}");
    let request = SignableRequest::new(method, &url, signed.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| Refusal::Malformed)?;
    let (_, signature) = sign(request, &params)
        .map_err(|_| Refusal::Malformed)?
        .into_parts();
    if bool::from(signature.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `get-vanilla` case of the published AWS SigV4 test suite, as a front for service
    /// `service` would see it, proves the recomputation matches AWS's.
    #[test]
    fn the_published_vector_verifies() {
        let expected_signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={expected_signature}"
        );
        let auth = parse_authorization(&authorization).unwrap();
        assert_eq!(auth.signature, expected_signature);
        assert_eq!(
            (auth.access_key, auth.date, auth.region, auth.service),
            ("AKIDEXAMPLE", "20150830", "us-east-1", "service")
        );
        // Recomputed from the request alone, as the front does.
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "vector",
        );
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("service")
            .time(parse_amz_date("20150830T123600Z").unwrap())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "GET",
            "https://example.amazonaws.com/",
            [
                ("host", "example.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
            ]
            .into_iter(),
            SignableBody::Bytes(b""),
        )
        .unwrap();
        let (_, signature) = sign(request, &params).unwrap().into_parts();
        assert_eq!(signature, expected_signature);
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        );
        for bad in [
            "",
            "2015-08-30",
            "20151330T123600Z",
            "20150830 123600Z",
            "20150830T1236000",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsigned_and_malformed_authorizations_are_refused() {
        let expected = Expected {
            access_key: "AKID".into(),
            secret_key: "secret".into(),
            session_token: None,
            region: "us-east-1".into(),
            host: "localhost:1".into(),
        };
        let check = |authorization: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert("host", "localhost:1".parse().unwrap());
            headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
            if let Some(value) = authorization {
                headers.insert("authorization", value.parse().unwrap());
            }
            verify("GET", "/", &headers, b"", &expected, SystemTime::now())
        };
        assert_eq!(check(None), Err(Refusal::Unsigned));
        assert_eq!(check(Some("Bearer x")), Err(Refusal::Unsigned));
        assert_eq!(
            check(Some("AWS4-HMAC-SHA256 nonsense")),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            check(Some(
                "AWS4-HMAC-SHA256 Credential=OTHER/20150830/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
            )),
            Err(Refusal::UnknownAccessKey)
        );
        assert_eq!(
            check(Some(
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
            )),
            Err(Refusal::Skewed),
            "a signature from 2015"
        );
    }
}

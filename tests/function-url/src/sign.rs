//! Signing a request for a function URL as an AWS SDK would (`aws-sigv4`, service `lambda`,
//! the body hashed into `x-amz-content-sha256`), for tests that call a front directly.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;

/// The headers to add to `method url` (whose host is `host`) with `body`.
pub fn signed_headers(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    host: &str,
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("lambda")
        .time(time)
        .settings(settings)
        .build()
        .unwrap_or_else(|e| panic!("signing parameters: {e}"))
        .into();
    let request = SignableRequest::new(
        method,
        url,
        [("host", host)].into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap_or_else(|e| panic!("signable request {url}: {e}"));
    let (instructions, _) = sign(request, &params)
        .unwrap_or_else(|e| panic!("sign {url}: {e}"))
        .into_parts();
    instructions
        .into_parts()
        .0
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect()
}

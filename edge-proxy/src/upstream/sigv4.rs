//! SigV4 signing for upstreams marked `aws-iam` (Lambda function URLs with `AuthType: AWS_IAM`).
//!
//! Credentials come from the standard AWS provider chain (environment, profile, container or
//! instance role) and are cached until shortly before they expire. Signing uses the `aws-sigv4`
//! crate. Only `host` and the `x-amz-*` headers are signed, so headers added after signing
//! cannot break the signature; the body is hashed into `x-amz-content-sha256`, as function URLs
//! require, which is why signed requests have their (bounded) body buffered first.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;

use pingora::http::RequestHeader;

use crate::config::UpstreamUrl;
use crate::error::Error;

/// Refresh credentials this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

pub struct Signer {
    provider: SharedCredentialsProvider,
    cached: ArcSwapOption<Credentials>,
    refresh: tokio::sync::Mutex<()>,
}

impl Signer {
    pub fn new(provider: SharedCredentialsProvider) -> Signer {
        Signer {
            provider,
            cached: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The default AWS provider chain.
    pub async fn from_env() -> Signer {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        match config.credentials_provider() {
            Some(provider) => Signer::new(provider),
            None => Signer::new(SharedCredentialsProvider::new(NoCredentials)),
        }
    }

    fn fresh(&self) -> Option<Arc<Credentials>> {
        let cached = self.cached.load_full()?;
        match cached.expiry() {
            Some(expiry) if SystemTime::now() + REFRESH_MARGIN >= expiry => None,
            _ => Some(cached),
        }
    }

    /// Current credentials, refreshed when near expiry (one refresh at a time).
    pub async fn credentials(&self) -> Result<Arc<Credentials>, Error> {
        if let Some(credentials) = self.fresh() {
            return Ok(credentials);
        }
        let _guard = self.refresh.lock().await;
        if let Some(credentials) = self.fresh() {
            return Ok(credentials);
        }
        let credentials = Arc::new(
            self.provider
                .provide_credentials()
                .await
                .map_err(Error::Credentials)?,
        );
        self.cached.store(Some(Arc::clone(&credentials)));
        Ok(credentials)
    }
}

#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no credentials provider configured",
            ),
        ))
    }
}

/// Signs a request head for `url` (a Lambda function URL): adds `x-amz-date`,
/// `x-amz-content-sha256`, `authorization` and, for temporary credentials,
/// `x-amz-security-token`, replacing any `authorization` already there.
pub async fn sign_request(
    signer: &Signer,
    url: &UpstreamUrl,
    region: &str,
    request: &mut RequestHeader,
    body: &[u8],
) -> Result<(), Error> {
    let credentials = signer.credentials().await?;
    let scheme = if url.tls { "https" } else { "http" };
    let host = url.host_header();
    let target = request
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url_text = format!("{scheme}://{host}{target}");
    let signable = Signable {
        method: request.method.as_str(),
        url: &url_text,
        host,
        body,
    };
    let headers = signed_headers(&credentials, region, "lambda", signable, SystemTime::now())?;
    request.remove_header("authorization");
    for (name, value) in headers {
        request
            .insert_header(name, value)
            .map_err(|e| Error::signing("header", e))?;
    }
    Ok(())
}

/// What is signed of a request.
#[derive(Debug, Clone, Copy)]
pub struct Signable<'a> {
    pub method: &'a str,
    /// Full URL (scheme, host, path and query).
    pub url: &'a str,
    pub host: &'a str,
    pub body: &'a [u8],
}

/// Whether the body's hash travels in `x-amz-content-sha256` (and is signed as a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadHash {
    /// What function URLs require, and what the proxy always sends.
    Header,
    /// Only in the canonical request (the published test vectors' form, checked in tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Omitted,
}

/// The headers to add for a signed request: `x-amz-date`, `x-amz-content-sha256`,
/// `authorization` and, for temporary credentials, `x-amz-security-token`.
pub fn signed_headers(
    credentials: &Credentials,
    region: &str,
    service: &str,
    request: Signable<'_>,
    time: SystemTime,
) -> Result<Vec<(String, String)>, Error> {
    headers_for(
        credentials,
        region,
        service,
        request,
        time,
        PayloadHash::Header,
    )
}

fn headers_for(
    credentials: &Credentials,
    region: &str,
    service: &str,
    request: Signable<'_>,
    time: SystemTime,
    payload_hash: PayloadHash,
) -> Result<Vec<(String, String)>, Error> {
    let Signable {
        method,
        url,
        host,
        body,
    } = request;
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    if payload_hash == PayloadHash::Header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| Error::signing("parameters", e))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        [("host", host)].into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| Error::signing("request", e))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| Error::signing("sign", e))?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_credentials() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        )
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    /// The `get-vanilla` case of the published AWS SigV4 test suite (same credentials, time,
    /// region, service and request), through this module's own signing path: the only thing
    /// that differs from what the proxy sends is that the vector carries no
    /// `x-amz-content-sha256` header.
    #[test]
    fn matches_the_published_get_vanilla_vector() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let headers = headers_for(
            &example_credentials(),
            "us-east-1",
            "service",
            Signable {
                method: "GET",
                url: "https://example.amazonaws.com/",
                host: "example.amazonaws.com",
                body: b"",
            },
            time,
            PayloadHash::Omitted,
        )
        .unwrap();
        assert_eq!(
            header(&headers, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(header(&headers, "x-amz-date"), "20150830T123600Z");
    }

    #[test]
    fn signs_the_body_hash_for_lambda() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = signed_headers(
            &example_credentials(),
            "eu-west-1",
            "lambda",
            Signable {
                method: "POST",
                url: "https://abc.lambda-url.eu-west-1.on.aws/users",
                host: "abc.lambda-url.eu-west-1.on.aws",
                body: b"{\"name\":\"Ada\"}",
            },
            time,
        )
        .unwrap();
        let hash = header(&headers, "x-amz-content-sha256");
        assert_eq!(
            hash,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                b"{\"name\":\"Ada\"}"
            ))
        );
        let authorization = header(&headers, "authorization");
        assert!(
            authorization.contains("/eu-west-1/lambda/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"),
            "{authorization}"
        );
        // A different body gives a different signature.
        let other = signed_headers(
            &example_credentials(),
            "eu-west-1",
            "lambda",
            Signable {
                method: "POST",
                url: "https://abc.lambda-url.eu-west-1.on.aws/users",
                host: "abc.lambda-url.eu-west-1.on.aws",
                body: b"{}",
            },
            time,
        )
        .unwrap();
        assert_ne!(header(&other, "authorization"), authorization);
    }

    #[test]
    fn session_tokens_are_sent() {
        let credentials = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "test");
        let headers = signed_headers(
            &credentials,
            "us-east-1",
            "lambda",
            Signable {
                method: "GET",
                url: "https://h/x",
                host: "h",
                body: b"",
            },
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-security-token"), "TOKEN");
    }
}

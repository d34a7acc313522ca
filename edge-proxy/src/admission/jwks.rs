//! JWKS keys for RS256 / ES256 tokens: parsed from a JWKS document (bounded in size and key
//! count; only keys meant for verifying signatures), loaded once from the file at start (a bad
//! file is a start-up error) and re-fetched from the URL on its refresh interval by a Pingora
//! background service. A failed, oversized or invalid fetch keeps the last good keys, and is
//! logged and counted (`edge_jwks_refresh_total`).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::auth::Authenticator;
use crate::config::{ConfigError, JwksLimits};
use crate::error::Error;
use crate::ops::metrics::Metrics;

/// A verification key from a JWKS, with the one algorithm it may verify.
#[derive(Clone)]
pub struct JwksKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The current JWKS keys; replaced whole on refresh.
#[derive(Clone, Default)]
pub struct JwksKeys(Arc<ArcSwap<Vec<JwksKey>>>);

impl JwksKeys {
    /// The current keys.
    pub fn load(&self) -> arc_swap::Guard<Arc<Vec<JwksKey>>> {
        self.0.load()
    }

    pub fn replace(&self, keys: Vec<JwksKey>) {
        self.0.store(Arc::new(keys));
    }

    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A JWKS document as it arrives: the keys are parsed one by one, so one key of a kind this
/// proxy does not know does not take the others down.
#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document into verification keys, each bound to the algorithm its type allows
/// (RSA → RS256, EC P-256 → ES256). A document over `limits` is refused whole. Keys that are
/// not for verifying signatures (`use` other than `sig`, `key_ops` without `verify`), of other
/// types, with a conflicting `alg`, or unparseable are skipped.
pub fn parse_jwks(json: &str, limits: JwksLimits) -> Result<Vec<JwksKey>, Error> {
    if json.len() > limits.max_bytes {
        return Err(Error::JwksTooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    let set: RawSet = serde_json::from_str(json).map_err(Error::JwksFormat)?;
    if set.keys.len() > limits.max_keys {
        return Err(Error::JwksTooManyKeys {
            count: set.keys.len(),
            max: limits.max_keys,
        });
    }
    let mut keys = Vec::new();
    for raw in set.keys {
        let jwk: Jwk = match serde_json::from_value(raw) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::warn!(%error, "skipping an unparseable JWKS key");
                continue;
            }
        };
        if let Some(key) = verification_key(&jwk) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The key a JWK gives for verifying signatures, if it is one.
fn verification_key(jwk: &Jwk) -> Option<JwksKey> {
    let common = &jwk.common;
    let for_signatures = common
        .public_key_use
        .as_ref()
        .is_none_or(|usage| *usage == PublicKeyUse::Signature);
    let may_verify = common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    if !for_signatures || !may_verify {
        tracing::info!(kid = ?common.key_id, "skipping a JWKS key that is not for verifying signatures");
        return None;
    }
    let algorithm = match (&jwk.algorithm, common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => Some(JwksKey {
            kid: common.key_id.clone(),
            algorithm,
            key,
        }),
        Err(error) => {
            tracing::warn!(%error, "skipping unusable JWKS key");
            None
        }
    }
}

/// Reads and parses a JWKS file (`auth.jwt.jwks-file`).
pub fn load_file(path: &str, limits: JwksLimits) -> Result<Vec<JwksKey>, Error> {
    let field = |message: String| Error::Config(ConfigError::new("auth.jwt.jwks-file", message));
    let text = std::fs::read_to_string(path).map_err(|e| field(format!("{path}: {e}")))?;
    parse_jwks(&text, limits).map_err(|e| field(format!("{path}: {e}")))
}

pub struct JwksRefresher {
    auth: Arc<Authenticator>,
    url: String,
    file_keys: Vec<JwksKey>,
    interval: Duration,
    limits: JwksLimits,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
}

impl JwksRefresher {
    /// Refreshes `auth`'s keys from `url` (plus the file's keys) every `interval`. The client
    /// follows redirects only within the URL's origin (scheme, host and port), at most three.
    pub fn new(
        auth: Arc<Authenticator>,
        url: String,
        file_keys: Vec<JwksKey>,
        interval: Duration,
        limits: JwksLimits,
        metrics: Arc<Metrics>,
    ) -> Result<JwksRefresher, Error> {
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt.previous().first().is_some_and(|first| {
                let next = attempt.url();
                (
                    first.scheme(),
                    first.host_str(),
                    first.port_or_known_default(),
                ) == (next.scheme(), next.host_str(), next.port_or_known_default())
            });
            if same_origin && attempt.previous().len() <= 3 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(redirects)
            .build()
            .map_err(Error::JwksFetch)?;
        Ok(JwksRefresher {
            auth,
            url,
            file_keys,
            interval,
            limits,
            metrics,
            client,
        })
    }

    /// One fetch; on success the URL's keys (plus the file's) replace the current set. Any
    /// failure (unreachable, a status other than 2xx, a redirect to another origin, too large,
    /// too many keys, no usable key) keeps the current keys.
    pub async fn refresh(&self) -> Result<usize, Error> {
        let outcome = self.fetch().await;
        self.metrics.jwks_refresh(outcome.is_ok());
        let mut keys = outcome?;
        keys.extend(self.file_keys.iter().cloned());
        let count = keys.len();
        self.auth.jwks.replace(keys);
        Ok(count)
    }

    async fn fetch(&self) -> Result<Vec<JwksKey>, Error> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(Error::JwksFetch)?;
        if !response.status().is_success() {
            return Err(Error::JwksStatus(response.status().as_u16()));
        }
        let too_large = Error::JwksTooLarge {
            max_bytes: self.limits.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.limits.max_bytes as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Error::JwksFetch)? {
            body.extend_from_slice(&chunk);
            if body.len() > self.limits.max_bytes {
                return Err(too_large);
            }
        }
        let text = String::from_utf8(body).map_err(|_| Error::JwksEmpty)?;
        let keys = parse_jwks(&text, self.limits)?;
        if keys.is_empty() {
            return Err(Error::JwksEmpty);
        }
        Ok(keys)
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            match self.refresh().await {
                Ok(count) => tracing::info!(keys = count, url = %self.url, "JWKS refreshed"),
                Err(error) => {
                    tracing::warn!(%error, url = %self.url, "JWKS refresh failed; keeping the last good keys")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = include_str!("../../tests/data/jwks.json");

    fn with(field: &str, value: serde_json::Value) -> String {
        let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        set["keys"][0][field] = value;
        set.to_string()
    }

    #[test]
    fn only_keys_for_verifying_signatures_are_kept() {
        let limits = JwksLimits::default();
        assert_eq!(parse_jwks(JWKS, limits).unwrap().len(), 1);
        assert_eq!(
            parse_jwks(&with("use", "sig".into()), limits)
                .unwrap()
                .len(),
            1
        );
        assert!(parse_jwks(&with("use", "enc".into()), limits)
            .unwrap()
            .is_empty());
        let verify = serde_json::json!(["verify"]);
        assert_eq!(
            parse_jwks(&with("key_ops", verify), limits).unwrap().len(),
            1
        );
        let encrypt = serde_json::json!(["encrypt", "wrapKey"]);
        assert!(parse_jwks(&with("key_ops", encrypt), limits)
            .unwrap()
            .is_empty());
        assert!(
            parse_jwks(&with("alg", "ES256".into()), limits)
                .unwrap()
                .is_empty(),
            "alg conflicts with the key type"
        );
    }

    #[test]
    fn one_strange_key_does_not_take_the_others_down() {
        let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let good = set["keys"][0].clone();
        set["keys"] = serde_json::json!([{"kty": "weird", "kid": "x"}, {"kty": "oct", "k": "c2VjcmV0"}, good]);
        assert_eq!(
            parse_jwks(&set.to_string(), JwksLimits::default())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn documents_over_the_limits_are_refused_whole() {
        let small = JwksLimits {
            max_bytes: 100,
            max_keys: 20,
        };
        assert!(matches!(
            parse_jwks(JWKS, small),
            Err(Error::JwksTooLarge { .. })
        ));
        let few = JwksLimits {
            max_bytes: 1 << 20,
            max_keys: 0,
        };
        assert!(matches!(
            parse_jwks(JWKS, few),
            Err(Error::JwksTooManyKeys { .. })
        ));
    }
}

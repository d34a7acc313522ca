//! JWKS keys for RS256 / ES256 tokens: parsed from a JWKS document, loaded once from the file
//! at start (a bad file is a start-up error) and re-fetched from the URL on its refresh
//! interval by a Pingora background service. A failed fetch keeps the last good keys and is
//! logged.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::auth::Authenticator;
use crate::config::ConfigError;
use crate::error::Error;

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

/// Parses a JWKS document into verification keys, each bound to the algorithm its type allows
/// (RSA → RS256, EC P-256 → ES256). Keys of other types or with a conflicting `alg` are skipped.
pub fn parse_jwks(json: &str) -> Result<Vec<JwksKey>, Error> {
    let set: JwkSet = serde_json::from_str(json).map_err(Error::JwksFormat)?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(JwksKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            }),
            Err(error) => tracing::warn!(%error, "skipping unusable JWKS key"),
        }
    }
    Ok(keys)
}

/// Reads and parses a JWKS file (`auth.jwt.jwks-file`).
pub fn load_file(path: &str) -> Result<Vec<JwksKey>, Error> {
    let field = |message: String| Error::Config(ConfigError::new("auth.jwt.jwks-file", message));
    let text = std::fs::read_to_string(path).map_err(|e| field(format!("{path}: {e}")))?;
    parse_jwks(&text).map_err(|e| field(format!("{path}: {e}")))
}

pub struct JwksRefresher {
    pub auth: Arc<Authenticator>,
    pub url: String,
    pub file_keys: Vec<JwksKey>,
    pub interval: Duration,
}

impl JwksRefresher {
    /// One fetch; on success the URL's keys (plus the file's) replace the current set.
    pub async fn refresh(&self, client: &reqwest::Client) -> Result<usize, Error> {
        let response = client
            .get(&self.url)
            .send()
            .await
            .map_err(Error::JwksFetch)?;
        if !response.status().is_success() {
            return Err(Error::JwksStatus(response.status().as_u16()));
        }
        let text = response.text().await.map_err(Error::JwksFetch)?;
        let mut keys = parse_jwks(&text)?;
        if keys.is_empty() {
            return Err(Error::JwksEmpty);
        }
        keys.extend(self.file_keys.iter().cloned());
        let count = keys.len();
        self.auth.jwks.replace(keys);
        Ok(count)
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the JWKS client");
                return;
            }
        };
        loop {
            match self.refresh(&client).await {
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

//! Keeps the JWKS keys current: loads the file once at start (a bad file is a start-up error)
//! and re-fetches the URL on its refresh interval as a Pingora background service. A failed
//! fetch keeps the last good keys and is logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::auth::{parse_jwks, Authenticator, JwksKey};

/// Reads and parses a JWKS file.
pub fn load_file(path: &str) -> Result<Vec<JwksKey>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("auth.jwt.jwks-file {path}: {e}"))?;
    parse_jwks(&text).map_err(|e| format!("auth.jwt.jwks-file {path}: {e}"))
}

pub struct JwksRefresher {
    pub auth: Arc<Authenticator>,
    pub url: String,
    pub file_keys: Vec<JwksKey>,
    pub interval: Duration,
}

impl JwksRefresher {
    /// One fetch; on success the URL's keys (plus the file's) replace the current set.
    pub async fn refresh(&self, client: &reqwest::Client) -> Result<usize, String> {
        let response = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("fetch: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetch: status {}", response.status()));
        }
        let text = response.text().await.map_err(|e| format!("read: {e}"))?;
        let mut keys = parse_jwks(&text)?;
        if keys.is_empty() {
            return Err("the JWKS has no usable keys".into());
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

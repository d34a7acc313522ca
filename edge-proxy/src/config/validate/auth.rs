//! `[auth]`: API keys (stored as SHA-256 hashes) and JWT verification settings.

use super::super::internal::{ApiKey, AuthConfig, JwtSettings};
use super::super::url::UpstreamUrl;
use super::super::wire::AuthSection;
use super::super::ConfigError;
use super::ms_in_range;

pub(super) fn validate(section: AuthSection) -> Result<AuthConfig, ConfigError> {
    let mut api_keys = Vec::new();
    for (i, key) in section.api_keys.into_iter().enumerate() {
        let field = format!("auth.api-keys[{i}]");
        if key.consumer.trim().is_empty()
            || key.consumer.len() > 128
            || !key.consumer.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ConfigError::new(
                format!("{field}.consumer"),
                "must be 1 to 128 printable ASCII characters",
            ));
        }
        let bytes = hex::decode(&key.key_sha256).ok().filter(|b| b.len() == 32);
        let Some(bytes) = bytes else {
            return Err(ConfigError::new(
                format!("{field}.key-sha256"),
                "must be 64 hex characters (a SHA-256)",
            ));
        };
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&bytes);
        if api_keys.iter().any(|k: &ApiKey| k.sha256 == sha256) {
            return Err(ConfigError::new(
                format!("{field}.key-sha256"),
                "duplicates another key",
            ));
        }
        api_keys.push(ApiKey {
            consumer: key.consumer,
            sha256,
            scopes: key.scopes,
        });
    }
    let mut config = AuthConfig {
        api_keys,
        forward_credentials: section.forward_credentials,
        ..AuthConfig::default()
    };
    if let Some(jwt) = section.jwt {
        let secret = match (jwt.hs256_secret, jwt.hs256_secret_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "auth.jwt.hs256-secret-env",
                    "set either hs256-secret or hs256-secret-env",
                ));
            }
            (Some(secret), None) => Some(secret),
            (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
                ConfigError::new(
                    "auth.jwt.hs256-secret-env",
                    format!("environment variable {var} is not set"),
                )
            })?),
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::new(
                "auth.jwt.hs256-secret",
                "must be at least 32 bytes",
            ));
        }
        if let Some(url) = &jwt.jwks_url {
            UpstreamUrl::parse(url)
                .map_err(|e| ConfigError::new("auth.jwt.jwks-url", e.to_string()))?;
        }
        if jwt.leeway_seconds > 300 {
            return Err(ConfigError::new(
                "auth.jwt.leeway-seconds",
                "must be at most 300",
            ));
        }
        if !(256..=65_536).contains(&jwt.max_token_bytes) {
            return Err(ConfigError::new(
                "auth.jwt.max-token-bytes",
                "must be from 256 to 65536",
            ));
        }
        config.jwt = JwtSettings {
            hs256_secret: secret.map(String::into_bytes),
            issuer: jwt.issuer,
            audience: jwt.audience,
            leeway_seconds: jwt.leeway_seconds,
            max_token_bytes: jwt.max_token_bytes,
        };
        config.jwks_file = jwt.jwks_file;
        config.jwks_url = jwt.jwks_url;
        config.jwks_refresh = ms_in_range(
            "auth.jwt.jwks-refresh-seconds",
            jwt.jwks_refresh_seconds.saturating_mul(1000),
            1000,
            86_400_000,
        )?;
    }
    Ok(config)
}

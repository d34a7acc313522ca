//! `[auth]`: API keys (stored as SHA-256 hashes) and JWT verification settings.

use std::sync::Arc;

use super::super::internal::{ApiKey, AuthConfig, JwksLimits, JwtSettings};
use super::super::url::UpstreamUrl;
use super::super::wire::AuthSection;
use super::super::ConfigError;
use super::{ms_in_range, rate_policy, sha256_hex};

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
        let sha256 = sha256_hex(&format!("{field}.key-sha256"), &key.key_sha256)?;
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
    let failure = section.failure_limit;
    let failure_limit = if failure.enabled {
        Some(Arc::new(rate_policy(
            "auth.failure-limit",
            "auth-failures",
            failure.requests_per_second,
            failure.burst,
        )?))
    } else {
        None
    };
    let mut config = AuthConfig {
        api_keys,
        forward_credentials: section.forward_credentials,
        failure_limit,
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
            let parsed = UpstreamUrl::parse(url)
                .map_err(|e| ConfigError::new("auth.jwt.jwks-url", e.to_string()))?;
            if !parsed.tls && !parsed.is_loopback() {
                return Err(ConfigError::new(
                    "auth.jwt.jwks-url",
                    "must be https (plain http only to a loopback host)",
                ));
            }
        }
        if !(256..=10 * 1024 * 1024).contains(&jwt.jwks_max_bytes) {
            return Err(ConfigError::new(
                "auth.jwt.jwks-max-bytes",
                "must be from 256 to 10485760",
            ));
        }
        if !(1..=1000).contains(&jwt.jwks_max_keys) {
            return Err(ConfigError::new(
                "auth.jwt.jwks-max-keys",
                "must be from 1 to 1000",
            ));
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
        config.jwks_limits = JwksLimits {
            max_bytes: jwt.jwks_max_bytes,
            max_keys: jwt.jwks_max_keys,
        };
        config.jwks_refresh = ms_in_range(
            "auth.jwt.jwks-refresh-seconds",
            jwt.jwks_refresh_seconds.saturating_mul(1000),
            1000,
            86_400_000,
        )?;
    }
    Ok(config)
}

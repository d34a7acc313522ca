//! Authentication and authorization at the edge, before any upstream is chosen.
//!
//! - **API keys** (`x-api-key`): the config holds only the SHA-256 of each key. The presented
//!   key's hash is compared with every configured hash in constant time, so timing says nothing
//!   about how close a guess was.
//! - **JWT** (`Authorization: Bearer`): HS256 with a configured secret, RS256/ES256 with keys
//!   from a JWKS (file and/or URL, refreshed in the background; a failed refresh keeps the last
//!   good keys). The algorithm comes from the key, never from the token alone: an HS256 token is
//!   only checked against the HMAC secret and an RS/ES token only against JWKS keys of its type,
//!   so `alg: none` and HS/RS confusion cannot pass. `exp` is required; `nbf`, `iss` and `aud`
//!   are checked with a small leeway when configured.
//! - **Scopes**: a route may require scopes; a valid identity without them gets 403.
//!
//! Clients learn only "missing", "invalid" or "forbidden": never which part of a credential
//! was wrong.

use std::collections::HashSet;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::jwks::JwksKeys;
use crate::config::{ApiKey, AuthMode, JwtSettings};
use crate::error::Error;

/// The API key's header (static: looking it up parses no name).
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who, qualified by how they proved it (`api-key:dev-client`, `jwt:alice`), so a token
    /// whose `sub` equals a key's consumer name is not that consumer: what the proxy forwards
    /// as `x-consumer-id`, logs, and rate limits by.
    pub id: String,
    /// API key consumer name or JWT `sub`, as configured or signed.
    pub consumer: String,
    pub scopes: Vec<String>,
    pub method: AuthMethod,
    /// `id` and the space-joined scopes as header values, made with the identity (an API
    /// key's once, at load, shared by all its requests); `None` when either is not a valid
    /// header value.
    headers: Option<(HeaderValue, HeaderValue)>,
}

impl Identity {
    fn new(method: AuthMethod, consumer: String, scopes: Vec<String>) -> Identity {
        let id = format!("{}:{consumer}", method.prefix());
        let headers = HeaderValue::from_str(&id)
            .ok()
            .zip(HeaderValue::from_str(&scopes.join(" ")).ok());
        Identity {
            id,
            consumer,
            scopes,
            method,
            headers,
        }
    }

    /// `x-consumer-id` and `x-consumer-scopes` as forwarded.
    pub fn header_values(&self) -> Option<&(HeaderValue, HeaderValue)> {
        self.headers.as_ref()
    }
}

/// How a caller proved who it is; forwarded as `x-auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    Jwt,
}

impl AuthMethod {
    /// The header and log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
        }
    }

    /// The prefix of an identity proved this way.
    fn prefix(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// 401: no credentials of an accepted kind.
    Missing,
    /// 401: credentials present but not valid.
    Invalid,
    /// 403: valid, but not allowed on this route.
    Forbidden,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// Checked here, not by the JWT library (which checks `iss` and `aud` only when a token
    /// carries them, and takes an array for `iss`).
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

pub struct Authenticator {
    /// Each key's SHA-256 and its identity, made once: a request shares it.
    api_keys: Vec<([u8; 32], Arc<Identity>)>,
    jwt: JwtSettings,
    hmac_key: Option<DecodingKey>,
    pub jwks: JwksKeys,
}

/// SHA-256 of a key, as the config stores it.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Authenticator {
    pub fn new(api_keys: Vec<ApiKey>, jwt: JwtSettings) -> Authenticator {
        let hmac_key = jwt.hs256_secret.as_deref().map(DecodingKey::from_secret);
        let api_keys = api_keys
            .into_iter()
            .map(|key| {
                let identity = Identity::new(AuthMethod::ApiKey, key.consumer, key.scopes);
                (key.sha256, Arc::new(identity))
            })
            .collect();
        Authenticator {
            api_keys,
            jwt,
            hmac_key,
            jwks: JwksKeys::default(),
        }
    }

    /// Checks the credentials `mode` demands. `Ok(None)` for public routes. Looks up only the
    /// headers `mode` reads: each lookup hashes the name, and a public route reads none.
    pub fn authenticate(
        &self,
        mode: AuthMode,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        let jwt = || {
            if headers.contains_key(http::header::AUTHORIZATION) {
                self.jwt(headers).map(|identity| Some(Arc::new(identity)))
            } else {
                Err(AuthError::Missing)
            }
        };
        match mode {
            AuthMode::Public => Ok(None),
            AuthMode::Jwt => jwt(),
            AuthMode::ApiKey | AuthMode::Any => match headers.get(&X_API_KEY) {
                Some(key) => self.api_key(key.as_bytes()).map(Some),
                None if mode == AuthMode::Any => jwt(),
                None => Err(AuthError::Missing),
            },
        }
    }

    /// 403 unless the identity holds every required scope.
    pub fn authorize(identity: &Identity, required: &[String]) -> Result<(), AuthError> {
        if required
            .iter()
            .all(|scope| identity.scopes.iter().any(|s| s == scope))
        {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }

    fn api_key(&self, presented: &[u8]) -> Result<Arc<Identity>, AuthError> {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        // Compare with every key, in constant time, and only then pick the match.
        let mut found: Option<&Arc<Identity>> = None;
        for (sha256, identity) in &self.api_keys {
            if bool::from(sha256.ct_eq(&presented)) {
                found = Some(identity);
            }
        }
        found.cloned().ok_or(AuthError::Invalid)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.jwt.leeway_seconds;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_string(), "sub".to_string()]);
        // `iss` and `aud` are checked in `claims_hold`, strictly.
        validation.validate_aud = false;
        validation
    }

    /// The configured issuer and audience are required claims: `iss` a string equal to the
    /// issuer, `aud` a string equal to the audience or an array that contains it.
    fn claims_hold(&self, claims: &Claims) -> bool {
        use serde_json::Value;
        let issuer_ok = self.jwt.issuer.as_deref().is_none_or(
            |expected| matches!(&claims.iss, Some(Value::String(iss)) if iss == expected),
        );
        let audience_ok = self
            .jwt
            .audience
            .as_deref()
            .is_none_or(|expected| match &claims.aud {
                Some(Value::String(aud)) => aud == expected,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            });
        issuer_ok && audience_ok
    }

    fn jwt(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = bearer(headers).ok_or(AuthError::Invalid)?;
        if token.is_empty() || token.len() > self.jwt.max_token_bytes {
            return Err(AuthError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self.hmac_key.as_ref().ok_or(AuthError::Invalid)?;
                jsonwebtoken::decode::<Claims>(token, key, &self.validation(Algorithm::HS256))
                    .map_err(|_| AuthError::Invalid)?
                    .claims
            }
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let keys = self.jwks.load();
                let candidates = keys
                    .iter()
                    .filter(|k| k.algorithm == alg)
                    .filter(|k| header.kid.is_none() || k.kid == header.kid);
                let mut verified = None;
                for key in candidates {
                    if let Ok(data) =
                        jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(alg))
                    {
                        verified = Some(data.claims);
                        break;
                    }
                }
                verified.ok_or(AuthError::Invalid)?
            }
            _ => return Err(AuthError::Invalid),
        };
        if claims.sub.is_empty() || claims.sub.len() > 256 || !self.claims_hold(&claims) {
            return Err(AuthError::Invalid);
        }
        let mut scopes: Vec<String> = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        scopes.extend(claims.scp.unwrap_or_default());
        Ok(Identity::new(AuthMethod::Jwt, claims.sub, scopes))
    }
}

/// Mints an HS256 token (the `edge-proxy token` command, for development).
pub fn mint_hs256(
    secret: &[u8],
    subject: &str,
    scopes: &[String],
    issuer: Option<&str>,
    audience: Option<&str>,
    ttl_seconds: u64,
) -> Result<String, Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut claims = serde_json::json!({
        "sub": subject,
        "scope": scopes.join(" "),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds as i64,
    });
    if let Some(issuer) = issuer {
        claims["iss"] = issuer.into();
    }
    if let Some(audience) = audience {
        claims["aud"] = audience.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .map_err(Error::Token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::jwks::parse_jwks;
    use base64::Engine;
    use http::HeaderValue;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"test-secret-0123456789abcdef0123456789";

    // A throwaway RSA key pair (2048 bit) for RS256 tests.
    const RSA_PRIVATE: &str = include_str!("../../tests/data/rsa-private.pem");
    const RSA_PUBLIC_JWKS: &str = include_str!("../../tests/data/jwks.json");
    const RSA_PUBLIC_PEM: &str = include_str!("../../tests/data/rsa-public.pem");

    fn authenticator() -> Authenticator {
        let auth = Authenticator::new(
            vec![ApiKey {
                consumer: "ci".into(),
                sha256: hash_key("good-key"),
                scopes: vec!["users".into()],
            }],
            JwtSettings {
                hs256_secret: Some(SECRET.to_vec()),
                issuer: Some("edge-test".into()),
                audience: Some("lambda-edge".into()),
                leeway_seconds: 5,
                max_token_bytes: 4096,
            },
        );
        auth.jwks
            .replace(parse_jwks(RSA_PUBLIC_JWKS, Default::default()).unwrap());
        auth
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({"sub": "alice", "scope": "users products", "iss": "edge-test", "aud": "lambda-edge", "exp": now() + 60, "nbf": now() - 1})
    }

    fn hs256(claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn rs256(claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-rsa".into());
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    fn check(token: &str) -> Result<Option<Arc<Identity>>, AuthError> {
        authenticator().authenticate(
            AuthMode::Jwt,
            &headers("authorization", &format!("Bearer {token}")),
        )
    }

    #[test]
    fn valid_tokens_pass() {
        let identity = check(&hs256(&claims())).unwrap().unwrap();
        assert_eq!(identity.consumer, "alice");
        assert_eq!(identity.scopes, ["users", "products"]);
        assert_eq!(
            check(&rs256(&claims())).unwrap().unwrap().method,
            AuthMethod::Jwt
        );
    }

    #[test]
    fn wrong_signature() {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"another-secret"),
        )
        .unwrap();
        assert_eq!(check(&token), Err(AuthError::Invalid));
        let mut tampered = hs256(&claims());
        tampered.pop();
        assert_eq!(check(&tampered), Err(AuthError::Invalid));
    }

    #[test]
    fn alg_none_is_rejected() {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&claims())
        );
        assert_eq!(check(&token), Err(AuthError::Invalid));
        let token = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "None"})),
            b64(&claims())
        );
        assert_eq!(check(&token), Err(AuthError::Invalid));
    }

    #[test]
    fn hs_rs_confusion_is_rejected() {
        // Sign HS256 with the RSA *public* key as the HMAC secret: the classic confusion attack.
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
        )
        .unwrap();
        assert_eq!(check(&token), Err(AuthError::Invalid));
        // And an RS256 header on an HMAC-signed token.
        let hs = hs256(&claims());
        let parts: Vec<&str> = hs.split('.').collect();
        let rs_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"RS256","kid":"test-rsa"}"#);
        assert_eq!(
            check(&format!("{rs_header}.{}.{}", parts[1], parts[2])),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn time_claims() {
        let mut expired = claims();
        expired["exp"] = (now() - 60).into();
        assert_eq!(check(&hs256(&expired)), Err(AuthError::Invalid));
        let mut within_leeway = claims();
        within_leeway["exp"] = (now() - 2).into();
        assert!(
            check(&hs256(&within_leeway)).is_ok(),
            "a small clock skew is tolerated"
        );
        let mut not_yet = claims();
        not_yet["nbf"] = (now() + 60).into();
        assert_eq!(check(&hs256(&not_yet)), Err(AuthError::Invalid));
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&hs256(&no_exp)), Err(AuthError::Invalid));
    }

    #[test]
    fn issuer_and_audience() {
        let mut wrong_iss = claims();
        wrong_iss["iss"] = "someone-else".into();
        assert_eq!(check(&hs256(&wrong_iss)), Err(AuthError::Invalid));
        let mut wrong_aud = claims();
        wrong_aud["aud"] = "other-api".into();
        assert_eq!(check(&hs256(&wrong_aud)), Err(AuthError::Invalid));
        let mut no_sub = claims();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert_eq!(check(&hs256(&no_sub)), Err(AuthError::Invalid));
    }

    #[test]
    fn configured_issuer_and_audience_are_required_and_strict() {
        let drop = |name: &str| {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(name);
            c
        };
        assert_eq!(
            check(&hs256(&drop("iss"))),
            Err(AuthError::Invalid),
            "no iss"
        );
        assert_eq!(
            check(&hs256(&drop("aud"))),
            Err(AuthError::Invalid),
            "no aud"
        );
        let mut iss_array = claims();
        iss_array["iss"] = serde_json::json!(["edge-test"]);
        assert_eq!(
            check(&hs256(&iss_array)),
            Err(AuthError::Invalid),
            "iss as an array"
        );
        let mut aud_array = claims();
        aud_array["aud"] = serde_json::json!(["other-api", "lambda-edge"]);
        assert!(
            check(&hs256(&aud_array)).is_ok(),
            "aud array containing ours"
        );
        aud_array["aud"] = serde_json::json!(["other-api"]);
        assert_eq!(check(&hs256(&aud_array)), Err(AuthError::Invalid));
        let mut aud_number = claims();
        aud_number["aud"] = serde_json::json!(7);
        assert_eq!(check(&hs256(&aud_number)), Err(AuthError::Invalid));
        // A Cognito-style access token: `client_id`, no `aud`.
        let mut access = drop("aud");
        access["client_id"] = "lambda-edge".into();
        assert_eq!(check(&hs256(&access)), Err(AuthError::Invalid));
        // Without a configured issuer and audience, neither is needed.
        let lenient = Authenticator::new(
            Vec::new(),
            JwtSettings {
                hs256_secret: Some(SECRET.to_vec()),
                leeway_seconds: 5,
                max_token_bytes: 4096,
                ..JwtSettings::default()
            },
        );
        let token = hs256(&drop("aud"));
        assert!(lenient
            .authenticate(
                AuthMode::Jwt,
                &headers("authorization", &format!("Bearer {token}"))
            )
            .is_ok());
    }

    #[test]
    fn identities_carry_how_they_were_proved() {
        let auth = authenticator();
        let key = auth
            .authenticate(AuthMode::ApiKey, &headers("x-api-key", "good-key"))
            .unwrap()
            .unwrap();
        assert_eq!(key.id, "api-key:ci");
        let mut as_ci = claims();
        as_ci["sub"] = "ci".into();
        let jwt = check(&hs256(&as_ci)).unwrap().unwrap();
        assert_eq!(jwt.id, "jwt:ci");
        assert_ne!(key.id, jwt.id);
    }

    #[test]
    fn missing_scope_is_forbidden() {
        let mut narrow = claims();
        narrow["scope"] = "products".into();
        let identity = check(&hs256(&narrow)).unwrap().unwrap();
        assert_eq!(
            Authenticator::authorize(&identity, &["users".into()]),
            Err(AuthError::Forbidden)
        );
        assert_eq!(
            Authenticator::authorize(&identity, &["products".into()]),
            Ok(())
        );
    }

    #[test]
    fn malformed_and_oversized_tokens() {
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c",
            "....",
            "eyJhbGciOiJIUzI1NiJ9.@@@.###",
        ] {
            assert_eq!(check(token), Err(AuthError::Invalid), "{token:?}");
        }
        let huge = format!("{}.{}.{}", "a".repeat(3000), "b".repeat(3000), "c");
        assert_eq!(check(&huge), Err(AuthError::Invalid));
        let auth = authenticator();
        for value in ["Basic abc", "Bearer", "bearer  ", "Token x"] {
            assert_eq!(
                auth.authenticate(AuthMode::Jwt, &headers("authorization", value)),
                Err(AuthError::Invalid),
                "{value}"
            );
        }
        assert_eq!(
            auth.authenticate(AuthMode::Jwt, &HeaderMap::new()),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn api_keys() {
        let auth = authenticator();
        let identity = auth
            .authenticate(AuthMode::ApiKey, &headers("x-api-key", "good-key"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (identity.consumer.as_str(), identity.method),
            ("ci", AuthMethod::ApiKey)
        );
        // Made once with the authenticator and shared, header values included.
        let again = auth
            .authenticate(AuthMode::ApiKey, &headers("x-api-key", "good-key"))
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&identity, &again));
        let (id, scopes) = identity.header_values().unwrap();
        assert_eq!(id, "api-key:ci");
        assert_eq!(scopes, identity.scopes.join(" ").as_str());
        assert_eq!(
            auth.authenticate(AuthMode::ApiKey, &headers("x-api-key", "unknown")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(AuthMode::ApiKey, &HeaderMap::new()),
            Err(AuthError::Missing)
        );
        // A key removed from the config (revoked) no longer works.
        let revoked = Authenticator::new(Vec::new(), JwtSettings::default());
        assert_eq!(
            revoked.authenticate(AuthMode::ApiKey, &headers("x-api-key", "good-key")),
            Err(AuthError::Invalid)
        );
        // The right key on a route it is not allowed on.
        assert_eq!(
            Authenticator::authorize(&identity, &["products".into()]),
            Err(AuthError::Forbidden)
        );
        // Either credential on an `any` route; a JWT on an api-key-only route is missing a key.
        assert!(auth
            .authenticate(AuthMode::Any, &headers("x-api-key", "good-key"))
            .is_ok());
        let jwt = headers("authorization", &format!("Bearer {}", hs256(&claims())));
        assert!(auth.authenticate(AuthMode::Any, &jwt).is_ok());
        assert_eq!(
            auth.authenticate(AuthMode::Any, &HeaderMap::new()),
            Err(AuthError::Missing)
        );
        // With both, the key decides: a wrong key is refused whatever the token.
        let mut both = jwt.clone();
        both.insert("x-api-key", HeaderValue::from_static("unknown"));
        assert_eq!(
            auth.authenticate(AuthMode::Any, &both),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(AuthMode::ApiKey, &jwt),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate(AuthMode::Public, &HeaderMap::new()),
            Ok(None)
        );
    }

    #[test]
    fn minted_dev_tokens_verify() {
        let token = mint_hs256(
            SECRET,
            "dev",
            &["users".into()],
            Some("edge-test"),
            Some("lambda-edge"),
            60,
        )
        .unwrap();
        assert_eq!(check(&token).unwrap().unwrap().consumer, "dev");
    }
}

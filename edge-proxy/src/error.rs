//! The crate's one error type for everything off the request path: start-up, configuration,
//! background services (discovery, JWKS, health), SigV4 and the CLI. Failures on the request
//! path are [`crate::proxy::error::ProxyError`], which is what a client sees.

use crate::config::{ConfigError, UrlError};

/// A boxed error from a dependency, kept whole so its chain of causes can be logged.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An instance URL (a registration, a CLI argument) is not usable.
    #[error("url: {0}")]
    Url(#[from] UrlError),
    /// A JWKS document is not JSON of the JWKS shape.
    #[error("not a JWKS: {0}")]
    JwksFormat(#[source] serde_json::Error),
    /// A JWKS document is larger than allowed.
    #[error("the JWKS is larger than {max_bytes} bytes")]
    JwksTooLarge { max_bytes: usize },
    /// A JWKS document holds more keys than allowed.
    #[error("the JWKS holds {count} keys, more than {max}")]
    JwksTooManyKeys { count: usize, max: usize },
    /// A JWKS document holds no key the proxy can verify with.
    #[error("the JWKS has no usable keys")]
    JwksEmpty,
    /// The JWKS URL could not be fetched.
    #[error("JWKS fetch: {0}")]
    JwksFetch(#[source] reqwest::Error),
    /// The JWKS URL answered with something other than 2xx.
    #[error("JWKS fetch: status {0}")]
    JwksStatus(u16),
    /// A registry table call failed.
    #[error("registry {operation}: {}", chain(source.as_ref()))]
    Registry {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    /// A registry entry or command argument is not acceptable.
    #[error("registration: {0}")]
    Registration(&'static str),
    /// No AWS credentials could be loaded for signing.
    #[error("no AWS credentials: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// A request could not be signed.
    #[error("SigV4 {step}: {}", chain(source.as_ref()))]
    Signing {
        step: &'static str,
        #[source]
        source: BoxError,
    },
    /// A JWT could not be minted.
    #[error("could not sign the token: {0}")]
    Token(#[source] jsonwebtoken::errors::Error),
    /// The OTLP trace exporter could not be built.
    #[error("trace export: {0}")]
    TraceExport(String),
    /// The runtime, a signal handler or another OS resource could not be set up.
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// An error and its causes, joined by `: ` (what the AWS SDK's `DisplayErrorContext` prints).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

impl Error {
    /// A registry call's failure, keeping the SDK error as the source.
    pub fn registry(operation: &'static str, source: impl Into<BoxError>) -> Error {
        Error::Registry {
            operation,
            source: source.into(),
        }
    }

    /// A signing step's failure, keeping the SigV4 error as the source.
    pub fn signing(step: &'static str, source: impl Into<BoxError>) -> Error {
        Error::Signing {
            step,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_name_every_cause_once() {
        let io = std::io::Error::other("connection refused");
        let error = Error::registry("query", io);
        assert_eq!(error.to_string(), "registry query: connection refused");
        let nested = Error::Os {
            what: "read /etc/x",
            source: std::io::Error::other("denied"),
        };
        assert_eq!(chain(&nested), "read /etc/x: denied");
    }
}

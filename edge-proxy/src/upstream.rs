//! Upstream instances: where a service's requests can go, and how to reach one.
//!
//! An instance is a base URL that may carry a path, so the same shape serves
//! `cargo lambda watch` (`http://127.0.0.1:9000/lambda-url/user-service`) and Lambda function
//! URLs (`https://abc.lambda-url.eu-west-1.on.aws`).

use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed instance base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path every request is sent under, without a trailing slash ("" for none).
    pub base_path: String,
}

impl UpstreamUrl {
    /// Parses `http(s)://host[:port][/path]`; the message says what is wrong.
    pub fn parse(raw: &str) -> Result<UpstreamUrl, String> {
        let uri: http::Uri = raw.parse().map_err(|e| format!("not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("scheme must be http or https".into()),
        };
        let authority = uri.authority().ok_or("URL has no host")?;
        if authority.as_str().contains('@') {
            return Err("URL must not carry credentials".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err("URL has no host".into());
        }
        if uri.query().is_some() {
            return Err("URL must not have a query".into());
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(UpstreamUrl {
            tls,
            host,
            port,
            base_path,
        })
    }

    /// The value for the `Host` header sent upstream.
    pub fn host_header(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves the host to a socket address (DNS happens here, never on the request path).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instance_urls() {
        let url = UpstreamUrl::parse("http://127.0.0.1:9000/lambda-url/user-service/").unwrap();
        assert_eq!(
            (url.tls, url.port, url.base_path.as_str()),
            (false, 9000, "/lambda-url/user-service")
        );
        assert_eq!(url.host_header(), "127.0.0.1:9000");
        let url = UpstreamUrl::parse("https://abc.lambda-url.eu-west-1.on.aws").unwrap();
        assert_eq!((url.tls, url.port, url.base_path.as_str()), (true, 443, ""));
        assert_eq!(url.host_header(), "abc.lambda-url.eu-west-1.on.aws");
        assert_eq!(url.to_string(), "https://abc.lambda-url.eu-west-1.on.aws");
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "",
            "ftp://x",
            "127.0.0.1:9000",
            "http://",
            "http://u:p@host",
            "http://h/?q=1",
            "not a url",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

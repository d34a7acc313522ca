//! Instance base URLs, as config and the registry give them: a URL that may carry a path, so
//! the same shape serves `cargo lambda watch` (`http://127.0.0.1:9000/lambda-url/user-service`)
//! and Lambda function URLs (`https://abc.lambda-url.eu-west-1.on.aws`). Resolving the host is
//! the upstream area's job.

/// Why a string is not an instance URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Syntax(String),
    #[error("scheme must be http or https")]
    Scheme,
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not carry credentials")]
    Credentials,
    #[error("URL must not have a query")]
    Query,
}

/// A parsed instance base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path every request is sent under, without a trailing slash ("" for none).
    pub base_path: String,
    /// `host[:port]` as the `Host` header carries it (the port only when not the default).
    authority: String,
}

impl UpstreamUrl {
    /// Parses `http(s)://host[:port][/path]`; the message says what is wrong.
    pub fn parse(raw: &str) -> Result<UpstreamUrl, UrlError> {
        let uri: http::Uri = raw.parse().map_err(|e| UrlError::Syntax(format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(UrlError::Scheme),
        };
        let authority = uri.authority().ok_or(UrlError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::Credentials);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        if uri.query().is_some() {
            return Err(UrlError::Query);
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_string();
        let default_port = if tls { 443 } else { 80 };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(UpstreamUrl {
            tls,
            host,
            port,
            base_path,
            authority,
        })
    }

    /// The value for the `Host` header sent upstream.
    pub fn host_header(&self) -> &str {
        &self.authority
    }

    /// True for a host on this machine: `localhost` or a loopback address literal.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether signed requests (SigV4, with bodies) may go here: an `https` Lambda function URL
    /// (`https://<id>.lambda-url.<region>.on.aws`), or, only when `allow_loopback` is set (the
    /// local stack in AWS's shape), any URL on a loopback host.
    pub fn accepts_signed_requests(&self, allow_loopback: bool) -> bool {
        (self.tls && self.function_url_region().is_some()) || (allow_loopback && self.is_loopback())
    }

    /// The region of a Lambda function URL host (`<id>.lambda-url.<region>.on.aws`), if this
    /// is one.
    pub fn function_url_region(&self) -> Option<String> {
        let rest = self.host.split_once(".lambda-url.")?.1;
        let region = rest.strip_suffix(".on.aws")?;
        (!region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        .then(|| region.to_string())
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
    fn regions_from_function_url_hosts() {
        let region = |url: &str| UpstreamUrl::parse(url).unwrap().function_url_region();
        assert_eq!(
            region("https://abc123.lambda-url.eu-west-1.on.aws").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region("https://example.com"), None);
        assert_eq!(region("https://x.lambda-url..on.aws"), None);
    }

    #[test]
    fn signed_requests_go_only_to_function_urls_or_loopback() {
        let accepts = |url: &str, loopback: bool| {
            UpstreamUrl::parse(url)
                .unwrap()
                .accepts_signed_requests(loopback)
        };
        assert!(accepts("https://abc.lambda-url.eu-west-1.on.aws", false));
        assert!(!accepts("http://abc.lambda-url.eu-west-1.on.aws", false));
        assert!(!accepts("https://evil.example.com", false));
        assert!(!accepts(
            "https://abc.lambda-url.eu-west-1.on.aws.evil.com",
            false
        ));
        assert!(!accepts("http://localhost:9200", false));
        assert!(accepts("http://localhost:9200", true));
        assert!(accepts("http://127.0.0.1:9200/x", true));
        assert!(accepts("http://[::1]:9200", true));
        assert!(!accepts("http://10.0.0.1:9200", true));
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

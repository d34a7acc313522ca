//! Instance host names to addresses, off the request path. A [`Resolver`] is the seam: the
//! system's resolver (getaddrinfo on tokio's blocking pool, so `/etc/hosts` and the system's
//! DNS settings apply) in the running proxy, a [`StaticResolver`] in tests. Discovery resolves
//! each instance when it joins and again every `dns.refresh-ms` (see [`super::discovery`]); a
//! host that stops resolving keeps its last good addresses.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;

/// Resolves a host name (or IP literal) and port to every address it has.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system's resolver.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let mut addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        addresses.sort();
        addresses.dedup();
        if addresses.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        Ok(addresses)
    }
}

/// A resolver whose answers a test sets: host → addresses, or a failure.
#[derive(Debug, Default)]
pub struct StaticResolver {
    answers: Mutex<HashMap<String, Option<Vec<SocketAddr>>>>,
}

impl StaticResolver {
    /// From now on `host` resolves to `addresses` (their ports are replaced by the one asked).
    pub fn set(&self, host: &str, addresses: Vec<SocketAddr>) {
        self.lock().insert(host.to_string(), Some(addresses));
    }

    /// From now on `host` does not resolve.
    pub fn fail(&self, host: &str) {
        self.lock().insert(host.to_string(), None);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Vec<SocketAddr>>>> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self.lock().get(host) {
            Some(Some(addresses)) => Ok(addresses
                .iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} does not resolve"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_system_resolver_keeps_every_address() {
        let addresses = SystemResolver.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(addresses, vec!["127.0.0.1:80".parse().unwrap()]);
        let localhost = SystemResolver.resolve("localhost", 8080).await.unwrap();
        assert!(!localhost.is_empty());
        assert!(localhost
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080));
        assert!(SystemResolver
            .resolve("no-such-host.invalid", 80)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn static_answers_change_when_told() {
        let resolver = StaticResolver::default();
        assert!(resolver.resolve("fn.test", 80).await.is_err());
        resolver.set(
            "fn.test",
            vec!["10.0.0.1:0".parse().unwrap(), "10.0.0.2:0".parse().unwrap()],
        );
        assert_eq!(resolver.resolve("fn.test", 81).await.unwrap().len(), 2);
        resolver.fail("fn.test");
        assert!(resolver.resolve("fn.test", 81).await.is_err());
    }
}

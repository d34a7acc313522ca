//! The proxy's configuration: a TOML file parsed into wire structs (kebab-case, named defaults,
//! unknown keys rejected), then validated into the internal [`Config`] the proxy runs on.
//! Every validation error names the field it is about; nothing here panics on bad input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::upstream::UpstreamUrl;

/// A configuration problem, naming the field (`routes[1].service`, `server.listen`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    /// Upstream services by name.
    #[serde(default)]
    pub services: HashMap<String, ServiceSection>,
    /// Path prefixes and the service each goes to; the longest matching prefix wins.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerSection {
    /// Public listener.
    pub listen: String,
    /// Worker threads.
    pub threads: usize,
    /// Seconds to keep serving after SIGTERM before shutting down.
    pub grace_period_seconds: u64,
    /// Seconds in-flight requests get to finish once shutdown starts.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Downstream read timeout (slow clients are cut off), in milliseconds.
    pub client_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            threads: 2,
            grace_period_seconds: 1,
            graceful_shutdown_timeout_seconds: 2,
            client_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceSection {
    /// Base URLs of the service's instances; may carry a path
    /// (`http://127.0.0.1:9000/lambda-url/user-service`).
    pub instances: Vec<String>,
    /// TCP (and TLS) connect timeout, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the upstream between reads, in milliseconds.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    1_000
}

fn default_read_timeout_ms() -> u64 {
    15_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteSection {
    /// Path prefix, matched on whole segments (`/api/users` matches `/api/users/1`, not
    /// `/api/usersx`).
    pub prefix: String,
    /// Name of a service in `[services]`.
    pub service: String,
    /// Leading part of the path removed before forwarding (`/api`: `/api/users/1` reaches the
    /// function as `/users/1`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Internal, validated form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub client_timeout: Duration,
    pub services: HashMap<String, Arc<ServiceConfig>>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub instances: Vec<UpstreamUrl>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub service: String,
    pub strip_prefix: String,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let field = e.span().map_or_else(
                || "config".to_string(),
                |span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("line {line}")
                },
            );
            ConfigError::new(field, e.message().to_string())
        })?;
        file.validate()
    }
}

fn check_path_prefix(field: &str, value: &str) -> Result<String, ConfigError> {
    if !value.starts_with('/') {
        return Err(ConfigError::new(field, "must start with '/'"));
    }
    if value.len() > 1 && value.ends_with('/') {
        return Err(ConfigError::new(field, "must not end with '/'"));
    }
    if value.contains("//") || value.split('/').any(|s| s == "." || s == "..") {
        return Err(ConfigError::new(field, "must be a normalised path"));
    }
    Ok(value.to_string())
}

impl FileConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let server = self.server;
        let listen = server.listen.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new("server.listen", format!("not an ip:port address: {e}"))
        })?;
        if server.threads == 0 || server.threads > 256 {
            return Err(ConfigError::new("server.threads", "must be from 1 to 256"));
        }
        if server.client_timeout_ms == 0 {
            return Err(ConfigError::new(
                "server.client-timeout-ms",
                "must be positive",
            ));
        }

        let mut services = HashMap::new();
        for (name, section) in self.services {
            let field = format!("services.{name}");
            if section.instances.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.instances"),
                    "must list at least one instance",
                ));
            }
            let instances = section
                .instances
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    UpstreamUrl::parse(url).map_err(|message| {
                        ConfigError::new(format!("{field}.instances[{i}]"), message)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for (key, value) in [
                ("connect-timeout-ms", section.connect_timeout_ms),
                ("read-timeout-ms", section.read_timeout_ms),
            ] {
                if value == 0 || value > 300_000 {
                    return Err(ConfigError::new(
                        format!("{field}.{key}"),
                        "must be from 1 to 300000",
                    ));
                }
            }
            services.insert(
                name.clone(),
                Arc::new(ServiceConfig {
                    name,
                    instances,
                    connect_timeout: Duration::from_millis(section.connect_timeout_ms),
                    read_timeout: Duration::from_millis(section.read_timeout_ms),
                }),
            );
        }

        if self.routes.is_empty() {
            return Err(ConfigError::new(
                "routes",
                "must contain at least one route",
            ));
        }
        let mut routes = Vec::new();
        for (i, route) in self.routes.into_iter().enumerate() {
            let field = format!("routes[{i}]");
            let prefix = check_path_prefix(&format!("{field}.prefix"), &route.prefix)?;
            if !services.contains_key(&route.service) {
                return Err(ConfigError::new(
                    format!("{field}.service"),
                    format!("no service named '{}'", route.service),
                ));
            }
            let strip_prefix = match route.strip_prefix {
                None => String::new(),
                Some(strip) => {
                    let strip = check_path_prefix(&format!("{field}.strip-prefix"), &strip)?;
                    if !(prefix == strip || prefix.starts_with(&format!("{strip}/"))) {
                        return Err(ConfigError::new(
                            format!("{field}.strip-prefix"),
                            "must be a leading part of the prefix",
                        ));
                    }
                    strip
                }
            };
            if routes.iter().any(|r: &Route| r.prefix == prefix) {
                return Err(ConfigError::new(
                    format!("{field}.prefix"),
                    "is already routed",
                ));
            }
            routes.push(Route {
                prefix,
                service: route.service,
                strip_prefix,
            });
        }

        Ok(Config {
            listen,
            threads: server.threads,
            grace_period_seconds: server.grace_period_seconds,
            graceful_shutdown_timeout_seconds: server.graceful_shutdown_timeout_seconds,
            client_timeout: Duration::from_millis(server.client_timeout_ms),
            services,
            routes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [server]
        listen = "127.0.0.1:8080"

        [services.users]
        instances = ["http://127.0.0.1:9000/lambda-url/user-service"]

        [[routes]]
        prefix = "/api/users"
        service = "users"
        strip-prefix = "/api"
    "#;

    fn error_field(text: &str) -> String {
        Config::parse(text).unwrap_err().field
    }

    #[test]
    fn a_good_config_loads() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.routes[0].strip_prefix, "/api");
        let service = &config.services["users"];
        assert_eq!(service.instances[0].base_path, "/lambda-url/user-service");
        assert_eq!(service.read_timeout, Duration::from_millis(15_000));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error_field(&GOOD.replace("127.0.0.1:8080", "nope")),
            "server.listen"
        );
        assert_eq!(
            error_field(&GOOD.replace("service = \"users\"", "service = \"ghost\"")),
            "routes[0].service"
        );
        assert_eq!(
            error_field(&GOOD.replace("strip-prefix = \"/api\"", "strip-prefix = \"/other\"")),
            "routes[0].strip-prefix"
        );
        assert_eq!(
            error_field(&GOOD.replace("prefix = \"/api/users\"", "prefix = \"api/users\"")),
            "routes[0].prefix"
        );
        assert_eq!(
            error_field(&GOOD.replace("http://127.0.0.1:9000/lambda-url/user-service", "ftp://x")),
            "services.users.instances[0]"
        );
        assert_eq!(
            error_field(&GOOD.replace("[\"http://127.0.0.1:9000/lambda-url/user-service\"]", "[]")),
            "services.users.instances"
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused() {
        let unknown = GOOD.replace("listen =", "colour = \"red\"\nlisten =");
        let error = Config::parse(&unknown).unwrap_err();
        assert!(error.message.contains("colour"), "{error}");
        assert!(error.field.starts_with("line"), "{error}");
        assert!(Config::parse("[[routes]\n").is_err());
        assert_eq!(error_field(""), "routes");
    }
}

//! The proxy's configuration, in two layers as river keeps it: the TOML file parsed into wire
//! structs ([`wire`]: kebab-case, named defaults, unknown keys rejected), then validated section
//! by section (`validate`) into the internal [`Config`] the proxy runs on. Every validation
//! error names the field it is about; nothing here panics on bad input.
//!
//! This area is the bottom of the crate: it imports no other area, and every other one reads
//! its types ([`internal`] holds the settings each of them takes).

mod internal;
mod url;
mod validate;
pub mod wire;

use std::path::Path;

pub use internal::*;
pub use url::{UpstreamUrl, UrlError};
use wire::FileConfig;

/// A configuration problem, naming the field (`routes[1].service`, `server.listen`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
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
            let message = e.message().trim();
            // Some TOML syntax errors carry no message of their own.
            let message = if message.is_empty() {
                "invalid TOML"
            } else {
                message
            };
            ConfigError::new(field, message)
        })?;
        file.validate()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// A minimal valid config, for tests here and elsewhere in the crate.
    pub(crate) const GOOD: &str = r#"
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
        assert_eq!(config.server.listen.port(), 8080);
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
        let check = |path: &str| {
            GOOD.replace(
                "[[routes]]",
                &format!("[services.users.health-check]\npath = {path:?}\n[[routes]]"),
            )
        };
        assert!(Config::parse(&check("/health?deep=1")).is_ok());
        for bad in ["health", "/health check", "/health\tcheck"] {
            assert_eq!(
                error_field(&check(bad)),
                "services.users.health-check.path",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tracing_is_off_by_default_and_checked_when_set() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.tracing, TracingConfig::default());
        assert_eq!(config.tracing.endpoint, None);
        let with = |section: &str| format!("{GOOD}\n[tracing]\n{section}\n");
        let config = Config::parse(&with(
            "endpoint = \"http://collector:4318\"\nsample-ratio = 0.25\nqueue-size = 10",
        ))
        .unwrap();
        assert_eq!(
            config.tracing.endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(config.tracing.sample_ratio, Some(0.25));
        assert_eq!(config.tracing.queue_size, 10);
        for (section, field) in [
            ("endpoint = \"collector:4318\"", "tracing.endpoint"),
            ("endpoint = \"grpc://collector:4317\"", "tracing.endpoint"),
            ("sample-ratio = 1.5", "tracing.sample-ratio"),
            ("sample-ratio = -0.1", "tracing.sample-ratio"),
            ("queue-size = 0", "tracing.queue-size"),
            ("export-timeout-ms = 0", "tracing.export-timeout-ms"),
            ("service-name = \" \"", "tracing.service-name"),
        ] {
            assert_eq!(error_field(&with(section)), field, "{section}");
        }
    }

    #[test]
    fn each_cached_route_has_a_budget_its_own_or_the_default() {
        let cached = |route: &str, section: &str| {
            GOOD.replace(
                "strip-prefix = \"/api\"\n",
                &format!("strip-prefix = \"/api\"\n        cache = {{ {route} }}\n{section}"),
            )
        };
        let config = Config::parse(&cached("", "")).unwrap();
        let route = config.routes[0].cache.unwrap();
        assert_eq!(route.memory_bytes, CacheConfig::default().memory_bytes);
        assert_eq!(route.max_object_bytes, DEFAULT_MAX_OBJECT_BYTES);
        let config = Config::parse(&cached(
            "memory-bytes = 65536",
            "\n[cache]\nmemory-bytes = 8192\n",
        ))
        .unwrap();
        let route = config.routes[0].cache.unwrap();
        assert_eq!((route.memory_bytes, route.max_object_bytes), (65536, 65536));
        let defaulted = Config::parse(&cached("", "\n[cache]\nmemory-bytes = 8192\n")).unwrap();
        assert_eq!(defaulted.routes[0].cache.unwrap().memory_bytes, 8192);
        for (route, field) in [
            ("memory-bytes = 100", "routes[0].cache.memory-bytes"),
            (
                "memory-bytes = 8192, max-object-bytes = 8193",
                "routes[0].cache.max-object-bytes",
            ),
            ("max-object-bytes = 0", "routes[0].cache.max-object-bytes"),
            (
                "default-ttl-seconds = 86401",
                "routes[0].cache.default-ttl-seconds",
            ),
        ] {
            assert_eq!(error_field(&cached(route, "")), field, "{route}");
        }
    }

    #[test]
    fn global_limits_need_redis_and_say_what_is_wrong() {
        let global = GOOD.replace(
            "strip-prefix = \"/api\"\n",
            "strip-prefix = \"/api\"\n        rate-limit = { requests-per-second = 1.0, burst = 5, scope = \"global\", on-store-error = \"closed\" }\n",
        );
        assert_eq!(error_field(&global), "routes[0].rate-limit.scope");
        let redis = |url: &str| format!("{global}\n[redis]\nurl = \"{url}\"\n");
        let config = Config::parse(&redis("redis://:secret@10.0.0.5:6379")).unwrap();
        let policy = config.routes[0].rate_limit.as_ref().unwrap();
        assert_eq!(policy.scope, LimitScope::Global);
        assert_eq!(policy.on_store_error, StoreFailure::Closed);
        assert_eq!(config.redis.unwrap().lease, 10);
        let tls = Config::parse(&redis("rediss://10.0.0.5:6379")).unwrap_err();
        assert_eq!(tls.field, "redis.url");
        // The URL may hold a password: the error never repeats it.
        let bad = Config::parse(&redis("redis://:secret@[nope")).unwrap_err();
        assert_eq!(bad.field, "redis.url");
        assert!(!bad.to_string().contains("secret"), "{bad}");
        let local_with_failure_mode = global.replace("scope = \"global\", ", "");
        assert_eq!(
            error_field(&local_with_failure_mode),
            "routes[0].rate-limit.on-store-error"
        );
        assert_eq!(
            error_field(&format!("{}lease = 0\n", redis("redis://127.0.0.1:6379"))),
            "redis.lease"
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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is either a valid config or an error naming a field; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(error) = Config::parse(&text) {
                prop_assert!(!error.field.is_empty());
            }
        }

        #[test]
        fn arbitrary_values_in_a_valid_shape_never_panic(
            listen in "\\PC{0,30}",
            instance in "\\PC{0,60}",
            prefix in "\\PC{0,30}",
            timeout in any::<u64>(),
        ) {
            let text = format!(
                "[server]\nlisten = {listen:?}\n[services.s]\ninstances = [{instance:?}]\nread-timeout-ms = {timeout}\n[[routes]]\nprefix = {prefix:?}\nservice = \"s\"\n"
            );
            let _ = Config::parse(&text);
        }
    }
}

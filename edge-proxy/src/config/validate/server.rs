//! `[server]`: listeners, threads, shutdown, client timeouts and request size limits.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::internal::{Limits, ServerConfig};
use super::super::wire::ServerSection;
use super::super::ConfigError;
use super::sha256_hex;

pub(super) fn validate(server: ServerSection) -> Result<ServerConfig, ConfigError> {
    let listen = server
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| ConfigError::new("server.listen", format!("not an ip:port address: {e}")))?;
    let admin_listen = match &server.admin_listen {
        None => None,
        Some(admin) => {
            let admin = admin.parse::<SocketAddr>().map_err(|e| {
                ConfigError::new(
                    "server.admin-listen",
                    format!("not an ip:port address: {e}"),
                )
            })?;
            if admin == listen {
                return Err(ConfigError::new(
                    "server.admin-listen",
                    "must differ from server.listen",
                ));
            }
            Some(admin)
        }
    };
    let admin_token_sha256 = server
        .admin_token_sha256
        .as_deref()
        .map(|hash| sha256_hex("server.admin-token-sha256", hash))
        .transpose()?;
    if let Some(admin) = admin_listen {
        if !admin.ip().is_loopback() {
            // The admin listener reads out metrics and readiness; off loopback it takes an
            // explicit decision and a token.
            if !server.admin_public {
                return Err(ConfigError::new(
                    "server.admin-listen",
                    "is not a loopback address: set admin-public = true and admin-token-sha256 to expose the admin listener",
                ));
            }
            if admin_token_sha256.is_none() {
                return Err(ConfigError::new(
                    "server.admin-token-sha256",
                    "is required when the admin listener is public",
                ));
            }
        }
    }
    let trusted_proxies = server
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, cidr)| {
            cidr.parse::<ipnet::IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    ConfigError::new(
                        format!("server.trusted-proxies[{i}]"),
                        "must be an address or a CIDR (10.0.0.0/8, fd00::/8)",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(1..=128).contains(&server.ipv6_prefix_length) {
        return Err(ConfigError::new(
            "server.ipv6-prefix-length",
            "must be from 1 to 128",
        ));
    }
    if server.threads == 0 || server.threads > 256 {
        return Err(ConfigError::new("server.threads", "must be from 1 to 256"));
    }
    if server.client_timeout_ms == 0 {
        return Err(ConfigError::new(
            "server.client-timeout-ms",
            "must be positive",
        ));
    }
    if server.head_timeout_ms == 0 || server.head_timeout_ms > 600_000 {
        return Err(ConfigError::new(
            "server.head-timeout-ms",
            "must be from 1 to 600000",
        ));
    }
    if !(1..=3600).contains(&server.keepalive_idle_seconds) {
        return Err(ConfigError::new(
            "server.keepalive-idle-seconds",
            "must be from 1 to 3600",
        ));
    }
    for (field, value, max) in [
        ("server.max-uri-bytes", server.max_uri_bytes, 1 << 20),
        ("server.max-header-bytes", server.max_header_bytes, 1 << 20),
        ("server.max-body-bytes", server.max_body_bytes, 64 << 20),
    ] {
        if value < 256 || value > max {
            return Err(ConfigError::new(
                field,
                format!("must be from 256 to {max}"),
            ));
        }
    }
    Ok(ServerConfig {
        listen,
        admin_listen,
        admin_token_sha256,
        trusted_proxies,
        ipv6_prefix_length: server.ipv6_prefix_length,
        threads: server.threads,
        grace_period_seconds: server.grace_period_seconds,
        graceful_shutdown_timeout_seconds: server.graceful_shutdown_timeout_seconds,
        client_timeout: Duration::from_millis(server.client_timeout_ms),
        head_timeout: Duration::from_millis(server.head_timeout_ms),
        keepalive_idle: Duration::from_secs(server.keepalive_idle_seconds),
        limits: Limits {
            max_uri_bytes: server.max_uri_bytes,
            max_header_bytes: server.max_header_bytes,
            max_body_bytes: server.max_body_bytes,
        },
    })
}

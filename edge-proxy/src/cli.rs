//! The `edge-proxy` command line: run the proxy, check a config file, mint a development
//! token, or manage the discovery registry.
//!
//! ```text
//! edge-proxy run --config edge-proxy/config/dev.toml
//! edge-proxy check --config edge-proxy/config/dev.toml
//! edge-proxy registry register --table RegistryTable --service user-service \
//!     --url http://127.0.0.1:9001/lambda-url/user-service --ttl-seconds 60
//! edge-proxy registry list --table RegistryTable
//! edge-proxy registry heartbeat --table RegistryTable --service user-service --url ...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::error::Error;
use crate::ops::telemetry::{self, LogFormat};
use crate::upstream::registry::{epoch_now, DynamoRegistry};

#[derive(Parser)]
#[command(version, about = "Edge proxy in front of the Lambda functions")]
pub struct Cli {
    /// Log output format.
    #[arg(
        long,
        value_enum,
        default_value = "json",
        env = "LOG_FORMAT",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy until SIGTERM or Ctrl-C. SIGHUP re-reads the config; SIGQUIT hands the
    /// listening sockets to a new process started with `--upgrade` (graceful upgrade).
    Run {
        #[arg(long, env = "EDGE_PROXY_CONFIG")]
        config: PathBuf,
        /// Take the listening sockets over from the running proxy (send it SIGQUIT after
        /// starting this one).
        #[arg(long)]
        upgrade: bool,
        /// Where the sockets are handed over; the same path for the old and the new process.
        #[arg(long, default_value = "/tmp/edge-proxy-upgrade.sock")]
        upgrade_socket: PathBuf,
    },
    /// Validate a config file and exit.
    Check {
        #[arg(long, env = "EDGE_PROXY_CONFIG")]
        config: PathBuf,
    },
    /// Mint an HS256 JWT with the config's secret, issuer and audience (for development).
    Token {
        #[arg(long, env = "EDGE_PROXY_CONFIG")]
        config: PathBuf,
        /// The token's subject (the consumer id).
        #[arg(long)]
        sub: String,
        /// Space-separated scopes.
        #[arg(long, default_value = "")]
        scopes: String,
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
    },
    /// Register, renew, remove or list instances in the discovery registry table
    /// (endpoint and credentials from the standard AWS environment).
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(Args)]
struct Table {
    /// Registry table name.
    #[arg(long, env = "REGISTRY_TABLE")]
    table: String,
}

#[derive(Args)]
struct Instance {
    #[arg(long)]
    service: String,
    /// The instance's base URL, e.g. http://127.0.0.1:9001/lambda-url/user-service
    #[arg(long)]
    url: String,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Register (or renew) one instance.
    Register {
        #[command(flatten)]
        table: Table,
        #[command(flatten)]
        instance: Instance,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Seconds until the entry expires unless renewed.
        #[arg(long, default_value_t = 60)]
        ttl_seconds: u64,
    },
    /// Remove one instance.
    Deregister {
        #[command(flatten)]
        table: Table,
        #[command(flatten)]
        instance: Instance,
    },
    /// List every registration, live or expired.
    List {
        #[command(flatten)]
        table: Table,
    },
    /// Keep one instance registered until interrupted, then deregister it.
    Heartbeat {
        #[command(flatten)]
        table: Table,
        #[command(flatten)]
        instance: Instance,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        #[arg(long, default_value_t = 30)]
        ttl_seconds: u64,
        #[arg(long, default_value_t = 10)]
        interval_seconds: u64,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|error| {
        eprintln!("edge-proxy: invalid config {}: {error}", path.display());
        ExitCode::from(2)
    })
}

async fn registry(command: RegistryCommand) -> Result<(), Error> {
    match command {
        RegistryCommand::Register {
            table,
            instance,
            weight,
            ttl_seconds,
        } => {
            let registry = DynamoRegistry::from_env(table.table).await;
            let entry = registry
                .register(
                    &instance.service,
                    &instance.url,
                    weight,
                    Duration::from_secs(ttl_seconds),
                )
                .await?;
            println!(
                "registered {} {} (weight {}, expires at {})",
                entry.service, entry.url, entry.weight, entry.expires_at
            );
        }
        RegistryCommand::Deregister { table, instance } => {
            DynamoRegistry::from_env(table.table)
                .await
                .deregister(&instance.service, &instance.url)
                .await?;
            println!("deregistered {} {}", instance.service, instance.url);
        }
        RegistryCommand::List { table } => {
            let now = epoch_now();
            let mut entries = DynamoRegistry::from_env(table.table).await.list().await?;
            entries.sort_by(|a, b| (&a.service, &a.url).cmp(&(&b.service, &b.url)));
            println!(
                "{:<20} {:<60} {:>6} {:>8}",
                "SERVICE", "URL", "WEIGHT", "TTL"
            );
            for entry in entries {
                let ttl = if entry.is_live(now) {
                    format!("{}s", entry.expires_at - now)
                } else {
                    "expired".into()
                };
                println!(
                    "{:<20} {:<60} {:>6} {:>8}",
                    entry.service, entry.url, entry.weight, ttl
                );
            }
        }
        RegistryCommand::Heartbeat {
            table,
            instance,
            weight,
            ttl_seconds,
            interval_seconds,
        } => {
            let registry = DynamoRegistry::from_env(table.table).await;
            let mut terminate = tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            )
            .map_err(|source| Error::Os {
                what: "install a SIGTERM handler",
                source,
            })?;
            loop {
                match registry
                    .register(
                        &instance.service,
                        &instance.url,
                        weight,
                        Duration::from_secs(ttl_seconds),
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(service = %instance.service, url = %instance.url, "registration renewed")
                    }
                    Err(error) => tracing::warn!(%error, "could not renew the registration"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(interval_seconds.max(1))) => {}
                    _ = tokio::signal::ctrl_c() => break,
                    _ = terminate.recv() => break,
                }
            }
            registry
                .deregister(&instance.service, &instance.url)
                .await?;
            tracing::info!(service = %instance.service, url = %instance.url, "deregistered");
        }
    }
    Ok(())
}

/// Parses the command line and runs the command; the process exits with what this returns
/// (2 for an invalid config).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = telemetry::init(cli.log_format);
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run {
            config: path,
            upgrade,
            upgrade_socket,
        } => {
            let config = match load(&path) {
                Ok(config) => config,
                Err(code) => return code,
            };
            tracing::info!(listen = %config.server.listen, routes = config.routes.len(), upgrade, "edge proxy starting");
            let overrides = crate::server::Overrides {
                reload_from: Some(path),
                upgrade: Some(crate::server::Upgrade {
                    socket: upgrade_socket,
                    take_over: upgrade,
                }),
                ..Default::default()
            };
            match crate::server::run(&config, overrides, Default::default()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("edge-proxy: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            config,
            sub,
            scopes,
            ttl_seconds,
        } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let jwt = &config.auth.jwt;
            let Some(secret) = &jwt.hs256_secret else {
                eprintln!("edge-proxy token: the config has no auth.jwt.hs256-secret");
                return ExitCode::from(2);
            };
            let scopes: Vec<String> = scopes.split_whitespace().map(str::to_string).collect();
            match crate::admission::auth::mint_hs256(
                secret,
                &sub,
                &scopes,
                jwt.issuer.as_deref(),
                jwt.audience.as_deref(),
                ttl_seconds,
            ) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("edge-proxy token: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Registry(command) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("edge-proxy: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(registry(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("edge-proxy registry: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

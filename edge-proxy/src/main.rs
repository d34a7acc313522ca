//! `edge-proxy`: run the proxy, or check a config file.
//!
//! ```text
//! edge-proxy run --config edge-proxy/config/dev.toml
//! edge-proxy check --config edge-proxy/config/dev.toml
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_proxy::config::Config;
use edge_proxy::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(version, about = "Edge proxy in front of the Lambda functions")]
struct Cli {
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
    /// Run the proxy until SIGTERM or Ctrl-C.
    Run {
        #[arg(long, env = "EDGE_PROXY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and exit.
    Check {
        #[arg(long, env = "EDGE_PROXY_CONFIG")]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|error| {
        eprintln!("edge-proxy: invalid config {}: {error}", path.display());
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            tracing::info!(listen = %config.listen, routes = config.routes.len(), "edge proxy starting");
            match edge_proxy::server::run(&config, Default::default()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("edge-proxy: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

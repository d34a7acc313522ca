//! The edge proxy with its Pingora settings taken from the environment (`PINGORA_*`, see
//! `edge_proxy::server::tuning::Tuning::from_env`), for `bench/tune.sh` to measure each setting
//! on the edge proxy as on bare Pingora. Otherwise the same as `edge-proxy run --config FILE`
//! with JSON logs.

use std::process::ExitCode;

use edge_proxy::config::Config;
use edge_proxy::ops::telemetry::{self, LogFormat};
use edge_proxy::server::tuning::Tuning;
use edge_proxy::server::{build_with, Overrides};

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: tuned_proxy CONFIG");
        return ExitCode::from(2);
    };
    let _log = telemetry::init(LogFormat::Json);
    let config = match Config::load(std::path::Path::new(&path)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tuned_proxy: invalid config {path}: {error}");
            return ExitCode::from(2);
        }
    };
    let tuning = match Tuning::from_env() {
        Ok(tuning) => tuning,
        Err(error) => {
            eprintln!("tuned_proxy: {error}");
            return ExitCode::from(2);
        }
    };
    let overrides = Overrides {
        tuning: Some(tuning),
        ..Overrides::default()
    };
    match build_with(&config, overrides) {
        Ok((server, _handle)) => {
            server.run(Default::default());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tuned_proxy: {error}");
            ExitCode::FAILURE
        }
    }
}

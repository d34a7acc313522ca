//! Builds the Pingora server from a validated [`Config`] and runs it until a shutdown signal.
//! Tests call [`run`] on a thread with their own shutdown future, on port 0 configs.

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use crate::config::Config;
use crate::proxy::EdgeProxy;

/// A ready-to-run server with the proxy service listening on `config.listen`.
pub fn build(config: &Config) -> Result<Server, String> {
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.graceful_shutdown_timeout_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = EdgeProxy::new(config)?;
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&config.listen.to_string());
    server.add_service(service);
    Ok(server)
}

/// Runs until `run_args.shutdown_signal` fires (SIGTERM/SIGINT by default).
pub fn run(config: &Config, run_args: RunArgs) -> Result<(), String> {
    let server = build(config)?;
    server.run(run_args);
    Ok(())
}

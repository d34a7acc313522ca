//! Bare Pingora for the benchmark: its proxy with an empty filter set, forwarding every
//! request to one upstream over kept-alive connections, with the edge proxy's Pingora settings
//! (`edge_proxy::server::tuning`, each changeable through the environment, see
//! `Tuning::from_env`). `PINGORA_UPSTREAM_TIMEOUTS_MS` also sets connect and read timeouts on
//! the upstream peer, as the edge proxy does (unset or 0: none). Shared by
//! `bare_pingora.rs` and `counting_proxy.rs`.

use std::time::Duration;

use async_trait::async_trait;
use edge_proxy::server::tuning::Tuning;
use pingora::listeners::ListenerConfig;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

struct Bare {
    upstream: String,
    timeouts: Option<Duration>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream.as_str(), false, String::new());
        if let Some(timeout) = self.timeouts {
            peer.options.connection_timeout = Some(timeout);
            peer.options.read_timeout = Some(timeout);
        }
        Ok(Box::new(peer))
    }
}

/// Runs bare Pingora on `listen` in front of `upstream` until the process is stopped.
pub fn run(listen: String, upstream: String) -> ! {
    let tuning = Tuning::from_env().unwrap_or_else(|error| {
        eprintln!("bare pingora: {error}");
        std::process::exit(2);
    });
    let mut conf = tuning.server_conf(1);
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let timeouts = std::env::var("PINGORA_UPSTREAM_TIMEOUTS_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Bare { upstream, timeouts });
    service.add_listener(ListenerConfig::tcp(listen).l4_buffer(tuning.l4_buffers()));
    server.add_service(service);
    server.run_forever()
}

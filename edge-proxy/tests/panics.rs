//! A panic on the request path costs that request, not the process: the connection loop
//! catches it, answers a JSON 500 if no response had begun, counts it and closes the
//! connection; other connections and the next requests are served. The trigger is a proxy
//! defined here, so it exists only in this test.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_proxy::ops::metrics::Metrics;
use edge_proxy::proxy::downstream::EdgeApp;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;
use support::{Behaviour, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Forwards to a stub, and panics when the path says so.
struct PanicOnDemand {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for PanicOnDemand {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<()> {
        edge_proxy::proxy::downstream::admit();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        if session.req_header().uri.path() == "/panic" {
            panic!("a bug in a filter");
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

async fn exchange(base: &str, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the connection was closed")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_filter_costs_one_request() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let port = support::free_port();
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let metrics = Arc::new(Metrics::new());
    let proxy = pingora::proxy::http_proxy(
        &server.configuration,
        PanicOnDemand {
            upstream: format!("127.0.0.1:{}", stub.port).parse().unwrap(),
        },
    );
    let mut service = Service::new(
        "panics".to_string(),
        EdgeApp::new(proxy, Duration::from_secs(5), Arc::clone(&metrics)),
    );
    service.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(service);
    let running = support::run_server(server, port).await;

    let answer = exchange(&running.base, "GET /panic HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not a whole response: {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], "internal_error");
    assert!(
        !body.contains("a bug"),
        "the panic's message stays in the log"
    );
    assert!(metrics.render().contains("edge_panics_total 1"));

    // The process goes on: the next connection is served as usual.
    let answer = exchange(
        &running.base,
        "GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

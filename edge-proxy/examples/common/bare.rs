//! Bare Pingora for the benchmark: its proxy with an empty filter set, forwarding every
//! request to one upstream over kept-alive connections, with the edge proxy's Pingora settings
//! (`edge_proxy::server::tuning`, each changeable through the environment, see
//! `Tuning::from_env`). `PINGORA_UPSTREAM_TIMEOUTS_MS` also sets connect and read timeouts on
//! the upstream peer, as the edge proxy does (unset or 0: none). `PINGORA_BARE_HEADERS=1`
//! runs [`WithHeaders`] instead: bare Pingora adding what any edge proxy adds and nothing
//! else. Shared by `bare_pingora.rs` and `counting_proxy.rs`.

use std::time::Duration;

use async_trait::async_trait;
use edge_proxy::ops::trace::RequestId;
use edge_proxy::proxy::client::{ip_text, MAX_IP_TEXT};
use edge_proxy::server::tuning::Tuning;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
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

/// Bare Pingora adding what any edge proxy adds to a request and its response, and nothing
/// else: `X-Forwarded-For`, `X-Forwarded-Proto`, a new `X-Request-Id` and a new
/// `traceparent` on the upstream's copy, the same `X-Request-Id` on the response. Each is set
/// the cheapest way the edge proxy knows (static names, room made once, Pingora's
/// case-keeping name map dropped), so what this costs over [`Bare`] is Pingora's price for
/// the headers themselves, whoever writes the filters (`bench/instructions.sh`'s
/// `bare + headers` row).
struct WithHeaders(Bare);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

fn header_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Box<pingora::Error> {
    pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "bare headers", e)
}

/// A new `traceparent`: random trace and span ids, sampled.
fn traceparent() -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    fn hex(out: &mut [u8], bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
    }
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex(&mut out[3..35], &fastrand::u128(1..).to_be_bytes());
    hex(&mut out[36..52], &fastrand::u64(1..).to_be_bytes());
    HeaderValue::from_bytes(&out)
}

#[async_trait]
impl ProxyHttp for WithHeaders {
    /// The request's id.
    type CTX = Option<RequestId>;

    fn new_ctx(&self) -> Self::CTX {
        None
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        self.0.upstream_peer(session, &mut ()).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        let id = ctx.insert(RequestId::new());
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts: http::request::Parts =
            std::mem::replace(upstream_request, placeholder).into();
        let headers = &mut parts.headers;
        headers.try_reserve(4).map_err(header_error)?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let mut text = [0u8; MAX_IP_TEXT];
            let value =
                HeaderValue::from_str(ip_text(addr.ip(), &mut text)).map_err(header_error)?;
            headers
                .try_insert(X_FORWARDED_FOR.clone(), value)
                .map_err(header_error)?;
        }
        headers
            .try_insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"))
            .map_err(header_error)?;
        headers
            .try_insert(X_REQUEST_ID.clone(), id.header_value().clone())
            .map_err(header_error)?;
        headers
            .try_insert(TRACEPARENT.clone(), traceparent().map_err(header_error)?)
            .map_err(header_error)?;
        *upstream_request = RequestHeader::from(parts);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        let Some(id) = ctx.as_ref() else {
            return Ok(());
        };
        let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
        let mut parts: http::response::Parts = std::mem::replace(response, placeholder).into();
        parts.headers.try_reserve(1).map_err(header_error)?;
        parts
            .headers
            .try_insert(X_REQUEST_ID.clone(), id.header_value().clone())
            .map_err(header_error)?;
        *response = ResponseHeader::from(parts);
        Ok(())
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
    let bare = Bare { upstream, timeouts };
    let listener = ListenerConfig::tcp(listen).l4_buffer(tuning.l4_buffers());
    if std::env::var("PINGORA_BARE_HEADERS").is_ok_and(|v| v == "1") {
        let mut service = http_proxy_service(&server.configuration, WithHeaders(bare));
        service.add_listener(listener);
        server.add_service(service);
    } else {
        let mut service = http_proxy_service(&server.configuration, bare);
        service.add_listener(listener);
        server.add_service(service);
    }
    server.run_forever()
}

//! The front itself: a Pingora proxy that answers like an `AWS_IAM` function URL (403
//! `{"Message":"Forbidden"}` to anything not signed as [`crate::verify`] requires) and passes
//! what it accepts to one function under `cargo lambda watch`, mapping the URL's root to the
//! function's path there (`/users/1` → `/lambda-url/user-service/users/1`).

use std::net::SocketAddr;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::verify::{verify, Expected};

/// Largest body accepted (a function URL takes 6 MB; the functions take far less).
const MAX_BODY: usize = 6 * 1024 * 1024;

/// One function URL.
pub struct FunctionUrl {
    pub expected: Expected,
    /// Where `cargo lambda watch` listens.
    pub upstream: SocketAddr,
    /// The function's path under it (`/lambda-url/user-service`).
    pub function_path: String,
}

async fn answer(session: &mut Session, status: u16, body: &'static str) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await
}

#[async_trait]
impl ProxyHttp for FunctionUrl {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        // Read the whole body (Pingora forwards it from its retry buffer afterwards).
        session.as_mut().enable_retry_buffering();
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY || session.as_ref().retry_buffer_truncated() {
                answer(session, 413, r#"{"Message":"Request Entity Too Large"}"#).await?;
                return Ok(true);
            }
        }
        let request = session.req_header();
        let target = request
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let outcome = verify(
            request.method.as_str(),
            &target,
            &request.headers,
            &body,
            &self.expected,
            SystemTime::now(),
        );
        if let Err(refusal) = outcome {
            tracing::info!(method = %request.method, %target, reason = refusal.as_str(), "refused");
            answer(session, 403, r#"{"Message":"Forbidden"}"#).await?;
            return Ok(true);
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

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> pingora::Result<()> {
        let target = session
            .req_header()
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str());
        let uri = format!("{}{target}", self.function_path)
            .parse::<http::Uri>()
            .map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InternalError, "function path", e)
            })?;
        upstream_request.set_uri(uri);
        upstream_request.insert_header("host", self.upstream.to_string())?;
        Ok(())
    }
}

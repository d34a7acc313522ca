//! What the upstream sees of a request: the path in the instance's space, `Host`, the
//! forwarding headers, the identity the proxy verified (never the client's claim), trace
//! context, and none of the hop-by-hop headers or (unless configured, and never to a signed
//! upstream) the client's credentials; a signed upstream gets none of the client's `x-amz-*`.

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use smallvec::SmallVec;

use super::routing::upstream_path;
use crate::admission::auth::Identity;
use crate::config::{Route, UpstreamUrl};
use crate::ops::trace::RequestTrace;

/// Identity headers the proxy sets; any a client sends are removed first.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-consumer-id", "x-consumer-scopes", "x-auth-method"];

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// What the proxy knows about the request that goes into the upstream's copy of it.
pub struct Forwarding<'a> {
    pub route: &'a Route,
    pub url: &'a UpstreamUrl,
    /// The `Host` header value for `url`.
    pub host: &'a HeaderValue,
    pub request_id: &'a str,
    pub trace: Option<&'a RequestTrace>,
    pub identity: Option<&'a Identity>,
    pub forward_credentials: bool,
    /// The upstream gets this request signed (SigV4): nothing of the client's may travel
    /// inside the signature, so its `x-amz-*` and credential headers go whatever the config.
    pub signed: bool,
}

impl Forwarding<'_> {
    /// Whether a header of the client's is dropped from the upstream's copy.
    fn drops(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        HOP_BY_HOP.contains(&name)
            || IDENTITY_HEADERS.contains(&name)
            || name == "tracestate"
            || ((!self.forward_credentials || self.signed)
                && (name == "authorization" || name == "x-api-key"))
            || (self.signed && name.starts_with("x-amz-"))
    }

    /// Rewrites `upstream_request` (Pingora's copy of the client's head) for the upstream.
    pub fn apply(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
    ) -> pingora::Result<()> {
        let original = &session.req_header().uri;
        let mut path_and_query = upstream_path(&self.url.base_path, self.route, original.path());
        if let Some(query) = original.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let uri = path_and_query.parse::<http::Uri>().map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InternalError, "rewritten uri", e)
        })?;
        upstream_request.set_uri(uri);
        // One pass over what the client sent decides what goes (usually nothing: each
        // removal by name costs a lookup in both of Pingora's header maps).
        let dropped: SmallVec<[HeaderName; 4]> = upstream_request
            .headers
            .keys()
            .filter(|name| self.drops(name))
            .cloned()
            .collect();
        for name in &dropped {
            upstream_request.remove_header(name);
        }
        upstream_request.insert_header(header::HOST, self.host.clone())?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let client_ip = addr.ip().to_string();
            let forwarded_for = match upstream_request
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(existing) => format!("{existing}, {client_ip}"),
                None => client_ip,
            };
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
        }
        upstream_request.insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
        upstream_request.insert_header("x-request-id", self.request_id)?;
        if let Some(trace) = self.trace {
            trace.inject(upstream_request);
        }
        if let Some(identity) = self.identity {
            match identity.header_values() {
                Some((id, scopes)) => {
                    upstream_request.insert_header("x-consumer-id", id.clone())?;
                    upstream_request.insert_header("x-consumer-scopes", scopes.clone())?;
                }
                // Not valid as header values: refused here as before.
                None => {
                    upstream_request.insert_header("x-consumer-id", identity.id.as_str())?;
                    upstream_request
                        .insert_header("x-consumer-scopes", identity.scopes.join(" "))?;
                }
            }
            upstream_request.insert_header("x-auth-method", identity.method.as_str())?;
        }
        Ok(())
    }
}

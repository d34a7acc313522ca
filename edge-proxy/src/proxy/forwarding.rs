//! What the upstream sees of a request: the path in the instance's space, `Host`, the
//! forwarding headers, the identity the proxy verified (never the client's claim), trace
//! context, and none of the hop-by-hop headers or (unless configured, and never to a signed
//! upstream) the client's credentials; a signed upstream gets none of the client's `x-amz-*`.

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};
use http::request::Parts;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use smallvec::SmallVec;

use super::client::{ip_text, MAX_IP_TEXT};
use super::routing::upstream_path;
use crate::admission::auth::Identity;
use crate::config::{Route, UpstreamUrl};
use crate::ops::trace::{RequestId, RequestTrace};

/// Identity headers the proxy sets; any a client sends are removed first.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-consumer-id", "x-consumer-scopes", "x-auth-method"];

/// The same names, as header names (static: setting one allocates nothing).
static IDENTITY_NAMES: [HeaderName; 3] = [
    HeaderName::from_static(IDENTITY_HEADERS[0]),
    HeaderName::from_static(IDENTITY_HEADERS[1]),
    HeaderName::from_static(IDENTITY_HEADERS[2]),
];
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Also on every response (see `ResponseHeaders`).
pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// At most how many headers [`Forwarding::apply`] adds, room made for them at once.
const ADDED_HEADERS: usize = 10;

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
    pub request_id: &'a RequestId,
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
    ///
    /// The copy is taken apart and its headers rewritten in their plain `http` map. Pingora
    /// keeps a second map beside it to preserve the case of each name as the client sent it,
    /// and every header set through its API is parsed into a new name and cloned into that
    /// map (two allocations a header); without it, names go upstream lower-case (the standard
    /// ones title-cased as Pingora writes them), as HTTP allows and Lambda does with them
    /// anyway.
    pub fn apply(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
    ) -> pingora::Result<()> {
        let original = &session.req_header().uri;
        // The client's target stays as it is when the route changes nothing of its path (an
        // absolute-form one still goes upstream as a path: Pingora writes the path and query).
        let uri = match upstream_path(&self.url.base_path, self.route, original.path()) {
            Cow::Borrowed(_) => None,
            path => {
                let mut path_and_query = path.into_owned();
                if let Some(query) = original.query() {
                    path_and_query.push('?');
                    path_and_query.push_str(query);
                }
                // Parsed in place (`parse` would copy the text into new bytes).
                let uri =
                    http::Uri::from_maybe_shared(Bytes::from(path_and_query)).map_err(|e| {
                        pingora::Error::because(
                            pingora::ErrorType::InternalError,
                            "rewritten uri",
                            e,
                        )
                    })?;
                Some(uri)
            }
        };
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts: Parts = std::mem::replace(upstream_request, placeholder).into();
        if let Some(uri) = uri {
            parts.uri = uri;
        }
        let rewritten = self.headers(session, &mut parts.headers);
        *upstream_request = RequestHeader::from(parts);
        rewritten.map_err(|e| {
            pingora::Error::because(
                pingora::ErrorType::InvalidHTTPHeader,
                "upstream request header",
                e,
            )
        })
    }

    /// The upstream's headers, from the client's.
    fn headers(&self, session: &Session, headers: &mut HeaderMap) -> Result<(), http::Error> {
        // One pass over what the client sent decides what goes (usually nothing) and finds
        // the client's `X-Forwarded-For` (its first value, as `get` would give).
        let mut dropped: SmallVec<[HeaderName; 4]> = SmallVec::new();
        let mut client_forwarded_for = None;
        for (name, value) in headers.iter() {
            if self.drops(name) {
                dropped.push(name.clone());
            } else if client_forwarded_for.is_none() && name == X_FORWARDED_FOR {
                client_forwarded_for = Some(value.clone());
            }
        }
        for name in &dropped {
            headers.remove(name);
        }
        headers.try_reserve(ADDED_HEADERS)?;
        headers.try_insert(header::HOST, self.host.clone())?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let value = forwarded_for(client_forwarded_for.as_ref(), addr.ip())?;
            headers.try_insert(X_FORWARDED_FOR.clone(), value)?;
        }
        headers.try_insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"))?;
        headers.try_insert(X_REQUEST_ID.clone(), self.request_id.header_value().clone())?;
        if let Some(trace) = self.trace {
            trace.inject(headers);
        }
        if let Some(identity) = self.identity {
            let (id, scopes) = match identity.header_values() {
                Some((id, scopes)) => (id.clone(), scopes.clone()),
                // Not valid as header values: the request is refused, as before.
                None => (
                    HeaderValue::from_str(&identity.id)?,
                    HeaderValue::from_str(&identity.scopes.join(" "))?,
                ),
            };
            let method = HeaderValue::from_static(identity.method.as_str());
            headers.try_insert(IDENTITY_NAMES[0].clone(), id)?;
            headers.try_insert(IDENTITY_NAMES[1].clone(), scopes)?;
            headers.try_insert(IDENTITY_NAMES[2].clone(), method)?;
        }
        Ok(())
    }
}

/// `X-Forwarded-For` for the upstream: the client's list (if it is text) with the peer's
/// address appended, made in one buffer of the exact size (through `format!` and
/// `to_string` the text grew piece by piece, each growth a reallocation).
fn forwarded_for(
    existing: Option<&HeaderValue>,
    peer: IpAddr,
) -> Result<HeaderValue, InvalidHeaderValue> {
    let mut text = [0u8; MAX_IP_TEXT];
    let ip = ip_text(peer, &mut text).as_bytes();
    match existing.filter(|v| v.to_str().is_ok()) {
        Some(existing) => {
            let existing = existing.as_bytes();
            let mut value = Vec::with_capacity(existing.len() + 2 + ip.len());
            value.extend_from_slice(existing);
            value.extend_from_slice(b", ");
            value.extend_from_slice(ip);
            HeaderValue::from_maybe_shared(Bytes::from(value))
        }
        None => HeaderValue::from_bytes(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_peer_to_the_clients_list() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::ffff:192.0.2.1".parse().unwrap();
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(forwarded_for(None, v4).unwrap(), "203.0.113.7");
        for ip in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "127.0.0.1"] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(forwarded_for(None, parsed).unwrap(), ip);
        }
        assert_eq!(forwarded_for(None, v6).unwrap(), v6.to_string().as_str());
        assert_eq!(
            forwarded_for(None, longest).unwrap(),
            longest.to_string().as_str()
        );
        let list = HeaderValue::from_static("198.51.100.1, 10.0.0.2");
        assert_eq!(
            forwarded_for(Some(&list), v4).unwrap(),
            "198.51.100.1, 10.0.0.2, 203.0.113.7"
        );
        // A list that is not text is replaced, not extended.
        let binary = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert_eq!(forwarded_for(Some(&binary), v4).unwrap(), "203.0.113.7");
    }
}

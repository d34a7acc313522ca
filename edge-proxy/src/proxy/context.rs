//! Per-request state (Pingora's `CTX`): what the phases of one request tell each other.

use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::hygiene::Utf8Check;
use super::{ProxyState, RouteTarget};
use crate::admission::auth::{AuthError, Identity};
use crate::admission::ratelimit::Decision;
use crate::config::RatePolicy;
use crate::ops::trace::{RequestId, RequestTrace};
use crate::upstream::pool::{Attempt, Instance, InstanceId};

/// What authentication concluded, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The request never reached authentication (refused or unrouted before it).
    NotChecked,
    /// A public route: no credentials needed.
    Public,
    /// Valid credentials with the route's scopes.
    Ok,
    /// No credentials of an accepted kind.
    Missing,
    /// Credentials present but not valid.
    Invalid,
    /// Valid credentials without the route's scopes.
    Forbidden,
    /// Not checked: the client address had failed authentication too often.
    Throttled,
}

impl AuthOutcome {
    /// The access-log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::NotChecked => "-",
            AuthOutcome::Public => "public",
            AuthOutcome::Ok => "ok",
            AuthOutcome::Missing => "missing",
            AuthOutcome::Invalid => "invalid",
            AuthOutcome::Forbidden => "forbidden",
            AuthOutcome::Throttled => "throttled",
        }
    }

    /// The outcome of a refusal.
    pub fn refused(error: AuthError) -> AuthOutcome {
        match error {
            AuthError::Missing => AuthOutcome::Missing,
            AuthError::Invalid => AuthOutcome::Invalid,
            AuthError::Forbidden => AuthOutcome::Forbidden,
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    pub started: Instant,
    /// The client's address (see [`super::client`]).
    pub client: Option<std::net::IpAddr>,
    /// The config state this request started with (a reload does not change it).
    pub state: Arc<ProxyState>,
    /// The route and its service's pool, once routed.
    pub route: Option<Arc<RouteTarget>>,
    pub attempt: Option<Attempt>,
    /// Instances this request has tried (a retry goes elsewhere); at most
    /// [`super::MAX_ATTEMPTS`], so kept inline.
    pub tried: SmallVec<[InstanceId; 2]>,
    pub attempts: u32,
    pub upstream_started: Option<Instant>,
    /// Set when a phase has already decided whether the current failure is retried.
    pub retry_decided: Option<bool>,
    /// The instance of the latest attempt, for the access log.
    pub last_instance: Option<Arc<Instance>>,
    pub identity: Option<Arc<Identity>>,
    pub rate: Option<(Arc<RatePolicy>, Decision)>,
    pub auth_outcome: AuthOutcome,
    pub request_id: RequestId,
    pub trace: Option<RequestTrace>,
    /// Request body bytes seen so far.
    pub body_bytes: usize,
    /// For JSON bodies: the UTF-8 check, carrying an incomplete sequence between chunks.
    pub utf8: Option<Utf8Check>,
    /// The whole request body, read up front for upstreams that need it signed.
    pub signed_body: Option<Vec<u8>>,
    /// On a cached route: the purge epoch when the request began, and what the cache did.
    pub cache_epoch: u64,
    pub cache: Option<super::cache::Outcome>,
}

impl RequestCtx {
    pub fn new(state: Arc<ProxyState>) -> RequestCtx {
        RequestCtx {
            state,
            started: Instant::now(),
            client: None,
            route: None,
            attempt: None,
            tried: SmallVec::new(),
            attempts: 0,
            upstream_started: None,
            retry_decided: None,
            last_instance: None,
            identity: None,
            rate: None,
            auth_outcome: AuthOutcome::NotChecked,
            request_id: RequestId::default(),
            trace: None,
            body_bytes: 0,
            utf8: None,
            signed_body: None,
            cache_epoch: 0,
            cache: None,
        }
    }

    /// This request's trace and span ids as text (`-` before they are known), for the log
    /// lines of its rare error paths (the access log formats them without allocating).
    pub fn trace_ids(&self) -> (String, String) {
        match &self.trace {
            Some(trace) => (trace.trace_id().to_string(), trace.span_id().to_string()),
            None => ("-".into(), "-".into()),
        }
    }

    /// Upstream time of the attempt that just ended, into the metrics; returns the moment it
    /// ended (one clock read for what else that moment settles).
    pub fn end_upstream(&mut self) -> Instant {
        let now = Instant::now();
        if let (Some(started), Some(route)) = (self.upstream_started.take(), &self.route) {
            let seconds = now.saturating_duration_since(started).as_secs_f64();
            route.metrics.upstream(seconds);
        }
        now
    }
}
#[cfg(test)]
mod tests {
    /// The context lives inside Pingora's per-request future, which is built on the stack and
    /// copied into its box on every request: what is large and rare (a recorded span) is
    /// boxed rather than kept inline. 1072 bytes when the trace's spans were inline.
    #[test]
    fn the_context_stays_small() {
        let size = std::mem::size_of::<super::RequestCtx>();
        assert!(size <= 640, "RequestCtx is {size} bytes");
    }
}

//! Admission on the request path: authentication, scopes and the rate limit, in that order,
//! with the `WWW-Authenticate` challenge and `RateLimit` headers a refusal carries.

use std::net::IpAddr;
use std::sync::Arc;

use pingora::proxy::Session;

use super::context::{AuthOutcome, RequestCtx};
use super::{EdgeProxy, ProxyError, ProxyState};
use crate::admission::auth::{AuthError, Authenticator};
use crate::admission::ratelimit::Decision;
use crate::config::{AuthMode, LimitScope, Route};

/// What a limit counts a request under: its consumer once authenticated, else its client.
#[derive(Hash)]
enum LimitKey<'a> {
    Client(IpAddr),
    Consumer(&'a str),
}

/// The key's name in the global store.
impl std::fmt::Display for LimitKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Client(ip) => write!(f, "ip:{ip}"),
            LimitKey::Consumer(id) => write!(f, "consumer:{id}"),
        }
    }
}

fn challenge(mode: AuthMode, error: AuthError) -> &'static str {
    match (mode, error) {
        (AuthMode::ApiKey, _) => "ApiKey realm=\"edge\"",
        (AuthMode::Jwt, AuthError::Invalid) => "Bearer realm=\"edge\", error=\"invalid_token\"",
        (AuthMode::Jwt, _) => "Bearer realm=\"edge\"",
        (_, AuthError::Invalid) => {
            "Bearer realm=\"edge\", error=\"invalid_token\", ApiKey realm=\"edge\""
        }
        _ => "Bearer realm=\"edge\", ApiKey realm=\"edge\"",
    }
}

impl EdgeProxy {
    /// Authenticates, authorizes and rate limits; `Some(error)` when the request is refused.
    /// A client address that has failed authentication too often is refused (429) before any
    /// credential of its is looked at, valid or not.
    /// `state` is the request's own (`ctx.state`), passed apart so `ctx` can be written.
    pub(super) async fn admit(
        &self,
        session: &Session,
        state: &ProxyState,
        route: &Route,
        ctx: &mut RequestCtx,
    ) -> Option<(ProxyError, Vec<(&'static str, String)>)> {
        let headers = &session.req_header().headers;
        let now = self.clock.now();
        let client_key = ctx
            .client
            .map(|ip| LimitKey::Client(state.client.limit_ip(ip)));
        let failure_limit = match (&state.config.auth.failure_limit, &client_key) {
            (Some(policy), Some(key)) if route.auth != AuthMode::Public => Some((policy, key)),
            _ => None,
        };
        if let Some((policy, key)) = failure_limit {
            if let Some(retry_after) = self.limiter.limited(policy, key, now) {
                ctx.auth_outcome = AuthOutcome::Throttled;
                self.metrics.auth_failures_limited(&route.prefix);
                return Some((ProxyError::RateLimited { retry_after }, Vec::new()));
            }
        }
        let identity = match state.auth.authenticate(route.auth, headers) {
            Ok(identity) => identity,
            Err(error) => {
                if let Some((policy, key)) = failure_limit {
                    self.limiter.check(policy, key, now);
                }
                ctx.auth_outcome = AuthOutcome::refused(error);
                self.metrics.auth_rejected(&route.prefix, 401);
                return Some((
                    ProxyError::Unauthorized {
                        challenge: challenge(route.auth, error),
                    },
                    Vec::new(),
                ));
            }
        };
        if let Some(identity) = &identity {
            if let Err(error) = Authenticator::authorize(identity, &route.scopes) {
                ctx.auth_outcome = AuthOutcome::refused(error);
                self.metrics.auth_rejected(&route.prefix, 403);
                return Some((ProxyError::Forbidden, Vec::new()));
            }
        }
        ctx.auth_outcome = if identity.is_some() {
            AuthOutcome::Ok
        } else {
            AuthOutcome::Public
        };
        if let Some(policy) = &route.rate_limit {
            let key = match &identity {
                Some(identity) => Some(LimitKey::Consumer(identity.id.as_str())),
                None => client_key,
            };
            // A request without a client address (not over TCP) shares one budget.
            let key = key.unwrap_or(LimitKey::Consumer(""));
            let decision = match (&state.global, policy.scope) {
                (Some(global), LimitScope::Global) => global.check(policy, &key).await,
                _ => Some(self.limiter.check(policy, &key, now)),
            };
            // No decision: the global store cannot answer and the policy fails open.
            if let Some(decision) = decision {
                ctx.rate = Some((Arc::clone(policy), decision));
                if let Decision::Limited {
                    retry_after_seconds,
                    ..
                } = decision
                {
                    self.metrics.rate_limited(&route.prefix);
                    let headers = vec![
                        // Visible ASCII only (see `RatePolicy::local`).
                        (
                            "ratelimit-policy",
                            policy
                                .policy_header()
                                .to_str()
                                .unwrap_or_default()
                                .to_string(),
                        ),
                        ("ratelimit", decision.header(policy)),
                    ];
                    return Some((
                        ProxyError::RateLimited {
                            retry_after: retry_after_seconds,
                        },
                        headers,
                    ));
                }
            }
        }
        ctx.identity = identity;
        None
    }
}

//! Rate limiting with GCRA (the generic cell rate algorithm, a token bucket without a timer):
//! a policy allows `burst` requests at once and refills at `rate` per second.
//!
//! **Bounded memory, and how it approximates.** State is one `AtomicU64` (the key's
//! "theoretical arrival time") per cell in a fixed table; a key's cell is chosen by a keyed hash.
//! Memory is `8 × cells` bytes whatever the number of clients, so an attacker rotating keys or
//! IPs cannot grow it. The price: keys that hash to the same cell share one budget, so under
//! heavy key churn a client may be limited slightly early (never late). With the default 1 Mi
//! cells (8 MiB) and 10k active clients the chance that a given client shares its cell is about
//! 1 %. Checks are lock-free (a compare-and-swap on one cell).
//!
//! **Several proxy replicas** each enforce the limits on their own (per-replica limits): with N
//! replicas behind a load balancer a client may get up to N times the configured rate. A shared
//! store would be needed for global limits; it is deliberately not on this hot path.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::RatePolicy;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `remaining` more requests would be allowed right now, the bucket is full again
    /// in `reset_seconds`.
    Allowed { remaining: u32, reset_seconds: u64 },
    /// Refused; the next request is allowed in `retry_after_seconds`.
    Limited {
        retry_after_seconds: u64,
        reset_seconds: u64,
    },
}

impl Decision {
    /// `RateLimit` header value (draft-ietf-httpapi-ratelimit-headers).
    pub fn header(&self, policy: &RatePolicy) -> String {
        match self {
            Decision::Allowed {
                remaining,
                reset_seconds,
            } => policy.limit_header(("r", u64::from(*remaining)), ("t", *reset_seconds)),
            Decision::Limited { reset_seconds, .. } => {
                policy.limit_header(("r", 0), ("t", *reset_seconds))
            }
        }
    }
}

pub struct RateLimiter {
    cells: Box<[AtomicU64]>,
    hasher: RandomState,
    epoch: Instant,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("cells", &self.cells.len())
            .finish()
    }
}

pub(super) fn ceil_seconds(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

impl RateLimiter {
    /// A limiter with `cells` cells (rounded up to a power of two).
    pub fn new(cells: usize) -> RateLimiter {
        RateLimiter::starting_at(cells, Instant::now())
    }

    /// A limiter whose time starts at `epoch` (the `now` of the clock it will be asked with;
    /// earlier instants count as the epoch).
    pub fn starting_at(cells: usize, epoch: Instant) -> RateLimiter {
        let cells = cells.max(1).next_power_of_two();
        RateLimiter {
            cells: (0..cells).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            epoch,
        }
    }

    /// Bytes of state held, whatever the number of keys seen.
    pub fn memory_bytes(&self) -> usize {
        self.cells.len() * std::mem::size_of::<AtomicU64>()
    }

    fn cell<K: Hash + ?Sized>(&self, policy: &RatePolicy, key: &K) -> &AtomicU64 {
        let index =
            (self.hasher.hash_one((policy.name.as_str(), key)) as usize) & (self.cells.len() - 1);
        &self.cells[index]
    }

    /// Whether `key` is over `policy` at `now`, without counting anything: `Some(seconds)`
    /// until the next request would be allowed.
    pub fn limited<K: Hash + ?Sized>(
        &self,
        policy: &RatePolicy,
        key: &K,
        now: Instant,
    ) -> Option<u64> {
        let t = now.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        let tolerance = policy.tolerance(policy.interval_ns());
        let tat = self.cell(policy, key).load(Ordering::Relaxed).max(t);
        (tat - t > tolerance).then(|| ceil_seconds(tat - t - tolerance).max(1))
    }

    /// Counts one request of `key` under `policy` at `now`. A key is anything hashable (the
    /// proxy's are client addresses and consumer ids, never formatted into strings).
    pub fn check<K: Hash + ?Sized>(&self, policy: &RatePolicy, key: &K, now: Instant) -> Decision {
        let cell = self.cell(policy, key);
        let t = now.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        let interval = policy.interval_ns();
        let tolerance = policy.tolerance(interval);
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let tat = current.max(t);
            if tat - t > tolerance {
                let retry_after = tat - t - tolerance;
                return Decision::Limited {
                    retry_after_seconds: ceil_seconds(retry_after).max(1),
                    reset_seconds: ceil_seconds(tat - t),
                };
            }
            let next = tat + interval;
            match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    let spare = (t + tolerance + interval).saturating_sub(next);
                    return Decision::Allowed {
                        remaining: u32::try_from(spare / interval).unwrap_or(u32::MAX),
                        reset_seconds: ceil_seconds(next - t),
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looking_does_not_count() {
        // Enough cells that two keys share one about once in a million runs.
        let limiter = RateLimiter::new(1 << 20);
        let policy = RatePolicy::local("failures", 1.0, 2);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.limited(&policy, "ip:1", t0), None);
        }
        assert!(matches!(
            limiter.check(&policy, "ip:1", t0),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limiter.check(&policy, "ip:1", t0),
            Decision::Allowed { .. }
        ));
        assert_eq!(limiter.limited(&policy, "ip:1", t0), Some(1));
        assert_eq!(limiter.limited(&policy, "ip:2", t0), None, "per key");
        assert_eq!(
            limiter.limited(&policy, "ip:1", t0 + std::time::Duration::from_millis(1001)),
            None,
            "one earned back"
        );
    }
    use std::time::Duration;

    fn policy(rate: f64, burst: u32) -> RatePolicy {
        RatePolicy::local("test", rate, burst)
    }

    #[test]
    fn exactly_the_burst_passes_then_429_then_refill() {
        let limiter = RateLimiter::new(1024);
        let policy = policy(2.0, 5);
        let t0 = Instant::now();
        for i in 0..5 {
            match limiter.check(&policy, "alice", t0) {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, 4 - i),
                other => panic!("request {i} refused: {other:?}"),
            }
        }
        match limiter.check(&policy, "alice", t0) {
            Decision::Limited {
                retry_after_seconds,
                ..
            } => assert_eq!(retry_after_seconds, 1),
            other => panic!("sixth request allowed: {other:?}"),
        }
        // 2 per second: after 500 ms exactly one more.
        let later = t0 + Duration::from_millis(500);
        assert!(matches!(
            limiter.check(&policy, "alice", later),
            Decision::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(
            limiter.check(&policy, "alice", later),
            Decision::Limited { .. }
        ));
        // After the window the whole burst is back.
        let refilled = t0 + Duration::from_secs(4);
        assert!(matches!(
            limiter.check(&policy, "alice", refilled),
            Decision::Allowed { remaining: 4, .. }
        ));
    }

    #[test]
    fn keys_and_policies_are_independent() {
        let limiter = RateLimiter::new(1 << 20);
        let policy = policy(1.0, 1);
        let t0 = Instant::now();
        assert!(matches!(
            limiter.check(&policy, "alice", t0),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limiter.check(&policy, "alice", t0),
            Decision::Limited { .. }
        ));
        assert!(matches!(
            limiter.check(&policy, "bob", t0),
            Decision::Allowed { .. }
        ));
        let other = RatePolicy::local("other", policy.rate_per_second, policy.burst);
        assert!(matches!(
            limiter.check(&other, "alice", t0),
            Decision::Allowed { .. }
        ));
    }

    #[test]
    fn headers_follow_the_draft() {
        let policy = policy(10.0, 20);
        assert_eq!(policy.policy_header(), "\"test\";q=20;w=2");
        let decision = Decision::Allowed {
            remaining: 7,
            reset_seconds: 1,
        };
        assert_eq!(decision.header(&policy), "\"test\";r=7;t=1");
        let limited = Decision::Limited {
            retry_after_seconds: 3,
            reset_seconds: 12,
        };
        assert_eq!(limited.header(&policy), "\"test\";r=0;t=12");
        let wide = Decision::Allowed {
            remaining: u32::MAX,
            reset_seconds: u64::MAX,
        };
        assert_eq!(
            wide.header(&policy),
            format!("\"test\";r={};t={}", u32::MAX, u64::MAX)
        );
    }

    #[test]
    fn a_policy_name_goes_into_its_headers_as_a_structured_field_string() {
        // A route prefix is the name of its policy, and a prefix may hold quotes,
        // backslashes and UTF-8: each header carries it quoted, escaped, in visible ASCII.
        let decision = Decision::Allowed {
            remaining: 1,
            reset_seconds: 2,
        };
        for (name, quoted) in [
            ("/a\"b", r#""/a\"b""#),
            ("/a\\b", r#""/a\\b""#),
            ("/café", r#""/caf%C3%A9""#),
            ("/tab\there", r#""/tab%09here""#),
            ("/a b~", r#""/a b~""#),
        ] {
            let policy = RatePolicy::local(name, 1.0, 3);
            assert_eq!(policy.policy_header(), format!("{quoted};q=3;w=3").as_str());
            assert_eq!(decision.header(&policy), format!("{quoted};r=1;t=2"));
        }
    }

    /// The documented approximation: keys that share a cell share one budget, so a key may
    /// be limited early (by a stranger in its cell), never late (beyond its own burst). (The
    /// fixed memory is measured in the benchmark, `examples/limiter_memory.rs`.)
    #[test]
    fn sharing_a_cell_limits_early_never_late() {
        let limiter = RateLimiter::new(1024);
        let policy = policy(0.001, 1);
        let now = Instant::now();
        let mut limited_at_first = 0;
        for key in 0..100u32 {
            let key = format!("client-{key}");
            match limiter.check(&policy, &key, now) {
                Decision::Allowed { .. } => {
                    // Never late: a second request within the burst of one is refused.
                    assert!(matches!(
                        limiter.check(&policy, &key, now),
                        Decision::Limited { .. }
                    ));
                }
                Decision::Limited { .. } => limited_at_first += 1,
            }
        }
        // 100 keys in 1024 cells share about 5 cells; early refusals are that rare.
        assert!(
            limited_at_first <= 20,
            "{limited_at_first} keys limited early"
        );
        // With one cell, every key is one budget: the approximation's worst case.
        let one = RateLimiter::new(1);
        assert!(matches!(
            one.check(&policy, "a", now),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            one.check(&policy, "b", now),
            Decision::Limited { .. }
        ));
    }
}

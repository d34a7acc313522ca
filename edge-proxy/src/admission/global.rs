//! Global rate limits: GCRA decided atomically in Redis by one Lua script (the algorithm and
//! headers of the per-replica limiter in [`super::ratelimit`]), with a local lease of tokens so
//! that most requests do not wait for Redis. Written here rather than taken from a crate: the
//! Redis rate-limit modules (redis-cell) cannot be loaded into ElastiCache or MemoryDB, and the
//! client crates found decide per request in Redis, which is the round trip this avoids.
//!
//! **Leases.** A replica takes up to `lease` tokens of a key in one call and spends them locally
//! for at most `lease-ms`. The first ask for a key is one token and each further ask doubles
//! while the key keeps coming back within the lease time (concurrent asks of a key take at
//! most half its burst between them; past that, requests ask for one token each), so a quiet
//! key never holds tokens it
//! does not use. A refusal from Redis is remembered until its `Retry-After`, so a client being
//! refused does not cost a call per request either.
//!
//! **Accuracy bound.** Redis counts tokens when they are taken, so the fleet never takes more
//! than one limiter would grant; a token may be spent up to `lease-ms` after it was taken. Over
//! any interval `T` the fleet admits at most `burst + rate × (T + lease-ms)` requests of a key,
//! whatever the number of replicas: at most `rate × lease-ms` more than a single limiter. Tokens
//! left unspent when a lease ends are lost, so a key spread over N replicas may be refused early
//! by up to `N × lease` tokens per lease period.
//!
//! **Failures.** Every call is bounded by `timeout-ms`. A failed call marks the store down
//! (logged once per incident, counted) and for a backoff (50 ms doubling to 2 s) no call is
//! tried; meanwhile each policy admits (`on-store-error = "open"`, without `RateLimit` headers)
//! or refuses with 429 and `Retry-After: 1` (`"closed"`). The limiter never causes a 5xx.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Display;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ratelimit::Decision;
use crate::config::{RatePolicy, RedisConfig, StoreFailure};
use crate::ops::clock::Clock;
use crate::ops::metrics::Metrics;

/// Leases kept at most; past this, expired ones are dropped, and if none are, keys go to Redis
/// on every request rather than growing the table.
const MAX_LEASES: usize = 100_000;
/// A full table is swept for expired leases at most this often: a sweep walks the whole table,
/// and a flood of new keys (an attacker rotating addresses) must not pay for one per request.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the store granted for one ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens taken (0: refused).
    pub granted: u32,
    /// Tokens still available in the store after this grant.
    pub remaining: u32,
    /// Until the key's bucket is full again.
    pub reset: Duration,
    /// When refused, until the next token.
    pub retry_after: Duration,
}

/// A failed store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("not connected")]
    NotConnected,
    #[error("unexpected reply")]
    Reply,
}

/// Where tokens are taken from: Redis in the proxy, memory in tests.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Takes up to `want` tokens of `policy`'s bucket `key`.
    async fn take(&self, key: &str, policy: &RatePolicy, want: u32) -> Result<Grant, StoreError>;
}

/// GCRA for `want` tokens at once: the new theoretical arrival time and
/// `[granted, remaining, reset, retry_after]`, the reply of the Lua script. `tat`, `now`,
/// `interval` and `tolerance` are in one unit (the script uses microseconds), with
/// `tolerance = interval × (burst − 1)` as in the local limiter.
pub fn gcra_take(tat: u64, now: u64, interval: u64, tolerance: u64, want: u32) -> (u64, [u64; 4]) {
    let tat = tat.max(now);
    if tat - now > tolerance {
        return (tat, [0, 0, 0, tat - now - tolerance]);
    }
    let room = (tolerance - (tat - now)) / interval + 1;
    let granted = u64::from(want).min(room);
    let next = tat + granted * interval;
    let remaining = (now + tolerance + interval).saturating_sub(next) / interval;
    (next, [granted, remaining, next - now, 0])
}

/// A reply of [`SCRIPT`] or [`gcra_take`] as a [`Grant`], its durations in `unit`s.
fn grant(reply: &[u64], unit: Duration) -> Result<Grant, StoreError> {
    let [granted, remaining, reset, retry_after] = reply[..] else {
        return Err(StoreError::Reply);
    };
    let scale = |n: u64| unit.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Grant {
        granted: u32::try_from(granted).map_err(|_| StoreError::Reply)?,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset: scale(reset),
        retry_after: scale(retry_after),
    })
}

/// The [`gcra_take`] arithmetic in Redis, in microseconds of Redis's own clock (replicas need
/// no synchronised clocks). Returns `{granted, remaining, reset_us, retry_after_us}`.
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, 0, 0, tat - now - tolerance}
end
local room = math.floor((tolerance - (tat - now)) / interval) + 1
local granted = math.min(want, room)
local next_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
local remaining = math.floor((now + tolerance + interval - next_tat) / interval)
return {granted, remaining, next_tat - now, 0}
";

/// Interval and tolerance of a policy in microseconds (at least 1 µs per token).
fn micros(policy: &RatePolicy) -> (u64, u64) {
    let interval = (policy.interval_ns() / 1000).max(1);
    (interval, policy.tolerance(interval))
}

/// Redis (or Valkey, ElastiCache, MemoryDB) through `redis`'s reconnecting connection manager,
/// driven on a runtime of its own so its connection outlives any one Pingora worker.
pub struct RedisStore {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    connection: Arc<Mutex<Option<ConnectionManager>>>,
    script: redis::Script,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RedisStore {
    /// Starts connecting at once (a store that is down is tried again on use).
    pub fn new(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            // Longer than the limiter's own timeout, which is what a request waits for; this
            // one lets the manager give up on (and replace) a connection that stopped answering.
            .set_response_timeout(Some((config.timeout * 4).max(Duration::from_millis(100))))
            .set_number_of_retries(2)
            .set_min_delay(BACKOFF_MIN)
            .set_max_delay(BACKOFF_MAX);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis-limits")
            .enable_all()
            .build()
            .map_err(|_| StoreError::NotConnected)?;
        let store = RedisStore {
            client,
            manager_config,
            connection: Arc::new(Mutex::new(None)),
            script: redis::Script::new(SCRIPT),
            runtime: Some(runtime),
        };
        let _connecting = store.connect();
        Ok(store)
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.runtime
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or(StoreError::NotConnected)
    }

    /// Connects on the store's runtime; the connection is kept for every later call.
    fn connect(
        &self,
    ) -> Result<tokio::task::JoinHandle<Result<ConnectionManager, StoreError>>, StoreError> {
        let (client, config, slot) = (
            self.client.clone(),
            self.manager_config.clone(),
            Arc::clone(&self.connection),
        );
        Ok(self.handle()?.spawn(async move {
            let manager = ConnectionManager::new_with_config(client, config).await?;
            *lock(&slot) = Some(manager.clone());
            Ok(manager)
        }))
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; this may run on a Pingora worker.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn take(&self, key: &str, policy: &RatePolicy, want: u32) -> Result<Grant, StoreError> {
        let existing = lock(&self.connection).clone();
        let mut connection = match existing {
            Some(connection) => connection,
            None => self
                .connect()?
                .await
                .map_err(|_| StoreError::NotConnected)??,
        };
        let (interval, tolerance) = micros(policy);
        let mut invocation = self.script.key(key);
        invocation.arg(interval).arg(tolerance).arg(want);
        let call = invocation.invoke_async::<Vec<u64>>(&mut connection);
        // The invocation borrows the script: run it here, with the connection's own task on
        // the store's runtime doing the I/O.
        grant(&call.await?, Duration::from_micros(1))
    }
}

/// [`gcra_take`] over a map: the store of in-process tests, on the test's clock.
pub struct MemoryStore {
    buckets: Mutex<HashMap<String, u64>>,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    /// While set, every call fails (a store that is down).
    pub down: std::sync::atomic::AtomicBool,
    pub calls: std::sync::atomic::AtomicUsize,
    /// Tokens granted, over every call.
    pub granted: std::sync::atomic::AtomicUsize,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore {
            buckets: Mutex::new(HashMap::new()),
            epoch: clock.now(),
            clock,
            down: Default::default(),
            calls: Default::default(),
            granted: Default::default(),
        }
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn take(&self, key: &str, policy: &RatePolicy, want: u32) -> Result<Grant, StoreError> {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::SeqCst);
        // A network store answers later: let concurrent callers overlap, as they would.
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::NotConnected);
        }
        let now = self
            .clock
            .now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64;
        let interval = policy.interval_ns();
        let tolerance = policy.tolerance(interval);
        let mut buckets = lock(&self.buckets);
        let tat = buckets.get(key).copied().unwrap_or(0);
        let (next, reply) = gcra_take(tat, now, interval, tolerance, want);
        buckets.insert(key.to_string(), next);
        self.granted.fetch_add(reply[0] as usize, Ordering::SeqCst);
        grant(&reply, Duration::from_nanos(1))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tokens of one key held by this replica.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u32,
    /// The store's remaining tokens when they were taken.
    remaining: u32,
    reset_at: Instant,
    /// Unspent tokens are dropped here.
    expires: Instant,
    /// The next ask (doubles while the key keeps coming back).
    next_ask: u32,
    /// Tokens asked by calls still in flight for this key. Concurrent asks take at most half
    /// the burst between them; past that a request asks for one token, so a burst of
    /// concurrent requests cannot take (and strand) a lease each.
    in_flight: u32,
    /// The store refused: refuse locally until then.
    limited_until: Option<Instant>,
}

/// The leases this replica holds, bounded.
#[derive(Debug)]
struct Leases {
    by_key: HashMap<u64, Lease>,
    capacity: usize,
    last_sweep: Option<Instant>,
    sweeps: u64,
}

/// Whether the store is answering, and when to try it again if not.
#[derive(Debug, Default)]
struct Health {
    down: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// Global limits for every policy with `scope = "global"`.
pub struct GlobalLimiter {
    store: Arc<dyn TokenStore>,
    lease_max: u32,
    lease_ttl: Duration,
    timeout: Duration,
    leases: Mutex<Leases>,
    hasher: RandomState,
    health: Mutex<Health>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for GlobalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalLimiter")
            .field("lease_max", &self.lease_max)
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

/// Whole seconds, rounded up (the local limiter's rounding).
fn ceil_seconds(duration: Duration) -> u64 {
    super::ratelimit::ceil_seconds(duration.as_nanos() as u64)
}

impl GlobalLimiter {
    pub fn new(
        store: Arc<dyn TokenStore>,
        config: &RedisConfig,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> GlobalLimiter {
        metrics.limit_store_ready();
        GlobalLimiter {
            store,
            lease_max: config.lease,
            lease_ttl: config.lease_ttl,
            timeout: config.timeout,
            leases: Mutex::new(Leases {
                by_key: HashMap::new(),
                capacity: MAX_LEASES,
                last_sweep: None,
                sweeps: 0,
            }),
            hasher: RandomState::new(),
            health: Mutex::new(Health::default()),
            metrics,
            clock,
        }
    }

    /// The decision for one request of `key` under `policy`; `None` when the store cannot
    /// answer and the policy fails open (admitted, no `RateLimit` headers).
    pub async fn check<K: Hash + Display + ?Sized>(
        &self,
        policy: &RatePolicy,
        key: &K,
    ) -> Option<Decision> {
        let now = self.clock.now();
        let id = self.hasher.hash_one((policy.name.as_str(), key));
        let (ask, counted) = {
            let mut leases = lock(&self.leases);
            match leases.by_key.get_mut(&id) {
                Some(lease) if now < lease.expires || lease.limited_until > Some(now) => {
                    if let Some(until) = lease.limited_until.filter(|until| now < *until) {
                        return Some(Decision::Limited {
                            retry_after_seconds: ceil_seconds(until - now).max(1),
                            reset_seconds: ceil_seconds(
                                lease.reset_at.saturating_duration_since(now),
                            ),
                        });
                    }
                    if lease.tokens > 0 {
                        lease.tokens -= 1;
                        return Some(Decision::Allowed {
                            remaining: lease.tokens.saturating_add(lease.remaining),
                            reset_seconds: ceil_seconds(
                                lease.reset_at.saturating_duration_since(now),
                            ),
                        });
                    }
                    let budget = (policy.burst / 2).max(1);
                    let ask = if lease.in_flight.saturating_add(lease.next_ask) <= budget {
                        lease.next_ask
                    } else {
                        1
                    };
                    lease.in_flight = lease.in_flight.saturating_add(ask);
                    (ask, true)
                }
                _ => (1, false),
            }
        };
        let settled = if counted { ask } else { 0 };
        if !self.may_call(now) {
            self.settle(id, settled);
            self.metrics.limit_store_call("skipped");
            return failed(policy);
        }
        let bucket = format!("edge:rl:{}:{key}", policy.name);
        let grant =
            match tokio::time::timeout(self.timeout, self.store.take(&bucket, policy, ask)).await {
                Ok(Ok(grant)) => grant,
                Ok(Err(error)) => {
                    self.settle(id, settled);
                    self.store_failed(now, "error", &error);
                    return failed(policy);
                }
                Err(_) => {
                    self.settle(id, settled);
                    self.store_failed(now, "timeout", &"no answer within timeout-ms");
                    return failed(policy);
                }
            };
        self.store_answered();
        let now = self.clock.now();
        let refused = grant.granted == 0;
        let lease = Lease {
            tokens: grant.granted.saturating_sub(1),
            remaining: grant.remaining,
            reset_at: now
                + if refused {
                    grant.retry_after
                } else {
                    grant.reset
                },
            expires: now + self.lease_ttl,
            next_ask: if refused {
                1
            } else {
                ask.saturating_mul(2).min(self.lease_max)
            },
            limited_until: refused.then(|| now + grant.retry_after),
            in_flight: 0,
        };
        self.keep(id, lease, now, settled);
        Some(if refused {
            Decision::Limited {
                retry_after_seconds: ceil_seconds(grant.retry_after).max(1),
                reset_seconds: ceil_seconds(grant.retry_after),
            }
        } else {
            Decision::Allowed {
                remaining: lease.tokens.saturating_add(grant.remaining),
                reset_seconds: ceil_seconds(grant.reset),
            }
        })
    }

    /// A call that asked for `tokens` of key `id` has ended without a grant.
    fn settle(&self, id: u64, tokens: u32) {
        if tokens > 0 {
            if let Some(lease) = lock(&self.leases).by_key.get_mut(&id) {
                lease.in_flight = lease.in_flight.saturating_sub(tokens);
            }
        }
    }

    /// Stores a lease from a call that asked for `settled` counted tokens; tokens another
    /// request took meanwhile for the same key are kept, as are the other calls in flight.
    fn keep(&self, id: u64, mut lease: Lease, now: Instant, settled: u32) {
        let mut leases = lock(&self.leases);
        if leases.by_key.len() >= leases.capacity && !leases.by_key.contains_key(&id) {
            let due = leases
                .last_sweep
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
            if due {
                leases.last_sweep = Some(now);
                leases.sweeps += 1;
                leases
                    .by_key
                    .retain(|_, l| now < l.expires || l.limited_until > Some(now));
            }
            if leases.by_key.len() >= leases.capacity {
                return;
            }
        }
        if let Some(previous) = leases.by_key.get(&id) {
            if now < previous.expires && lease.limited_until.is_none() {
                lease.tokens = lease.tokens.saturating_add(previous.tokens);
            }
            lease.in_flight = previous.in_flight.saturating_sub(settled);
        }
        leases.by_key.insert(id, lease);
    }

    /// Whether to call the store now: yes while it is up; once per backoff period while down.
    fn may_call(&self, now: Instant) -> bool {
        let mut health = lock(&self.health);
        if !health.down {
            return true;
        }
        match health.retry_at {
            Some(at) if now < at => false,
            _ => {
                // This request probes; the others keep skipping until it has an answer.
                health.retry_at = Some(now + health.backoff);
                true
            }
        }
    }

    fn store_failed(&self, now: Instant, outcome: &'static str, error: &dyn Display) {
        self.metrics.limit_store_call(outcome);
        let mut health = lock(&self.health);
        if !health.down {
            tracing::warn!(%error, outcome, "global rate-limit store unavailable: global limits fail open or closed as configured until it answers");
            self.metrics.limit_store_up(false);
            health.down = true;
            health.backoff = BACKOFF_MIN;
        } else {
            health.backoff = (health.backoff * 2).min(BACKOFF_MAX);
        }
        health.retry_at = Some(now + health.backoff);
    }

    fn store_answered(&self) {
        self.metrics.limit_store_call("ok");
        let mut health = lock(&self.health);
        if health.down {
            tracing::info!("global rate-limit store answers again");
            self.metrics.limit_store_up(true);
            *health = Health::default();
        }
    }
}

/// A policy's decision while the store cannot answer.
fn failed(policy: &RatePolicy) -> Option<Decision> {
    match policy.on_store_error {
        StoreFailure::Open => None,
        StoreFailure::Closed => Some(Decision::Limited {
            retry_after_seconds: 1,
            reset_seconds: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::config::LimitScope;
    use crate::ops::clock::ManualClock;

    fn policy(rate: f64, burst: u32, on_store_error: StoreFailure) -> RatePolicy {
        RatePolicy::local("global", rate, burst).scoped(LimitScope::Global, on_store_error)
    }

    fn config(lease: u32, lease_ms: u64) -> RedisConfig {
        RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(50),
            lease,
            lease_ttl: Duration::from_millis(lease_ms),
        }
    }

    /// Two replicas (limiters) sharing one store, on one manual clock.
    fn fleet(
        lease: u32,
        lease_ms: u64,
    ) -> (Arc<ManualClock>, Arc<MemoryStore>, [GlobalLimiter; 2]) {
        let clock = Arc::new(ManualClock::default());
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let replica = || {
            GlobalLimiter::new(
                store.clone(),
                &config(lease, lease_ms),
                Arc::new(Metrics::new()),
                clock.clone(),
            )
        };
        (clock.clone(), store.clone(), [replica(), replica()])
    }

    fn admitted(decision: Option<Decision>) -> bool {
        !matches!(decision, Some(Decision::Limited { .. }))
    }

    #[test]
    fn gcra_take_grants_what_the_bucket_holds_and_no_more() {
        // 1 token per 10 units, burst 5 (tolerance 40).
        let (tat, reply) = gcra_take(0, 100, 10, 40, 3);
        assert_eq!((tat, reply), (130, [3, 2, 30, 0]));
        let (tat, reply) = gcra_take(tat, 100, 10, 40, 10);
        assert_eq!((tat, reply), (150, [2, 0, 50, 0]));
        let (tat, reply) = gcra_take(tat, 100, 10, 40, 1);
        assert_eq!((tat, reply), (150, [0, 0, 0, 10]));
        // One interval later, one token.
        let (_, reply) = gcra_take(tat, 110, 10, 40, 5);
        assert_eq!(reply[0], 1);
    }

    #[tokio::test]
    async fn two_replicas_together_admit_the_burst_and_the_rate_not_twice_it() {
        // 10 per second, burst 20, leases of up to 8 tokens for 250 ms.
        let (clock, _, replicas) = fleet(8, 250);
        let policy = policy(10.0, 20, StoreFailure::Open);
        let mut admitted_total = 0;
        // 2 s of traffic, 100 requests per second to each replica.
        for step in 0..200 {
            for replica in &replicas {
                if admitted(replica.check(&policy, "alice").await) {
                    admitted_total += 1;
                }
            }
            if step % 2 == 1 {
                clock.advance(Duration::from_millis(20));
            }
        }
        // Bound: burst + rate × (T + lease) = 20 + 10 × (2 + 0.25) = 42.
        assert!(admitted_total <= 42, "admitted {admitted_total}");
        // Early refusals are bounded by the tokens two leases can strand.
        assert!(
            admitted_total >= 20 + 20 - 2 * 8,
            "admitted {admitted_total}"
        );
    }

    #[tokio::test]
    async fn a_busy_key_calls_the_store_once_per_lease_not_per_request() {
        let (_, store, replicas) = fleet(16, 1000);
        let policy = policy(1000.0, 1000, StoreFailure::Open);
        for _ in 0..100 {
            assert!(admitted(replicas[0].check(&policy, "bob").await));
        }
        // Asks of 1, 2, 4, 8, 16, 16, ... tokens: 31 tokens in 5 calls, then one call per 16.
        let calls = store.calls.load(Ordering::SeqCst);
        assert!(calls <= 10, "{calls} calls for 100 requests");
    }

    #[tokio::test]
    async fn concurrent_requests_do_not_each_take_a_whole_lease() {
        let (_, store, replicas) = fleet(10, 1000);
        // Burst 200, no refill within the test: concurrent asks may take 100 between them.
        let policy = policy(1.0, 200, StoreFailure::Open);
        // Sequential requests grow the ask to the whole lease (1, 2, 4, 8, 10).
        for _ in 0..25 {
            assert!(admitted(replicas[0].check(&policy, "dana").await));
        }
        let before = store.granted.load(Ordering::SeqCst);
        // Fifty at once, each finding no token left.
        let decisions =
            futures_util::future::join_all((0..50).map(|_| replicas[0].check(&policy, "dana")))
                .await;
        assert!(decisions.into_iter().all(admitted), "none refused");
        let taken = store.granted.load(Ordering::SeqCst) - before;
        // Leases up to half the burst, then one token each: not fifty leases (500).
        assert!(taken <= 100 + 50, "{taken} tokens taken for 50 requests");
        // Nothing is left counted as in flight.
        let id = replicas[0].hasher.hash_one((policy.name.as_str(), "dana"));
        assert_eq!(lock(&replicas[0].leases).by_key[&id].in_flight, 0);
    }

    #[tokio::test]
    async fn a_refused_key_is_refused_locally_until_retry_after() {
        let (clock, store, replicas) = fleet(4, 250);
        let policy = policy(1.0, 2, StoreFailure::Open);
        let decisions: Vec<bool> = futures_collect(&replicas[0], &policy, "carol", 10).await;
        assert_eq!(decisions.iter().filter(|a| **a).count(), 2);
        let calls = store.calls.load(Ordering::SeqCst);
        assert!(calls <= 4, "{calls} calls");
        clock.advance(Duration::from_millis(1100));
        assert!(admitted(replicas[0].check(&policy, "carol").await));
    }

    async fn futures_collect(
        limiter: &GlobalLimiter,
        policy: &RatePolicy,
        key: &str,
        n: usize,
    ) -> Vec<bool> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(admitted(limiter.check(policy, key).await));
        }
        out
    }

    #[tokio::test]
    async fn a_full_lease_table_stays_bounded_and_is_swept_at_most_every_100_ms() {
        let (clock, store, replicas) = fleet(4, 250);
        let limiter = &replicas[0];
        lock(&limiter.leases).capacity = 10;
        let policy = policy(1000.0, 1000, StoreFailure::Open);
        for key in 0..50 {
            assert!(admitted(limiter.check(&policy, &key).await));
        }
        // Full: ten leases kept, the other keys still decided (by the store).
        assert_eq!(lock(&limiter.leases).by_key.len(), 10);
        assert_eq!(store.calls.load(Ordering::SeqCst), 50);
        // 40 keys found the table full at one instant: one sweep, not 40.
        assert_eq!(lock(&limiter.leases).sweeps, 1);
        // Once the leases have expired and a sweep is due, new keys get leases again.
        clock.advance(Duration::from_millis(300));
        assert!(admitted(limiter.check(&policy, &1000).await));
        let leases = lock(&limiter.leases);
        assert_eq!(leases.by_key.len(), 1);
        assert_eq!(leases.sweeps, 2);
    }

    #[tokio::test]
    async fn a_store_outage_fails_open_or_closed_per_policy_and_backs_off() {
        let (clock, store, replicas) = fleet(4, 250);
        let open = policy(1.0, 1, StoreFailure::Open);
        let closed =
            RatePolicy::local("closed", 1.0, 1).scoped(LimitScope::Global, StoreFailure::Closed);
        store.down.store(true, Ordering::SeqCst);
        assert_eq!(replicas[0].check(&open, "dave").await, None);
        let calls = store.calls.load(Ordering::SeqCst);
        // Within the backoff, no call is tried.
        for _ in 0..20 {
            assert_eq!(replicas[0].check(&open, "dave").await, None);
            assert!(matches!(
                replicas[0].check(&closed, "dave").await,
                Some(Decision::Limited {
                    retry_after_seconds: 1,
                    ..
                })
            ));
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), calls);
        // Back: the next call after the backoff is answered, and the limit applies again.
        store.down.store(false, Ordering::SeqCst);
        clock.advance(BACKOFF_MAX);
        assert!(matches!(
            replicas[0].check(&open, "dave").await,
            Some(Decision::Allowed { .. })
        ));
        assert!(matches!(
            replicas[0].check(&open, "dave").await,
            Some(Decision::Limited { .. })
        ));
    }
}

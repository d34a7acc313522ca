//! A service's live set of instances and the choice of one per attempt.
//!
//! The set is an immutable snapshot behind an `ArcSwap`: the request path reads it without a
//! lock, and discovery swaps in a new one. An instance keeps its state (addresses, in-flight
//! count, health, circuit breaker) across refreshes as long as its URL stays in the set. Its
//! host's addresses are another snapshot, replaced by discovery's resolutions; connections go
//! to each address in turn, and an instance whose host has not resolved yet is not usable.
//!
//! Balancing: round robin, or power-of-two-choices on the fewest in-flight requests per unit of
//! weight. Unhealthy instances, instances whose breaker refuses, and instances this request has
//! already tried are skipped; if none is left the service is unavailable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;
use smallvec::SmallVec;

use super::breaker::{Admission, BreakerState, CircuitBreaker};
use super::retry::RetryBudget;
use crate::config::{Balancer, BreakerConfig, ServiceConfig, UpstreamUrl};

/// Where an instance came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceSource {
    /// The service's `instances` in the config.
    Static,
    /// A live entry of the registry table.
    Registry,
}

/// An instance as discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceSpec {
    pub url: UpstreamUrl,
    pub weight: u32,
    pub source: InstanceSource,
}

/// An instance's identity within its pool (a retry goes to another one).
pub type InstanceId = u64;

/// One instance and what the proxy knows about it.
#[derive(Debug)]
pub struct Instance {
    pub id: InstanceId,
    pub url: UpstreamUrl,
    /// `url`'s `Host` header value, made once.
    pub host: http::HeaderValue,
    /// `url` as text, made once (the access log names it on every request).
    pub text: String,
    /// Every address the host resolved to (empty until it first resolves).
    addresses: ArcSwap<Vec<SocketAddr>>,
    /// Which address the next connection goes to.
    next_address: AtomicUsize,
    /// When the host was last resolved, successfully or not.
    resolved_at: Mutex<Option<Instant>>,
    pub weight: u32,
    pub source: InstanceSource,
    pub in_flight: AtomicUsize,
    healthy: AtomicBool,
    consecutive_ok: AtomicU32,
    consecutive_bad: AtomicU32,
    pub breaker: CircuitBreaker,
}

impl Instance {
    fn new(id: InstanceId, spec: &InstanceSpec, breaker: BreakerConfig) -> Instance {
        Instance {
            id,
            // A parsed URL's authority is always a valid header value.
            host: http::HeaderValue::from_str(spec.url.host_header())
                .unwrap_or_else(|_| http::HeaderValue::from_static("invalid-host")),
            text: spec.url.to_string(),
            url: spec.url.clone(),
            addresses: ArcSwap::from_pointee(Vec::new()),
            next_address: AtomicUsize::new(0),
            resolved_at: Mutex::new(None),
            weight: spec.weight.max(1),
            source: spec.source,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            consecutive_ok: AtomicU32::new(0),
            consecutive_bad: AtomicU32::new(0),
            breaker: CircuitBreaker::new(breaker),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The addresses the host resolved to last.
    pub fn addresses(&self) -> Arc<Vec<SocketAddr>> {
        self.addresses.load_full()
    }

    /// The address the next connection goes to: every resolved address in turn.
    pub fn next_address(&self) -> Option<SocketAddr> {
        let addresses = self.addresses.load();
        let i = self.next_address.fetch_add(1, Ordering::Relaxed);
        addresses.get(i % addresses.len().max(1)).copied()
    }

    /// True when the host has never been resolved, or not for `refresh`.
    pub fn resolution_due(&self, now: Instant, refresh: Duration) -> bool {
        let last = *self.resolved_at.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            None => true,
            Some(_) if self.addresses.load().is_empty() => true,
            Some(at) => now.saturating_duration_since(at) >= refresh,
        }
    }

    /// Records a resolution: the addresses found, or `None` when the host did not resolve,
    /// which keeps the last good ones. Returns true when the addresses changed.
    pub fn record_resolution(&self, found: Option<Vec<SocketAddr>>, now: Instant) -> bool {
        *self.resolved_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        match found {
            Some(addresses) if !addresses.is_empty() && **self.addresses.load() != addresses => {
                self.addresses.store(Arc::new(addresses));
                true
            }
            _ => false,
        }
    }

    /// Records an active health check result; the instance flips state only after
    /// `threshold` results in a row. Returns the new health if it changed.
    pub fn record_health(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        if ok {
            self.consecutive_bad.store(0, Ordering::Relaxed);
            let run = self.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if run >= healthy_threshold && !self.healthy.swap(true, Ordering::Relaxed) {
                return Some(true);
            }
        } else {
            self.consecutive_ok.store(0, Ordering::Relaxed);
            let run = self.consecutive_bad.fetch_add(1, Ordering::Relaxed) + 1;
            if run >= unhealthy_threshold && self.healthy.swap(false, Ordering::Relaxed) {
                return Some(false);
            }
        }
        None
    }

    /// Usable right now: resolved, healthy, and the breaker would admit a call.
    pub fn usable(&self, now: Instant) -> bool {
        !self.addresses.load().is_empty() && self.is_healthy() && self.breaker.would_admit(now)
    }

    /// A peer for this instance's next address with the given timeouts (`None` while its
    /// host has no address).
    pub fn peer(&self, connect_timeout: Duration, read_timeout: Duration) -> Option<HttpPeer> {
        let address = self.next_address()?;
        let sni = if self.url.tls {
            self.url.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(address, self.url.tls, sni);
        peer.options.connection_timeout = Some(connect_timeout);
        peer.options.total_connection_timeout = Some(connect_timeout);
        peer.options.read_timeout = Some(read_timeout);
        peer.options.write_timeout = Some(read_timeout);
        Some(peer)
    }
}

/// One attempt's hold on an instance: counts as in flight until dropped, and settles the
/// breaker exactly once (an attempt dropped unsettled frees its probe slot).
#[derive(Debug)]
pub struct Attempt {
    pub instance: Arc<Instance>,
    probe: bool,
    settled: bool,
}

impl Attempt {
    /// The attempt's answer came at `now` and was not a failure.
    pub fn succeeded(&mut self, now: Instant) {
        if !self.settled {
            self.settled = true;
            self.instance.breaker.on_success(now);
        }
    }

    /// The attempt failed at `now`.
    pub fn failed(&mut self, now: Instant) {
        if !self.settled {
            self.settled = true;
            self.instance.breaker.on_failure(now);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.instance.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.settled && self.probe {
            self.instance.breaker.on_abandoned();
        }
    }
}

/// Why no instance could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// Seconds until an instance's breaker may admit again (at least 1).
    pub retry_after: u64,
}

pub struct ServicePool {
    pub config: Arc<ServiceConfig>,
    instances: ArcSwap<Vec<Arc<Instance>>>,
    next: AtomicUsize,
    next_id: AtomicU64,
    pub retry_budget: RetryBudget,
}

impl std::fmt::Debug for ServicePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePool")
            .field("service", &self.config.name)
            .finish()
    }
}

impl ServicePool {
    /// An empty pool; discovery fills it.
    pub fn new(config: Arc<ServiceConfig>) -> ServicePool {
        ServicePool {
            retry_budget: RetryBudget::new(config.retry.budget_ratio, config.retry.budget_reserve),
            config,
            instances: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// The current instances.
    pub fn instances(&self) -> Arc<Vec<Arc<Instance>>> {
        self.instances.load_full()
    }

    /// Replaces the instance set, keeping the state (addresses, health, breaker) of instances
    /// that stay. New instances start unresolved: discovery resolves them. Returns (added,
    /// removed) counts.
    pub fn update(&self, specs: &[InstanceSpec]) -> (usize, usize) {
        let current = self.instances.load_full();
        let by_url: HashMap<&UpstreamUrl, &Arc<Instance>> =
            current.iter().map(|i| (&i.url, i)).collect();
        let mut next = Vec::with_capacity(specs.len());
        let mut added = 0;
        for spec in specs {
            if next.iter().any(|i: &Arc<Instance>| i.url == spec.url) {
                continue;
            }
            match by_url.get(&spec.url) {
                Some(existing) if existing.weight == spec.weight.max(1) => {
                    next.push(Arc::clone(existing))
                }
                _ => {
                    added += 1;
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let instance = Instance::new(id, spec, self.config.breaker.clone());
                    if let Some(existing) = by_url.get(&spec.url) {
                        // Only the weight changed: keep what is known of the host.
                        instance.addresses.store(existing.addresses());
                    }
                    next.push(Arc::new(instance));
                }
            }
        }
        let removed = current
            .iter()
            .filter(|i| !next.iter().any(|n| n.url == i.url))
            .count();
        if added > 0 || removed > 0 {
            tracing::info!(service = %self.config.name, added, removed, total = next.len(), "instance set changed");
        }
        self.instances.store(Arc::new(next));
        (added, removed)
    }

    /// Takes the known addresses of `old`'s instances for the same URLs (a pool rebuilt by a
    /// config reload serves at once; discovery resolves them again on its schedule).
    pub fn adopt_addresses(&self, old: &ServicePool) {
        let old_instances = old.instances.load();
        for instance in self.instances.load().iter() {
            if let Some(previous) = old_instances.iter().find(|o| o.url == instance.url) {
                instance.addresses.store(previous.addresses());
                let at = *previous
                    .resolved_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                *instance
                    .resolved_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = at;
            }
        }
    }

    /// Chooses an instance for an attempt, skipping unusable ones and those in `tried`.
    pub fn select(&self, tried: &[InstanceId], now: Instant) -> Result<Attempt, Unavailable> {
        let instances = self.instances.load();
        // On the stack for up to 8 instances: no allocation per request.
        let mut candidates: SmallVec<[&Arc<Instance>; 8]> = instances
            .iter()
            .filter(|i| !tried.contains(&i.id) && i.usable(now))
            .collect();
        while !candidates.is_empty() {
            let index = match self.config.balancer {
                Balancer::RoundRobin => {
                    self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
                }
                Balancer::LeastInFlight => least_in_flight_of_two(&candidates),
            };
            let instance = candidates.swap_remove(index);
            let probe = match instance.breaker.admit(now) {
                Admission::Allowed => false,
                Admission::Probe => true,
                Admission::Refused(_) => continue,
            };
            instance.in_flight.fetch_add(1, Ordering::Relaxed);
            return Ok(Attempt {
                instance: Arc::clone(instance),
                probe,
                settled: false,
            });
        }
        Err(Unavailable {
            retry_after: self.retry_after(now),
        })
    }

    /// Seconds until the soonest breaker may admit a probe, at least 1.
    fn retry_after(&self, now: Instant) -> u64 {
        let soonest = self
            .instances
            .load()
            .iter()
            .filter(|i| i.is_healthy())
            .filter_map(|i| {
                i.breaker
                    .open_until()
                    .map(|at| at.saturating_duration_since(now))
            })
            .min();
        soonest.map_or(self.config.health_check.interval.as_secs().max(1), |d| {
            d.as_secs_f64().ceil().max(1.0) as u64
        })
    }

    /// True when at least one instance is usable.
    pub fn has_usable(&self, now: Instant) -> bool {
        self.instances.load().iter().any(|i| i.usable(now))
    }

    /// Breaker state per instance, for metrics.
    pub fn breaker_states(&self, now: Instant) -> Vec<(String, BreakerState, bool)> {
        self.instances
            .load()
            .iter()
            .map(|i| (i.url.to_string(), i.breaker.state(now), i.is_healthy()))
            .collect()
    }
}

/// Power of two choices: two distinct random candidates, the one with fewer in-flight requests
/// per unit of weight wins.
fn least_in_flight_of_two(candidates: &[&Arc<Instance>]) -> usize {
    if candidates.len() == 1 {
        return 0;
    }
    let a = fastrand::usize(..candidates.len());
    let mut b = fastrand::usize(..candidates.len() - 1);
    if b >= a {
        b += 1;
    }
    let load = |i: usize| {
        let instance = candidates[i];
        instance.in_flight.load(Ordering::Relaxed) as f64 / f64::from(instance.weight)
    };
    if load(b) < load(a) {
        b
    } else {
        a
    }
}

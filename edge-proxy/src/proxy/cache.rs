//! The edge cache, on pingora-cache: an in-memory storage ([`store`]) under an LRU byte
//! budget per cached route (`simple_lru`), its cache lock (concurrent misses for a key wait for one upstream
//! fetch), its RFC 9111 freshness and stale-serving rules, its `Age` and `304`s. Written here
//! is only what pingora-cache leaves to the proxy: the key (method, path, normalised query),
//! `Vary`, which responses are stored (a route's default TTL when the origin gives none), the
//! `Cache-Status` header (RFC 9211), and purging, which needs an index of stored keys by path
//! (the storage is a hash table with no way to list its keys). The index is kept in step with
//! the LRU (what it evicts leaves the index), so it never holds more than the cache does.
//!
//! The storage, the lock and the table of route budgets live for the process (pingora-cache
//! wants `'static` parts); a key's user tag names its route, and the table hands each call to
//! that route's LRU, so a reload can add, resize or drop a route's budget without leaking one.
//! What a dropped or resized budget held is purged at the reload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use pingora::cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora::cache::eviction::simple_lru;
use pingora::cache::eviction::EvictionManager;
use pingora::cache::filters::resp_cacheable;
use pingora::cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::trace::Span as CacheSpan;
use pingora::cache::{
    CacheEntryKey, CacheEntryKeyRef, CacheKey, CacheMeta, CacheMetaDefaults, CachePhase,
    NoCacheReason, PurgeTarget, PurgeType, RespCacheable, Storage, VarianceBuilder,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

mod store;

use crate::config::{CacheConfig, Route, RouteCache};
use crate::ops::admin::CacheAdmin;
use crate::ops::metrics::{CacheRouteState, Metrics};
use store::ParsedStore;

/// The name this cache goes by in `Cache-Status`.
const NAME: &str = "edge-proxy";

/// No freshness from defaults: a response is stored for the time its origin allows, or for
/// the route's default TTL (see [`EdgeCache::cacheable`]); stale windows come from the origin.
const NO_DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

/// Statuses a cache may store without explicit freshness (RFC 9110 section 15.1).
const HEURISTIC: [u16; 10] = [200, 203, 204, 300, 301, 404, 405, 410, 414, 501];

pub struct EdgeCache {
    storage: &'static ParsedStore,
    budgets: &'static Budgets,
    lock: &'static CacheKeyLockImpl,
    /// Bumped by every purge: a response fetched across one is passed on, not stored (it may
    /// predate the write that caused the purge).
    epoch: AtomicU64,
}

/// What the cache did for a request: the access log's `cache` field and the metrics' label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    /// Served stale: the origin failed (stale-if-error) or is being asked again
    /// (stale-while-revalidate).
    Stale,
    /// Fetched, and stored if the response allowed it.
    Miss,
    /// Stored but no longer fresh: fetched again.
    Expired,
    /// Stored, no longer fresh, and confirmed by the origin (304).
    Revalidated,
    /// Fetched and not stored (the origin said so, too large, or a purge came in between).
    Uncacheable,
    /// Not a cacheable request (not a `GET`).
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Expired => "expired",
            Outcome::Revalidated => "revalidated",
            Outcome::Uncacheable => "uncacheable",
            Outcome::Bypass => "bypass",
        }
    }

    /// Its place in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Miss,
        Outcome::Expired,
        Outcome::Revalidated,
        Outcome::Uncacheable,
        Outcome::Bypass,
    ];

    /// What the cache did, read from pingora-cache's phase once the response is known.
    pub fn of(session: &Session) -> Outcome {
        match session.cache.phase() {
            CachePhase::Hit => Outcome::Hit,
            CachePhase::Stale | CachePhase::StaleUpdating => Outcome::Stale,
            CachePhase::Miss => Outcome::Miss,
            CachePhase::Expired => Outcome::Expired,
            CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => Outcome::Revalidated,
            _ => Outcome::Uncacheable,
        }
    }

    /// The `Cache-Status` value (RFC 9211) for this outcome of `meta`'s entry.
    pub fn cache_status(self, meta: Option<&CacheMeta>) -> String {
        let ttl = || {
            meta.map(|m| {
                let now = SystemTime::now();
                match m.fresh_until().duration_since(now) {
                    Ok(left) => left.as_secs() as i64,
                    Err(past) => -(past.duration().as_secs() as i64),
                }
            })
        };
        match self {
            Outcome::Hit => match ttl() {
                Some(ttl) => format!("{NAME}; hit; ttl={ttl}"),
                None => format!("{NAME}; hit"),
            },
            Outcome::Stale => match ttl() {
                Some(ttl) => format!("{NAME}; hit; ttl={ttl}; detail=stale"),
                None => format!("{NAME}; hit; detail=stale"),
            },
            Outcome::Miss => format!("{NAME}; fwd=miss; stored"),
            Outcome::Expired => format!("{NAME}; fwd=stale; stored"),
            Outcome::Revalidated => format!("{NAME}; fwd=stale; fwd-status=304"),
            Outcome::Uncacheable => format!("{NAME}; fwd=miss"),
            Outcome::Bypass => format!("{NAME}; fwd=bypass"),
        }
    }
}

/// The cached routes of `routes` and their memory budgets, for [`EdgeCache::configure`].
pub fn budgets(routes: &[Route]) -> impl Iterator<Item = (&str, usize)> {
    routes.iter().filter_map(|route| {
        route
            .cache
            .map(|cache| (route.prefix.as_str(), cache.memory_bytes))
    })
}

/// The key's primary part: method, path, and the query with its parameters sorted (their
/// order does not make a different entry).
pub fn primary_key(request: &RequestHeader) -> String {
    let uri = &request.uri;
    let mut key = format!("{} {}", request.method, uri.path());
    if let Some(query) = uri.query() {
        let mut parameters: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        parameters.sort_unstable();
        if !parameters.is_empty() {
            key.push('?');
            key.push_str(&parameters.join("&"));
        }
    }
    key
}

/// The headers a stored response varies on, lower-cased; `None` for `Vary: *` (never stored).
fn vary_headers(response: &ResponseHeader) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for value in response.headers.get_all(http::header::VARY) {
        for name in value.to_str().unwrap_or("*").split(',') {
            let name = name.trim().to_ascii_lowercase();
            if name == "*" {
                return None;
            }
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

impl EdgeCache {
    /// The cache, for the rest of the process.
    pub fn new(config: &CacheConfig) -> &'static EdgeCache {
        let cache = EdgeCache {
            storage: Box::leak(Box::default()),
            budgets: Box::leak(Box::default()),
            lock: Box::leak(CacheLock::new_boxed(config.lock_timeout)),
            epoch: AtomicU64::new(0),
        };
        Box::leak(Box::new(cache))
    }

    /// Gives each cached route (prefix and memory budget) its LRU: a route whose budget is
    /// unchanged keeps its LRU and what it holds; what a route dropped from `routes` or given a
    /// new budget held is purged. Returns how many responses were purged.
    pub fn configure<'a>(&self, routes: impl IntoIterator<Item = (&'a str, usize)>) -> usize {
        let wanted: HashMap<&str, usize> = routes.into_iter().collect();
        let dropped = {
            let mut budgets = self.budgets.write();
            let mut dropped = Vec::new();
            budgets.retain(|route, tracked| {
                let keep = wanted.get(&**route) == Some(&tracked.budget);
                if !keep {
                    dropped.push(Arc::clone(tracked));
                }
                keep
            });
            for (route, budget) in &wanted {
                budgets
                    .entry((*route).into())
                    .or_insert_with(|| Arc::new(Tracked::new(*budget)));
            }
            dropped
        };
        if dropped.is_empty() {
            return 0;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        dropped
            .iter()
            .map(|tracked| self.storage.remove_all(tracked.index().path_of.keys()))
            .sum()
    }

    /// Turns caching on for this request (a `GET` on a cached route); returns the purge epoch
    /// to hand to [`EdgeCache::cacheable`].
    pub fn enable(&'static self, session: &mut Session, route: &RouteCache) -> u64 {
        session.cache.enable(
            self.storage,
            Some(self.budgets as &'static (dyn EvictionManager + Sync)),
            None,
            Some(self.lock),
            None,
        );
        session
            .cache
            .set_max_file_size_bytes(route.max_object_bytes);
        self.epoch.load(Ordering::Acquire)
    }

    /// The request's key on `route` (its prefix, the key's user tag: whose budget it counts
    /// against; not hashed). Its variance is added from the stored response's `Vary`.
    pub fn key(request: &RequestHeader, route: &str) -> CacheKey {
        let mut key = CacheKey::new(primary_key(request), route);
        // Hashed once here: pingora-cache asks for the hash at every step of a hit (lookup,
        // the LRU's access, the lock) and would run Blake2 again each time.
        key.set_primary_bin_override(key.primary_bin());
        key
    }

    /// Whether the response is stored: as RFC 9111 allows a shared cache (never `private`,
    /// `no-store`, `Vary: *`, nor, when credentials reach the origin, anything not marked for
    /// it), for its freshness or else the route's default TTL; and not if a purge ran since the
    /// request began (`epoch`).
    pub fn cacheable(
        &self,
        response: &ResponseHeader,
        route: &RouteCache,
        credentials_forwarded: bool,
        epoch: u64,
    ) -> RespCacheable {
        if self.epoch.load(Ordering::Acquire) != epoch {
            return RespCacheable::Uncacheable(NoCacheReason::Custom("purged meanwhile"));
        }
        if vary_headers(response).is_none() {
            return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        }
        let control = CacheControl::from_resp_headers(response);
        let decided = resp_cacheable(
            control.as_ref(),
            response.clone(),
            credentials_forwarded,
            &NO_DEFAULTS,
        );
        let explicit = control
            .as_ref()
            .is_some_and(|c| c.is_cacheable() != Cacheable::Default)
            || response.headers.contains_key(http::header::EXPIRES);
        match (decided, route.default_ttl) {
            (RespCacheable::Uncacheable(_), Some(ttl))
                if !explicit
                    && !credentials_forwarded
                    && HEURISTIC.contains(&response.status.as_u16()) =>
            {
                let now = SystemTime::now();
                RespCacheable::Cacheable(CacheMeta::new(now + ttl, now, 0, 0, response.clone()))
            }
            (decided, _) => decided,
        }
    }

    /// The variance of `request` for a stored response with `meta`'s `Vary`.
    pub fn variance(meta: &CacheMeta, request: &RequestHeader) -> Option<HashBinary> {
        let names = vary_headers(meta.response_header())?;
        let mut variance = VarianceBuilder::new();
        for name in &names {
            let value = request
                .headers
                .get(name.as_str())
                .map_or(&[][..], |v| v.as_bytes());
            variance.add_value(name, value);
        }
        variance.finalize()
    }

    /// Notes a key being stored, so a purge of its path finds it.
    pub fn remember(&self, path: &str, key: CompactCacheKey) {
        if let Some(tracked) = self.budgets.read().get(&*key.user_tag) {
            tracked.index().remember(path, key);
        }
    }

    /// Purges every stored response of the paths `select` picks from the index; returns how
    /// many were found.
    async fn purge_paths(&'static self, select: impl Fn(&Index) -> Vec<String>) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut keys = Vec::new();
        for tracked in self.budgets.all() {
            let taken = {
                let mut index = tracked.index();
                let paths = select(&index);
                index.take(paths)
            };
            keys.extend(taken.into_iter().map(|key| (Arc::clone(&tracked), key)));
        }
        let span = CacheSpan::inactive().handle();
        let mut purged = 0;
        for (tracked, key) in &keys {
            let outcome = self
                .storage
                .purge(PurgeTarget::Active(key), PurgeType::Invalidation, &span)
                .await;
            tracked
                .lru
                .remove(CacheEntryKeyRef::from_entry_id(key, None));
            if matches!(outcome, Ok(pingora::cache::PurgeOutcome::Purged(_))) {
                purged += 1;
            }
        }
        purged
    }

    /// After a successful write to `path`: purges it, what lies under it, and every path above
    /// it (a write to `/api/products/7/reservations` changes `/api/products/7` and the
    /// `/api/products` lists). Runs before the write's response is sent; looks up only those
    /// paths, whatever the size of the cache.
    pub async fn purge_for_write(&'static self, path: &str) -> usize {
        let path = path.trim_end_matches('/');
        self.purge_paths(|index| {
            let mut paths = index.under(&format!("{path}/"));
            paths.push("/".to_string());
            paths.extend(
                path.match_indices('/')
                    .filter(|(at, _)| *at > 0)
                    .map(|(at, _)| path[..at].to_string()),
            );
            paths.push(path.to_string());
            paths
        })
        .await
    }

    /// Purges every stored response whose path starts with `prefix` (the admin endpoint).
    pub async fn purge_prefix(&'static self, prefix: &str) -> usize {
        self.purge_paths(|index| index.under(prefix)).await
    }

    /// Each cached route's bytes and responses held, and what it evicted since the last call.
    pub fn route_states(&self) -> Vec<CacheRouteState> {
        let budgets = self.budgets.read();
        budgets
            .iter()
            .map(|(route, tracked)| {
                let evicted = tracked.lru.evicted_items();
                let reported = tracked.evictions_reported.swap(evicted, Ordering::Relaxed);
                CacheRouteState {
                    route: route.to_string(),
                    bytes: tracked.lru.total_size(),
                    items: tracked.lru.total_items(),
                    newly_evicted: evicted.saturating_sub(reported),
                }
            })
            .collect()
    }
}

/// Each cached route's LRU, by route prefix (a key's user tag). pingora-cache holds one
/// `'static` eviction manager per request; this table is it, and passes each call to the
/// key's route. A key whose route has no budget (no longer cached) is not kept: admitting it
/// evicts it at once.
#[derive(Default)]
struct Budgets {
    routes: RwLock<HashMap<Box<str>, Arc<Tracked>>>,
}

impl Budgets {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<Tracked>>> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Arc<Tracked>>> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `work` on `route`'s LRU, if the route is cached.
    fn with<R>(&self, route: &str, work: impl FnOnce(&Tracked) -> R) -> Option<R> {
        self.read().get(route).map(|tracked| work(tracked))
    }

    fn all(&self) -> Vec<Arc<Tracked>> {
        self.read().values().cloned().collect()
    }

    fn sum(&self, of: impl Fn(&simple_lru::Manager) -> usize) -> usize {
        self.read().values().map(|tracked| of(&tracked.lru)).sum()
    }
}

#[async_trait::async_trait]
impl EvictionManager for Budgets {
    fn total_size(&self) -> usize {
        self.sum(|lru| lru.total_size())
    }

    fn total_items(&self) -> usize {
        self.sum(|lru| lru.total_items())
    }

    fn evicted_size(&self) -> usize {
        self.sum(|lru| lru.evicted_size())
    }

    fn evicted_items(&self) -> usize {
        self.sum(|lru| lru.evicted_items())
    }

    fn admit(
        &self,
        item: CacheEntryKey,
        size: usize,
        fresh_until: SystemTime,
    ) -> Vec<CacheEntryKey> {
        match self.read().get(&*item.key().user_tag) {
            Some(tracked) => tracked.admit(item, size, fresh_until),
            None => vec![item],
        }
    }

    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        self.with(&item.key().user_tag, |tracked| {
            tracked.increment_weight(item, delta, max_weight)
        })
        .unwrap_or_else(|| vec![item.clone()])
    }

    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        self.with(&item.key().user_tag, |tracked| tracked.remove(item));
    }

    fn access(&self, item: &CacheEntryKey, size: usize, fresh_until: SystemTime) -> bool {
        self.with(&item.key().user_tag, |tracked| {
            tracked.lru.access(item, size, fresh_until)
        })
        .unwrap_or(false)
    }

    fn peek(&self, item: &CacheEntryKey) -> bool {
        self.with(&item.key().user_tag, |tracked| tracked.lru.peek(item))
            .unwrap_or(false)
    }

    /// Nothing is persisted: the cache is memory only.
    async fn save(&self, _dir_path: &str) -> pingora::Result<()> {
        Ok(())
    }

    async fn load(&self, _dir_path: &str) -> pingora::Result<()> {
        Ok(())
    }
}

/// Stored keys by request path (for purges), and each key's path (for evictions).
#[derive(Default)]
struct Index {
    /// Ordered, so a purge finds the paths under a prefix by range.
    by_path: BTreeMap<String, HashSet<CompactCacheKey>>,
    path_of: HashMap<CompactCacheKey, String>,
}

impl Index {
    fn remember(&mut self, path: &str, key: CompactCacheKey) {
        self.forget(&key);
        self.by_path
            .entry(path.to_string())
            .or_default()
            .insert(key.clone());
        self.path_of.insert(key, path.to_string());
    }

    fn forget(&mut self, key: &CompactCacheKey) {
        if let Some(path) = self.path_of.remove(key) {
            if let Some(keys) = self.by_path.get_mut(&path) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_path.remove(&path);
                }
            }
        }
    }

    /// The stored paths starting with `prefix`, found in order (no walk over the whole index).
    fn under(&self, prefix: &str) -> Vec<String> {
        self.by_path
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(path, _)| path.starts_with(prefix))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Removes and returns the keys stored for `paths` (paths not stored are skipped).
    fn take(&mut self, paths: Vec<String>) -> Vec<CompactCacheKey> {
        let mut keys = Vec::new();
        for path in paths {
            for key in self.by_path.remove(&path).unwrap_or_default() {
                self.path_of.remove(&key);
                keys.push(key);
            }
        }
        keys
    }
}

/// pingora-cache's LRU, with the purge index kept in step: a key it evicts (or is told to
/// remove) leaves the index, so the index is bounded by what the cache holds.
struct Tracked {
    lru: simple_lru::Manager,
    index: Mutex<Index>,
    /// The memory budget the LRU was made with.
    budget: usize,
    /// Evictions already counted in the metrics.
    evictions_reported: std::sync::atomic::AtomicUsize,
}

impl Tracked {
    fn new(budget: usize) -> Tracked {
        Tracked {
            lru: simple_lru::Manager::new(budget),
            index: Mutex::default(),
            budget,
            evictions_reported: Default::default(),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_all(&self, evicted: &[CacheEntryKey]) {
        if !evicted.is_empty() {
            let mut index = self.index();
            for entry in evicted {
                index.forget(entry.key());
            }
        }
    }

    fn admit(
        &self,
        item: CacheEntryKey,
        size: usize,
        fresh_until: SystemTime,
    ) -> Vec<CacheEntryKey> {
        let evicted = self.lru.admit(item, size, fresh_until);
        self.forget_all(&evicted);
        evicted
    }

    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        let evicted = self.lru.increment_weight(item, delta, max_weight);
        self.forget_all(&evicted);
        evicted
    }

    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        self.index().forget(item.key());
        self.lru.remove(item);
    }
}

/// The cache as the admin listener sees it.
pub struct CacheAdminHandle(pub &'static EdgeCache);

#[async_trait::async_trait]
impl CacheAdmin for CacheAdminHandle {
    async fn purge_prefix(&self, prefix: &str) -> usize {
        self.0.purge_prefix(prefix).await
    }

    fn record_gauges(&self, metrics: &Metrics) {
        metrics.cache_state(&self.0.route_states());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> RequestHeader {
        RequestHeader::build("GET", uri.as_bytes(), None).unwrap()
    }

    fn response(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut response = ResponseHeader::build(200, None).unwrap();
        for (name, value) in headers {
            response.insert_header(name.to_string(), *value).unwrap();
        }
        response
    }

    #[test]
    fn parameter_order_does_not_split_entries() {
        assert_eq!(
            primary_key(&request("/api/products?b=2&a=1")),
            primary_key(&request("/api/products?a=1&b=2"))
        );
        assert_ne!(
            primary_key(&request("/api/products?a=1")),
            primary_key(&request("/api/products?a=2"))
        );
        assert_eq!(
            primary_key(&request("/api/products?&")),
            "GET /api/products"
        );
    }

    fn route(ttl: Option<u64>) -> RouteCache {
        RouteCache {
            default_ttl: ttl.map(std::time::Duration::from_secs),
            max_object_bytes: 1024,
            memory_bytes: 4096,
        }
    }

    #[test]
    fn what_is_stored() {
        let cache = EdgeCache::new(&CacheConfig::default());
        let stored = |headers: &[(&str, &str)], ttl, credentials| {
            cache
                .cacheable(&response(headers), &route(ttl), credentials, 0)
                .is_cacheable()
        };
        assert!(stored(
            &[("cache-control", "public, max-age=60")],
            None,
            false
        ));
        assert!(stored(
            &[("cache-control", "public, max-age=60")],
            None,
            true
        ));
        assert!(stored(&[("cache-control", "max-age=60")], None, false));
        assert!(
            !stored(&[("cache-control", "max-age=60")], None, true),
            "credentials"
        );
        assert!(!stored(
            &[("cache-control", "private, max-age=60")],
            Some(60),
            false
        ));
        assert!(!stored(&[("cache-control", "no-store")], Some(60), false));
        assert!(!stored(
            &[("cache-control", "public, max-age=60"), ("vary", "*")],
            None,
            false
        ));
        assert!(!stored(&[], None, false), "no freshness, no default");
        assert!(stored(&[], Some(30), false), "the route's default TTL");
        assert!(!stored(&[], Some(30), true));
        // A purge since the request began: passed on, not stored.
        let fresh = response(&[("cache-control", "public, max-age=60")]);
        assert!(!cache
            .cacheable(&fresh, &route(None), false, 1)
            .is_cacheable());
    }

    #[test]
    fn the_index_forgets_what_the_lru_evicts() {
        let tracked = Tracked::new(100);
        let key = |i: usize| CacheKey::new(format!("GET /p/{i}"), "").to_compact();
        let fresh = SystemTime::now() + std::time::Duration::from_secs(60);
        for i in 0..50 {
            tracked.index().remember(&format!("/p/{i}"), key(i));
            tracked.admit(CacheEntryKey::key_only(key(i)), 10, fresh);
        }
        let index = tracked.index();
        assert_eq!(tracked.lru.total_items(), 10);
        assert_eq!(index.path_of.len(), 10, "only what the cache holds");
        assert_eq!(index.by_path.len(), 10);
        assert!(index.path_of.contains_key(&key(49)) && !index.path_of.contains_key(&key(0)));
    }

    #[test]
    fn paths_under_a_prefix_are_found_by_range() {
        let mut index = Index::default();
        for (i, path) in [
            "/api/products",
            "/api/products/7",
            "/api/products/7/r/1",
            "/api/productsx",
            "/api/users/1",
        ]
        .iter()
        .enumerate()
        {
            index.remember(
                path,
                CacheKey::new(format!("GET {path} {i}"), "").to_compact(),
            );
        }
        assert_eq!(
            index.under("/api/products/"),
            ["/api/products/7", "/api/products/7/r/1"]
        );
        assert_eq!(index.under("/api/products").len(), 4);
        assert_eq!(index.take(index.under("/api/users")).len(), 1);
        assert!(index.under("/api/users").is_empty());
    }

    #[test]
    fn outcomes_index_their_list() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome:?}");
        }
    }

    #[test]
    fn cache_status_says_what_happened() {
        assert_eq!(Outcome::Hit.cache_status(None), "edge-proxy; hit");
        assert_eq!(
            Outcome::Miss.cache_status(None),
            "edge-proxy; fwd=miss; stored"
        );
        assert_eq!(
            Outcome::Stale.cache_status(None),
            "edge-proxy; hit; detail=stale"
        );
    }
}

//! The response cache (nginx `proxy_cache` on RFC 9111), as a library the
//! pipeline drives: it knows nothing of requests in flight, routes' replies
//! or upstreams (as pingora-cache knows nothing of pingora-proxy). The
//! decisions — hit, stale, revalidation, background refresh, a fetch that
//! fills — are the pipeline's cache phase (`pipeline/cache_phase.rs`), at
//! the start of the upstream phase for routes with a `cache` table; the
//! request it sends upstream is built by `upstream::request`. Every request
//! on such a route gets a [`CacheStatus`] for the log, the metrics and,
//! when configured, a response header.
//!
//! Modules: `key` (key templates), `condition` (the `bypass` / `no_store`
//! conditions), `store` (byte-bounded LRU with `inactive`), `freshness`
//! (RFC 9111 rules and nginx overrides), `entry` (a stored response),
//! `lock` (cache lock), `fill` (store while streaming), `status_metric`
//! (the per-status counter), `purge` (the admin endpoint).

pub mod condition;
pub mod entry;
pub mod fill;
pub mod freshness;
pub mod key;
pub mod lock;
pub mod purge;
pub mod status_metric;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderMap;

pub use self::store::{PurgeScope, StoreUsage};

use self::entry::CachedResponse;
use self::lock::{CacheLocks, LockAttempt};
use self::store::CacheStore;
use crate::config::model::CacheConfig;

/// What the cache did for a request (nginx `$upstream_cache_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served fresh from the cache.
    Hit,
    /// Not in the cache: fetched (and stored if allowed).
    Miss,
    /// In the cache but expired: fetched again in full.
    Expired,
    /// Expired, and served from the cache because the upstream failed.
    Stale,
    /// Expired, and served from the cache while it is being refreshed.
    Updating,
    /// Expired, and the upstream confirmed it (304): served from the cache.
    Revalidated,
    /// The cache was not consulted (bypass condition, method not cached).
    Bypass,
}

impl CacheStatus {
    /// How many statuses there are (`status as usize` is below it).
    pub const COUNT: usize = CacheStatus::Bypass as usize + 1;

    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Updating => "UPDATING",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// The contract's value, for the log record.
    pub fn to_wire(self) -> tailgate_runtime::CacheStatus {
        use tailgate_runtime::CacheStatus as Wire;
        match self {
            CacheStatus::Hit => Wire::Hit,
            CacheStatus::Miss => Wire::Miss,
            CacheStatus::Expired => Wire::Expired,
            CacheStatus::Stale => Wire::Stale,
            CacheStatus::Updating => Wire::Updating,
            CacheStatus::Revalidated => Wire::Revalidated,
            CacheStatus::Bypass => Wire::Bypass,
        }
    }
}

/// The process's response cache: storage and locks, shared by every route
/// (keys keep them apart) and kept across config reloads.
pub struct ResponseCache {
    store: CacheStore,
    locks: Arc<CacheLocks>,
    inactive: std::sync::Mutex<Duration>,
    sweeper_started: AtomicBool,
}

impl ResponseCache {
    pub fn new(config: &CacheConfig) -> Arc<Self> {
        Arc::new(ResponseCache {
            store: CacheStore::new(config.max_size, config.inactive),
            locks: Arc::new(CacheLocks::default()),
            inactive: std::sync::Mutex::new(config.inactive),
            sweeper_started: AtomicBool::new(false),
        })
    }

    /// Apply a reloaded `[cache]` section; entries stay (evicted down to a
    /// smaller `max_size` at once).
    pub fn reconfigure(&self, config: &CacheConfig) {
        self.store.set_bounds(config.max_size, config.inactive);
        *self.inactive.lock().unwrap_or_else(|p| p.into_inner()) = config.inactive;
    }

    /// Remove the entries `scope` names; returns how many.
    pub fn purge(&self, scope: &PurgeScope) -> usize {
        let removed = self.store.purge(scope);
        metrics::counter!("tailgate_cache_purged_total").increment(removed as u64);
        removed
    }

    pub fn usage(&self) -> StoreUsage {
        self.store.usage()
    }

    /// The entry stored under `primary` for a request with these header
    /// fields (its `Vary` variant), fresh or not.
    pub fn get(&self, primary: &str, request_headers: &HeaderMap) -> Option<Arc<CachedResponse>> {
        self.store.get(primary, request_headers)
    }

    /// Store `entry` under `primary` (and its variant); false when the
    /// entry alone is larger than the whole cache.
    pub fn insert(
        &self,
        primary: &str,
        request_headers: &HeaderMap,
        entry: Arc<CachedResponse>,
    ) -> bool {
        self.store.insert(primary, request_headers, entry)
    }

    /// Drop the entry a request with these header fields would get.
    pub fn remove(&self, primary: &str, request_headers: &HeaderMap) {
        self.store.remove(primary, request_headers);
    }

    /// The byte bound of the whole cache (`[cache] max_size`).
    pub fn max_size(&self) -> u64 {
        self.store.max_size()
    }

    /// Take the cache lock of `primary`, or a wait for its release.
    pub fn try_lock(&self, primary: &str) -> LockAttempt {
        self.locks.try_lock(primary)
    }

    /// Start (once) the task that drops idle entries even when no request
    /// touches the cache. Must run inside the tokio runtime.
    pub fn ensure_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let period = match weak.upgrade() {
                    Some(cache) => {
                        let inactive = *cache.inactive.lock().unwrap_or_else(|p| p.into_inner());
                        (inactive / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
                    }
                    None => return,
                };
                tokio::time::sleep(period).await;
                match weak.upgrade() {
                    Some(cache) => {
                        cache.store.sweep();
                        let usage = cache.store.usage();
                        metrics::gauge!("tailgate_cache_entries").set(usage.entries as f64);
                        metrics::gauge!("tailgate_cache_bytes").set(usage.bytes as f64);
                    }
                    None => return,
                }
            }
        });
    }
}

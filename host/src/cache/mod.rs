//! The response cache (nginx `proxy_cache` on RFC 9111): a step at the
//! start of the upstream phase, for routes with a `cache` table. It answers
//! from the shared in-memory cache, or sends the request upstream and
//! stores the answer while streaming it to the client; it serves stale
//! entries when the upstream fails, revalidates expired ones, refreshes
//! them in the background, and coalesces concurrent misses. Every request
//! on such a route gets a [`CacheStatus`] for the log, the metrics and,
//! when configured, a response header.
//!
//! Modules: `key` (key templates), `store` (byte-bounded LRU with
//! `inactive`), `freshness` (RFC 9111 rules and nginx overrides), `entry`
//! (a stored response), `lock` (cache lock), `origin` (the upstream
//! request), `fill` (store while streaming), `serve` (the decisions),
//! `status_metric` (the per-status counter), `purge` (the admin endpoint).

mod entry;
mod fill;
mod freshness;
pub mod key;
mod lock;
mod origin;
pub mod purge;
mod serve;
mod status_metric;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use self::serve::{handle, label, CacheStep};
pub use self::store::{PurgeScope, StoreUsage};

use self::lock::CacheLocks;
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

    /// Start (once) the task that drops idle entries even when no request
    /// touches the cache. Must run inside the tokio runtime.
    fn ensure_sweeper(self: &Arc<Self>) {
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

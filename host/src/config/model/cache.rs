//! The validated cache settings: the `[cache]` section (one shared
//! in-memory cache) and a route's `cache` table. Built by `config::cache` at
//! load; read by `crate::cache` and the pipeline's cache phase.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;

use crate::cache::key::CacheKeyTemplate;

/// Default `[cache] max_size`: 64 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;
/// Default `[cache] inactive`: 10 minutes, as nginx.
pub const DEFAULT_INACTIVE: Duration = Duration::from_secs(600);
/// The validated `[cache]` section: one shared in-memory cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes of stored responses (bodies, headers and keys) kept at most;
    /// least recently used entries are evicted past it.
    pub max_size: u64,
    /// Entries not used for this long are dropped, even if fresh.
    pub inactive: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_size: DEFAULT_MAX_SIZE,
            inactive: DEFAULT_INACTIVE,
        }
    }
}

/// A route's validated `cache` table: the route caches.
#[derive(Debug, Clone)]
pub struct RouteCache {
    pub key: CacheKeyTemplate,
    /// Freshness per status when the upstream gives none (nginx
    /// `proxy_cache_valid`); `valid_any` for every other status.
    pub valid: BTreeMap<u16, Duration>,
    pub valid_any: Option<Duration>,
    pub ignore_headers: IgnoredHeaders,
    /// Cached methods: GET and/or HEAD (a HEAD is answered from the GET entry).
    pub cache_get: bool,
    pub cache_head: bool,
    /// Requests matching any of these skip the cache lookup (the response may
    /// still be stored): nginx `proxy_cache_bypass`.
    pub bypass: Vec<CacheCondition>,
    /// Responses to requests matching any of these are not stored: nginx
    /// `proxy_no_cache`.
    pub no_store: Vec<CacheCondition>,
    pub use_stale: UseStale,
    pub background_update: bool,
    pub lock: bool,
    pub lock_timeout: Duration,
    pub max_entry_size: u64,
    pub status_header: Option<HeaderName>,
}

/// Upstream headers the cache ignores (nginx `proxy_ignore_headers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoredHeaders {
    pub cache_control: bool,
    pub expires: bool,
    /// The response is stored despite `Set-Cookie`; the stored copy has no
    /// `Set-Cookie` (only the client whose request filled it gets the cookie).
    pub set_cookie: bool,
}

/// A request condition: the header, cookie or query argument is present,
/// not empty and not "0" (nginx's rule for `proxy_cache_bypass`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCondition {
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

/// When a stale entry may be served (nginx `proxy_cache_use_stale`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UseStale {
    /// The upstream could not be reached or the exchange failed.
    pub error: bool,
    /// The upstream did not answer in time.
    pub timeout: bool,
    /// Another request (or a background update) is refreshing the entry.
    pub updating: bool,
    /// The upstream answered with one of these statuses.
    pub statuses: Vec<u16>,
}

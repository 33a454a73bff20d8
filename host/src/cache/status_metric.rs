//! The `tailgate_cache_requests_total{cache_status, host}` counter, bumped
//! once per request on a route with a cache (by `serve::label`, as the reply
//! leaves the upstream phase). The handles are registered once per (host,
//! status) and kept: registering a series hashes its key and allocates its
//! labels, ~1k instructions a request on a cache hit.

use std::sync::{LazyLock, OnceLock};

use dashmap::DashMap;
use foldhash::fast::RandomState;
use metrics::Counter;

use super::CacheStatus;

/// Hosts whose handles are kept; past this, series are registered per
/// request (as the `metrics` macros do).
const MAX_CACHED_HOSTS: usize = 1024;

/// One counter per [`CacheStatus`], made when first used.
type StatusCounters = [OnceLock<Counter>; CacheStatus::COUNT];

static SERIES: LazyLock<DashMap<String, StatusCounters, RandomState>> =
    LazyLock::new(DashMap::default);

/// Count one request of `host` with `status`.
pub(super) fn count(host: &str, status: CacheStatus) {
    let register = || {
        metrics::counter!(
            "tailgate_cache_requests_total",
            "cache_status" => status.as_str(),
            "host" => host.to_owned()
        )
    };
    let bump = |counters: &StatusCounters| {
        counters[status as usize].get_or_init(register).increment(1);
    };
    if let Some(counters) = SERIES.get(host) {
        return bump(&counters);
    }
    if SERIES.len() < MAX_CACHED_HOSTS {
        bump(&SERIES.entry(host.to_owned()).or_default());
    } else {
        register().increment(1);
    }
}

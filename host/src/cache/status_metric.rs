//! The `tailgate_cache_requests_total{cache_status, host}` counter, bumped
//! once per request on a route with a cache (by the pipeline's cache phase,
//! as the reply leaves the upstream phase). Its handles are kept per host
//! ([`ByHost`]) and status, registered when first used.

use std::sync::{LazyLock, OnceLock};

use metrics::Counter;

use super::CacheStatus;
use crate::telemetry::by_host::ByHost;

/// One counter per [`CacheStatus`], made when first used.
type StatusCounters = [OnceLock<Counter>; CacheStatus::COUNT];

static SERIES: LazyLock<ByHost<StatusCounters>> = LazyLock::new(ByHost::default);

/// Count one request of `host` with `status`.
pub fn count(host: &str, status: CacheStatus) {
    SERIES.with(host, StatusCounters::default, |counters| {
        counters[status as usize]
            .get_or_init(|| {
                metrics::counter!(
                    "tailgate_cache_requests_total",
                    "cache_status" => status.as_str(),
                    "host" => host.to_owned()
                )
            })
            .increment(1);
    });
}

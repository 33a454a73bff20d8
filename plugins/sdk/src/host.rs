//! Safe wrappers of the `host` imports: logging through the proxy's tracing,
//! plugin metrics, shared counters, a shared key-value store, rate-limit
//! zones and the host's clock. State is shared across all instances and
//! worker threads of the proxy and namespaced per plugin by the host.

use crate::bindings::tailgate::plugin::host as imports;
use crate::{LogLevel, RateDecision, RateLimit};

/// Log `message` at `level`, tagged by the host with plugin and route.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message);
}

pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Add `value` to the counter metric `tailgate_plugin_<name>`.
pub fn counter_add(name: &str, labels: &[(&str, &str)], value: u64) {
    imports::counter_add(name, labels, value);
}

/// Record `value` in the histogram metric `tailgate_plugin_<name>`.
pub fn histogram_record(name: &str, labels: &[(&str, &str)], value: f64) {
    imports::histogram_record(name, labels, value);
}

/// Account one request for `key` against the zone `limit` and get the
/// decision; `dry_run` decides without counting.
pub fn rate_limit_check(limit: RateLimit<'_>, key: &str, dry_run: bool) -> RateDecision {
    imports::rate_limit_check(limit, key, dry_run)
}

/// Add `delta` to the shared counter `key` and return its new value. A
/// counter not touched for `ttl_ms` milliseconds (0 = never) is removed.
pub fn counter_incr(key: &str, delta: i64, ttl_ms: u64) -> i64 {
    imports::counter_incr(key, delta, ttl_ms)
}

/// The shared counter `key`: 0 when absent or expired.
pub fn counter_get(key: &str) -> i64 {
    imports::counter_get(key)
}

/// The shared value at `key`, if set and not expired.
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imports::kv_get(key)
}

/// Set `key` to `value`, expiring after `ttl_ms` milliseconds (0 = never).
pub fn kv_set(key: &str, value: &[u8], ttl_ms: u64) {
    imports::kv_set(key, value, ttl_ms);
}

/// Remove `key`; whether it was there.
pub fn kv_delete(key: &str) -> bool {
    imports::kv_delete(key)
}

/// The host's clock, Unix epoch milliseconds (the host may control it in
/// tests, so prefer it to `std::time`).
pub fn now_ms() -> u64 {
    imports::now_ms()
}

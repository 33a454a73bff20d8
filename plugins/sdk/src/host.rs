//! Safe wrappers of the `host` imports: logging through the proxy's tracing,
//! plugin metrics, shared counters, sliding-window counters, a shared
//! key-value store, rate-limit zones, the ban list and the host's clock.
//! State is shared across all instances and worker threads of the proxy
//! and namespaced per plugin (or per [`StateScope`](crate::StateScope)) by
//! the host; the ban list per jail.

use crate::bindings::tailgate::plugin::host as imports;
use crate::{Ban, BanOutcome, BanRequest, LogLevel, RateDecision, RateKey, RateLimit, ZoneUse};

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

/// Register one use of a rate-limit zone (its name, rate, burst and
/// delay) and get its handle for [`rate_limit_check`]; call it in
/// `configure`, once per limit (at most 64 per instance).
pub fn rate_limit_zone(limit: RateLimit<'_>) -> ZoneUse {
    imports::rate_limit_zone(limit)
}

/// Account one request for `key` against the registered zone use `zone`
/// and get the decision; with `dry_run` the host counts the outcome as a
/// dry run (the plugin does not enforce it).
pub fn rate_limit_check(zone: ZoneUse, key: RateKey<'_>, dry_run: bool) -> RateDecision {
    imports::rate_limit_check(zone, key, dry_run)
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

/// Set the gauge metric `tailgate_plugin_<name>`.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: f64) {
    imports::gauge_set(name, labels, value);
}

/// Record one event for `key` and return how many fall within the last
/// `window_ms` milliseconds, this one included (a sliding window; the host
/// keeps the newest `max_events` times per key, 1..=1024).
pub fn window_add(key: &str, window_ms: u64, max_events: u32) -> u32 {
    imports::window_add(key, window_ms, max_events)
}

/// How many events of `key` fall within the last `window_ms`.
pub fn window_count(key: &str, window_ms: u64) -> u32 {
    imports::window_count(key, window_ms)
}

/// Forget `key`'s events.
pub fn window_reset(key: &str) {
    imports::window_reset(key);
}

/// Set `key` only if it is absent or expired; whether it was set.
pub fn kv_set_if_absent(key: &str, value: &[u8], ttl_ms: u64) -> bool {
    imports::kv_set_if_absent(key, value, ttl_ms)
}

/// Set `key` to `value` only if it holds `expected` (`None`: absent);
/// whether it was set. Atomic across the proxy's threads.
pub fn kv_compare_and_set(key: &str, expected: Option<&[u8]>, value: &[u8], ttl_ms: u64) -> bool {
    imports::kv_compare_and_set(key, expected, value, ttl_ms)
}

/// Milliseconds until `key` expires: `None` when absent, `Some(0)` when it
/// never expires.
pub fn kv_ttl(key: &str) -> Option<u64> {
    imports::kv_ttl(key)
}

/// Ban `key` in `jail` unless it is banned already (then nothing changes
/// and the existing ban comes back as [`BanOutcome::Already`]).
pub fn ban_add(jail: &str, key: &str, request: BanRequest) -> BanOutcome {
    imports::ban_add(jail, key, request)
}

/// The active ban of `key` in `jail`, if any.
pub fn ban_check(jail: &str, key: &str) -> Option<Ban> {
    imports::ban_check(jail, key)
}

/// Lift a ban; whether there was one.
pub fn ban_remove(jail: &str, key: &str) -> bool {
    imports::ban_remove(jail, key)
}

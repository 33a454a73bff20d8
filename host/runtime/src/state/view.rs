//! One plugin's host state seen from outside the guest: read every counter,
//! kv entry, sliding window and rate-limit bucket, and seed them, on the
//! runtime's clock.
//! Not on the request path: the plugin test harness (`tailgate-harness`)
//! uses it to pre-seed state before a hook runs and to assert on it after.

use std::sync::Arc;

use super::bans::{BanEntry, BanOutcome, BanRequest};
use super::rate_limiter::{self, Burst, ZoneSpec};
use super::{PluginState, SharedState};
use crate::bindings::types::{RateDecision, RateLimit};

/// A handle on one plugin's namespace of the shared state (the same one the
/// guest's `host` imports use).
pub struct PluginStateView {
    state: Arc<PluginState>,
    shared: Arc<SharedState>,
}

/// A live shared counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterEntry {
    pub key: String,
    pub value: i64,
    /// Idle expiry, ms; 0 = never.
    pub ttl_ms: u64,
}

/// A live kv entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    /// Clock time it is gone at, ms; 0 = never.
    pub expires_at_ms: u64,
}

/// A live sliding window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowEntry {
    pub key: String,
    /// Event times kept, ms, oldest first (some may be older than the window).
    pub times_ms: Vec<u64>,
    /// The window of the last `window-add`, ms.
    pub window_ms: u64,
}

/// One rate-limit zone (a name and a rate; the bursts are its uses') and
/// its buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitZoneState {
    pub zone: String,
    pub rate_milli: u64,
    /// Buckets held in memory, including idle ones the next access sweeps.
    pub tracked_keys: usize,
    /// Live buckets, sorted by key.
    pub buckets: Vec<BucketState>,
}

/// One key's leaky bucket (nginx `limit_req` state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketState {
    pub key: String,
    /// Requests above the rate, in thousandths.
    pub excess_milli: u64,
    /// Clock time of the last update, ms.
    pub last_ms: u64,
}

impl PluginStateView {
    pub(crate) fn new(shared: Arc<SharedState>, plugin: &str) -> Self {
        PluginStateView {
            state: shared.plugin(plugin),
            shared,
        }
    }

    fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// `counter-get`: the value, 0 if absent or expired.
    pub fn counter(&self, key: &str) -> i64 {
        self.state.counters.get(key, self.now_ms())
    }

    /// `counter-incr`: add `delta` (TTL `ttl_ms`, 0 = never) and return the new value.
    pub fn counter_incr(&self, key: &str, delta: i64, ttl_ms: u64) -> i64 {
        self.state.counters.incr(key, delta, ttl_ms, self.now_ms())
    }

    /// Live counters, sorted by key.
    pub fn counters(&self) -> Vec<CounterEntry> {
        let mut out: Vec<CounterEntry> = self
            .state
            .counters
            .entries(self.now_ms())
            .into_iter()
            .map(|(key, value, ttl_ms)| CounterEntry { key, value, ttl_ms })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Counters held, including expired ones not yet swept.
    pub fn counters_held(&self) -> usize {
        self.state.counters.len()
    }

    /// `kv-get`.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.kv.get(key, self.now_ms())
    }

    /// `kv-set`: gone `ttl_ms` from now (0 = kept until evicted).
    pub fn kv_set(&self, key: &str, value: impl Into<Vec<u8>>, ttl_ms: u64) {
        self.state.kv.set(key, value.into(), ttl_ms, self.now_ms());
    }

    /// `kv-delete`: true if it was there.
    pub fn kv_delete(&self, key: &str) -> bool {
        self.state.kv.delete(key, self.now_ms())
    }

    /// `kv-set-if-absent`: true if it stored `value` (the key was absent).
    pub fn kv_set_if_absent(&self, key: &str, value: impl Into<Vec<u8>>, ttl_ms: u64) -> bool {
        self.state
            .kv
            .set_if_absent(key, value.into(), ttl_ms, self.now_ms())
    }

    /// `kv-compare-and-set`: true if the value was `expected` (`None`:
    /// absent) and is now `value`.
    pub fn kv_compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: impl Into<Vec<u8>>,
        ttl_ms: u64,
    ) -> bool {
        self.state
            .kv
            .compare_and_set(key, expected, value.into(), ttl_ms, self.now_ms())
    }

    /// `kv-ttl`: `None` absent, `Some(0)` never expires, else ms left.
    pub fn kv_ttl(&self, key: &str) -> Option<u64> {
        self.state.kv.ttl_ms(key, self.now_ms())
    }

    /// Live kv entries, sorted by key.
    pub fn kv_entries(&self) -> Vec<KvEntry> {
        let mut out: Vec<KvEntry> = self
            .state
            .kv
            .entries(self.now_ms())
            .into_iter()
            .map(|(key, value, expires_at_ms)| KvEntry {
                key,
                value,
                expires_at_ms,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// kv entries held, including expired ones not yet swept.
    pub fn kv_held(&self) -> usize {
        self.state.kv.len()
    }

    /// `window-add`: record one event now, return the events within the
    /// last `window_ms` (this one included), keeping the newest `max_events`.
    pub fn window_add(&self, key: &str, window_ms: u64, max_events: u32) -> u32 {
        self.state
            .windows
            .record(key, self.now_ms(), window_ms, max_events)
    }

    /// `window-count`: events within the last `window_ms`.
    pub fn window_count(&self, key: &str, window_ms: u64) -> u32 {
        self.state.windows.count(key, self.now_ms(), window_ms)
    }

    /// `window-reset`: forget the key's events; true if it had any.
    pub fn window_reset(&self, key: &str) -> bool {
        self.state.windows.reset(key, self.now_ms())
    }

    /// Live windows, sorted by key.
    pub fn windows(&self) -> Vec<WindowEntry> {
        let mut out: Vec<WindowEntry> = self
            .state
            .windows
            .entries(self.now_ms())
            .into_iter()
            .map(|(key, times_ms, window_ms)| WindowEntry {
                key,
                times_ms,
                window_ms,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Windows held, including ones whose events all left, not yet swept.
    pub fn windows_held(&self) -> usize {
        self.state.windows.len()
    }

    /// `rate-limit-check` (enforcing): account one request for `key`, as the
    /// guest would. Seeds a bucket; an `Err` says why the zone is invalid.
    pub fn rate_limit_check(&self, limit: &RateLimit, key: &str) -> Result<RateDecision, String> {
        let zone = self
            .state
            .rate_limits
            .zone(ZoneSpec {
                name: limit.zone.clone(),
                rate_milli: limit.rate_milli,
            })
            .map_err(|e| e.to_string())?;
        let by = Burst {
            burst: limit.burst,
            delay: limit.delay,
        };
        Ok(match zone.check(key, by, self.now_ms()) {
            rate_limiter::RateDecision::Pass => RateDecision::Pass,
            rate_limiter::RateDecision::Delay(ms) => RateDecision::Delay(ms),
            rate_limiter::RateDecision::Reject(ms) => RateDecision::Reject(ms),
        })
    }

    /// Every rate-limit zone of the plugin, sorted by name (then rate).
    pub fn rate_limit_zones(&self) -> Vec<RateLimitZoneState> {
        let now = self.now_ms();
        let mut out: Vec<RateLimitZoneState> = self
            .state
            .rate_limits
            .all()
            .into_iter()
            .map(|zone| {
                let spec = zone.spec();
                let mut buckets: Vec<BucketState> = zone
                    .buckets(now)
                    .into_iter()
                    .map(|(key, excess_milli, last_ms)| BucketState {
                        key,
                        excess_milli,
                        last_ms,
                    })
                    .collect();
                buckets.sort_by(|a, b| a.key.cmp(&b.key));
                RateLimitZoneState {
                    zone: spec.name.clone(),
                    rate_milli: spec.rate_milli,
                    tracked_keys: zone.tracked_keys(),
                    buckets,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.zone, a.rate_milli).cmp(&(&b.zone, b.rate_milli)));
        out
    }

    /// The zone named `zone` (the first, if several definitions share it).
    pub fn rate_limit_zone(&self, zone: &str) -> Option<RateLimitZoneState> {
        self.rate_limit_zones().into_iter().find(|z| z.zone == zone)
    }
}

/// A handle on the runtime's ban list, on the runtime's clock: what the
/// admin API and the harness use (the guest's `ban-*` imports reach the
/// same list).
#[derive(Clone)]
pub struct BanView {
    shared: Arc<SharedState>,
}

impl BanView {
    pub(crate) fn new(shared: Arc<SharedState>) -> Self {
        BanView { shared }
    }

    /// The runtime clock's time, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// `ban-add`.
    pub fn add(&self, jail: &str, key: &str, request: &BanRequest) -> BanOutcome {
        self.shared.bans.add(jail, key, request, self.now_ms())
    }

    /// `ban-check`.
    pub fn check(&self, jail: &str, key: &str) -> Option<BanEntry> {
        self.shared.bans.check(jail, key, self.now_ms())
    }

    /// `ban-remove`: true if a ban was lifted.
    pub fn remove(&self, jail: &str, key: &str) -> bool {
        self.shared.bans.remove(jail, key, self.now_ms())
    }

    /// Every active ban, sorted by jail and key.
    pub fn list(&self) -> Vec<BanEntry> {
        self.shared.bans.list(self.now_ms())
    }

    /// `ban-add` through the shared backend when there is one (the admin
    /// API's `POST /bans`: every machine sees the ban).
    pub async fn add_shared(&self, jail: &str, key: &str, request: &BanRequest) -> BanOutcome {
        self.shared.ban_add(jail, key, request).await
    }

    /// `ban-remove` here and in the shared backend (`DELETE /bans/...`).
    pub async fn remove_shared(&self, jail: &str, key: &str) -> bool {
        self.shared.ban_remove(jail, key).await
    }

    /// The health of the shared backend the bans (and the rest of the
    /// plugin state) go to, if there is one (`/healthz`).
    pub fn backend_health(&self) -> Option<crate::BackendHealth> {
        self.shared.redis.as_ref().map(|r| r.health())
    }

    /// Every active ban, this machine's and the shared backend's.
    pub async fn list_shared(&self) -> Vec<BanEntry> {
        self.shared.ban_list().await
    }

    /// Waits (up to `timeout`) until every change is in the state file;
    /// true at once without a state directory.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.shared.bans.flush(timeout)
    }
}

//! Where the state host imports (`host_imports`) get their answers: the
//! calling plugin's local namespace, or — with `[state] backend = "redis"`
//! in `exact` mode — Redis, falling back to the local namespace whenever
//! Redis is down or slower than `timeout` (`state::backend`). In `sync`
//! mode decisions are local and the accounting is queued for the interval
//! task (`state::backend::sync`): rate limits, counters and windows answer
//! from the shared state last pulled plus what this machine did since (the
//! local stores are still kept, for the admin view and persistence).
//! Every Redis wait is boxed: an import's future is moved whole on each
//! call, so the memory path keeps it a few words (~600 instructions per
//! `rate-limit-check`, docs/performance-passes.md).

use std::sync::Arc;

use crate::host_state::HostState;
use crate::state::rate_limiter::{Burst, RateDecision, RateLimitZone};
use crate::state::{PluginState, SharedState};

/// The state a host import call works on, owned: the import's future holds
/// it across the wait (the instance's `HostState` is not `Sync`).
pub(crate) struct StateCall {
    shared: Arc<SharedState>,
    plugin_state: Arc<PluginState>,
}

impl HostState {
    pub(crate) fn state_call(&self) -> StateCall {
        StateCall {
            shared: self.shared.clone(),
            plugin_state: self.plugin_state.clone(),
        }
    }
}

impl StateCall {
    /// One request against `zone`'s bucket for `key`.
    pub(crate) async fn decide_rate(
        &self,
        zone: &Arc<RateLimitZone>,
        key: &str,
        by: Burst,
    ) -> RateDecision {
        let now = self.shared.now_ms();
        let rate = zone.spec().rate_milli;
        if let Some(redis) = self.shared.exact() {
            let bucket = redis.bucket_key(&self.plugin_state.namespace, zone.name(), rate, key);
            if let Some(decision) =
                Box::pin(redis.rate_limit(bucket, rate, by.burst, by.delay, now)).await
            {
                return decision;
            }
        }
        let decision = zone.check(key, by, now);
        if let Some(redis) = self.shared.synced() {
            if !matches!(decision, RateDecision::Reject(_)) {
                let namespace = &self.plugin_state.namespace;
                let shared_key = redis.synced_bucket_key(namespace, zone.name(), rate, key);
                redis.queue.admitted(shared_key, zone, key, now);
            }
        }
        decision
    }

    pub(crate) async fn incr_counter(&self, key: &str, delta: i64, ttl_ms: u64) -> i64 {
        if let Some(redis) = self.shared.exact() {
            let namespace = &self.plugin_state.namespace;
            if let Some(value) = Box::pin(redis.counter_incr(namespace, key, delta, ttl_ms)).await {
                return value;
            }
        }
        let now = self.shared.now_ms();
        let local = self.plugin_state.counters.incr(key, delta, ttl_ms, now);
        if let Some(redis) = self.shared.synced() {
            let namespace = &self.plugin_state.namespace;
            let shared_key = redis.counter_key(namespace, key);
            return redis
                .queue
                .counter_incr(shared_key, namespace, key, delta, ttl_ms, now);
        }
        local
    }

    pub(crate) async fn read_counter(&self, key: &str) -> i64 {
        if let Some(redis) = self.shared.exact() {
            if let Some(value) =
                Box::pin(redis.counter_get(&self.plugin_state.namespace, key)).await
            {
                return value;
            }
        }
        let now = self.shared.now_ms();
        if let Some(redis) = self.shared.synced() {
            let namespace = &self.plugin_state.namespace;
            let shared_key = redis.counter_key(namespace, key);
            return redis.queue.counter_get(shared_key, namespace, key, now);
        }
        self.plugin_state.counters.get(key, now)
    }

    pub(crate) async fn add_to_window(&self, key: &str, window_ms: u64, max_events: u32) -> u32 {
        let now = self.shared.now_ms();
        if let Some(redis) = self.shared.exact() {
            let namespace = &self.plugin_state.namespace;
            if let Some(count) =
                Box::pin(redis.window_add(namespace, key, now, window_ms, max_events)).await
            {
                return count;
            }
        }
        let local = self
            .plugin_state
            .windows
            .record(key, now, window_ms, max_events);
        if let Some(redis) = self.shared.synced() {
            let shared_key = redis.window_key(&self.plugin_state.namespace, key);
            let member = redis.window_member(now);
            return redis
                .queue
                .window_add(shared_key, member, now, window_ms, max_events);
        }
        local
    }

    pub(crate) async fn count_window(&self, key: &str, window_ms: u64) -> u32 {
        let now = self.shared.now_ms();
        if let Some(redis) = self.shared.exact() {
            let namespace = &self.plugin_state.namespace;
            if let Some(count) = Box::pin(redis.window_count(namespace, key, now, window_ms)).await
            {
                return count;
            }
        }
        if let Some(redis) = self.shared.synced() {
            let shared_key = redis.window_key(&self.plugin_state.namespace, key);
            return redis.queue.window_count(shared_key, now, window_ms);
        }
        self.plugin_state.windows.count(key, now, window_ms)
    }

    pub(crate) async fn reset_window(&self, key: &str) {
        if let Some(redis) = self.shared.exact() {
            Box::pin(redis.window_reset(&self.plugin_state.namespace, key)).await;
        }
        if let Some(redis) = self.shared.synced() {
            let namespace = &self.plugin_state.namespace;
            redis.queue.window_reset(&redis.window_key(namespace, key));
            Box::pin(redis.window_reset(namespace, key)).await;
        }
        self.plugin_state.windows.reset(key, self.shared.now_ms());
    }

    pub(crate) async fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(redis) = self.shared.exact() {
            if let Some(value) = Box::pin(redis.kv_get(&self.plugin_state.namespace, key)).await {
                return value;
            }
        }
        self.plugin_state.kv.get(key, self.shared.now_ms())
    }

    pub(crate) async fn kv_set(&self, key: &str, value: Vec<u8>, ttl_ms: u64) {
        if let Some(redis) = self.shared.exact() {
            let namespace = &self.plugin_state.namespace;
            if Box::pin(redis.kv_set(namespace, key, &value, ttl_ms))
                .await
                .is_some()
            {
                return;
            }
        }
        let now = self.shared.now_ms();
        self.plugin_state.kv.set(key, value, ttl_ms, now);
    }

    pub(crate) async fn kv_delete(&self, key: &str) -> bool {
        if let Some(redis) = self.shared.exact() {
            if let Some(removed) =
                Box::pin(redis.kv_delete(&self.plugin_state.namespace, key)).await
            {
                return removed;
            }
        }
        self.plugin_state.kv.delete(key, self.shared.now_ms())
    }

    pub(crate) async fn kv_set_if_absent(&self, key: &str, value: Vec<u8>, ttl_ms: u64) -> bool {
        if let Some(redis) = self.shared.exact() {
            let namespace = &self.plugin_state.namespace;
            if let Some(set) =
                Box::pin(redis.kv_set_if_absent(namespace, key, &value, ttl_ms)).await
            {
                return set;
            }
        }
        let now = self.shared.now_ms();
        self.plugin_state.kv.set_if_absent(key, value, ttl_ms, now)
    }

    pub(crate) async fn kv_compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> bool {
        if let Some(redis) = self.shared.exact() {
            let namespace = &self.plugin_state.namespace;
            if let Some(set) =
                Box::pin(redis.kv_compare_and_set(namespace, key, expected, &value, ttl_ms)).await
            {
                return set;
            }
        }
        let now = self.shared.now_ms();
        self.plugin_state
            .kv
            .compare_and_set(key, expected, value, ttl_ms, now)
    }

    pub(crate) async fn kv_ttl(&self, key: &str) -> Option<u64> {
        if let Some(redis) = self.shared.exact() {
            if let Some(ttl) = Box::pin(redis.kv_ttl(&self.plugin_state.namespace, key)).await {
                return ttl;
            }
        }
        self.plugin_state.kv.ttl_ms(key, self.shared.now_ms())
    }
}

//! The state plugins share through the `host` imports: rate-limit zones,
//! counters, kv and sliding windows, one set per plugin name (plugins
//! cannot see each other's keys), and the ban list every plugin shares
//! (jails are global names), all on the runtime's one [`Clock`]. Lives as long as the
//! [`crate::Runtime`], so it survives config reloads.

pub mod backend;
pub(crate) mod bans;
mod bounded_map;
pub mod clock;
pub(crate) mod counters;
pub(crate) mod kv;
pub(crate) mod rate_limiter;
mod shared_bans;
pub mod view;
pub(crate) mod windows;
pub(crate) mod zone_uses;

use std::sync::Arc;

use dashmap::DashMap;

use crate::observer::PluginObserver;
use backend::{Consistency, RedisState};
use bans::BanList;
use clock::Clock;
use counters::Counters;
use kv::KvStore;
use rate_limiter::RateLimitZones;
use windows::Windows;

/// Bounds on what one plugin may keep in host state. Past a cap the least
/// recently used entry goes; tests shrink the caps to see that happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Longest key (counter, kv, rate-limit key), bytes.
    pub max_key_bytes: usize,
    /// Counters per plugin.
    pub max_counters: usize,
    /// kv entries per plugin.
    pub max_kv_entries: usize,
    /// Largest kv value, bytes.
    pub max_kv_value_bytes: usize,
    /// Rate-limit zone definitions per plugin.
    pub max_zones: usize,
    /// Keys (buckets) tracked per rate-limit zone.
    pub max_keys_per_zone: usize,
    /// Sliding-window keys per plugin (each keeps up to 1024 event times).
    pub max_windows: usize,
    /// Active bans in the runtime's one ban list (all jails together).
    pub max_bans: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_key_bytes: 512,
            max_counters: 100_000,
            max_kv_entries: 4_096,
            max_kv_value_bytes: 4 * 1024,
            max_zones: 64,
            max_keys_per_zone: 100_000,
            max_windows: 50_000,
            max_bans: 100_000,
        }
    }
}

/// One plugin's namespace.
pub(crate) struct PluginState {
    /// Its name (the plugin's, or `plugin@route:...`, `plugin@name`): the
    /// shared backend's keys carry it.
    pub(crate) namespace: Arc<str>,
    pub(crate) counters: Counters,
    pub(crate) kv: KvStore,
    pub(crate) rate_limits: RateLimitZones,
    pub(crate) windows: Windows,
}

/// Everything the host imports share, for all plugins of one runtime.
pub(crate) struct SharedState {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: StateLimits,
    /// Told about every plugin log line and output line (test harnesses).
    pub(crate) observer: Option<Arc<dyn PluginObserver>>,
    /// The bans of every jail: global to the runtime, not per plugin.
    pub(crate) bans: BanList,
    /// The shared backend (`[state] backend = "redis"`), if any.
    pub(crate) redis: Option<Arc<RedisState>>,
    plugins: DashMap<String, Arc<PluginState>>,
}

impl SharedState {
    /// State kept in memory only: the ban list starts empty (tests).
    #[cfg(test)]
    pub(crate) fn new(clock: Arc<dyn Clock>, limits: StateLimits) -> Self {
        Self::with_bans(clock, limits, BanList::new(limits.max_bans))
    }

    /// State around `bans` (a list loaded from a state directory).
    pub(crate) fn with_bans(clock: Arc<dyn Clock>, limits: StateLimits, bans: BanList) -> Self {
        SharedState {
            clock,
            limits,
            observer: None,
            bans,
            redis: None,
            plugins: DashMap::new(),
        }
    }

    pub(crate) fn with_redis(mut self, redis: Option<Arc<RedisState>>) -> Self {
        self.redis = redis;
        self
    }

    /// The shared backend when decisions are local and synced (`sync`).
    pub(crate) fn synced(&self) -> Option<&Arc<RedisState>> {
        self.redis
            .as_ref()
            .filter(|r| matches!(r.consistency, Consistency::Sync(_)))
    }

    /// Starts the `sync` mode's round task, if that is the mode.
    pub(crate) fn start_sync(self: &Arc<Self>) {
        if let Some(redis) = self.synced() {
            if let Consistency::Sync(interval) = redis.consistency {
                backend::sync::spawn(self, redis, interval);
            }
        }
    }

    /// The shared backend when decisions are made in it (`exact`).
    pub(crate) fn exact(&self) -> Option<&Arc<RedisState>> {
        self.redis
            .as_ref()
            .filter(|r| r.consistency == Consistency::Exact)
    }

    pub(crate) fn with_observer(mut self, observer: Option<Arc<dyn PluginObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// The namespace of plugin `name`, created on first use. The same name
    /// gets the same state, also after the plugin is loaded again.
    pub(crate) fn plugin(&self, name: &str) -> Arc<PluginState> {
        if let Some(state) = self.plugins.get(name) {
            return state.clone();
        }
        self.plugins
            .entry(name.to_string())
            .or_insert_with(|| {
                let limits = self.limits;
                let gauge = |kind: &'static str| {
                    metrics::gauge!(
                        "tailgate_plugin_state_keys",
                        "plugin" => name.to_string(),
                        "kind" => kind,
                    )
                };
                Arc::new(PluginState {
                    namespace: name.into(),
                    counters: Counters::new(limits.max_counters, Some(gauge("counter"))),
                    kv: KvStore::new(limits.max_kv_entries, Some(gauge("kv"))),
                    rate_limits: RateLimitZones::new(
                        name.into(),
                        limits.max_zones,
                        limits.max_keys_per_zone,
                    ),
                    windows: Windows::new(limits.max_windows, Some(gauge("window"))),
                })
            })
            .clone()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clock::ManualClock;

    #[test]
    fn plugins_do_not_share_keys() {
        let state = SharedState::new(Arc::new(ManualClock::new(0)), StateLimits::default());
        let a = state.plugin("a");
        let b = state.plugin("b");
        a.counters.incr("hits", 3, 0, 0);
        a.kv.set("k", b"secret".to_vec(), 0, 0);
        a.windows.record("ip", 0, 1_000, 5);
        assert_eq!(b.counters.get("hits", 0), 0);
        assert_eq!(b.kv.get("k", 0), None);
        assert_eq!(b.windows.count("ip", 0, 1_000), 0);
        // The same name is the same namespace.
        assert_eq!(state.plugin("a").counters.get("hits", 0), 3);
    }
}

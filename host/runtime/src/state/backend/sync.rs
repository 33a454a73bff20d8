//! The `sync` consistency mode (Kong's `sync_rate`): decisions are made on
//! this machine's state, and every interval a task pushes what happened
//! here to Redis and pulls what the other machines did. Rate limits: the
//! requests each bucket admitted since the last round are added to a shared
//! leaky bucket in Redis (leaked at the zone's rate), and the local bucket
//! is set to the shared excess — so between rounds each of N machines may
//! admit up to `rate × interval` (plus its burst + 1) the others do not know
//! of yet: the shared limit can be exceeded by at most
//! `(N − 1) × (rate × interval + burst + 1)` per interval. Bans: made and
//! lifted in Redis at once (`shared_bans`); each round pulls the shared
//! list, mirrors the bans made elsewhere and drops those lifted elsewhere,
//! so a ban or unban reaches every machine within one interval. Counters:
//! each machine queues its local deltas per key; a round adds them to the
//! shared counter (`INCRBY` + `PEXPIRE`, as `exact` mode) and pulls its
//! value, which becomes the local base (local value = shared value + the
//! deltas not yet pushed). Windows: the event times added here are queued;
//! a round adds them to the shared sorted set (`ZADD` + trim + `PEXPIRE`,
//! as `exact` mode) and pulls the event times within the window, so a
//! count is the shared events plus the local ones not yet pushed. Either
//! can lag the true total by what the other machines did since their last
//! round: machines × (events per interval). A key (bucket, counter or
//! window) is pulled until it has been idle here for [`FOLLOW_MS`]. kv
//! stays local in this mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use redis::Script;

use super::RedisState;
use crate::state::rate_limiter::RateLimitZone;
use crate::state::windows::{in_window, MAX_EVENTS};
use crate::state::SharedState;

/// KEYS: shared bucket. ARGV: rate_milli, added milli-requests, now.
/// Returns the shared excess after leaking to now and adding.
static PUSH_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rate = tonumber(ARGV[1])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'e', 'l')
local e = 0
if b[1] then
  local elapsed = now - tonumber(b[2])
  if elapsed < 0 then elapsed = 0 end
  e = tonumber(b[1]) - math.floor(rate * elapsed / 1000)
  if e < 0 then e = 0 end
end
e = e + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'e', e, 'l', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(e * 1000 / rate) + 60000)
return e
",
    )
});

/// Requests one bucket admitted since the last round.
struct Pending {
    zone: Arc<RateLimitZone>,
    key: String,
    admitted: AtomicU64,
    /// When it last admitted one, ms: a bucket keeps being pulled (the
    /// other machines' admissions) until it has been idle here for
    /// [`FOLLOW_MS`].
    last_admitted_ms: AtomicU64,
}

/// How long a bucket idle on this machine is still pulled each round.
const FOLLOW_MS: u64 = 60_000;

/// One counter as this machine knows it between rounds.
struct SyncedCounter {
    namespace: String,
    key: String,
    /// The shared value at the last pull (this machine's pushed deltas in).
    base: i64,
    /// Deltas being pushed by the round under way.
    pushing: i64,
    /// Local deltas not yet pushed.
    pending: i64,
    /// The `ttl-ms` of the last increment (0 = never).
    ttl_ms: u64,
    touched_ms: u64,
}

impl SyncedCounter {
    fn current(&self) -> i64 {
        self.base
            .saturating_add(self.pushing)
            .saturating_add(self.pending)
    }
}

/// One sliding window as this machine knows it between rounds.
struct SyncedWindow {
    /// Event times within the window at the last pull, all machines'.
    shared: Vec<u64>,
    /// Local events (time, member) being pushed by the round under way.
    pushing: Vec<(u64, String)>,
    /// Local events not yet pushed.
    pending: Vec<(u64, String)>,
    window_ms: u64,
    max_events: u32,
    touched_ms: u64,
}

impl SyncedWindow {
    fn count(&self, now_ms: u64, window_ms: u64) -> u32 {
        let live = |t: &u64| in_window(*t, now_ms, window_ms);
        let count = self.shared.iter().filter(|t| live(t)).count()
            + self.pushing.iter().filter(|(t, _)| live(t)).count()
            + self.pending.iter().filter(|(t, _)| live(t)).count();
        u32::try_from(count)
            .unwrap_or(u32::MAX)
            .min(self.max_events.clamp(1, MAX_EVENTS))
    }
}

/// The buckets, counters and windows the rounds push and pull, by shared
/// key.
#[derive(Default)]
pub(crate) struct SyncQueue {
    buckets: DashMap<String, Pending>,
    counters: DashMap<String, SyncedCounter>,
    windows: DashMap<String, SyncedWindow>,
}

impl SyncQueue {
    /// Counts one admitted request of `zone`'s bucket for `key`.
    pub(crate) fn admitted(
        &self,
        shared_key: String,
        zone: &Arc<RateLimitZone>,
        key: &str,
        now_ms: u64,
    ) {
        let entry = self.buckets.entry(shared_key).or_insert_with(|| Pending {
            zone: zone.clone(),
            key: key.to_owned(),
            admitted: AtomicU64::new(0),
            last_admitted_ms: AtomicU64::new(now_ms),
        });
        entry.admitted.fetch_add(1, Ordering::Relaxed);
        entry.last_admitted_ms.store(now_ms, Ordering::Relaxed);
    }

    fn counter<'a>(
        &'a self,
        shared_key: String,
        namespace: &str,
        key: &str,
        now_ms: u64,
    ) -> dashmap::mapref::one::RefMut<'a, String, SyncedCounter> {
        let mut entry = self
            .counters
            .entry(shared_key)
            .or_insert_with(|| SyncedCounter {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                base: 0,
                pushing: 0,
                pending: 0,
                ttl_ms: 0,
                touched_ms: now_ms,
            });
        entry.touched_ms = now_ms;
        entry
    }

    /// `counter-incr`: queues `delta`; the shared value at the last pull
    /// plus this machine's deltas since.
    pub(crate) fn counter_incr(
        &self,
        shared_key: String,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl_ms: u64,
        now_ms: u64,
    ) -> i64 {
        let mut entry = self.counter(shared_key, namespace, key, now_ms);
        entry.pending = entry.pending.saturating_add(delta);
        entry.ttl_ms = ttl_ms;
        entry.current()
    }

    /// `counter-get`: as [`Self::counter_incr`] answers; the key is pulled
    /// from now on.
    pub(crate) fn counter_get(
        &self,
        shared_key: String,
        namespace: &str,
        key: &str,
        now_ms: u64,
    ) -> i64 {
        self.counter(shared_key, namespace, key, now_ms).current()
    }

    fn window<'a>(
        &'a self,
        shared_key: String,
        window_ms: u64,
        now_ms: u64,
    ) -> dashmap::mapref::one::RefMut<'a, String, SyncedWindow> {
        let mut entry = self
            .windows
            .entry(shared_key)
            .or_insert_with(|| SyncedWindow {
                shared: Vec::new(),
                pushing: Vec::new(),
                pending: Vec::new(),
                window_ms,
                max_events: MAX_EVENTS,
                touched_ms: now_ms,
            });
        entry.touched_ms = now_ms;
        entry
    }

    /// `window-add`: queues the event (`member` at `now_ms`); the events
    /// within the window: the shared ones at the last pull and this
    /// machine's since, this one included.
    pub(crate) fn window_add(
        &self,
        shared_key: String,
        member: String,
        now_ms: u64,
        window_ms: u64,
        max_events: u32,
    ) -> u32 {
        let window_ms = window_ms.max(1);
        let mut entry = self.window(shared_key, window_ms, now_ms);
        entry.window_ms = window_ms;
        entry.max_events = max_events;
        entry.shared.retain(|&t| in_window(t, now_ms, window_ms));
        entry
            .pending
            .retain(|(t, _)| in_window(*t, now_ms, window_ms));
        entry.pending.push((now_ms, member));
        let keep = max_events.clamp(1, MAX_EVENTS) as usize;
        if entry.pending.len() > keep {
            let extra = entry.pending.len() - keep;
            entry.pending.drain(..extra);
        }
        entry.count(now_ms, window_ms)
    }

    /// `window-count`: as [`Self::window_add`] counts; the key is pulled
    /// from now on.
    pub(crate) fn window_count(&self, shared_key: String, now_ms: u64, window_ms: u64) -> u32 {
        let window_ms = window_ms.max(1);
        self.window(shared_key, window_ms, now_ms)
            .count(now_ms, window_ms)
    }

    /// `window-reset`: forgets what this machine knows of the window.
    pub(crate) fn window_reset(&self, shared_key: &str) {
        self.windows.remove(shared_key);
    }
}

/// Starts the round task of `shared` (inside a Tokio runtime; without one
/// there is nothing to sync and the mode decides locally). It ends when
/// the runtime is dropped.
pub(crate) fn spawn(shared: &Arc<SharedState>, redis: &Arc<RedisState>, interval: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("[state] consistency = \"sync\" needs a Tokio runtime; not syncing");
        return;
    };
    let weak: Weak<SharedState> = Arc::downgrade(shared);
    let redis = redis.clone();
    handle.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            round(&shared, &redis).await;
        }
    });
}

/// One push and pull.
pub(crate) async fn round(shared: &SharedState, redis: &Arc<RedisState>) {
    if !redis.is_up() {
        return;
    }
    push_buckets(shared, redis).await;
    push_counters(shared, redis).await;
    push_windows(shared, redis).await;
    sync_bans(shared, redis).await;
}

async fn push_buckets(shared: &SharedState, redis: &Arc<RedisState>) {
    let keys: Vec<String> = redis
        .queue
        .buckets
        .iter()
        .map(|e| e.key().clone())
        .collect();
    for shared_key in keys {
        let now = shared.now_ms();
        let Some((zone, key, admitted)) = redis.queue.buckets.get(&shared_key).map(|p| {
            let admitted = p.admitted.swap(0, Ordering::Relaxed);
            (p.zone.clone(), p.key.clone(), admitted)
        }) else {
            continue;
        };
        let rate = zone.spec().rate_milli.max(1);
        let bucket = shared_key.clone();
        let excess: Option<u64> = redis
            .run(|mut conn| async move {
                PUSH_BUCKET
                    .key(bucket)
                    .arg(rate)
                    .arg(admitted * 1000)
                    .arg(now)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        let Some(entry) = redis.queue.buckets.get(&shared_key) else {
            continue;
        };
        let Some(excess) = excess else {
            // Pushed next round (or after the outage).
            entry.admitted.fetch_add(admitted, Ordering::Relaxed);
            return;
        };
        let since = entry.admitted.load(Ordering::Relaxed);
        zone.set_shared_excess(&key, excess, since, now);
        let idle = now.saturating_sub(entry.last_admitted_ms.load(Ordering::Relaxed));
        drop(entry);
        if since == 0 && idle > FOLLOW_MS {
            redis
                .queue
                .buckets
                .remove_if(&shared_key, |_, p| p.admitted.load(Ordering::Relaxed) == 0);
        }
    }
}

/// Pushes each counter's queued deltas and pulls its shared value.
async fn push_counters(shared: &SharedState, redis: &Arc<RedisState>) {
    let keys: Vec<String> = redis
        .queue
        .counters
        .iter()
        .map(|e| e.key().clone())
        .collect();
    for shared_key in keys {
        let Some((namespace, key, delta, ttl_ms)) =
            redis.queue.counters.get_mut(&shared_key).map(|mut c| {
                c.pushing = std::mem::take(&mut c.pending);
                (c.namespace.clone(), c.key.clone(), c.pushing, c.ttl_ms)
            })
        else {
            continue;
        };
        let value = if delta == 0 {
            redis.counter_get(&namespace, &key).await
        } else {
            redis.counter_incr(&namespace, &key, delta, ttl_ms).await
        };
        let Some(mut entry) = redis.queue.counters.get_mut(&shared_key) else {
            continue;
        };
        let pushing = std::mem::take(&mut entry.pushing);
        let Some(value) = value else {
            // Pushed next round (or after the outage).
            entry.pending = entry.pending.saturating_add(pushing);
            return;
        };
        entry.base = value;
        let idle = shared.now_ms().saturating_sub(entry.touched_ms);
        let done = entry.pending == 0 && idle > FOLLOW_MS;
        drop(entry);
        if done {
            redis
                .queue
                .counters
                .remove_if(&shared_key, |_, c| c.pending == 0);
        }
    }
}

/// Pushes each window's queued events and pulls the shared event times.
async fn push_windows(shared: &SharedState, redis: &Arc<RedisState>) {
    let keys: Vec<String> = redis
        .queue
        .windows
        .iter()
        .map(|e| e.key().clone())
        .collect();
    for shared_key in keys {
        let Some((events, window_ms, max_events)) =
            redis.queue.windows.get_mut(&shared_key).map(|mut w| {
                w.pushing = std::mem::take(&mut w.pending);
                (w.pushing.clone(), w.window_ms, w.max_events)
            })
        else {
            continue;
        };
        let mut pushed = true;
        for (at, member) in events {
            let k = shared_key.clone();
            if redis
                .window_push(k, at, window_ms, max_events, member)
                .await
                .is_none()
            {
                pushed = false;
                break;
            }
        }
        let now = shared.now_ms();
        let times = if pushed {
            redis.window_times(shared_key.clone(), now, window_ms).await
        } else {
            None
        };
        let Some(mut entry) = redis.queue.windows.get_mut(&shared_key) else {
            continue;
        };
        let pushing = std::mem::take(&mut entry.pushing);
        let Some(times) = times else {
            // Pushed again next round (`ZADD` of the same member is a
            // no-op for those already there).
            let pending = std::mem::take(&mut entry.pending);
            entry.pending = pushing;
            entry.pending.extend(pending);
            return;
        };
        entry.shared = times;
        let idle = now.saturating_sub(entry.touched_ms);
        let done = entry.pending.is_empty() && idle > FOLLOW_MS;
        drop(entry);
        if done {
            redis
                .queue
                .windows
                .remove_if(&shared_key, |_, w| w.pending.is_empty());
        }
    }
}

/// Mirrors the shared bans, drops those lifted elsewhere, and writes back
/// this machine's bans the shared list lacks (made while Redis was away).
pub(crate) async fn sync_bans(shared: &SharedState, redis: &Arc<RedisState>) {
    let now = shared.now_ms();
    let Some(list) = redis.ban_list(now).await else {
        return;
    };
    for (jail, key, lifted_ms) in &list.lifted {
        if let Some(local) = shared.bans.check(jail, key, now) {
            if local.since_unix_ms <= *lifted_ms {
                shared.bans.remove(jail, key, now);
            }
        }
    }
    for ban in &list.bans {
        shared.bans.mirror(ban.clone(), now);
    }
    for local in shared.bans.list(now) {
        let known = list
            .bans
            .iter()
            .any(|b| b.jail == local.jail && b.key == local.key);
        if !known {
            if let Some(super::ban_ops::SharedBan::Lifted) = redis
                .ban_check(&local.jail, &local.key, Some(&local), now)
                .await
            {
                shared.bans.remove(&local.jail, &local.key, now);
            }
        }
    }
}

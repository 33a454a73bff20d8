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
//! so a ban or unban reaches every machine within one interval. Counters,
//! windows and kv stay local in this mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use redis::Script;

use super::RedisState;
use crate::state::rate_limiter::RateLimitZone;
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

/// The buckets the rounds push and pull, by shared bucket key.
#[derive(Default)]
pub(crate) struct SyncQueue {
    buckets: DashMap<String, Pending>,
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
            if let Some(super::ops::SharedBan::Lifted) = redis
                .ban_check(&local.jail, &local.key, Some(&local), now)
                .await
            {
                shared.bans.remove(&local.jail, &local.key, now);
            }
        }
    }
}

//! The storage under every host state primitive (rate-limit buckets,
//! counters, kv): a map with a hard cap on keys, least-recently-used
//! eviction at the cap, and expiry of idle entries. Sharded so that threads
//! working on different keys rarely meet; one key is always served by one
//! shard lock, which is what makes updates to it exact under concurrency.

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

/// An entry that may go stale with time.
pub(crate) trait Expiring {
    /// True when the entry is as good as absent at `now_ms`.
    fn is_expired(&self, now_ms: u64) -> bool;
}

/// How many stale entries at the LRU end each access looks at and drops
/// (nginx's limit_req does the same with 2).
const TAIL_SWEEP: usize = 2;

/// Keys per shard below which the map is not split (keeps small caps exact).
const KEYS_PER_SHARD: usize = 1024;
const MAX_SHARDS: usize = 16;

pub(crate) struct BoundedMap<V> {
    shards: Box<[Mutex<LruCache<String, V>>]>,
    hasher: RandomState,
    len: AtomicUsize,
    gauge: Option<metrics::Gauge>,
    /// Counts live entries pushed out at the cap (not expired ones).
    evictions: Option<metrics::Counter>,
}

/// Counter of live entries a full store pushed out, by store
/// (`counters`, `kv`, `windows`, `rate_limit`, `bans`).
pub(crate) const EVICTIONS_TOTAL: &str = "tailgate_state_evictions_total";

/// The [`EVICTIONS_TOTAL`] counter of `store`.
pub(crate) fn evictions_counter(store: &'static str) -> metrics::Counter {
    metrics::counter!(EVICTIONS_TOTAL, "store" => store)
}

impl<V: Expiring> BoundedMap<V> {
    /// A map holding at most `capacity` keys (rounded up to a multiple of the
    /// shard count), reporting its size to `gauge`.
    pub(crate) fn new(capacity: usize, gauge: Option<metrics::Gauge>) -> Self {
        let capacity = capacity.max(1);
        let shard_count = (capacity / KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(shard_count)).unwrap_or(NonZeroUsize::MIN);
        BoundedMap {
            shards: (0..shard_count)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            gauge,
            evictions: None,
        }
    }

    /// Counts evictions of live entries in [`EVICTIONS_TOTAL`] for `store`.
    pub(crate) fn counting_evictions(mut self, store: &'static str) -> Self {
        self.evictions = Some(evictions_counter(store));
        self
    }

    /// Runs `update` on the live entry for `key` (`None` when absent or
    /// expired) with the key's shard locked. Whatever the slot holds
    /// afterwards is stored (`None` removes the key). Storing a new key into
    /// a full shard evicts that shard's least recently used key.
    pub(crate) fn update<R>(
        &self,
        key: &str,
        now_ms: u64,
        update: impl FnOnce(&mut Option<V>) -> R,
    ) -> R {
        let mut shard = self.shard(key);
        let before = shard.len();
        // The popped key is pushed back as it is: no allocation for a key
        // that is already held (a rate limit's client, every request).
        let (held, mut slot) = match shard.pop_entry(key) {
            Some((held, value)) => (Some(held), Some(value).filter(|v| !v.is_expired(now_ms))),
            None => (None, None),
        };
        let result = update(&mut slot);
        if let Some(value) = slot {
            // The key was popped above, so whatever comes back was pushed
            // out at the cap.
            let evicted = shard.push(held.unwrap_or_else(|| key.to_owned()), value);
            if let (Some((_, evicted)), Some(counter)) = (evicted, &self.evictions) {
                if !evicted.is_expired(now_ms) {
                    counter.increment(1);
                }
            }
        }
        sweep_tail(&mut shard, now_ms);
        self.account(before, shard.len());
        result
    }

    /// Runs `read` on the live entry for `key` (`None` when absent or
    /// expired), marking it recently used. Does not change the entry.
    pub(crate) fn read<R>(&self, key: &str, now_ms: u64, read: impl FnOnce(Option<&V>) -> R) -> R {
        let mut shard = self.shard(key);
        let before = shard.len();
        let expired = shard.get(key).is_some_and(|v| v.is_expired(now_ms));
        if expired {
            shard.pop(key);
        }
        let result = read(shard.get(key));
        sweep_tail(&mut shard, now_ms);
        self.account(before, shard.len());
        result
    }

    /// Keys currently held (expired ones count until an access sweeps them).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// `view` of every live entry, most recently used first within a shard.
    /// Only looks: the LRU order and expired entries are left as they are.
    pub(crate) fn live_entries<T>(&self, now_ms: u64, view: impl Fn(&str, &V) -> T) -> Vec<T> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            out.extend(
                shard
                    .iter()
                    .filter(|(_, value)| !value.is_expired(now_ms))
                    .map(|(key, value)| view(key, value)),
            );
        }
        out
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, LruCache<String, V>> {
        let index = if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
        };
        // A panic while holding the lock cannot leave an entry half-written
        // (entries are replaced whole), so a poisoned shard is still sound.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn account(&self, before: usize, after: usize) {
        if after > before {
            let grown = after - before;
            self.len.fetch_add(grown, Ordering::Relaxed);
            if let Some(gauge) = &self.gauge {
                gauge.increment(grown as f64);
            }
        } else if before > after {
            let shrunk = before - after;
            self.len.fetch_sub(shrunk, Ordering::Relaxed);
            if let Some(gauge) = &self.gauge {
                gauge.decrement(shrunk as f64);
            }
        }
    }
}

impl<V> Drop for BoundedMap<V> {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.decrement(self.len.load(Ordering::Relaxed) as f64);
        }
    }
}

fn sweep_tail<V: Expiring>(shard: &mut LruCache<String, V>, now_ms: u64) {
    for _ in 0..TAIL_SWEEP {
        match shard.peek_lru() {
            Some((_, oldest)) if oldest.is_expired(now_ms) => {
                shard.pop_lru();
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expires at a fixed time.
    struct Until(u64);

    impl Expiring for Until {
        fn is_expired(&self, now_ms: u64) -> bool {
            now_ms >= self.0
        }
    }

    fn insert(map: &BoundedMap<Until>, key: &str, until: u64, now: u64) {
        map.update(key, now, |slot| *slot = Some(Until(until)));
    }

    fn present(map: &BoundedMap<Until>, key: &str, now: u64) -> bool {
        map.read(key, now, |v| v.is_some())
    }

    #[test]
    fn cap_evicts_least_recently_used() {
        let map = BoundedMap::new(3, None);
        for key in ["a", "b", "c"] {
            insert(&map, key, u64::MAX, 0);
        }
        // Touch "a" so "b" becomes the oldest.
        assert!(present(&map, "a", 0));
        insert(&map, "d", u64::MAX, 0);
        assert_eq!(map.len(), 3);
        assert!(!present(&map, "b", 0));
        for key in ["a", "c", "d"] {
            assert!(present(&map, key, 0), "{key}");
        }
    }

    #[test]
    fn expired_entries_read_as_absent_and_are_dropped() {
        let map = BoundedMap::new(10, None);
        insert(&map, "short", 100, 0);
        insert(&map, "long", 1_000, 0);
        assert!(present(&map, "short", 99));
        assert!(!present(&map, "short", 100));
        assert_eq!(map.len(), 1);
        // An update sees an expired entry as absent.
        let seen = map.update("long", 1_000, |slot| slot.is_some());
        assert!(!seen);
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn idle_tail_is_swept_by_other_keys_traffic() {
        let map = BoundedMap::new(10, None);
        insert(&map, "idle-1", 10, 0);
        insert(&map, "idle-2", 10, 0);
        insert(&map, "busy", u64::MAX, 0);
        assert_eq!(map.len(), 3);
        // Only "busy" is accessed; the sweep drops the expired LRU tail.
        assert!(present(&map, "busy", 50));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn gauge_follows_the_key_count() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let gauge = || crate::metrics::tests::gauge_value(&snapshotter, "test_keys", &[]);
        metrics::with_local_recorder(&recorder, || {
            let map = BoundedMap::new(2, Some(metrics::gauge!("test_keys")));
            insert(&map, "a", u64::MAX, 0);
            insert(&map, "b", u64::MAX, 0);
            insert(&map, "c", u64::MAX, 0);
            map.update("c", 0, |slot| *slot = None);
            // (A snapshot resets the debugging recorder: read once.)
            assert_eq!(gauge(), Some(1.0));
        });
    }

    #[test]
    fn evictions_of_live_entries_are_counted() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let map = BoundedMap::new(2, None).counting_evictions("test");
            insert(&map, "stale", 5, 0);
            insert(&map, "a", u64::MAX, 0);
            // "stale" has expired by now: pushing it out is no eviction.
            insert(&map, "b", u64::MAX, 10);
            insert(&map, "c", u64::MAX, 10);
            let evicted = crate::metrics::tests::counter_value(
                &snapshotter,
                EVICTIONS_TOTAL,
                &[("store", "test")],
            );
            assert_eq!(evicted, Some(1));
        });
    }
}

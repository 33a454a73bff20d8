//! The `kv-get` / `kv-set` / `kv-delete` / `kv-set-if-absent` /
//! `kv-compare-and-set` / `kv-ttl` host imports: a shared byte store with
//! optional expiry, bounded in keys (value sizes are the caller's check).
//! The conditional writes decide under the key's lock, so they are atomic.

use super::bounded_map::{BoundedMap, Expiring};

/// The `store` label of this store's evictions.
const STORE: &str = "kv";

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    /// Clock time at which the entry is gone; 0 = never.
    expires_at_ms: u64,
}

impl Entry {
    /// `value`, gone `ttl_ms` after `now_ms` (0 = never).
    fn new(value: Vec<u8>, ttl_ms: u64, now_ms: u64) -> Self {
        let expires_at_ms = if ttl_ms == 0 {
            0
        } else {
            now_ms.saturating_add(ttl_ms)
        };
        Entry {
            value,
            expires_at_ms,
        }
    }
}

impl Expiring for Entry {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && now_ms >= self.expires_at_ms
    }
}

/// One plugin's key-value store.
pub(crate) struct KvStore {
    map: BoundedMap<Entry>,
}

impl KvStore {
    pub(crate) fn new(max_keys: usize, gauge: Option<metrics::Gauge>) -> Self {
        KvStore {
            map: BoundedMap::new(max_keys, gauge).counting_evictions(STORE),
        }
    }

    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        self.map.read(key, now_ms, |e| e.map(|e| e.value.clone()))
    }

    /// Stores `value`, gone `ttl_ms` after now (0 = kept until evicted).
    pub(crate) fn set(&self, key: &str, value: Vec<u8>, ttl_ms: u64, now_ms: u64) {
        self.map.update(key, now_ms, |slot| {
            *slot = Some(Entry::new(value, ttl_ms, now_ms));
        });
    }

    /// `kv-set-if-absent`: stores `value` only if `key` is absent (or
    /// expired); true if it did. Atomic: of racing callers, one wins.
    pub(crate) fn set_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl_ms: u64,
        now_ms: u64,
    ) -> bool {
        self.map.update(key, now_ms, |slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(Entry::new(value, ttl_ms, now_ms));
            true
        })
    }

    /// `kv-compare-and-set`: stores `value` only if the live value is
    /// `expected` (`None`: only if absent or expired); true if it did.
    /// Atomic under the key's lock.
    pub(crate) fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl_ms: u64,
        now_ms: u64,
    ) -> bool {
        self.map.update(key, now_ms, |slot| {
            if slot.as_ref().map(|e| e.value.as_slice()) != expected {
                return false;
            }
            *slot = Some(Entry::new(value, ttl_ms, now_ms));
            true
        })
    }

    /// `kv-ttl`: `None` if absent or expired, `Some(0)` if it never
    /// expires, else the milliseconds left (at least 1).
    pub(crate) fn ttl_ms(&self, key: &str, now_ms: u64) -> Option<u64> {
        self.map.read(key, now_ms, |e| {
            e.map(|e| match e.expires_at_ms {
                0 => 0,
                at => at.saturating_sub(now_ms).max(1),
            })
        })
    }

    /// Removes `key`; true if it was there (and not expired).
    pub(crate) fn delete(&self, key: &str, now_ms: u64) -> bool {
        self.map.update(key, now_ms, |slot| slot.take().is_some())
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Live entries as (key, value, expires-at ms, 0 = never).
    pub(crate) fn entries(&self, now_ms: u64) -> Vec<(String, Vec<u8>, u64)> {
        self.map.live_entries(now_ms, |key, e| {
            (key.to_owned(), e.value.clone(), e.expires_at_ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_delete() {
        let kv = KvStore::new(10, None);
        assert_eq!(kv.get("k", 0), None);
        kv.set("k", b"v1".to_vec(), 0, 0);
        assert_eq!(kv.get("k", 0).as_deref(), Some(&b"v1"[..]));
        kv.set("k", b"v2".to_vec(), 0, 0);
        assert_eq!(kv.get("k", 0).as_deref(), Some(&b"v2"[..]));
        assert!(kv.delete("k", 0));
        assert!(!kv.delete("k", 0));
        assert_eq!(kv.get("k", 0), None);
    }

    #[test]
    fn ttl_is_absolute_from_the_set() {
        let kv = KvStore::new(10, None);
        kv.set("k", b"v".to_vec(), 500, 1_000);
        // Reads do not extend it.
        assert!(kv.get("k", 1_499).is_some());
        assert_eq!(kv.get("k", 1_500), None);
        assert!(!kv.delete("k", 1_500));
        assert_eq!(kv.len(), 0);
    }

    #[test]
    fn set_if_absent_only_sets_a_missing_or_expired_key() {
        let kv = KvStore::new(10, None);
        assert!(kv.set_if_absent("lock", b"a".to_vec(), 1_000, 0));
        assert!(!kv.set_if_absent("lock", b"b".to_vec(), 1_000, 500));
        assert_eq!(kv.get("lock", 500), Some(b"a".to_vec()));
        // Expired: as good as absent.
        assert!(kv.set_if_absent("lock", b"c".to_vec(), 0, 1_000));
        assert_eq!(kv.get("lock", 1_000), Some(b"c".to_vec()));
    }

    #[test]
    fn set_if_absent_has_one_winner_under_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Barrier};
        let kv = Arc::new(KvStore::new(10, None));
        let wins = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let (kv, wins, barrier) = (kv.clone(), wins.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    if kv.set_if_absent("k", vec![i], 0, 0) {
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        assert_eq!(wins.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn compare_and_set_checks_the_live_value() {
        let kv = KvStore::new(10, None);
        // None expects absence.
        assert!(kv.compare_and_set("k", None, b"1".to_vec(), 0, 0));
        assert!(!kv.compare_and_set("k", None, b"x".to_vec(), 0, 0));
        assert!(!kv.compare_and_set("k", Some(b"2"), b"x".to_vec(), 0, 0));
        assert!(kv.compare_and_set("k", Some(b"1"), b"2".to_vec(), 100, 0));
        assert_eq!(kv.get("k", 0), Some(b"2".to_vec()));
        // The new TTL applies: expired, it is absent again.
        assert!(!kv.compare_and_set("k", Some(b"2"), b"3".to_vec(), 0, 100));
        assert!(kv.compare_and_set("k", None, b"3".to_vec(), 0, 100));
    }

    #[test]
    fn ttl_reports_what_is_left() {
        let kv = KvStore::new(10, None);
        assert_eq!(kv.ttl_ms("k", 0), None);
        kv.set("forever", vec![], 0, 0);
        assert_eq!(kv.ttl_ms("forever", u64::MAX - 1), Some(0));
        kv.set("k", vec![], 1_000, 0);
        assert_eq!(kv.ttl_ms("k", 0), Some(1_000));
        assert_eq!(kv.ttl_ms("k", 999), Some(1));
        assert_eq!(kv.ttl_ms("k", 1_000), None);
    }

    #[test]
    fn cap_evicts_least_recently_used_entry() {
        let kv = KvStore::new(2, None);
        kv.set("a", vec![1], 0, 0);
        kv.set("b", vec![2], 0, 0);
        kv.get("a", 0);
        kv.set("c", vec![3], 0, 0);
        assert_eq!(kv.len(), 2);
        assert_eq!(kv.get("b", 0), None);
        assert_eq!(kv.get("a", 0), Some(vec![1]));
    }
}

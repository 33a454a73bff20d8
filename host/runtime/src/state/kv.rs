//! The `kv-get` / `kv-set` / `kv-delete` host imports: a shared byte store
//! with optional expiry, bounded in keys and value size.

use super::bounded_map::{BoundedMap, Expiring};

/// The `store` label of this store's evictions.
const STORE: &str = "kv";

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    /// Clock time at which the entry is gone; 0 = never.
    expires_at_ms: u64,
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
        let expires_at_ms = if ttl_ms == 0 {
            0
        } else {
            now_ms.saturating_add(ttl_ms)
        };
        self.map.update(key, now_ms, |slot| {
            *slot = Some(Entry {
                value,
                expires_at_ms,
            })
        });
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

//! The cache's storage: one in-memory map of stored responses, bounded in
//! bytes, least recently used entries evicted first, and entries unused for
//! `inactive` dropped even when fresh. Responses with `Vary` are stored per
//! variant (the primary key plus the request's values of the named headers,
//! nginx's secondary key). Read and written by the cache step of the
//! upstream phase; emptied by the purge endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName};
use lru::LruCache;

use super::entry::CachedResponse;

/// Bytes counted for an entry besides its body, header fields and key (map
/// slots, the policy, bookkeeping).
const ENTRY_OVERHEAD: u64 = 512;

/// Separates a primary key from its variant part (not valid in header values).
const VARIANT_SEPARATOR: char = '\u{0}';

/// Which keys a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeScope {
    /// Every variant of one key.
    Key(String),
    /// Every key starting with this text.
    Prefix(String),
    All,
}

/// Entries and bytes held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUsage {
    pub entries: usize,
    pub bytes: u64,
}

/// The byte-bounded LRU store.
pub struct CacheStore {
    inner: Mutex<StoreInner>,
}

struct StoreInner {
    entries: LruCache<String, Slot>,
    /// Primary key -> the header names its responses vary on.
    vary: HashMap<String, VaryIndex>,
    bytes: u64,
    max_size: u64,
    inactive: Duration,
}

struct Slot {
    primary: String,
    entry: Arc<CachedResponse>,
    size: u64,
    last_used: Instant,
}

struct VaryIndex {
    names: Vec<HeaderName>,
    variants: usize,
}

impl CacheStore {
    pub fn new(max_size: u64, inactive: Duration) -> Self {
        CacheStore {
            inner: Mutex::new(StoreInner {
                entries: LruCache::unbounded(),
                vary: HashMap::new(),
                bytes: 0,
                max_size,
                inactive,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        // A panic while holding the lock leaves a consistent map (every
        // mutation is a single step); keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// New bounds (a config reload); evicts down to the new size at once.
    pub fn set_bounds(&self, max_size: u64, inactive: Duration) {
        let mut inner = self.lock();
        inner.max_size = max_size;
        inner.inactive = inactive;
        inner.evict_over_size();
        inner.drop_inactive(Instant::now());
    }

    /// The stored response for `primary` that matches the request's headers
    /// (its variant), marking it used.
    pub fn get(&self, primary: &str, request_headers: &HeaderMap) -> Option<Arc<CachedResponse>> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.drop_inactive(now);
        let key = match inner.vary.get(primary) {
            Some(index) => variant_key(primary, &index.names, request_headers),
            None => primary.to_owned(),
        };
        let slot = inner.entries.get_mut(&key)?;
        slot.last_used = now;
        Some(slot.entry.clone())
    }

    /// Store `entry` under `primary` (and its variant); returns false when
    /// the entry alone is larger than the whole cache.
    pub fn insert(
        &self,
        primary: &str,
        request_headers: &HeaderMap,
        entry: Arc<CachedResponse>,
    ) -> bool {
        let key = variant_key(primary, &entry.vary, request_headers);
        let size = entry.stored_bytes() + key.len() as u64 + ENTRY_OVERHEAD;
        let now = Instant::now();
        let mut inner = self.lock();
        if size > inner.max_size {
            inner.remove_key(&key);
            return false;
        }
        inner.drop_inactive(now);
        if !entry.vary.is_empty() {
            let same_names = inner
                .vary
                .get(primary)
                .is_some_and(|index| index.names == entry.vary);
            if !same_names {
                // The upstream changed what it varies on: old variants are
                // keyed differently and can no longer be found.
                inner.remove_primary(primary);
                inner.vary.insert(
                    primary.to_owned(),
                    VaryIndex {
                        names: entry.vary.clone(),
                        variants: 0,
                    },
                );
            }
        } else if inner.vary.contains_key(primary) {
            inner.remove_primary(primary);
        }
        let replaced = inner.entries.push(
            key.clone(),
            Slot {
                primary: primary.to_owned(),
                entry,
                size,
                last_used: now,
            },
        );
        if let Some(index) = inner.vary.get_mut(primary) {
            index.variants += 1;
        }
        inner.bytes += size;
        if let Some((_, old)) = replaced {
            inner.forget(old);
        }
        inner.evict_over_size();
        true
    }

    /// Drop the stored variant of `primary` matching these request headers.
    pub fn remove(&self, primary: &str, request_headers: &HeaderMap) {
        let mut inner = self.lock();
        let key = match inner.vary.get(primary) {
            Some(index) => variant_key(primary, &index.names, request_headers),
            None => primary.to_owned(),
        };
        inner.remove_key(&key);
    }

    /// Remove what `scope` names; returns the number of entries removed.
    pub fn purge(&self, scope: &PurgeScope) -> usize {
        let mut inner = self.lock();
        let doomed: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, slot)| match scope {
                PurgeScope::Key(key) => slot.primary == *key,
                PurgeScope::Prefix(prefix) => slot.primary.starts_with(prefix.as_str()),
                PurgeScope::All => true,
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            inner.remove_key(key);
        }
        doomed.len()
    }

    pub fn max_size(&self) -> u64 {
        self.lock().max_size
    }

    pub fn usage(&self) -> StoreUsage {
        let inner = self.lock();
        StoreUsage {
            entries: inner.entries.len(),
            bytes: inner.bytes,
        }
    }

    /// Drop entries unused for `inactive` (also done on every access).
    pub fn sweep(&self) {
        self.lock().drop_inactive(Instant::now());
    }
}

impl StoreInner {
    fn evict_over_size(&mut self) {
        while self.bytes > self.max_size {
            match self.entries.pop_lru() {
                Some((_, slot)) => {
                    metrics::counter!("tailgate_cache_evictions_total", "reason" => "size")
                        .increment(1);
                    self.forget(slot);
                }
                None => break,
            }
        }
    }

    /// The least recently used entries come first: pop while they are idle.
    fn drop_inactive(&mut self, now: Instant) {
        while let Some((_, slot)) = self.entries.peek_lru() {
            if now.duration_since(slot.last_used) < self.inactive {
                break;
            }
            if let Some((_, slot)) = self.entries.pop_lru() {
                metrics::counter!("tailgate_cache_evictions_total", "reason" => "inactive")
                    .increment(1);
                self.forget(slot);
            }
        }
    }

    fn remove_key(&mut self, key: &str) {
        if let Some(slot) = self.entries.pop(key) {
            self.forget(slot);
        }
    }

    fn remove_primary(&mut self, primary: &str) {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, slot)| slot.primary == primary)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            self.remove_key(key);
        }
        self.vary.remove(primary);
    }

    /// Account for a slot that left the map.
    fn forget(&mut self, slot: Slot) {
        self.bytes -= slot.size;
        if let Some(index) = self.vary.get_mut(&slot.primary) {
            index.variants = index.variants.saturating_sub(1);
            if index.variants == 0 {
                self.vary.remove(&slot.primary);
            }
        }
    }
}

/// `primary`, plus the request's values of the `Vary` header names.
fn variant_key(primary: &str, names: &[HeaderName], request_headers: &HeaderMap) -> String {
    if names.is_empty() {
        return primary.to_owned();
    }
    let mut key = String::with_capacity(primary.len() + 32);
    key.push_str(primary);
    for name in names {
        key.push(VARIANT_SEPARATOR);
        key.push_str(name.as_str());
        key.push('=');
        let values = request_headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>();
        key.push_str(&values.join(","));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::entry_with_body;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, http::HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn byte_bound_evicts_least_recently_used() {
        let entry_size = |body: usize| {
            entry_with_body(body, &[]).stored_bytes() + ENTRY_OVERHEAD + 2 /* key */
        };
        let store = CacheStore::new(entry_size(1000) * 3, Duration::from_secs(60));
        let none = HeaderMap::new();
        for key in ["/a", "/b", "/c"] {
            assert!(store.insert(key, &none, Arc::new(entry_with_body(1000, &[]))));
        }
        assert!(store.get("/a", &none).is_some()); // /b is now the oldest
        assert!(store.insert("/d", &none, Arc::new(entry_with_body(1000, &[]))));
        assert!(store.get("/b", &none).is_none());
        assert!(store.get("/a", &none).is_some());
        assert!(store.get("/c", &none).is_some());
        assert!(store.get("/d", &none).is_some());
        let usage = store.usage();
        assert_eq!(usage.entries, 3);
        assert!(usage.bytes <= entry_size(1000) * 3);
    }

    #[test]
    fn an_entry_larger_than_the_cache_is_refused() {
        let store = CacheStore::new(100, Duration::from_secs(60));
        assert!(!store.insert(
            "/big",
            &HeaderMap::new(),
            Arc::new(entry_with_body(1000, &[]))
        ));
        assert_eq!(store.usage().entries, 0);
        assert_eq!(store.usage().bytes, 0);
    }

    #[test]
    fn idle_entries_expire() {
        let store = CacheStore::new(1 << 20, Duration::from_millis(30));
        let none = HeaderMap::new();
        store.insert("/a", &none, Arc::new(entry_with_body(10, &[])));
        assert!(store.get("/a", &none).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(store.get("/a", &none).is_none());
        assert_eq!(store.usage().bytes, 0);
    }

    #[test]
    fn variants_are_stored_apart_and_purged_together() {
        let store = CacheStore::new(1 << 20, Duration::from_secs(60));
        let fr = headers(&[("accept-language", "fr")]);
        let de = headers(&[("accept-language", "de")]);
        store.insert("k", &fr, Arc::new(entry_with_body(1, &["accept-language"])));
        store.insert("k", &de, Arc::new(entry_with_body(2, &["accept-language"])));
        assert_eq!(store.get("k", &fr).map(|e| e.body.len()), Some(1));
        assert_eq!(store.get("k", &de).map(|e| e.body.len()), Some(2));
        assert!(store.get("k", &HeaderMap::new()).is_none());
        store.insert("k2", &fr, Arc::new(entry_with_body(3, &[])));
        assert_eq!(store.purge(&PurgeScope::Key("k".into())), 2);
        assert!(store.get("k2", &fr).is_some());
        assert_eq!(store.purge(&PurgeScope::Prefix("k".into())), 1);
        assert_eq!(store.usage().bytes, 0);
    }
}

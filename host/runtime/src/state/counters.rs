//! The `counter-incr` / `counter-get` host imports: shared signed counters
//! with an optional idle TTL. Each increment runs under the key's shard lock,
//! so concurrent increments from any number of threads and instances add up
//! exactly.

use super::bounded_map::{BoundedMap, Expiring};

/// The `store` label of this store's evictions.
const STORE: &str = "counters";

#[derive(Debug, Clone, Copy)]
struct Counter {
    value: i64,
    /// 0 = never expires.
    ttl_ms: u64,
    touched_ms: u64,
}

impl Expiring for Counter {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.ttl_ms != 0 && now_ms.saturating_sub(self.touched_ms) >= self.ttl_ms
    }
}

/// One plugin's counters.
pub(crate) struct Counters {
    map: BoundedMap<Counter>,
}

impl Counters {
    pub(crate) fn new(max_keys: usize, gauge: Option<metrics::Gauge>) -> Self {
        Counters {
            map: BoundedMap::new(max_keys, gauge).counting_evictions(STORE),
        }
    }

    /// Adds `delta` (saturating) and returns the new value. The counter is
    /// removed once it goes `ttl_ms` without an increment (0 = never); an
    /// expired counter starts again from 0.
    pub(crate) fn incr(&self, key: &str, delta: i64, ttl_ms: u64, now_ms: u64) -> i64 {
        self.map.update(key, now_ms, |slot| {
            let value = slot.map_or(0, |c| c.value).saturating_add(delta);
            *slot = Some(Counter {
                value,
                ttl_ms,
                touched_ms: now_ms,
            });
            value
        })
    }

    /// The current value; 0 if absent or expired. Does not refresh the TTL.
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> i64 {
        self.map.read(key, now_ms, |c| c.map_or(0, |c| c.value))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Live counters as (key, value, ttl-ms).
    pub(crate) fn entries(&self, now_ms: u64) -> Vec<(String, i64, u64)> {
        self.map
            .live_entries(now_ms, |key, c| (key.to_owned(), c.value, c.ttl_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn concurrent_increments_are_exact() {
        let counters = Arc::new(Counters::new(100, None));
        let threads = 8;
        let per_thread = 5_000;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let counters = counters.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..per_thread {
                        counters.incr("hits", 1, 0, 0);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        assert_eq!(counters.get("hits", 0), (threads * per_thread) as i64);
    }

    #[test]
    fn ttl_counts_from_the_last_increment() {
        let counters = Counters::new(100, None);
        assert_eq!(counters.incr("k", 5, 1_000, 0), 5);
        assert_eq!(counters.incr("k", -2, 1_000, 900), 3);
        // A read does not refresh it.
        assert_eq!(counters.get("k", 1_899), 3);
        assert_eq!(counters.get("k", 1_900), 0);
        // Expired: starts from zero again.
        assert_eq!(counters.incr("k", 1, 1_000, 2_000), 1);
    }

    #[test]
    fn zero_ttl_never_expires() {
        let counters = Counters::new(100, None);
        counters.incr("k", 7, 0, 0);
        assert_eq!(counters.get("k", u64::MAX), 7);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let counters = Counters::new(100, None);
        counters.incr("k", i64::MAX, 0, 0);
        assert_eq!(counters.incr("k", 1, 0, 0), i64::MAX);
    }

    #[test]
    fn cap_evicts_least_recently_used_counter() {
        let counters = Counters::new(2, None);
        counters.incr("a", 1, 0, 0);
        counters.incr("b", 1, 0, 0);
        counters.incr("a", 1, 0, 0);
        counters.incr("c", 1, 0, 0);
        assert_eq!(counters.len(), 2);
        assert_eq!(counters.get("b", 0), 0);
        assert_eq!(counters.get("a", 0), 2);
        assert_eq!(counters.get("c", 0), 1);
    }
}

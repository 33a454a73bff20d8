//! The `window-add` / `window-count` / `window-reset` host imports: sliding
//! windows of event times, one per key in a plugin's namespace ("5 failed
//! logins from this address in the last 10 minutes"). Each key keeps the
//! times of its newest events (at most `max-events`, 1..=1024); an event
//! counts while it is younger than the window. A key whose events have all
//! left the window is gone. Stored in a [`BoundedMap`], so a key's update is
//! exact under concurrency and a full store forgets its least recently used
//! key.

use std::collections::VecDeque;

use super::bounded_map::{BoundedMap, Expiring};

/// The `store` label of this store's evictions.
const STORE: &str = "windows";

/// Most event times one key keeps (`window-add`'s `max-events` is clamped to it).
pub(crate) const MAX_EVENTS: u32 = 1024;

/// One key's recent events.
#[derive(Debug, Clone)]
struct Window {
    /// Event times, ms, oldest first.
    times: VecDeque<u64>,
    /// The window of the last `record`, ms: when the newest event leaves
    /// it, the key is as good as absent.
    window_ms: u64,
}

impl Window {
    fn newest(&self) -> u64 {
        self.times.back().copied().unwrap_or(0)
    }

    /// Events younger than `window_ms` at `now_ms`.
    fn count(&self, now_ms: u64, window_ms: u64) -> u32 {
        let live = self
            .times
            .iter()
            .filter(|&&t| in_window(t, now_ms, window_ms))
            .count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }
}

impl Expiring for Window {
    fn is_expired(&self, now_ms: u64) -> bool {
        !in_window(self.newest(), now_ms, self.window_ms)
    }
}

/// Whether an event at `t` is within the last `window_ms` at `now_ms`. An
/// event "from the future" (the wall clock stepped back) counts.
pub(crate) fn in_window(t: u64, now_ms: u64, window_ms: u64) -> bool {
    now_ms.saturating_sub(t) < window_ms
}

/// One plugin's sliding windows.
pub(crate) struct Windows {
    map: BoundedMap<Window>,
}

impl Windows {
    pub(crate) fn new(max_keys: usize, gauge: Option<metrics::Gauge>) -> Self {
        Windows {
            map: BoundedMap::new(max_keys, gauge).counting_evictions(STORE),
        }
    }

    /// Records one event for `key` at `now_ms` and returns the events
    /// within the last `window_ms`, this one included. Keeps the newest
    /// `max_events` times (clamped to 1..=[`MAX_EVENTS`]); a `window_ms` of 0
    /// is taken as 1 ms.
    pub(crate) fn record(&self, key: &str, now_ms: u64, window_ms: u64, max_events: u32) -> u32 {
        let window_ms = window_ms.max(1);
        let keep = max_events.clamp(1, MAX_EVENTS) as usize;
        self.map.update(key, now_ms, |slot| {
            let window = slot.get_or_insert_with(|| Window {
                times: VecDeque::new(),
                window_ms,
            });
            window.window_ms = window_ms;
            window.times.retain(|&t| in_window(t, now_ms, window_ms));
            // Kept sorted even if the clock stepped back.
            let at = window.times.partition_point(|&t| t <= now_ms);
            window.times.insert(at, now_ms);
            while window.times.len() > keep {
                window.times.pop_front();
            }
            u32::try_from(window.times.len()).unwrap_or(u32::MAX)
        })
    }

    /// Events of `key` within the last `window_ms` at `now_ms`; 0 if none.
    pub(crate) fn count(&self, key: &str, now_ms: u64, window_ms: u64) -> u32 {
        self.map
            .read(key, now_ms, |w| w.map_or(0, |w| w.count(now_ms, window_ms)))
    }

    /// Forgets `key`'s events; true if it had any in its window.
    pub(crate) fn reset(&self, key: &str, now_ms: u64) -> bool {
        self.map.update(key, now_ms, |slot| slot.take().is_some())
    }

    /// Keys held (including ones whose events left the window, until swept).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Live windows as (key, event times oldest first, window ms).
    pub(crate) fn entries(&self, now_ms: u64) -> Vec<(String, Vec<u64>, u64)> {
        self.map.live_entries(now_ms, |key, w| {
            (
                key.to_owned(),
                w.times.iter().copied().collect(),
                w.window_ms,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    const MINUTE: u64 = 60_000;

    #[test]
    fn the_window_slides() {
        let windows = Windows::new(100, None);
        let window = 10 * MINUTE;
        // Five failures two minutes apart: 0, 2, 4, 6, 8 min.
        for (i, at) in (0..5).map(|i| i * 2 * MINUTE).enumerate() {
            assert_eq!(windows.record("ip", at, window, 10), i as u32 + 1);
        }
        assert_eq!(windows.count("ip", 9 * MINUTE, window), 5);
        // At 10 min the first (0 min) is out of the last 10 minutes.
        assert_eq!(windows.count("ip", 10 * MINUTE, window), 4);
        assert_eq!(windows.count("ip", 10 * MINUTE + 1, window), 4);
        // Recording at 11 min drops it for good: 2, 4, 6, 8, 11.
        assert_eq!(windows.record("ip", 11 * MINUTE, window, 10), 5);
        // A shorter window for the count looks at fewer.
        assert_eq!(windows.count("ip", 11 * MINUTE, 4 * MINUTE), 2);
    }

    #[test]
    fn a_key_whose_events_all_left_is_removed() {
        let windows = Windows::new(100, None);
        windows.record("ip", 0, 1_000, 5);
        windows.record("ip", 500, 1_000, 5);
        assert_eq!(windows.len(), 1);
        assert_eq!(windows.count("ip", 1_499, 1_000), 1);
        assert_eq!(windows.count("ip", 1_500, 1_000), 0);
        assert_eq!(windows.len(), 0);
        // It starts over.
        assert_eq!(windows.record("ip", 2_000, 1_000, 5), 1);
    }

    #[test]
    fn only_the_newest_max_events_are_kept() {
        let windows = Windows::new(100, None);
        for at in 0..10 {
            windows.record("k", at, 1_000, 3);
        }
        assert_eq!(windows.count("k", 10, 1_000), 3);
        let entries = windows.entries(10);
        assert_eq!(entries, vec![("k".to_owned(), vec![7, 8, 9], 1_000)]);
        // max-events is clamped to 1..=1024.
        assert_eq!(windows.record("one", 0, 1_000, 0), 1);
        assert_eq!(windows.record("one", 1, 1_000, 0), 1);
        for at in 0..2_000 {
            windows.record("big", at, 10_000, u32::MAX);
        }
        assert_eq!(windows.count("big", 2_000, 10_000), MAX_EVENTS);
    }

    #[test]
    fn reset_forgets_the_key() {
        let windows = Windows::new(100, None);
        windows.record("k", 0, 1_000, 5);
        assert!(windows.reset("k", 0));
        assert!(!windows.reset("k", 0));
        assert_eq!(windows.count("k", 0, 1_000), 0);
    }

    #[test]
    fn a_clock_stepping_back_keeps_the_times_sorted() {
        let windows = Windows::new(100, None);
        windows.record("k", 1_000, 10_000, 2);
        windows.record("k", 900, 10_000, 2);
        windows.record("k", 950, 10_000, 2);
        // The oldest (900) went; 950 and 1000 stay.
        assert_eq!(windows.entries(1_000)[0].1, vec![950, 1_000]);
    }

    #[test]
    fn cap_evicts_least_recently_used_key() {
        let windows = Windows::new(2, None);
        windows.record("a", 0, 1_000, 5);
        windows.record("b", 0, 1_000, 5);
        windows.count("a", 0, 1_000);
        windows.record("c", 0, 1_000, 5);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows.count("b", 0, 1_000), 0);
        assert_eq!(windows.count("a", 0, 1_000), 1);
    }

    #[test]
    fn concurrent_records_are_exact() {
        let windows = Arc::new(Windows::new(100, None));
        let threads = 8;
        let per_thread = 100;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let windows = windows.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..per_thread {
                        windows.record("k", 0, 1_000, MAX_EVENTS);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        assert_eq!(windows.count("k", 0, 1_000), (threads * per_thread) as u32);
    }
}

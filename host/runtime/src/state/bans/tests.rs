//! Unit tests of the ban list: atomic adds, escalation, expiry, the cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;
use crate::state::clock::{Clock, ManualClock};
use crate::state::{SharedState, StateLimits};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

fn banned(outcome: BanOutcome) -> BanEntry {
    match outcome {
        BanOutcome::Banned(ban) => ban,
        BanOutcome::Already(ban) => panic!("already banned: {ban:?}"),
    }
}

fn escalating(duration_ms: u64, factor: f64, max_duration_ms: u64) -> BanRequest {
    BanRequest {
        duration_ms,
        failures: 5,
        increment_factor: factor,
        max_duration_ms,
    }
}

#[test]
fn a_ban_holds_until_it_expires() {
    let clock = ManualClock::new(1_000);
    let list = BanList::new(100);
    let ban = banned(list.add(
        "ssh",
        "192.0.2.1",
        &escalating(MINUTE, 1.0, 0),
        clock.now_ms(),
    ));
    assert_eq!(
        ban,
        BanEntry {
            jail: "ssh".into(),
            key: "192.0.2.1".into(),
            since_unix_ms: 1_000,
            expires_unix_ms: 1_000 + MINUTE,
            failures: 5,
            offences: 1,
        }
    );
    assert_eq!(
        list.check("ssh", "192.0.2.1", clock.now_ms()),
        Some(ban.clone())
    );
    // Jails are separate.
    assert_eq!(list.check("web", "192.0.2.1", clock.now_ms()), None);
    clock.advance(Duration::from_millis(MINUTE - 1));
    assert!(list.check("ssh", "192.0.2.1", clock.now_ms()).is_some());
    assert_eq!(list.list(clock.now_ms()), vec![ban]);
    clock.advance(Duration::from_millis(1));
    assert_eq!(list.check("ssh", "192.0.2.1", clock.now_ms()), None);
    assert!(list.list(clock.now_ms()).is_empty());
    // Dropped lazily: the check that saw it expired swept it.
    assert_eq!(list.len(), 0);
}

#[test]
fn adding_an_active_ban_again_changes_nothing() {
    let list = BanList::new(100);
    let first = banned(list.add("ssh", "k", &escalating(MINUTE, 2.0, 0), 0));
    let again = list.add("ssh", "k", &escalating(HOUR, 2.0, 0), 10);
    assert_eq!(again, BanOutcome::Already(first.clone()));
    assert_eq!(list.check("ssh", "k", 10), Some(first));
}

#[test]
fn a_burst_of_parallel_adds_bans_once() {
    let list = Arc::new(BanList::new(100));
    let banned_count = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (list, count, barrier) = (list.clone(), banned_count.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                if let BanOutcome::Banned(_) = list.add("ssh", "k", &BanRequest::fixed(MINUTE), 0) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    assert_eq!(banned_count.load(Ordering::SeqCst), 1);
    assert_eq!(list.check("ssh", "k", 0).map(|b| b.offences), Some(1));
}

#[test]
fn repeat_offences_escalate_up_to_the_cap() {
    let list = BanList::new(100);
    let request = escalating(10 * MINUTE, 3.0, 2 * HOUR);
    let mut now = 0;
    let mut lengths = Vec::new();
    for offence in 1..=4 {
        let ban = banned(list.add("ssh", "k", &request, now));
        assert_eq!(ban.offences, offence);
        lengths.push(ban.expires_unix_ms - ban.since_unix_ms);
        now = ban.expires_unix_ms + MINUTE;
    }
    // 10 min, 30 min, 90 min, then capped at 2 h (270 min uncapped).
    assert_eq!(
        lengths,
        vec![10 * MINUTE, 30 * MINUTE, 90 * MINUTE, 2 * HOUR]
    );
}

#[test]
fn offences_are_forgotten_a_day_after_the_last_ban_ended() {
    let list = BanList::new(100);
    let request = escalating(MINUTE, 2.0, 0);
    let first = banned(list.add("ssh", "k", &request, 0));
    // Just within the retention: the second offence doubles.
    let at = first.expires_unix_ms + OFFENCE_RETENTION_MS - 1;
    let second = banned(list.add("ssh", "k", &request, at));
    assert_eq!(
        (second.offences, second.expires_unix_ms - at),
        (2, 2 * MINUTE)
    );
    // A day after the second ended: a first offence again.
    let at = second.expires_unix_ms + OFFENCE_RETENTION_MS;
    let third = banned(list.add("ssh", "k", &request, at));
    assert_eq!((third.offences, third.expires_unix_ms - at), (1, MINUTE));
}

#[test]
fn odd_factors_and_lengths_are_sane() {
    assert_eq!(escalating(MINUTE, 0.5, 0).length_ms(3), MINUTE);
    assert_eq!(escalating(MINUTE, f64::NAN, 0).length_ms(3), MINUTE);
    assert_eq!(escalating(0, 1.0, 0).length_ms(0), 1);
    assert_eq!(escalating(u64::MAX, 10.0, 0).length_ms(1_000), u64::MAX);
    assert_eq!(escalating(u64::MAX, 10.0, HOUR).length_ms(1_000), HOUR);
    // Far-future expiries saturate instead of wrapping.
    let list = BanList::new(10);
    let ban = banned(list.add("j", "k", &BanRequest::fixed(u64::MAX), 5));
    assert_eq!(ban.expires_unix_ms, u64::MAX);
}

#[test]
fn remove_lifts_the_ban_and_keeps_the_offence() {
    let list = BanList::new(100);
    let request = escalating(MINUTE, 2.0, 0);
    banned(list.add("ssh", "k", &request, 0));
    assert!(list.remove("ssh", "k", 10));
    assert!(!list.remove("ssh", "k", 10));
    assert_eq!(list.check("ssh", "k", 10), None);
    let again = banned(list.add("ssh", "k", &request, 20));
    assert_eq!(again.offences, 2);
}

#[test]
fn a_full_list_drops_the_ban_that_expires_first() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let list = BanList::new(3);
        list.add("j", "long", &BanRequest::fixed(3 * HOUR), 0);
        list.add("j", "short", &BanRequest::fixed(MINUTE), 0);
        list.add("j", "middle", &BanRequest::fixed(HOUR), 0);
        list.add("j", "new", &BanRequest::fixed(MINUTE), 0);
        let keys: Vec<String> = list.list(0).into_iter().map(|b| b.key).collect();
        assert_eq!(keys, ["long", "middle", "new"]);
        let evicted = crate::metrics::tests::counter_value(
            &snapshotter,
            super::super::bounded_map::EVICTIONS_TOTAL,
            &[("store", "bans")],
        );
        assert_eq!(evicted, Some(1));
    });
}

#[test]
fn metrics_count_new_bans_and_follow_the_active_ones() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let list = BanList::new(10);
        list.add("ssh", "a", &BanRequest::fixed(MINUTE), 0);
        list.add("ssh", "a", &BanRequest::fixed(MINUTE), 0);
        list.add("ssh", "b", &BanRequest::fixed(HOUR), 0);
        list.add("web", "a", &BanRequest::fixed(HOUR), 0);
        list.remove("web", "a", 0);
        // "ssh"/"a" expires and is swept by the next change.
        list.add("ssh", "c", &BanRequest::fixed(HOUR), MINUTE);
        let snapshot = snapshotter.snapshot().into_hashmap();
        let value = |name: &str, jail: &str| {
            snapshot
                .iter()
                .find(|(key, _)| {
                    key.key().name() == name
                        && key
                            .key()
                            .labels()
                            .any(|l| l.key() == "jail" && l.value() == jail)
                })
                .map(|(_, (_, _, value))| format!("{value:?}"))
        };
        assert_eq!(value(BANS_TOTAL, "ssh").as_deref(), Some("Counter(3)"));
        assert_eq!(value(BANS_TOTAL, "web").as_deref(), Some("Counter(1)"));
        assert_eq!(value(BANS_ACTIVE, "ssh").as_deref(), Some("Gauge(2.0)"));
        assert_eq!(value(BANS_ACTIVE, "web").as_deref(), Some("Gauge(0.0)"));
    });
}

#[test]
fn other_stores_never_evict_bans() {
    let limits = StateLimits {
        max_counters: 100,
        max_kv_entries: 100,
        max_windows: 100,
        max_bans: 10,
        ..StateLimits::default()
    };
    let clock = Arc::new(ManualClock::new(0));
    let state = SharedState::new(clock.clone(), limits);
    for i in 0..5 {
        state
            .bans
            .add("ssh", &format!("banned-{i}"), &BanRequest::fixed(HOUR), 0);
    }
    for name in ["a", "b"] {
        let plugin = state.plugin(name);
        for i in 0..10_000 {
            let key = format!("key-{i}");
            plugin.kv.set(&key, vec![1], 0, 0);
            plugin.counters.incr(&key, 1, 0, 0);
            plugin.windows.record(&key, 0, HOUR, 5);
        }
    }
    assert_eq!(state.bans.list(0).len(), 5);
    for i in 0..5 {
        assert!(state.bans.check("ssh", &format!("banned-{i}"), 0).is_some());
    }
}

//! The `rate-limit-check` host import: nginx `limit_req` leaky buckets, one
//! per (plugin, zone, key), shared by every instance, thread and route. A
//! zone is nginx's `limit_req_zone`: a name and a rate; the burst and delay
//! are each use's (nginx `limit_req zone=general burst=20` in one place and
//! `burst=50` in another), checked against the one shared bucket.
//!
//! The arithmetic is nginx's (`ngx_http_limit_req_module.c`) to the integer:
//! per key an `excess` in milli-requests and the `last` time in ms;
//! `excess = max(excess - rate * elapsed / 1000 + 1000, 0)`; past
//! `burst * 1000` the request is rejected and the bucket left as it was;
//! otherwise the bucket is updated (`last` only when time moved) and the
//! request waits `(excess - delay * 1000) * 1000 / rate` ms when the excess is
//! above `delay * 1000`. A new key starts with excess 0. A key idle for 60 s
//! whose bucket has drained is forgotten (nginx's expiry rule); a full zone
//! forgets its least recently used key.
//!
//! Dry run follows nginx's `limit_req_dry_run`: the decision and the
//! accounting are exactly those of enforcement (admitted requests fill the
//! bucket, rejected ones do not), so a dry-run zone predicts what enforcing
//! it would do; enforcing is the caller's business.

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::bounded_map::{BoundedMap, Expiring};

/// nginx forgets an idle, drained bucket after this long.
const IDLE_EXPIRY_MS: u64 = 60_000;

/// A zone: nginx `limit_req_zone ... zone=<name> rate=`. Its buckets are
/// shared by every use, whatever the use's burst.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ZoneSpec {
    pub(crate) name: String,
    /// Requests per second, in thousandths (10r/s = 10000).
    pub(crate) rate_milli: u64,
}

/// One use of a zone: nginx `limit_req zone= burst= delay=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Burst {
    /// Requests allowed above the rate before rejecting.
    pub(crate) burst: u32,
    /// Requests within the burst served without delay (`nodelay` = burst).
    pub(crate) delay: u32,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateDecision {
    Pass,
    /// Serve after this many milliseconds.
    Delay(u32),
    /// Reject; one request would be admitted after this many milliseconds.
    Reject(u32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RateLimitError {
    #[error("rate-limit zone {zone:?}: rate-milli must be above 0")]
    ZeroRate { zone: String },
}

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Milli-requests above the rate.
    excess: u64,
    /// When the bucket was last updated, ms.
    last_ms: u64,
    /// The zone's rate, to tell when the bucket has drained.
    rate_milli: u64,
}

impl Expiring for Bucket {
    fn is_expired(&self, now_ms: u64) -> bool {
        let idle = now_ms.abs_diff(self.last_ms);
        idle >= IDLE_EXPIRY_MS && leaked(self.rate_milli, idle) >= self.excess
    }
}

/// Milli-requests that leak out of a bucket in `ms` (nginx: `rate * ms / 1000`).
fn leaked(rate_milli: u64, ms: u64) -> u64 {
    let leaked = u128::from(rate_milli) * u128::from(ms) / 1000;
    u64::try_from(leaked).unwrap_or(u64::MAX)
}

/// One zone's buckets.
pub(crate) struct RateLimitZone {
    spec: ZoneSpec,
    buckets: BoundedMap<Bucket>,
    /// Clock time of the last check, ms: picks the zone to drop when a
    /// plugin has too many.
    last_used_ms: AtomicU64,
    /// Set when the plugin's registry dropped the zone: instances holding
    /// it look the zone up again.
    dropped: AtomicBool,
}

impl RateLimitZone {
    pub(crate) fn new(spec: ZoneSpec, max_keys: usize, gauge: Option<metrics::Gauge>) -> Self {
        RateLimitZone {
            spec,
            buckets: BoundedMap::new(max_keys, gauge).counting_evictions("rate_limit"),
            last_used_ms: AtomicU64::new(0),
            dropped: AtomicBool::new(false),
        }
    }

    /// Whether the plugin's registry dropped this zone (too many zones).
    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The zone's name, as the plugin gave it.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    /// Accounts one request for `key` at `now_ms` against the zone's
    /// bucket with this use's burst and delay, and decides.
    pub(crate) fn check(&self, key: &str, by: Burst, now_ms: u64) -> RateDecision {
        let rate = self.spec.rate_milli.max(1);
        let burst_milli = u64::from(by.burst) * 1000;
        let delay_milli = u64::from(by.delay) * 1000;
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
        self.buckets.update(key, now_ms, |slot| {
            let Some(bucket) = slot else {
                *slot = Some(Bucket {
                    excess: 0,
                    last_ms: now_ms,
                    rate_milli: rate,
                });
                return RateDecision::Pass;
            };
            let elapsed = elapsed_ms(bucket.last_ms, now_ms);
            let excess = (bucket.excess + 1000).saturating_sub(leaked(rate, elapsed));
            if excess > burst_milli {
                return RateDecision::Reject(retry_after_ms(bucket, elapsed, rate, burst_milli));
            }
            bucket.excess = excess;
            if elapsed != 0 {
                bucket.last_ms = now_ms;
            }
            if excess <= delay_milli {
                RateDecision::Pass
            } else {
                let ms = u128::from(excess - delay_milli) * 1000 / u128::from(rate);
                RateDecision::Delay(u32::try_from(ms).unwrap_or(u32::MAX))
            }
        })
    }

    /// Sets `key`'s bucket to the shared excess the `sync` mode pulled
    /// (every machine's admissions, leaked to `now_ms`), keeping the
    /// admissions made here since it was pushed (`since_push`).
    pub(crate) fn set_shared_excess(&self, key: &str, excess: u64, since_push: u64, now_ms: u64) {
        let rate = self.spec.rate_milli.max(1);
        self.buckets.update(key, now_ms, |slot| {
            *slot = Some(Bucket {
                excess: excess + since_push * 1000,
                last_ms: now_ms,
                rate_milli: rate,
            });
        });
    }

    /// Buckets held, including idle ones not yet swept.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn spec(&self) -> &ZoneSpec {
        &self.spec
    }

    /// Live buckets as (key, excess in milli-requests, last update ms).
    pub(crate) fn buckets(&self, now_ms: u64) -> Vec<(String, u64, u64)> {
        self.buckets
            .live_entries(now_ms, |key, b| (key.to_owned(), b.excess, b.last_ms))
    }
}

/// nginx's elapsed time: a clock that went back up to a minute counts as no
/// time, further back as 1 ms.
fn elapsed_ms(last_ms: u64, now_ms: u64) -> u64 {
    if now_ms >= last_ms {
        now_ms - last_ms
    } else if last_ms - now_ms > IDLE_EXPIRY_MS {
        1
    } else {
        0
    }
}

/// Milliseconds from now until the bucket has leaked enough for one more
/// request to fit in the burst.
fn retry_after_ms(bucket: &Bucket, elapsed: u64, rate_milli: u64, burst_milli: u64) -> u32 {
    // Admitted at elapsed time `d` iff excess + 1000 - rate*d/1000 <= burst.
    let needed = u128::from(bucket.excess + 1000 - burst_milli.min(bucket.excess + 1000));
    let admit_at = (needed * 1000).div_ceil(u128::from(rate_milli));
    let wait = admit_at.saturating_sub(u128::from(elapsed)).max(1);
    u32::try_from(wait).unwrap_or(u32::MAX)
}

/// One plugin's zones, keyed by name and rate: every route that uses a zone
/// shares its buckets, and a zone keeps them across config reloads unless
/// its rate changes (bursts may). At most `max_zones` at once; past that the
/// least recently checked zone is dropped with its state (and a warning: a
/// plugin that needs that many is likely building zone names from request
/// data).
pub(crate) struct RateLimitZones {
    plugin: Arc<str>,
    zones: Mutex<HashMap<ZoneSpec, Arc<RateLimitZone>>>,
    max_zones: usize,
    max_keys_per_zone: usize,
}

impl RateLimitZones {
    pub(crate) fn new(plugin: Arc<str>, max_zones: usize, max_keys_per_zone: usize) -> Self {
        RateLimitZones {
            plugin,
            zones: Mutex::new(HashMap::new()),
            max_zones,
            max_keys_per_zone,
        }
    }

    /// Every zone this plugin has now.
    pub(crate) fn all(&self) -> Vec<Arc<RateLimitZone>> {
        let zones = self
            .zones
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        zones.values().cloned().collect()
    }

    /// The zone for `spec`, created on first use.
    pub(crate) fn zone(&self, spec: ZoneSpec) -> Result<Arc<RateLimitZone>, RateLimitError> {
        if spec.rate_milli == 0 {
            return Err(RateLimitError::ZeroRate { zone: spec.name });
        }
        let mut zones = self
            .zones
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(zone) = zones.get(&spec) {
            return Ok(zone.clone());
        }
        if zones.len() >= self.max_zones {
            let stalest = zones
                .iter()
                .min_by_key(|(_, zone)| zone.last_used_ms.load(Ordering::Relaxed))
                .map(|(spec, _)| spec.clone());
            if let Some(stalest) = stalest {
                tracing::warn!(
                    plugin = %self.plugin,
                    zone = %stalest.name,
                    max_zones = self.max_zones,
                    "too many rate-limit zones; dropping the least recently used one and its state"
                );
                if let Some(dropped) = zones.remove(&stalest) {
                    dropped.dropped.store(true, Ordering::Relaxed);
                }
            }
        }
        let gauge = metrics::gauge!(
            "tailgate_ratelimit_keys",
            "plugin" => self.plugin.to_string(),
            "zone" => spec.name.clone(),
        );
        let zone = Arc::new(RateLimitZone::new(
            spec.clone(),
            self.max_keys_per_zone,
            Some(gauge),
        ));
        zones.insert(spec, zone.clone());
        Ok(zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// A zone with one use of it: checks with that burst and delay.
    struct ZoneUse {
        zone: RateLimitZone,
        by: Burst,
    }

    impl ZoneUse {
        fn check(&self, key: &str, now_ms: u64) -> RateDecision {
            self.zone.check(key, self.by, now_ms)
        }

        fn tracked_keys(&self) -> usize {
            self.zone.tracked_keys()
        }
    }

    fn zone(rate_milli: u64, burst: u32, delay: u32) -> ZoneUse {
        ZoneUse {
            zone: RateLimitZone::new(
                ZoneSpec {
                    name: "z".into(),
                    rate_milli,
                },
                1000,
                None,
            ),
            by: Burst { burst, delay },
        }
    }

    fn spec(name: &str, rate_milli: u64) -> ZoneSpec {
        ZoneSpec {
            name: name.into(),
            rate_milli,
        }
    }

    const NO_BURST: Burst = Burst { burst: 0, delay: 0 };

    #[test]
    fn burst_20_nodelay_admits_21_at_one_instant_from_200_threads() {
        let zone = Arc::new(zone(10_000, 20, 20));
        let barrier = Arc::new(Barrier::new(200));
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let zone = zone.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    zone.check("1.2.3.4", 5_000)
                })
            })
            .collect();
        let decisions: Vec<RateDecision> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let passed = decisions
            .iter()
            .filter(|d| **d == RateDecision::Pass)
            .count();
        let delayed = decisions
            .iter()
            .filter(|d| matches!(d, RateDecision::Delay(_)))
            .count();
        assert_eq!((passed, delayed), (21, 0));
        // 10 r/s: one request leaks in 100 ms.
        assert!(decisions
            .iter()
            .filter(|d| !matches!(d, RateDecision::Pass))
            .all(|d| *d == RateDecision::Reject(100)));
    }

    #[test]
    fn delays_follow_nginx_formula() {
        // rate=10r/s burst=5 (no delay=): every request past the first waits.
        let zone = zone(10_000, 5, 0);
        let t = 1_000_000;
        let got: Vec<RateDecision> = (0..7).map(|_| zone.check("k", t)).collect();
        assert_eq!(
            got,
            vec![
                RateDecision::Pass,
                RateDecision::Delay(100),
                RateDecision::Delay(200),
                RateDecision::Delay(300),
                RateDecision::Delay(400),
                RateDecision::Delay(500),
                RateDecision::Reject(100),
            ]
        );
    }

    #[test]
    fn delay_parameter_lets_the_first_requests_through() {
        // rate=10r/s burst=4 delay=2.
        let zone = zone(10_000, 4, 2);
        let got: Vec<RateDecision> = (0..6).map(|_| zone.check("k", 0)).collect();
        assert_eq!(
            got,
            vec![
                RateDecision::Pass,       // excess 0
                RateDecision::Pass,       // 1000
                RateDecision::Pass,       // 2000
                RateDecision::Delay(100), // 3000
                RateDecision::Delay(200), // 4000
                RateDecision::Reject(100),
            ]
        );
    }

    #[test]
    fn bucket_refills_with_time_and_retry_after_is_exact() {
        // 2 r/s, burst 1: one request leaks per 500 ms.
        let zone = zone(2_000, 1, 1);
        assert_eq!(zone.check("k", 10_000), RateDecision::Pass); // excess 0
        assert_eq!(zone.check("k", 10_000), RateDecision::Pass); // excess 1000
        assert_eq!(zone.check("k", 10_000), RateDecision::Reject(500));
        assert_eq!(zone.check("k", 10_200), RateDecision::Reject(300));
        assert_eq!(zone.check("k", 10_499), RateDecision::Reject(1));
        // Exactly when Retry-After said: admitted.
        assert_eq!(zone.check("k", 10_500), RateDecision::Pass);
        assert_eq!(zone.check("k", 10_500), RateDecision::Reject(500));
    }

    #[test]
    fn slow_rates_in_requests_per_minute() {
        // 30r/m = 500 milli-requests per second: one per 2 s.
        let zone = zone(500, 0, 0);
        assert_eq!(zone.check("k", 0), RateDecision::Pass);
        assert_eq!(zone.check("k", 1_000), RateDecision::Reject(1_000));
        assert_eq!(zone.check("k", 2_000), RateDecision::Pass);
    }

    #[test]
    fn integer_truncation_matches_nginx() {
        // 3 r/s: nginx truncates rate * ms / 1000, so 333 ms leak 999
        // milli-requests, not a whole request.
        let zone = zone(3_000, 1, 1);
        assert_eq!(zone.check("k", 0), RateDecision::Pass); // 0
        assert_eq!(zone.check("k", 0), RateDecision::Pass); // 1000
                                                            // 333 ms leak 999: excess 1000 - 999 + 1000 = 1001 > 1000.
        assert_eq!(zone.check("k", 333), RateDecision::Reject(1));
        // 334 ms leak 1002: excess 998.
        assert_eq!(zone.check("k", 334), RateDecision::Pass);
    }

    #[test]
    fn keys_are_independent() {
        let zone = zone(1_000, 0, 0);
        assert_eq!(zone.check("a", 0), RateDecision::Pass);
        assert_eq!(zone.check("b", 0), RateDecision::Pass);
        assert!(matches!(zone.check("a", 0), RateDecision::Reject(_)));
    }

    #[test]
    fn rejects_leave_the_bucket_alone() {
        let zone = zone(1_000, 0, 0);
        assert_eq!(zone.check("k", 0), RateDecision::Pass);
        for t in [100, 200, 900] {
            assert!(matches!(zone.check("k", t), RateDecision::Reject(_)));
        }
        assert_eq!(zone.check("k", 1_000), RateDecision::Pass);
    }

    #[test]
    fn idle_drained_keys_expire_after_a_minute() {
        let zone = zone(10_000, 5, 5);
        zone.check("idle", 0);
        zone.check("idle", 0);
        assert_eq!(zone.tracked_keys(), 1);
        // Drained long before, but not idle for 60 s yet: kept.
        zone.check("other", 59_999);
        assert_eq!(zone.tracked_keys(), 2);
        zone.check("other", 60_000);
        assert_eq!(zone.tracked_keys(), 1);
    }

    #[test]
    fn full_zone_forgets_the_least_recently_used_key() {
        let zone = RateLimitZone::new(spec("z", 1_000), 2, None);
        zone.check("a", NO_BURST, 0);
        zone.check("b", NO_BURST, 0);
        zone.check("c", NO_BURST, 0);
        assert_eq!(zone.tracked_keys(), 2);
        // "a" was evicted: it starts over with an empty bucket.
        assert_eq!(zone.check("a", NO_BURST, 0), RateDecision::Pass);
        // "c" is still tracked and full.
        assert!(matches!(
            zone.check("c", NO_BURST, 0),
            RateDecision::Reject(_)
        ));
    }

    #[test]
    fn zones_are_keyed_by_name_and_rate() {
        let zones = RateLimitZones::new("p".into(), 8, 100);
        let first = zones.zone(spec("login", 1_000)).expect("zone");
        first.check("k", NO_BURST, 0);
        // Same zone (a reload that kept it, or another route): same state.
        let again = zones.zone(spec("login", 1_000)).expect("zone");
        assert!(matches!(
            again.check("k", NO_BURST, 0),
            RateDecision::Reject(_)
        ));
        // Changed rate: another zone, fresh state.
        let changed = zones.zone(spec("login", 2_000)).expect("zone");
        assert_eq!(changed.check("k", NO_BURST, 0), RateDecision::Pass);
    }

    #[test]
    fn uses_with_different_bursts_share_the_zones_buckets() {
        // nginx: `limit_req zone=general burst=2` on one server and
        // `burst=4` on another fill one bucket per key.
        let zones = RateLimitZones::new("p".into(), 8, 100);
        let small = Burst { burst: 2, delay: 2 };
        let large = Burst { burst: 4, delay: 4 };
        let general = zones.zone(spec("general", 1_000)).expect("zone");
        // Three requests through the small use: excess 0, 1000, 2000.
        for _ in 0..3 {
            assert_eq!(general.check("ip", small, 0), RateDecision::Pass);
        }
        // The small use is full; the large one admits two more on the
        // same bucket, then it is full too.
        assert!(matches!(
            general.check("ip", small, 0),
            RateDecision::Reject(_)
        ));
        let same = zones.zone(spec("general", 1_000)).expect("zone");
        assert_eq!(same.check("ip", large, 0), RateDecision::Pass);
        assert_eq!(same.check("ip", large, 0), RateDecision::Pass);
        assert_eq!(same.check("ip", large, 0), RateDecision::Reject(1_000));
        // The small use sees what the large one added: one request leaks
        // per second, so it needs three seconds to fit again.
        assert_eq!(
            general.check("ip", small, 2_000),
            RateDecision::Reject(1_000)
        );
        assert_eq!(general.check("ip", small, 3_000), RateDecision::Pass);
        // A use with a delay threshold is delayed on the shared excess.
        let delaying = Burst { burst: 4, delay: 0 };
        assert_eq!(same.check("other", delaying, 0), RateDecision::Pass);
        assert_eq!(same.check("other", delaying, 0), RateDecision::Delay(1_000));
    }

    #[test]
    fn zero_rate_is_an_error() {
        let zones = RateLimitZones::new("p".into(), 8, 100);
        assert_eq!(
            zones.zone(spec("a", 0)).err(),
            Some(RateLimitError::ZeroRate { zone: "a".into() })
        );
    }

    #[test]
    fn too_many_zones_drops_the_least_recently_used() {
        let zones = RateLimitZones::new("p".into(), 2, 100);
        let check = |name: &str, t: u64| {
            zones
                .zone(spec(name, 1_000))
                .expect(name)
                .check("k", NO_BURST, t)
        };
        check("a", 10);
        check("b", 20);
        check("a", 30);
        // A third zone: "b" (last checked at 20) goes, "a" keeps its state.
        check("c", 40);
        assert!(matches!(check("a", 40), RateDecision::Reject(_)));
        assert_eq!(check("b", 40), RateDecision::Pass);
    }
}

//! What stands before a configured plugin's hook calls, so one plugin cannot
//! take the proxy down with it: a circuit breaker that trips a plugin which
//! keeps faulting (Envoy's outlier detection, for a plugin) and a bound on
//! how many of its calls run at once. A call either passes (and reports how
//! it ended) or fails fast without entering the guest; the pipeline then
//! applies the route's fail policy as for any fault.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::{Counter, Gauge};

use crate::hook::Hook;
use crate::host_state::GuestIdentity;
use crate::state::clock::Clock;
use crate::PluginFault;

pub(crate) const TRIPPED_TOTAL: &str = "tailgate_plugin_tripped_total";
pub(crate) const TRIPPED: &str = "tailgate_plugin_tripped";
pub(crate) const FAIL_FAST_TOTAL: &str = "tailgate_plugin_fail_fast_total";

/// How one configured plugin's calls are guarded. [`CallGuard::OFF`] (the
/// runtime's default) guards nothing; the proxy sets it from
/// `[plugin_runtime]` (docs/config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallGuard {
    /// Consecutive faults (traps, timeouts, memory exhaustion) of one of its
    /// hooks that trip the plugin; 0 = it never trips. Counted per hook: a
    /// request hook that loops trips the plugin though its response and log
    /// hooks return.
    pub trip_after_faults: u32,
    /// The faults count as consecutive while they fall within this long of
    /// the first of them; a slower series starts over.
    pub fault_window: Duration,
    /// How long a tripped plugin fails fast; then one trial call decides
    /// whether it is closed again or tripped for another cool-down.
    pub cooldown: Duration,
    /// Most slow calls of the plugin at once: calls that have run two
    /// epoch ticks (20 ms) of their own running time and have not returned.
    /// While that many are running, a new call fails fast. 0 = no bound.
    /// Calls that return within a few milliseconds never count, however
    /// many run at once and however long they wait for a worker.
    pub max_concurrent_calls: u32,
}

impl CallGuard {
    /// No breaker, no bound.
    pub const OFF: CallGuard = CallGuard {
        trip_after_faults: 0,
        fault_window: Duration::ZERO,
        cooldown: Duration::ZERO,
        max_concurrent_calls: 0,
    };
}

/// The guard of one configured plugin, with its state.
pub(crate) struct GuardState {
    settings: CallGuard,
    clock: Arc<dyn Clock>,
    guest: GuestIdentity,
    slow: SlowCalls,
    /// Whether the breaker is open (or half-open): only then is `breaker`
    /// locked before a call.
    tripped: AtomicBool,
    /// Whether the breaker has counted a fault since the last success: only
    /// then is `breaker` locked after a successful call.
    counting: AtomicBool,
    breaker: Mutex<Breaker>,
    metrics: GuardMetrics,
}

#[derive(Debug, Default)]
struct Breaker {
    /// Per hook ([`Hook::index`]): consecutive faults so far, and when the
    /// first of them was (ms).
    faults: [u32; 4],
    first_fault_ms: [u64; 4],
    /// While tripped: when the cool-down ends (ms).
    open_until_ms: u64,
    /// While tripped: a trial call is running.
    trial_running: bool,
}

struct GuardMetrics {
    tripped_total: Counter,
    tripped: Gauge,
    fail_fast_tripped: Counter,
    fail_fast_saturated: Counter,
}

/// A call let through: tell it how the call ended with
/// [`CallPermit::finish`]. Dropped unfinished (the call was cancelled), a
/// trial call hands the decision to the next one.
pub(crate) struct CallPermit<'a> {
    guard: &'a GuardState,
    hook: Hook,
    trial: bool,
    finished: bool,
}

/// The calls of one configured plugin that have run two epoch ticks or
/// more and are still running: what [`CallGuard::max_concurrent_calls`]
/// bounds. Marked by the call's budget at a tick, unmarked when the call
/// ends (or its instance is dropped).
#[derive(Debug, Clone, Default)]
pub(crate) struct SlowCalls(Arc<AtomicU32>);

/// One call counted in [`SlowCalls`]; uncounted on drop.
#[derive(Debug)]
pub(crate) struct SlowCallMark(Arc<AtomicU32>);

impl SlowCalls {
    pub(crate) fn mark(&self) -> SlowCallMark {
        self.0.fetch_add(1, Ordering::AcqRel);
        SlowCallMark(self.0.clone())
    }

    fn count(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for SlowCallMark {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a guarded call ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallEnd {
    Returned,
    /// Trapped, timed out or ran out of memory: the plugin's doing.
    Faulted,
    /// Could not start (no instance to be had): says nothing of the plugin.
    NotRun,
}

impl CallEnd {
    pub(crate) fn of<R>(result: &Result<R, PluginFault>) -> CallEnd {
        match result {
            Ok(_) => CallEnd::Returned,
            Err(PluginFault::Trap(_) | PluginFault::Timeout(_) | PluginFault::MemoryLimit(_)) => {
                CallEnd::Faulted
            }
            Err(_) => CallEnd::NotRun,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl GuardState {
    pub(crate) fn new(
        settings: CallGuard,
        clock: Arc<dyn Clock>,
        guest: GuestIdentity,
        slow: SlowCalls,
    ) -> Self {
        let labels = [
            ("plugin", guest.plugin.to_string()),
            ("route", guest.route.to_string()),
        ];
        let fail_fast = |reason: &'static str| {
            metrics::counter!(
                FAIL_FAST_TOTAL,
                "plugin" => guest.plugin.to_string(),
                "route" => guest.route.to_string(),
                "reason" => reason,
            )
        };
        let metrics = GuardMetrics {
            tripped_total: metrics::counter!(TRIPPED_TOTAL, &labels),
            tripped: metrics::gauge!(TRIPPED, &labels),
            fail_fast_tripped: fail_fast("tripped"),
            fail_fast_saturated: fail_fast("saturated"),
        };
        if settings.trip_after_faults > 0 {
            metrics.tripped.set(0.0);
        }
        GuardState {
            settings,
            clock,
            guest,
            slow,
            tripped: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            breaker: Mutex::new(Breaker::default()),
            metrics,
        }
    }

    pub(crate) fn settings(&self) -> CallGuard {
        self.settings
    }

    /// Whether the breaker is open right now (cooling down or on trial).
    pub(crate) fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Lets a call of `hook` through, or says why it fails fast.
    pub(crate) fn admit(&self, hook: Hook) -> Result<CallPermit<'_>, PluginFault> {
        let trial = if self.is_tripped() {
            let mut breaker = lock(&self.breaker);
            if breaker.trial_running || self.clock.now_ms() < breaker.open_until_ms {
                drop(breaker);
                self.metrics.fail_fast_tripped.increment(1);
                return Err(PluginFault::Tripped(self.settings.cooldown));
            }
            breaker.trial_running = true;
            true
        } else {
            false
        };
        let mut permit = CallPermit {
            guard: self,
            hook,
            trial,
            finished: false,
        };
        let max = self.settings.max_concurrent_calls;
        if max > 0 && self.slow.count() >= max {
            permit.finish(CallEnd::NotRun);
            self.metrics.fail_fast_saturated.increment(1);
            return Err(PluginFault::Saturated(max));
        }
        Ok(permit)
    }

    fn record(&self, hook: Hook, trial: bool, end: CallEnd) {
        let h = hook.index();
        if self.settings.trip_after_faults == 0 {
            return;
        }
        match end {
            CallEnd::Returned => {
                if trial || self.counting.load(Ordering::Acquire) {
                    let mut breaker = lock(&self.breaker);
                    breaker.faults[h] = 0;
                    self.counting
                        .store(breaker.faults.iter().any(|&n| n > 0), Ordering::Release);
                    if trial {
                        breaker.trial_running = false;
                        self.tripped.store(false, Ordering::Release);
                        self.metrics.tripped.set(0.0);
                        tracing::info!(
                            plugin = %self.guest.plugin,
                            route = %self.guest.route,
                            "plugin's trial call returned; it is called again"
                        );
                    }
                }
            }
            CallEnd::NotRun => {
                if trial {
                    // The next call is the trial.
                    lock(&self.breaker).trial_running = false;
                }
            }
            CallEnd::Faulted => {
                let now = self.clock.now_ms();
                let mut breaker = lock(&self.breaker);
                if trial {
                    breaker.trial_running = false;
                    self.trip(&mut breaker, now, "its trial call faulted");
                    return;
                }
                if self.is_tripped() {
                    // A call let in before the trip: already counted for.
                    return;
                }
                let window =
                    u64::try_from(self.settings.fault_window.as_millis()).unwrap_or(u64::MAX);
                if breaker.faults[h] == 0 || now.saturating_sub(breaker.first_fault_ms[h]) > window
                {
                    breaker.faults[h] = 1;
                    breaker.first_fault_ms[h] = now;
                } else {
                    breaker.faults[h] += 1;
                }
                self.counting.store(true, Ordering::Release);
                if breaker.faults[h] >= self.settings.trip_after_faults {
                    let why = format!(
                        "{} consecutive faults of its {} hook",
                        breaker.faults[h],
                        hook.as_str()
                    );
                    self.trip(&mut breaker, now, &why);
                }
            }
        }
    }

    fn trip(&self, breaker: &mut Breaker, now: u64, why: &str) {
        let cooldown = u64::try_from(self.settings.cooldown.as_millis()).unwrap_or(u64::MAX);
        breaker.open_until_ms = now.saturating_add(cooldown);
        breaker.faults = [0; 4];
        self.counting.store(false, Ordering::Release);
        self.tripped.store(true, Ordering::Release);
        self.metrics.tripped_total.increment(1);
        self.metrics.tripped.set(1.0);
        tracing::warn!(
            plugin = %self.guest.plugin,
            route = %self.guest.route,
            cooldown = ?self.settings.cooldown,
            "plugin tripped after {why}: its calls fail fast by the route's fail policy for {:?}, then one trial call decides",
            self.settings.cooldown
        );
    }
}

impl CallPermit<'_> {
    /// Reports how the call ended.
    pub(crate) fn finish(&mut self, end: CallEnd) {
        if !self.finished {
            self.finished = true;
            self.guard.record(self.hook, self.trial, end);
        }
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        // Cancelled mid-call: the call says nothing of the plugin.
        self.finish(CallEnd::NotRun);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::clock::ManualClock;

    fn guard(clock: Arc<ManualClock>, max_concurrent_calls: u32) -> GuardState {
        GuardState::new(
            CallGuard {
                trip_after_faults: 3,
                fault_window: Duration::from_secs(10),
                cooldown: Duration::from_secs(5),
                max_concurrent_calls,
            },
            clock,
            GuestIdentity {
                plugin: "p".into(),
                route: "r".into(),
            },
            SlowCalls::default(),
        )
    }

    fn call(guard: &GuardState, end: CallEnd) -> Result<(), PluginFault> {
        guard.admit(Hook::Request)?.finish(end);
        Ok(())
    }

    #[test]
    fn trips_after_consecutive_faults_and_a_trial_decides_after_the_cooldown() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let guard = guard(clock.clone(), 0);
        call(&guard, CallEnd::Faulted).expect("closed");
        call(&guard, CallEnd::Returned).expect("closed");
        call(&guard, CallEnd::Faulted).expect("closed");
        call(&guard, CallEnd::Faulted).expect("closed");
        assert!(!guard.is_tripped(), "a success broke the series");
        call(&guard, CallEnd::Faulted).expect("closed");
        assert!(guard.is_tripped());
        assert!(matches!(
            guard.admit(Hook::Request).err(),
            Some(PluginFault::Tripped(_))
        ));
        clock.advance(Duration::from_secs(5));
        let mut trial = guard.admit(Hook::Request).expect("the trial");
        assert!(
            matches!(
                guard.admit(Hook::Request).err(),
                Some(PluginFault::Tripped(_))
            ),
            "one trial at a time"
        );
        trial.finish(CallEnd::Faulted);
        drop(trial);
        assert!(
            guard.admit(Hook::Request).is_err(),
            "tripped for another cool-down"
        );
        clock.advance(Duration::from_secs(5));
        call(&guard, CallEnd::Returned).expect("the trial");
        assert!(!guard.is_tripped());
        call(&guard, CallEnd::Returned).expect("closed again");
    }

    #[test]
    fn another_hooks_successes_do_not_break_a_hooks_series() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let guard = guard(clock, 0);
        for _ in 0..3 {
            guard
                .admit(Hook::Response)
                .expect("closed")
                .finish(CallEnd::Returned);
            call(&guard, CallEnd::Faulted).expect("closed");
        }
        assert!(guard.is_tripped());
    }

    #[test]
    fn faults_spread_over_more_than_the_window_do_not_trip() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let guard = guard(clock.clone(), 0);
        for _ in 0..6 {
            call(&guard, CallEnd::Faulted).expect("closed");
            clock.advance(Duration::from_secs(6));
        }
        assert!(!guard.is_tripped());
    }

    #[test]
    fn a_cancelled_trial_leaves_the_decision_to_the_next_call() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let guard = guard(clock.clone(), 0);
        for _ in 0..3 {
            call(&guard, CallEnd::Faulted).expect("closed");
        }
        clock.advance(Duration::from_secs(5));
        drop(guard.admit(Hook::Request).expect("trial"));
        call(&guard, CallEnd::Returned).expect("the next trial");
        assert!(!guard.is_tripped());
    }

    #[test]
    fn while_slow_calls_are_at_the_bound_new_calls_fail_fast() {
        let clock = Arc::new(ManualClock::new(0));
        let guard = guard(clock, 2);
        let quick: Vec<_> = (0..5)
            .map(|_| {
                guard
                    .admit(Hook::Request)
                    .expect("quick calls do not count")
            })
            .collect();
        let first = guard.slow.mark();
        let second = guard.slow.mark();
        assert!(matches!(
            guard.admit(Hook::Request).err(),
            Some(PluginFault::Saturated(2))
        ));
        drop(first);
        drop(guard.admit(Hook::Request).expect("room again"));
        drop((second, quick));
    }
}

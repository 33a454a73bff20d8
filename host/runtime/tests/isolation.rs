//! One plugin must not take others down, on the real fault-injector
//! component: a hook that runs long gives its worker back to other tasks
//! while it runs, a plugin that keeps faulting is tripped (its calls fail
//! fast without entering the guest) and a trial call after the cool-down
//! closes it again, calls past a plugin's bound fail fast, a fault storm's
//! guest output is rate-limited in the log, and a burst of calls on an
//! empty pool does not make an instance per call.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tailgate_runtime::{CallGuard, ManualClock, PluginFault, RequestAction, Runtime};

const START_MS: u64 = 1_700_000_000_000;

fn guard(trip_after_faults: u32, max_concurrent_calls: u32) -> CallGuard {
    CallGuard {
        trip_after_faults,
        fault_window: Duration::from_secs(10),
        cooldown: Duration::from_secs(5),
        max_concurrent_calls,
    }
}

#[test]
fn a_looping_hook_gives_its_worker_to_other_tasks_until_its_budget_stops_it() {
    let runtime = runtime();
    let plugin = configured(&runtime, "r", r#"{"mode":"loop","hook":"request"}"#);
    let budget = limits().hook_timeout;
    // One thread for everything, as with `workers = 1`.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let beats = Arc::new(AtomicU32::new(0));
        let counted = beats.clone();
        let other = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let result = plugin
            .request_hook(&mut request("r", "/", "192.0.2.1"))
            .await;
        let took = started.elapsed();
        let during = beats.load(Ordering::SeqCst);
        other.abort();
        assert!(
            matches!(result, Err(PluginFault::Timeout(b)) if b == budget),
            "{result:?}"
        );
        assert!(took >= budget, "stopped before its budget: {took:?}");
        // At most two ticks after it (a tick is 10 ms), plus a loaded
        // machine's scheduling.
        assert!(
            took < budget + Duration::from_millis(200),
            "stopped after {took:?}"
        );
        // The other task ran all along (a beat per ms or two), not only
        // after the hook was stopped.
        assert!(
            during >= 10,
            "the other task ran {during} times during a {took:?} hook"
        );
    });
}

#[test]
fn a_plugin_that_keeps_faulting_is_tripped_fails_fast_and_a_trial_closes_it() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock.clone());
    let entered = || {
        runtime
            .plugin_state("fault-injector")
            .counter("calls-request")
    };
    let mut req = request("r", "/", "192.0.2.1");
    let metrics = metrics_of(|| {
        // Calls 1-3 trap, later ones return; the guest counts its calls in
        // the shared counter `calls-request`. Configured here: its metric
        // handles go to this test's recorder.
        let plugin = configured(
            &runtime,
            "r",
            r#"{"mode":"trap","hook":"request","after":1,"times":3}"#,
        )
        .with_call_guard(guard(3, 0));
        for call in 1..=3 {
            assert!(
                matches!(plugin.on_request(&mut req), Err(PluginFault::Trap(_))),
                "call {call} traps"
            );
        }
        assert!(plugin.is_tripped());
        for _ in 0..10 {
            let started = Instant::now();
            let result = plugin.on_request(&mut req);
            assert!(
                matches!(result, Err(PluginFault::Tripped(d)) if d == Duration::from_secs(5)),
                "{result:?}"
            );
            assert!(started.elapsed() < Duration::from_millis(50));
        }
        assert_eq!(entered(), 3, "a tripped plugin is not entered");
        clock.advance(Duration::from_secs(5));
        assert!(
            matches!(plugin.on_request(&mut req), Ok(RequestAction::Continue(_))),
            "the trial call after the cool-down runs, and returns"
        );
        assert!(!plugin.is_tripped());
        assert!(plugin.on_request(&mut req).is_ok(), "closed again");
        assert_eq!(entered(), 5);
    });
    let labels = [("plugin", "fault-injector"), ("route", "r")];
    assert_eq!(metrics.counter("tailgate_plugin_tripped_total", &labels), 1);
    assert_eq!(
        metrics.counter(
            "tailgate_plugin_fail_fast_total",
            &[("route", "r"), ("reason", "tripped")]
        ),
        10
    );
    assert_eq!(
        metrics.counter(
            "tailgate_plugin_faults_total",
            &[("route", "r"), ("kind", "trap")]
        ),
        3,
        "fail-fast calls are not counted as faults"
    );
}

#[test]
fn a_trial_that_faults_trips_the_plugin_for_another_cool_down() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock.clone());
    let plugin = configured(&runtime, "r", r#"{"mode":"trap","hook":"request"}"#)
        .with_call_guard(guard(2, 0));
    let mut req = request("r", "/", "192.0.2.1");
    for _ in 0..2 {
        assert!(matches!(
            plugin.on_request(&mut req),
            Err(PluginFault::Trap(_))
        ));
    }
    clock.advance(Duration::from_secs(5));
    assert!(
        matches!(plugin.on_request(&mut req), Err(PluginFault::Trap(_))),
        "the trial runs"
    );
    assert!(matches!(
        plugin.on_request(&mut req),
        Err(PluginFault::Tripped(_))
    ));
    clock.advance(Duration::from_secs(4));
    assert!(matches!(
        plugin.on_request(&mut req),
        Err(PluginFault::Tripped(_))
    ));
}

#[test]
fn while_a_plugins_slow_calls_are_at_its_bound_new_calls_fail_fast() {
    let runtime = runtime();
    // Each call loops until its budget stops it.
    let plugin = configured(&runtime, "r", r#"{"mode":"loop","hook":"request"}"#)
        .with_call_guard(guard(0, 2));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let results = tokio.block_on(async {
        let calls = (0..4).map(|n| {
            let plugin = &plugin;
            async move {
                if n >= 2 {
                    // The first two have run two ticks each by then.
                    tokio::time::sleep(Duration::from_millis(80)).await;
                }
                plugin
                    .request_hook(&mut request("r", "/", "192.0.2.1"))
                    .await
            }
        });
        futures_join_all(calls).await
    });
    assert!(
        matches!(
            results.as_slice(),
            [
                Err(PluginFault::Timeout(_)),
                Err(PluginFault::Timeout(_)),
                Err(PluginFault::Saturated(2)),
                Err(PluginFault::Saturated(2)),
            ]
        ),
        "{results:?}"
    );
}

/// Polls all of `futures` on this task until each is done.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).map(Some).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(future) = slot {
                if let std::task::Poll::Ready(value) = future.as_mut().poll(cx) {
                    *out = Some(value);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().map(|o| o.expect("done")).collect()
}

#[test]
fn a_fault_storms_guest_output_is_rate_limited_in_the_log() {
    let runtime = Runtime::new(tailgate_runtime::RuntimeConfig {
        output_lines_per_second: 4,
        ..config(tailgate_runtime::DEFAULT_MAX_CALLS_PER_INSTANCE)
    })
    .expect("runtime");
    let plugin = configured(&runtime, "storm", r#"{"mode":"trap","hook":"request"}"#);
    let mut req = request("storm", "/", "192.0.2.1");
    let (_, storm) = capture_logs(|| {
        for _ in 0..20 {
            assert!(plugin.on_request(&mut req).is_err());
        }
    });
    let guest_lines = |log: &str| log.lines().filter(|l| l.contains("stream=")).count();
    assert!(
        storm.matches("trap in request").count() >= 20,
        "each fault is still reported with its cause:\n{storm}"
    );
    assert_eq!(guest_lines(&storm), 4, "at most 4 lines a second:\n{storm}");
    std::thread::sleep(Duration::from_millis(1100));
    let (_, after) = capture_logs(|| assert!(plugin.on_request(&mut req).is_err()));
    let summary = after
        .lines()
        .find(|l| l.contains("lines of plugin output"))
        .unwrap_or_else(|| panic!("no summary line:\n{after}"));
    assert!(summary.contains("suppressed"), "{summary}");
    assert!(guest_lines(&after) >= 1, "logged again:\n{after}");
}

#[test]
fn a_burst_of_calls_on_an_empty_pool_makes_a_few_instances_not_one_each() {
    const CALLS: usize = 16;
    let labels = [
        ("plugin", "fault-injector"),
        ("route", "burst"),
        ("hook", "configure"),
    ];
    let metrics = metrics_of(|| {
        let runtime = runtime();
        // configure keeps its CPU 30 ms (three epoch ticks, at each of
        // which it yields its worker); the first request traps, so its
        // instance goes and the pool is empty.
        let plugin = Arc::new(configured(
            &runtime,
            "burst",
            r#"{"mode":"trap","hook":"request","after":1,"times":1,"counter":"burst",
                "configure_ms":30}"#,
        ));
        assert!(plugin
            .on_request(&mut request("burst", "/", "192.0.2.1"))
            .is_err());
        assert_eq!(plugin.idle_instances(), 0);
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        tokio.block_on(async {
            let calls: Vec<_> = (0..CALLS)
                .map(|_| {
                    let plugin = plugin.clone();
                    tokio::spawn(async move {
                        plugin
                            .request_hook(&mut request("burst", "/", "192.0.2.1"))
                            .await
                            .is_ok()
                    })
                })
                .collect();
            for call in calls {
                assert!(call.await.expect("call task"), "a call failed");
            }
        });
    });
    // One configure at configure time; the others made new instances.
    let made = metrics.counter("tailgate_plugin_calls_total", &labels) - 1;
    assert!(
        made <= 4,
        "{made} new instances for {CALLS} calls of microseconds: one per call \
         while configure yielded, where the first ones could serve them all"
    );
}

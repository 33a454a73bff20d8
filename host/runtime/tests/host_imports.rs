//! The `host` imports as a real plugin sees them, through the
//! fault-injector's `state` mode: counters, kv, rate limiting, the clock,
//! logs and plugin metrics; their exactness under concurrency, their
//! namespacing per plugin, and their survival across reconfiguration.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use metrics_util::debugging::DebuggingRecorder;
use tailgate_runtime::{
    ConfiguredPlugin, ManualClock, PluginFault, RequestAction, RequestEdits, ResponseHead, Runtime,
};

const START_MS: u64 = 1_700_000_000_000;

fn edits(plugin: &ConfiguredPlugin, path: &str, ip: &str) -> RequestEdits {
    match plugin.on_request(&mut request(plugin.route(), path, ip)) {
        Ok(RequestAction::Continue(edits)) => edits,
        other => panic!("expected continue, got {other:?}"),
    }
}

fn state_plugin(runtime: &Runtime, name: &str, route: &str, config: &str) -> ConfiguredPlugin {
    let plugin = load(runtime, name);
    runtime
        .configure(&plugin, route, config, limits())
        .expect("configure")
}

#[test]
fn every_import_answers_a_real_guest() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock.clone());
    let plugin = state_plugin(&runtime, "fault-injector", "r", r#"{"mode":"state"}"#);

    let first = edits(&plugin, "/one", "198.51.100.1");
    assert_eq!(edit(&first.headers, "x-hits"), Some("1"));
    assert_eq!(edit(&first.headers, "x-hits-read"), Some("1"));
    assert_eq!(edit(&first.headers, "x-kv-prev"), Some("-"));
    assert_eq!(edit(&first.headers, "x-kv-deleted"), Some("true,false"));
    assert_eq!(edit(&first.headers, "x-ratelimit"), Some("pass"));
    assert_eq!(
        edit(&first.headers, "x-now-ms"),
        Some(START_MS.to_string().as_str())
    );
    let vars: Vec<(&str, &str)> = first
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(vars, vec![("hits", "1"), ("limit_req_status", "PASSED")]);

    clock.advance(Duration::from_millis(1500));
    let second = edits(&plugin, "/two", "198.51.100.1");
    assert_eq!(edit(&second.headers, "x-hits"), Some("2"));
    assert_eq!(edit(&second.headers, "x-kv-prev"), Some("/one"));
    assert_eq!(
        edit(&second.headers, "x-now-ms"),
        Some((START_MS + 1500).to_string().as_str())
    );

    let resp = plugin
        .on_response(
            &mut request("r", "/two", "198.51.100.1"),
            &mut ResponseHead {
                status: 200,
                headers: Some(vec![]),
                host_generated: false,
            },
        )
        .expect("on_response");
    assert_eq!(edit(&resp.headers, "x-hits"), Some("2"));
}

#[test]
fn counter_and_kv_ttls_follow_the_runtime_clock() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock.clone());
    let plugin = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","ttl_ms":1000}"#,
    );
    assert_eq!(
        edit(&edits(&plugin, "/a", "192.0.2.1").headers, "x-hits"),
        Some("1")
    );
    clock.advance(Duration::from_millis(999));
    let e = edits(&plugin, "/b", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-hits"), Some("2"));
    assert_eq!(edit(&e.headers, "x-kv-prev"), Some("/a"));
    // 1000 ms after the last increment and the last kv-set: both gone.
    clock.advance(Duration::from_millis(1000));
    let e = edits(&plugin, "/c", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-hits"), Some("1"));
    assert_eq!(edit(&e.headers, "x-kv-prev"), Some("-"));
}

#[test]
fn rate_limit_rejects_with_retry_after_and_refills() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock.clone());
    // limit_req rate=1r/s burst=1 (delayed).
    let plugin = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"one","rate_milli":1000,"burst":1}}"#,
    );
    let e = edits(&plugin, "/", "203.0.113.9");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("pass"));
    let e = edits(&plugin, "/", "203.0.113.9");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("delay=1000"));
    assert_eq!(e.delay_ms, 1000);
    // A different client has its own bucket.
    let e = edits(&plugin, "/", "203.0.113.10");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("pass"));
    match plugin.on_request(&mut request("r", "/", "203.0.113.9")) {
        Ok(RequestAction::Respond(resp)) => {
            assert_eq!(resp.status, 429);
            let retry = resp
                .headers
                .iter()
                .find(|h| h.name == "retry-after")
                .map(|h| String::from_utf8_lossy(&h.value).into_owned());
            assert_eq!(retry.as_deref(), Some("1"));
            let ratelimit = resp
                .headers
                .iter()
                .find(|h| h.name == "x-ratelimit")
                .map(|h| String::from_utf8_lossy(&h.value).into_owned());
            assert_eq!(ratelimit.as_deref(), Some("reject=1000"));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    clock.advance(Duration::from_millis(1000));
    let e = edits(&plugin, "/", "203.0.113.9");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("delay=1000"));
}

#[test]
fn dry_run_reports_but_does_not_enforce() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock);
    let plugin = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"dry","rate_milli":1000,"burst":0,"dry_run":true}}"#,
    );
    edits(&plugin, "/", "192.0.2.1");
    // Would be rejected: reported, not answered.
    let e = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("reject=1000"));
    let status = e.vars.iter().find(|v| v.name == "limit_req_status");
    assert_eq!(status.map(|v| v.value.as_str()), Some("REJECTED_DRY_RUN"));
}

#[test]
fn concurrent_rate_limit_checks_are_exact() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock);
    // 10r/s burst=20 nodelay, time frozen: exactly 21 get through.
    let plugin = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"z","rate_milli":10000,"burst":20,"delay":20}}"#,
    );
    let passed = std::sync::atomic::AtomicUsize::new(0);
    let rejected = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..25 {
                    match plugin.on_request(&mut request("r", "/", "192.0.2.1")) {
                        Ok(RequestAction::Continue(e)) => {
                            assert_eq!(edit(&e.headers, "x-ratelimit"), Some("pass"));
                            passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(RequestAction::Respond(r)) => {
                            assert_eq!(r.status, 429);
                            rejected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(fault) => panic!("{fault}"),
                    }
                }
            });
        }
    });
    assert_eq!(passed.into_inner(), 21);
    assert_eq!(rejected.into_inner(), 200 - 21);
}

#[test]
fn concurrent_counter_increments_are_exact_across_instances() {
    let runtime = runtime();
    let plugin = state_plugin(&runtime, "fault-injector", "r", r#"{"mode":"state"}"#);
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (plugin, seen) = (&plugin, &seen);
            scope.spawn(move || {
                let mut mine = Vec::new();
                for i in 0..50 {
                    let e = edits(plugin, &format!("/{t}/{i}"), &format!("10.0.0.{t}"));
                    let hits: i64 = edit(&e.headers, "x-hits")
                        .and_then(|v| v.parse().ok())
                        .expect("x-hits");
                    mine.push(hits);
                }
                seen.lock().expect("seen").extend(mine);
            });
        }
    });
    // Every increment returned a distinct value: 1..=400, none lost.
    let seen: BTreeSet<i64> = seen.into_inner().expect("seen").into_iter().collect();
    assert_eq!(seen, (1..=400).collect::<BTreeSet<i64>>());
}

#[test]
fn plugins_cannot_see_each_others_state() {
    let runtime = runtime();
    let a = state_plugin(&runtime, "plugin-a", "r", r#"{"mode":"state"}"#);
    let b = state_plugin(&runtime, "plugin-b", "r", r#"{"mode":"state"}"#);
    edits(&a, "/a-path", "192.0.2.1");
    edits(&a, "/a-path", "192.0.2.1");
    let e = edits(&b, "/b-path", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-hits"), Some("1"));
    assert_eq!(edit(&e.headers, "x-kv-prev"), Some("-"));
    // Two routes of the same plugin do share it.
    let a2 = state_plugin(&runtime, "plugin-a", "other-route", r#"{"mode":"state"}"#);
    let e = edits(&a2, "/x", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-hits"), Some("3"));
    assert_eq!(edit(&e.headers, "x-kv-prev"), Some("/a-path"));
}

#[test]
fn state_survives_reconfiguration_unless_the_zone_rate_changes() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock);
    let zone = r#"{"mode":"state","rate_limit":{"zone":"z","rate_milli":1000,"burst":0}}"#;
    let old = state_plugin(&runtime, "fault-injector", "r", zone);
    edits(&old, "/", "192.0.2.1");
    drop(old);
    // A reload: a new configured plugin (and a new load) on the same runtime.
    let reloaded = state_plugin(&runtime, "fault-injector", "r", zone);
    assert!(matches!(
        reloaded.on_request(&mut request("r", "/", "192.0.2.1")),
        Ok(RequestAction::Respond(_))
    ));
    // The counter kept counting too (the rejected request counted).
    let e = edits(&reloaded, "/", "192.0.2.2");
    assert_eq!(edit(&e.headers, "x-hits"), Some("3"));
    // A changed burst is another use of the same zone (nginx `limit_req
    // zone=z burst=5`): the bucket is kept, its excess now delayed.
    let burst = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"z","rate_milli":1000,"burst":5}}"#,
    );
    let e = edits(&burst, "/", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("delay=1000"));
    // A changed rate is another zone: fresh buckets.
    let changed = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","rate_limit":{"zone":"z","rate_milli":2000,"burst":5}}"#,
    );
    let e = edits(&changed, "/", "192.0.2.1");
    assert_eq!(edit(&e.headers, "x-ratelimit"), Some("pass"));
}

#[test]
fn logs_and_metrics_are_tagged_with_plugin_and_route() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (metrics, logs) = capture_logs(|| {
        metrics::with_local_recorder(&recorder, || {
            let runtime = runtime();
            let plugin = state_plugin(&runtime, "fault-injector", "api", r#"{"mode":"state"}"#);
            edits(&plugin, "/hello", "192.0.2.1");
            edits(&plugin, "/hello/world", "192.0.2.1");
            // Read while the runtime (and its rate-limit keys) is alive.
            Metrics::take(&snapshotter)
        })
    });
    let line = logs
        .lines()
        .find(|l| l.contains("state probe: GET /hello"))
        .unwrap_or_else(|| panic!("no guest log line in:\n{logs}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("plugin=\"fault-injector\""), "{line}");
    assert!(line.contains("route=\"api\""), "{line}");

    assert_eq!(
        metrics.counter(
            "tailgate_plugin_requests",
            &[("plugin", "fault-injector"), ("route", "api")]
        ),
        2
    );
    assert_eq!(
        metrics.histogram(
            "tailgate_plugin_path_length",
            &[("plugin", "fault-injector")]
        ),
        vec![6.0, 12.0]
    );
    assert_eq!(
        metrics.gauge(
            "tailgate_ratelimit_keys",
            &[("plugin", "fault-injector"), ("zone", "state")]
        ),
        Some(1.0)
    );
}

#[test]
fn misuse_of_an_import_traps_with_a_reason() {
    let runtime = runtime();
    // A zone name over the 512-byte key limit (a client address cannot be
    // long: it crosses as a number).
    let zone = "9".repeat(600);
    let config = format!(
        r#"{{"mode":"state","rate_limit":{{"zone":"{zone}","rate_milli":1000000,"burst":0}}}}"#
    );
    let plugin = state_plugin(&runtime, "fault-injector", "r", &config);
    match plugin.on_request(&mut request("r", "/", "192.0.2.1")) {
        Err(PluginFault::Trap(message)) => {
            assert!(
                message.contains(
                    "rate-limit-check: key of 600 bytes is longer than the 512-byte limit"
                ),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn windows_set_if_absent_compare_and_set_ttl_and_gauges_work_through_a_real_plugin() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let runtime = runtime_with_clock(clock.clone());
    let plugin = state_plugin(
        &runtime,
        "fault-injector",
        "r",
        r#"{"mode":"state","ttl_ms":5000}"#,
    );
    let first = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(
        edit(&first.headers, "x-primitives"),
        Some("window=1,counted=1,nx=true,cas=true/false/true,ttl=5000")
    );
    clock.advance(Duration::from_millis(30_000));
    let second = edits(&plugin, "/", "192.0.2.1");
    // The window holds both events; the set-if-absent key (5 s ttl) has
    // expired, so it is set again.
    assert_eq!(
        edit(&second.headers, "x-primitives"),
        Some("window=2,counted=2,nx=true,cas=true/false/true,ttl=5000")
    );
    // 1 s later the key is still there: not set.
    clock.advance(Duration::from_millis(1_000));
    let third = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(
        edit(&third.headers, "x-primitives"),
        Some("window=3,counted=3,nx=false,cas=true/false/true,ttl=5000")
    );
    // The first event leaves the 60 s window: a sliding count, not a bucket.
    clock.advance(Duration::from_millis(30_000));
    let fourth = edits(&plugin, "/", "192.0.2.1");
    assert_eq!(
        edit(&fourth.headers, "x-primitives").map(|p| &p[..18]),
        Some("window=3,counted=3")
    );
}

#[test]
fn a_route_scope_keeps_state_apart_and_a_named_scope_shares_it() {
    let runtime = runtime();
    let hits = |plugin: &ConfiguredPlugin| {
        edit(&edits(plugin, "/", "192.0.2.1").headers, "x-hits").map(str::to_owned)
    };
    let a = state_plugin(
        &runtime,
        "fault-injector",
        "a",
        r#"{"mode":"state","state_scope":"route"}"#,
    );
    let b = state_plugin(
        &runtime,
        "fault-injector",
        "b",
        r#"{"mode":"state","state_scope":"route"}"#,
    );
    assert_eq!(hits(&a).as_deref(), Some("1"));
    assert_eq!(hits(&a).as_deref(), Some("2"));
    assert_eq!(hits(&b).as_deref(), Some("1"), "route b has its own counter");

    let c = state_plugin(
        &runtime,
        "fault-injector",
        "c",
        r#"{"mode":"state","state_scope":"login"}"#,
    );
    let d = state_plugin(
        &runtime,
        "fault-injector",
        "d",
        r#"{"mode":"state","state_scope":"login"}"#,
    );
    assert_eq!(hits(&c).as_deref(), Some("1"));
    assert_eq!(hits(&d).as_deref(), Some("2"), "one named scope, one counter");
    // The plugin's own scope is apart from both.
    let own = state_plugin(&runtime, "fault-injector", "e", r#"{"mode":"state"}"#);
    assert_eq!(hits(&own).as_deref(), Some("1"));
}

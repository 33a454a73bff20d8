//! The `host` imports as a real plugin sees them, through the
//! fault-injector's `state` mode: dry-run rate limits, logs and plugin
//! metrics, traps on misuse, state scopes, and the state's survival across
//! reconfiguration. The state semantics themselves (counters, kv, windows,
//! rate limits, their exactness under concurrency and their namespacing per
//! plugin) are asserted on every backend in `state_backends.rs`.

mod common;

use std::sync::Arc;

use common::*;
use metrics_util::debugging::DebuggingRecorder;
use tailgate_runtime::{
    ConfiguredPlugin, ManualClock, PluginFault, RequestAction, RequestEdits, Runtime,
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
                    "rate-limit-zone: key of 600 bytes is longer than the 512-byte limit"
                ),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
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
    assert_eq!(
        hits(&b).as_deref(),
        Some("1"),
        "route b has its own counter"
    );

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
    assert_eq!(
        hits(&d).as_deref(),
        Some("2"),
        "one named scope, one counter"
    );
    // The plugin's own scope is apart from both.
    let own = state_plugin(&runtime, "fault-injector", "e", r#"{"mode":"state"}"#);
    assert_eq!(hits(&own).as_deref(), Some("1"));
}

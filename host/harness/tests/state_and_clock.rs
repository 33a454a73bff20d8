//! The harness's controllable host, through the real fault-injector in
//! `state` mode (which calls every host import): state seeded before a hook
//! is what the guest reads, what the guest writes is inspectable after, the
//! fake clock drives `now-ms` and TTL expiry, and the plugin's log lines and
//! metrics are captured with the names the proxy exports.

mod common;

use std::time::Duration;

use tailgate_harness::{HeaderEditsExt, LogLevel, OutputSource, Request, DEFAULT_START_MS};

#[test]
fn seeded_state_is_what_the_guest_reads_and_its_writes_are_inspectable() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let probe = harness
        .configure(&plugin, r#"{"mode": "state"}"#)
        .expect("configure");
    let state = harness.state("fault-injector");
    state.counter_incr("hits", 41, 0);
    state.kv_set("last-path", "/seeded", 0);

    let edits = probe
        .on_request(Request::get("/a"))
        .expect_continue()
        .clone();
    assert_eq!(edits.headers.set_value("x-hits"), Some("42"));
    assert_eq!(edits.headers.set_value("x-kv-prev"), Some("/seeded"));
    assert_eq!(
        edits.headers.set_value("x-now-ms"),
        Some(DEFAULT_START_MS.to_string().as_str())
    );

    assert_eq!(state.counter("hits"), 42);
    assert_eq!(state.kv_get("last-path").as_deref(), Some(&b"/a"[..]));
    let keys: Vec<String> = state.kv_entries().into_iter().map(|e| e.key).collect();
    // `scratch` was set and deleted; the probe's set-if-absent and
    // compare-and-set keys stay.
    assert_eq!(
        keys,
        ["last-path", "probe-cas", "probe-once"],
        "scratch was set and deleted"
    );
    let zone = state.rate_limit_zone("state").expect("zone used");
    assert_eq!(zone.buckets.len(), 1);
    assert_eq!(zone.buckets[0].key, tailgate_harness::DEFAULT_CLIENT_IP);
}

#[test]
fn the_fake_clock_drives_now_and_ttl_expiry() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let probe = harness
        .configure(&plugin, r#"{"mode": "state", "ttl_ms": 1000}"#)
        .expect("configure");
    let hits = |path: &str| {
        probe
            .on_request(Request::get(path))
            .expect_continue()
            .headers
            .set_value("x-hits")
            .map(str::to_owned)
    };
    assert_eq!(hits("/1").as_deref(), Some("1"));
    harness.advance(Duration::from_millis(999));
    // Touched 999 ms ago: still there (and the TTL restarts).
    assert_eq!(hits("/2").as_deref(), Some("2"));
    harness.advance(Duration::from_millis(1000));
    // Idle for its whole TTL: gone, counting starts again.
    assert_eq!(hits("/3").as_deref(), Some("1"));
    let edits = probe
        .on_request(Request::get("/4"))
        .expect_continue()
        .clone();
    assert_eq!(
        edits.headers.set_value("x-now-ms"),
        Some((DEFAULT_START_MS + 1999).to_string().as_str())
    );
    // kv entries expire on the same clock.
    let state = harness.state("fault-injector");
    assert!(state.kv_get("last-path").is_some());
    harness.advance(Duration::from_secs(1));
    assert_eq!(state.kv_get("last-path"), None);
}

#[test]
fn plugin_logs_and_metrics_are_captured_per_call_and_in_total() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let probe = harness
        .configure(&plugin, r#"{"mode": "state"}"#)
        .expect("configure");
    let first = probe.on_request(Request::get("/first"));
    let second = probe.on_request(Request::get("/second/path"));
    first.expect_logged("state probe: GET /first");
    assert!(
        !first.logs().iter().any(|l| l.message.contains("/second")),
        "a call's logs are its own: {:?}",
        first.logs()
    );
    let line = &second.logs()[0];
    assert_eq!(
        (
            line.source,
            line.level,
            line.plugin.as_str(),
            line.route.as_str()
        ),
        (
            OutputSource::HostLog,
            LogLevel::Info,
            "fault-injector",
            "test"
        )
    );
    assert_eq!(
        harness.logs().len(),
        first.logs().len() + second.logs().len()
    );

    let metrics = harness.metrics();
    assert_eq!(metrics.plugin_counter("requests", &[("route", "test")]), 2);
    assert_eq!(
        metrics.counter("tailgate_plugin_requests", &[("plugin", "fault-injector")]),
        2
    );
    assert_eq!(
        metrics.plugin_histogram("path_length", &[]),
        vec![6.0, 12.0]
    );
    assert_eq!(
        metrics.counter(
            "tailgate_plugin_calls_total",
            &[("plugin", "fault-injector"), ("hook", "request")]
        ),
        2
    );
    assert_eq!(
        metrics.gauge(
            "tailgate_plugin_state_keys",
            &[("plugin", "fault-injector"), ("kind", "counter")]
        ),
        Some(1.0)
    );
}

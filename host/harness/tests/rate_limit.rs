//! The shipped `rate-limit` plugin through the harness: the real component
//! on the real runtime's shared buckets, with the fake clock driving refill,
//! idle-key expiry (nginx: a drained key idle for 60 s is forgotten) and the
//! tracked-key cap (least recently used key evicted).

mod common;

use std::time::Duration;

use tailgate_harness::{
    header_str, var, Harness, HarnessError, PluginFile, Request, StateLimits, TestPlugin,
};

fn limiter<'h>(harness: &'h Harness, config: &str) -> TestPlugin<'h> {
    let plugin: PluginFile = harness.load(common::wasm("rate_limit")).expect("load");
    harness.configure(&plugin, config).expect("configure")
}

fn from(ip: &str) -> Request {
    Request::get("/").client_ip(ip)
}

#[test]
fn burst_then_reject_then_refill_on_the_fake_clock() {
    let harness = common::harness();
    let rl = limiter(
        &harness,
        r#"{"limits": [{"zone": "per_ip", "rate": "10r/s", "burst": 2, "nodelay": true}]}"#,
    );
    for _ in 0..3 {
        let edits = rl
            .on_request(from("198.51.100.1"))
            .expect_continue()
            .clone();
        assert_eq!(var(&edits.vars, "limit_req_status"), Some("PASSED"));
    }
    let rejected = rl.on_request(from("198.51.100.1"));
    let answer = rejected.expect_status(429);
    assert_eq!(header_str(&answer.headers, "retry-after"), Some("1"));
    assert_eq!(var(&answer.vars, "limit_req_status"), Some("REJECTED"));
    rejected.expect_logged("limiting requests by zone \"per_ip\"");
    // Another client has its own bucket.
    rl.on_request(from("198.51.100.2")).expect_continue();
    // 10 r/s: one request leaks out in 100 ms.
    harness.advance(Duration::from_millis(99));
    rl.on_request(from("198.51.100.1")).expect_status(429);
    harness.advance(Duration::from_millis(1));
    rl.on_request(from("198.51.100.1")).expect_continue();

    let metrics = harness.metrics();
    let outcome = |o: &str| {
        metrics.plugin_counter("ratelimit_requests", &[("zone", "per_ip"), ("outcome", o)])
    };
    assert_eq!((outcome("passed"), outcome("rejected")), (5, 2));
}

#[test]
fn delays_follow_nginx_and_dry_run_never_enforces() {
    let harness = common::harness();
    let rl = limiter(
        &harness,
        r#"{"limits": [
            {"zone": "queue", "rate": "10r/s", "burst": 3},
            {"zone": "trial", "rate": "1r/s", "burst": 0, "dry_run": true}
        ]}"#,
    );
    let delays: Vec<u32> = (0..4)
        .map(|_| {
            rl.on_request(from("203.0.113.9"))
                .expect_continue()
                .delay_ms
        })
        .collect();
    assert_eq!(delays, [0, 100, 200, 300]);
    let edits = rl
        .on_request(from("203.0.113.10"))
        .expect_continue()
        .clone();
    assert_eq!(var(&edits.vars, "limit_req_status"), Some("PASSED"));
    // The dry-run zone would have rejected the second request of .9.
    let last = rl.on_request(from("203.0.113.9"));
    last.expect_status(429);
    let state = harness.state("rate-limit");
    assert_eq!(
        state.rate_limit_zone("trial").expect("zone").buckets.len(),
        2
    );
    // The host counts every check by zone and outcome, dry runs apart.
    let metrics = harness.metrics();
    let count = |zone: &str, outcome: &str| {
        metrics.plugin_counter(
            "ratelimit_requests",
            &[("zone", zone), ("outcome", outcome)],
        )
    };
    assert_eq!(
        [
            count("queue", "passed"),
            count("queue", "delayed"),
            count("queue", "rejected"),
            count("trial", "passed"),
            count("trial", "rejected_dry_run"),
        ],
        [2, 3, 1, 2, 3]
    );
}

#[test]
fn an_idle_drained_key_is_forgotten_after_a_minute() {
    // One shard (cap below 1024 keys), so any access sweeps the idle tail.
    let harness = common::builder()
        .state_limits(StateLimits {
            max_keys_per_zone: 1000,
            ..StateLimits::default()
        })
        .build()
        .expect("harness");
    let rl = limiter(
        &harness,
        r#"{"limits": [{"zone": "z", "rate": "10r/s", "burst": 5, "nodelay": true}]}"#,
    );
    let state = harness.state("rate-limit");
    let held = || state.rate_limit_zone("z").expect("zone").tracked_keys;
    for _ in 0..3 {
        rl.on_request(from("192.0.2.1")).expect_continue();
    }
    assert_eq!(held(), 1);
    // Drained after 200 ms, but idle for less than 60 s: kept.
    harness.advance(Duration::from_millis(59_999));
    rl.on_request(from("192.0.2.2")).expect_continue();
    assert_eq!(held(), 2);
    // Idle 60 s and drained: the next access forgets it.
    harness.advance(Duration::from_millis(1));
    rl.on_request(from("192.0.2.2")).expect_continue();
    assert_eq!(held(), 1);
    let keys: Vec<String> = state
        .rate_limit_zone("z")
        .expect("zone")
        .buckets
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(keys, ["192.0.2.2"]);
    let gauge = harness.metrics().gauge(
        "tailgate_ratelimit_keys",
        &[("plugin", "rate-limit"), ("zone", "z")],
    );
    assert_eq!(gauge, Some(1.0));
}

#[test]
fn an_idle_key_that_has_not_drained_is_kept_and_still_limited() {
    let harness = common::builder()
        .state_limits(StateLimits {
            max_keys_per_zone: 1000,
            ..StateLimits::default()
        })
        .build()
        .expect("harness");
    // 1 r/m: 16 milli-requests leak per second; a full burst of 5 takes
    // over 5 minutes to drain.
    let rl = limiter(
        &harness,
        r#"{"limits": [{"zone": "slow", "rate": "1r/m", "burst": 5, "nodelay": true}]}"#,
    );
    for _ in 0..6 {
        rl.on_request(from("192.0.2.7")).expect_continue();
    }
    rl.on_request(from("192.0.2.7")).expect_status(429);
    harness.advance(Duration::from_secs(61));
    rl.on_request(from("192.0.2.8")).expect_continue();
    let zone = harness
        .state("rate-limit")
        .rate_limit_zone("slow")
        .expect("zone");
    assert_eq!(zone.tracked_keys, 2);
    // Still over its burst: rejected (a forgotten key would pass).
    rl.on_request(from("192.0.2.7")).expect_status(429);
}

#[test]
fn at_the_key_cap_the_least_recently_used_key_is_evicted() {
    let harness = common::builder()
        .state_limits(StateLimits {
            max_keys_per_zone: 3,
            ..StateLimits::default()
        })
        .build()
        .expect("harness");
    let rl = limiter(
        &harness,
        r#"{"limits": [{"zone": "cap", "rate": "1r/s", "burst": 0}]}"#,
    );
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        rl.on_request(from(ip)).expect_continue();
    }
    // .1 was used least recently; a fourth key pushes it out.
    rl.on_request(from("10.0.0.4")).expect_continue();
    let zone = harness
        .state("rate-limit")
        .rate_limit_zone("cap")
        .expect("zone");
    assert_eq!(zone.tracked_keys, 3);
    let keys: Vec<&str> = zone.buckets.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    // Evicted: starts over with an empty bucket. Still tracked: limited.
    rl.on_request(from("10.0.0.1")).expect_continue();
    rl.on_request(from("10.0.0.4")).expect_status(429);
}

#[test]
fn seeded_buckets_are_the_plugins_buckets() {
    let harness = common::harness();
    let rl = limiter(
        &harness,
        r#"{"limits": [{"zone": "login", "rate": "1r/s", "burst": 1, "nodelay": true}]}"#,
    );
    // Fill the client's bucket from outside, as if it had sent two requests.
    let state = harness.state("rate-limit");
    let zone = tailgate_harness::RateLimit {
        zone: "login".into(),
        rate_milli: 1000,
        burst: 1,
        delay: 1,
    };
    for _ in 0..2 {
        state
            .rate_limit_check(&zone, "203.0.113.50")
            .expect("valid zone");
    }
    rl.on_request(from("203.0.113.50")).expect_status(429);
}

#[test]
fn config_mistakes_are_rejected_naming_the_key() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("rate_limit")).expect("load");
    let err = harness
        .configure(&plugin, r#"{"limits": [{"zone": "a", "rate": "10"}]}"#)
        .err()
        .expect("rejected");
    assert!(matches!(err, HarnessError::ConfigRejected { .. }), "{err}");
    assert!(
        err.rejection()
            .is_some_and(|m| m.starts_with("limits[0].rate: `10` is not a rate")),
        "{err}"
    );
}

#[test]
fn two_routes_using_one_zone_share_its_buckets_each_with_its_burst() {
    // nginx: `limit_req_zone ... zone=general rate=10r/s`, then
    // `limit_req zone=general burst=2` on one server and `burst=5` on
    // another. The zone is defined once (what `[plugins.rate-limit] config`
    // lays under every route's config).
    let harness = common::harness();
    let plugin: PluginFile = harness.load(common::wasm("rate_limit")).expect("load");
    let config = |burst: u32| {
        format!(
            r#"{{"zones": {{"general": {{"rate": "10r/s"}}}},
                "limits": [{{"zone": "general", "burst": {burst}, "nodelay": true}}]}}"#
        )
    };
    let docs = harness
        .configure_for(&plugin, "docs", config(2))
        .expect("configure");
    let git = harness
        .configure_for(&plugin, "git", config(5))
        .expect("configure");
    let client = || from("198.51.100.7");
    for _ in 0..3 {
        docs.on_request(client()).expect_continue();
    }
    docs.on_request(client()).expect_status(429);
    // The same bucket, a larger burst: three more, then full.
    for _ in 0..3 {
        git.on_request(client()).expect_continue();
    }
    git.on_request(client()).expect_status(429);
    // 10 r/s: 300 ms leak three requests out of the shared bucket; one more
    // request would put it past docs' burst of 2, not past git's 5.
    harness.advance(Duration::from_millis(300));
    docs.on_request(client()).expect_status(429);
    git.on_request(client()).expect_continue();

    let zones = harness.state("rate-limit").rate_limit_zones();
    assert_eq!(zones.len(), 1, "{zones:?}");
    assert_eq!(
        (zones[0].zone.as_str(), zones[0].rate_milli),
        ("general", 10_000)
    );
    assert_eq!(zones[0].buckets.len(), 1);
}

/// The hook calls the runtime counted for rate-limit's request hook.
fn request_hook_calls(harness: &Harness) -> u64 {
    harness.metrics().counter(
        "tailgate_plugin_calls_total",
        &[("plugin", "rate-limit"), ("hook", "request")],
    )
}

#[test]
fn requests_that_pass_every_limit_do_not_enter_the_plugin() {
    let harness = common::harness();
    let rl = limiter(
        &harness,
        r#"{"limits": [{"zone": "per_ip", "rate": "10r/s", "burst": 2}]}"#,
    );
    // Within the rate: the host's own check passes it, the plugin is not
    // entered, and the request carries the var the hook would have set.
    let first = rl.on_request(from("192.0.2.7")).expect_continue().clone();
    assert_eq!(
        (first.delay_ms, var(&first.vars, "limit_req_status")),
        (0, Some("PASSED"))
    );
    assert_eq!(request_hook_calls(&harness), 0);
    // Within the burst: delayed, so the hook is entered, and its own check
    // takes the host's decision for the request instead of counting it
    // again (a second count would make these 200 and 300 ms).
    let delays: Vec<u32> = (0..2)
        .map(|_| rl.on_request(from("192.0.2.7")).expect_continue().delay_ms)
        .collect();
    assert_eq!(delays, [100, 200]);
    // Past it: rejected by the hook, with its answer and its log line.
    let rejected = rl.on_request(from("192.0.2.7"));
    let answer = rejected.expect_status(429);
    assert_eq!(var(&answer.vars, "limit_req_status"), Some("REJECTED"));
    rejected.expect_logged("limiting requests by zone \"per_ip\"");
    assert_eq!(request_hook_calls(&harness), 3);
    let metrics = harness.metrics();
    let outcome = |o: &str| {
        metrics.plugin_counter("ratelimit_requests", &[("zone", "per_ip"), ("outcome", o)])
    };
    assert_eq!(
        (outcome("passed"), outcome("delayed"), outcome("rejected")),
        (1, 2, 1)
    );
}

#[test]
fn a_limit_with_a_filter_or_another_key_enters_the_plugin_every_time() {
    for config in [
        r#"{"limits": [{"zone": "z", "rate": "10r/s", "burst": 5, "path": "^/"}]}"#,
        r#"{"limits": [{"zone": "z", "rate": "10r/s", "burst": 5, "key": "global"}]}"#,
    ] {
        let harness = common::harness();
        let rl = limiter(&harness, config);
        for _ in 0..3 {
            rl.on_request(from("192.0.2.8")).expect_continue();
        }
        assert_eq!(request_hook_calls(&harness), 3, "{config}");
    }
}

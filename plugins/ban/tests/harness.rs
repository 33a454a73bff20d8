//! The ban plugin's harness tests: the built component (`cargo build
//! --release -p ban` first) on the proxy's own plugin runtime, with the
//! host's real sliding windows and ban list on a fake clock. Run with
//! `cargo test --target <your host triple> -p ban` from `plugins/`.
//!
//! The harness calls one hook at a time, so each exchange is played as the
//! proxy plays it: `on-request`, then `on-log` with the status and the vars
//! `on-request` left.

use std::time::Duration;

use tailgate_harness::{
    built_plugin, header_str, var, BanRequest, Harness, LogEntry, Request, StateLimits, TestPlugin,
};

const ATTACKER: &str = "198.51.100.1";
const OTHER: &str = "198.51.100.2";

/// The stack's jail (docs/ban.md's worked example).
const LOGIN: &str = r#"{"jails": [{"name": "forge-auth", "statuses": [401, 403],
    "path": "^/user/(login|sign_up|forgot_password)", "max_retry": 5,
    "find_time": "10m", "ban_time": "1h"}]}"#;

fn configured<'h>(harness: &'h Harness, config: &str) -> TestPlugin<'h> {
    configured_for(harness, "git", config)
}

fn configured_for<'h>(harness: &'h Harness, route: &str, config: &str) -> TestPlugin<'h> {
    let wasm = built_plugin(env!("CARGO_MANIFEST_DIR")).expect("built plugin");
    let plugin = harness.load(&wasm).expect("load");
    harness
        .configure_for(&plugin, route, config)
        .expect("configure")
}

/// One exchange from `ip` to `path` that the upstream answers `status`:
/// `on-request` (it must go on), then `on-log` with its vars.
fn exchange(plugin: &TestPlugin<'_>, ip: &str, path: &str, status: u16) {
    let edits = plugin
        .on_request(Request::post(path).client_ip(ip))
        .expect_continue()
        .clone();
    let mut entry = LogEntry::new("POST", path, status).client_ip(ip);
    for v in &edits.vars {
        entry = entry.var(&v.name, &v.value);
    }
    plugin.on_log(entry).expect_kept();
}

fn banned(harness: &Harness, jail: &str, key: &str) -> bool {
    harness.runtime().bans().check(jail, key).is_some()
}

#[test]
fn five_failures_block_the_next_request_with_retry_after_and_others_pass() {
    let harness = Harness::new().expect("harness");
    let jail = configured(&harness, LOGIN);
    for _ in 0..4 {
        exchange(&jail, ATTACKER, "/user/login", 401);
    }
    assert!(!banned(&harness, "forge-auth", ATTACKER));
    exchange(&jail, ATTACKER, "/user/sign_up", 403);
    assert!(banned(&harness, "forge-auth", ATTACKER));
    let warn = harness
        .logs()
        .into_iter()
        .find(|l| l.message.starts_with("banned"))
        .expect("a ban line");
    assert_eq!(
        warn.message,
        "banned 198.51.100.1 in jail \"forge-auth\": 5 failures within 10m, for 1h (offence 1)"
    );

    // Blocked on every path of the route, not only the watched ones.
    for path in ["/user/login", "/explore"] {
        let outcome = jail.on_request(Request::get(path).client_ip(ATTACKER));
        let answer = outcome.expect_status(403);
        assert_eq!(answer.body, b"Temporarily blocked. Try again later.\n");
        assert_eq!(header_str(&answer.headers, "retry-after"), Some("3600"));
        assert_eq!(var(&answer.vars, "ban"), Some("BLOCKED"));
        assert_eq!(var(&answer.vars, "ban_jail"), Some("forge-auth"));
    }
    harness.advance(Duration::from_millis(1_500));
    let answer = jail.on_request(Request::get("/").client_ip(ATTACKER));
    assert_eq!(
        header_str(&answer.expect_status(403).headers, "retry-after"),
        Some("3599"),
        "the remaining seconds, rounded up"
    );
    jail.on_request(Request::post("/user/login").client_ip(OTHER))
        .expect_continue();

    let metrics = harness.metrics();
    assert_eq!(metrics.plugin_counter("bans", &[("jail", "forge-auth")]), 1);
    assert_eq!(
        metrics.plugin_counter("ban_blocked", &[("jail", "forge-auth")]),
        3
    );
    assert_eq!(
        metrics.gauge("tailgate_bans_active", &[("jail", "forge-auth")]),
        Some(1.0)
    );
}

#[test]
fn only_watched_paths_methods_and_statuses_count() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "j", "path": "^/user/login$", "methods": ["POST"], "max_retry": 2}]}"#,
    );
    exchange(&jail, ATTACKER, "/user/login", 200);
    exchange(&jail, ATTACKER, "/user/login", 404);
    exchange(&jail, ATTACKER, "/user/logout", 401);
    let get = jail
        .on_request(Request::get("/user/login").client_ip(ATTACKER))
        .expect_continue()
        .clone();
    assert_eq!(var(&get.vars, "ban_key.j"), None, "GET is not watched");
    assert!(!banned(&harness, "j", ATTACKER));
    assert!(harness.state("ban").windows().is_empty());
    exchange(&jail, ATTACKER, "/user/login", 401);
    exchange(&jail, ATTACKER, "/user/login", 401);
    assert!(banned(&harness, "j", ATTACKER));
}

#[test]
fn the_window_slides_failures_wider_apart_than_find_time_never_ban() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "w", "max_retry": 3, "find_time": "10s"}]}"#,
    );
    // One failure every 5.5 s: never three within 10 s.
    for _ in 0..6 {
        exchange(&jail, ATTACKER, "/", 401);
        harness.advance(Duration::from_millis(5_500));
    }
    assert!(!banned(&harness, "w", ATTACKER));
    // Not a fixed bucket: the third within any 10 s span bans, here at
    // 0 s, 6 s and 9.9 s of a span starting mid-"bucket".
    harness.advance(Duration::from_secs(20));
    exchange(&jail, ATTACKER, "/", 401);
    harness.advance(Duration::from_secs(6));
    exchange(&jail, ATTACKER, "/", 401);
    harness.advance(Duration::from_millis(3_900));
    exchange(&jail, ATTACKER, "/", 401);
    assert!(banned(&harness, "w", ATTACKER));
    // The window is forgotten once the ban is in place.
    assert!(harness.state("ban").windows().is_empty());
}

#[test]
fn a_ban_expires_after_ban_time() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "e", "max_retry": 1, "ban_time": "2s"}]}"#,
    );
    exchange(&jail, ATTACKER, "/", 401);
    harness.advance(Duration::from_millis(1_999));
    let answer = jail.on_request(Request::get("/").client_ip(ATTACKER));
    assert_eq!(
        header_str(&answer.expect_status(403).headers, "retry-after"),
        Some("1")
    );
    harness.advance(Duration::from_millis(1));
    jail.on_request(Request::get("/").client_ip(ATTACKER))
        .expect_continue();
    assert!(harness.runtime().bans().list().is_empty());
}

#[test]
fn repeat_offenders_are_banned_longer_up_to_the_max() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "r", "max_retry": 2, "ban_time": "1m",
            "ban_time_increment": {"factor": 2.0, "max": "3m"}}]}"#,
    );
    let mut lengths = Vec::new();
    for _ in 0..3 {
        exchange(&jail, ATTACKER, "/", 401);
        exchange(&jail, ATTACKER, "/", 401);
        let ban = harness
            .runtime()
            .bans()
            .check("r", ATTACKER)
            .expect("banned");
        lengths.push((ban.expires_unix_ms - ban.since_unix_ms, ban.offences));
        harness.advance(Duration::from_millis(
            ban.expires_unix_ms - ban.since_unix_ms,
        ));
        jail.on_request(Request::get("/").client_ip(ATTACKER))
            .expect_continue();
    }
    assert_eq!(lengths, [(60_000, 1), (120_000, 2), (180_000, 3)]);
    assert!(harness
        .logs()
        .iter()
        .any(|l| l.message.ends_with("for 3m (offence 3)")));
}

#[test]
fn ignored_networks_are_never_counted_banned_or_blocked() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "i", "max_retry": 2, "ignore": ["10.0.0.0/8", "2001:db8::/32"]}]}"#,
    );
    for ip in ["10.1.2.3", "2001:db8::7"] {
        for _ in 0..5 {
            exchange(&jail, ip, "/", 401);
        }
        assert!(!banned(&harness, "i", ip));
    }
    assert!(harness.state("ban").windows().is_empty());
    // Even a ban from elsewhere (by hand) does not block an ignored client.
    harness
        .runtime()
        .bans()
        .add("i", "10.1.2.3", &BanRequest::fixed(60_000));
    jail.on_request(Request::get("/").client_ip("10.1.2.3"))
        .expect_continue();
    exchange(&jail, ATTACKER, "/", 401);
    exchange(&jail, ATTACKER, "/", 401);
    assert!(banned(&harness, "i", ATTACKER));
}

#[test]
fn dry_run_counts_and_logs_but_never_bans_or_blocks() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "d", "max_retry": 3, "dry_run": true}]}"#,
    );
    for _ in 0..7 {
        exchange(&jail, ATTACKER, "/", 401);
    }
    assert!(!banned(&harness, "d", ATTACKER));
    let would: Vec<String> = harness
        .logs()
        .into_iter()
        .map(|l| l.message)
        .filter(|m| m.starts_with("would ban"))
        .collect();
    assert_eq!(would.len(), 2, "at the 3rd and the 6th failure: {would:?}");
    assert_eq!(
        would[0],
        "would ban 198.51.100.1 in jail \"d\": 3 failures within 10m (dry run)"
    );
    let metrics = harness.metrics();
    assert_eq!(metrics.plugin_counter("bans_dry_run", &[("jail", "d")]), 2);
    assert_eq!(metrics.plugin_counter("bans", &[]), 0);
    // A key banned by hand is reported, not blocked.
    harness
        .runtime()
        .bans()
        .add("d", ATTACKER, &BanRequest::fixed(60_000));
    let edits = jail
        .on_request(Request::get("/").client_ip(ATTACKER))
        .expect_continue()
        .clone();
    assert_eq!(var(&edits.vars, "ban"), Some("BLOCKED_DRY_RUN"));
}

#[test]
fn action_close_answers_444() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "c", "max_retry": 1, "action": "close"}]}"#,
    );
    exchange(&jail, ATTACKER, "/", 403);
    let answer = jail.on_request(Request::get("/").client_ip(ATTACKER));
    let answer = answer.expect_status(444);
    assert!(answer.body.is_empty());
    assert_eq!(header_str(&answer.headers, "retry-after"), None);
}

#[test]
fn a_jail_named_on_two_routes_counts_and_bans_across_both() {
    let harness = Harness::new().expect("harness");
    let config = r#"{"jails": [{"name": "shared", "max_retry": 4}]}"#;
    let git = configured_for(&harness, "git", config);
    let wiki = configured_for(&harness, "wiki", config);
    exchange(&git, ATTACKER, "/", 401);
    exchange(&wiki, ATTACKER, "/", 401);
    exchange(&git, ATTACKER, "/", 401);
    assert!(!banned(&harness, "shared", ATTACKER));
    exchange(&wiki, ATTACKER, "/", 401);
    git.on_request(Request::get("/").client_ip(ATTACKER))
        .expect_status(403);
    wiki.on_request(Request::get("/").client_ip(ATTACKER))
        .expect_status(403);
    // Another jail name is another ban list entry.
    let other = configured_for(&harness, "blog", r#"{"jails": [{"name": "other"}]}"#);
    other
        .on_request(Request::get("/").client_ip(ATTACKER))
        .expect_continue();
}

#[test]
fn a_header_key_bans_that_value_whatever_the_address() {
    let harness = Harness::new().expect("harness");
    let jail = configured(
        &harness,
        r#"{"jails": [{"name": "user", "max_retry": 2, "key": "header:x-user"}]}"#,
    );
    for ip in ["192.0.2.1", "192.0.2.2"] {
        let edits = jail
            .on_request(Request::post("/").client_ip(ip).header("x-user", "mallory"))
            .expect_continue()
            .clone();
        assert_eq!(var(&edits.vars, "ban_key.user"), Some("mallory"));
        let entry = LogEntry::new("POST", "/", 401)
            .client_ip(ip)
            .var("ban_key.user", "mallory");
        jail.on_log(entry).expect_kept();
    }
    jail.on_request(
        Request::get("/")
            .client_ip("192.0.2.9")
            .header("x-user", "mallory"),
    )
    .expect_status(403);
    jail.on_request(
        Request::get("/")
            .client_ip("192.0.2.9")
            .header("x-user", "alice"),
    )
    .expect_continue();
    // No header: no key, neither counted nor blocked.
    jail.on_request(Request::get("/").client_ip("192.0.2.9"))
        .expect_continue();
}

/// The calls the runtime counted for the ban plugin's `hook`.
fn hook_calls(harness: &Harness, hook: &str) -> u64 {
    harness.metrics().counter(
        "tailgate_plugin_calls_total",
        &[("plugin", "ban"), ("hook", hook)],
    )
}

#[test]
fn jails_keyed_by_the_client_enter_the_plugin_only_for_a_banned_client() {
    let harness = Harness::new().expect("harness");
    let jail = configured(&harness, LOGIN);
    // The host looks the address up itself: a client banned nowhere goes
    // on with `ban = PASSED` and no call.
    let passed = jail
        .on_request(Request::post("/user/login").client_ip(ATTACKER))
        .expect_continue()
        .clone();
    assert_eq!(var(&passed.vars, "ban"), Some("PASSED"));
    assert_eq!(var(&passed.vars, "ban_key.forge-auth"), None);
    assert_eq!(hook_calls(&harness, "request"), 0);
    // The log hook counts from the record's address, method and path.
    for _ in 0..5 {
        exchange(&jail, ATTACKER, "/user/login", 401);
    }
    assert!(banned(&harness, "forge-auth", ATTACKER));
    assert_eq!(hook_calls(&harness, "request"), 0);
    assert_eq!(hook_calls(&harness, "log"), 5);
    // The log hook is entered only for the statuses the jail counts
    // (its log gate): a success costs no call.
    exchange(&jail, OTHER, "/user/login", 200);
    assert_eq!(hook_calls(&harness, "log"), 5);
    // Banned: the hook is entered, and answers.
    jail.on_request(Request::get("/").client_ip(ATTACKER))
        .expect_status(403);
    assert_eq!(hook_calls(&harness, "request"), 1);
    // A request this plugin did not pass (blocked, or answered before it)
    // is no failure, whatever its status.
    for entry in [
        LogEntry::new("POST", "/user/login", 403)
            .client_ip(OTHER)
            .var("ban", "BLOCKED"),
        LogEntry::new("POST", "/user/login", 403).client_ip(OTHER),
    ] {
        for _ in 0..5 {
            jail.on_log(entry.clone()).expect_kept();
        }
    }
    assert!(!banned(&harness, "forge-auth", OTHER));
}

#[test]
fn a_jail_keyed_by_a_header_keeps_the_hook_on_every_request() {
    let harness = Harness::new().expect("harness");
    let jails = configured(
        &harness,
        r#"{"jails": [{"name": "ip"}, {"name": "user", "key": "header:x-user"}]}"#,
    );
    let edits = jails
        .on_request(Request::post("/").client_ip(OTHER).header("x-user", "bob"))
        .expect_continue()
        .clone();
    assert_eq!(var(&edits.vars, "ban_key.user"), Some("bob"));
    assert_eq!(var(&edits.vars, "ban"), Some("PASSED"));
    assert_eq!(hook_calls(&harness, "request"), 1);
    // Failures still count by the key the request hook left; a success
    // (outside both jails' 401/403) does not enter the log hook.
    let mut entry = LogEntry::new("POST", "/", 401).client_ip(OTHER);
    for v in &edits.vars {
        entry = entry.var(&v.name, &v.value);
    }
    for _ in 0..5 {
        jails.on_log(entry.clone()).expect_kept();
    }
    assert!(banned(&harness, "user", "bob"));
    jails
        .on_log(LogEntry::new("POST", "/", 200).client_ip(OTHER))
        .expect_kept();
    assert_eq!(hook_calls(&harness, "log"), 5);
}

#[test]
fn windows_filling_up_never_push_a_ban_out() {
    let harness = Harness::builder()
        .state_limits(StateLimits {
            max_windows: 8,
            max_bans: 2,
            ..StateLimits::default()
        })
        .build()
        .expect("harness");
    let jail = configured(&harness, r#"{"jails": [{"name": "cap", "max_retry": 1}]}"#);
    exchange(&jail, ATTACKER, "/", 401);
    assert!(banned(&harness, "cap", ATTACKER));
    // A hundred other keys failing (one short of a ban each, max_retry is
    // 2 below) overflow the 8 windows: windows are evicted, the ban is not.
    let jail = configured(&harness, r#"{"jails": [{"name": "cap", "max_retry": 2}]}"#);
    for n in 0..100u32 {
        let ip = format!("203.0.113.{}", n + 1);
        exchange(&jail, &ip, "/", 401);
    }
    assert_eq!(harness.state("ban").windows_held(), 8);
    assert!(banned(&harness, "cap", ATTACKER));
    assert!(
        harness
            .metrics()
            .counter("tailgate_state_evictions_total", &[("store", "windows")])
            >= 92
    );
    // The ban list itself is bounded apart: past 2 bans, the one that ends
    // first goes.
    let bans = harness.runtime().bans();
    bans.add("cap", "late", &BanRequest::fixed(7_200_000));
    bans.add("cap", "later", &BanRequest::fixed(9_000_000));
    let held: Vec<String> = bans.list().into_iter().map(|b| b.key).collect();
    assert_eq!(held, ["late", "later"]);
}

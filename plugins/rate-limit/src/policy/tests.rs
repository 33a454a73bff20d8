//! The policy against a scripted host whose buckets follow nginx's
//! arithmetic at one frozen instant (the host's own tests cover time).

use std::cell::RefCell;
use std::collections::HashMap;

use tailgate_plugin_sdk::testing::{
    assert_reads_exactly, documented_configs, narrowed_request, repo_file, request_with_headers,
};
use tailgate_plugin_sdk::{Header, Var};

use super::*;

/// A GET of `path` from 203.0.113.7 with these header fields.
pub(crate) fn request(path: &str, headers: &[(&str, &[u8])]) -> RequestHead {
    request_with_headers("GET", path, headers)
}

/// A host at one instant: per (zone, key), requests admitted so far.
#[derive(Default)]
struct FrozenHost {
    admitted: RefCell<HashMap<(String, String), u64>>,
    checks: RefCell<Vec<(String, String, bool)>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
}

impl RateLimitHost for FrozenHost {
    fn rate_limit_check(&self, limit: &Limit, key: &RequestKey<'_>, dry_run: bool) -> RateDecision {
        let (limit, key) = (limit.spec(), key.text());
        let key = key.as_ref();
        self.checks
            .borrow_mut()
            .push((limit.zone.to_owned(), key.to_owned(), dry_run));
        let mut admitted = self.admitted.borrow_mut();
        let n = admitted
            .entry((limit.zone.to_owned(), key.to_owned()))
            .or_insert(0);
        let excess = *n * 1000;
        if excess > u64::from(limit.burst) * 1000 {
            return RateDecision::Reject((1_000_000 / limit.rate_milli) as u32);
        }
        *n += 1;
        let delay = u64::from(limit.delay) * 1000;
        if excess <= delay {
            RateDecision::Pass
        } else {
            RateDecision::Delay(((excess - delay) * 1000 / limit.rate_milli) as u32)
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
}

fn policy(json: &str) -> RateLimitPolicy {
    RateLimitPolicy::from_config(&Config::new(json)).unwrap_or_else(|err| panic!("{err}"))
}

fn rejected(json: &str) -> String {
    RateLimitPolicy::from_config(&Config::new(json))
        .expect_err("config should be rejected")
        .to_string()
}

fn status_var(action: &RequestAction) -> Option<&str> {
    let vars: &[Var] = match action {
        RequestAction::Continue(edits) => &edits.vars,
        RequestAction::Respond(resp) => &resp.vars,
    };
    vars.iter()
        .find(|v| v.name == STATUS_VAR)
        .map(|v| v.value.as_str())
}

fn outcomes(
    policy: &RateLimitPolicy,
    host: &FrozenHost,
    req: &RequestHead,
    n: usize,
) -> Vec<String> {
    (0..n)
        .map(|_| {
            let action = policy.on_request(req, host);
            status_var(&action).unwrap_or("-").to_owned()
        })
        .collect()
}

#[test]
fn burst_nodelay_admits_burst_plus_one_then_rejects_with_retry_after() {
    let policy = policy(r#"{"limits":[{"zone":"ip","rate":"10r/s","burst":20,"nodelay":true}]}"#);
    let host = FrozenHost::default();
    let req = request("/", &[]);
    let got = outcomes(&policy, &host, &req, 21);
    assert!(got.iter().all(|o| o == "PASSED"), "{got:?}");
    let RequestAction::Respond(resp) = policy.on_request(&req, &host) else {
        panic!("22nd request was not rejected");
    };
    assert_eq!(resp.status, 429);
    assert_eq!(
        resp.headers,
        vec![
            Header::new("retry-after", "1"),
            Header::new("content-type", "text/plain; charset=utf-8"),
        ]
    );
    assert_eq!(resp.body, b"Too Many Requests\n");
    assert_eq!(
        resp.vars,
        vec![Var::new(STATUS_VAR, "REJECTED"), Var::new(ZONE_VAR, "ip")]
    );
    assert_eq!(
        host.checks.borrow()[0],
        ("ip".to_owned(), "203.0.113.7".to_owned(), false)
    );
}

/// One zone defined once (`zones`, as `[plugins.rate-limit] config` gives
/// every route) and used by two routes with their own bursts.
const SHARED_ZONE: &str = r#"{"zones":{"general":{"rate":"10r/s"}},"limits":[{"zone":"general","burst":BURST,"nodelay":true}]}"#;

#[test]
fn routes_using_one_zone_share_its_buckets_each_with_its_burst() {
    let small = policy(&SHARED_ZONE.replace("BURST", "2"));
    let large = policy(&SHARED_ZONE.replace("BURST", "5"));
    let host = FrozenHost::default();
    let req = request("/", &[]);
    // The small route admits burst + 1, then rejects.
    assert_eq!(
        outcomes(&small, &host, &req, 4),
        ["PASSED", "PASSED", "PASSED", "REJECTED"]
    );
    // The large route counts into the same bucket: 3 more fit its burst.
    assert_eq!(
        outcomes(&large, &host, &req, 4),
        ["PASSED", "PASSED", "PASSED", "REJECTED"]
    );
    let checks = host.checks.borrow();
    assert!(checks
        .iter()
        .all(|(zone, key, _)| zone == "general" && key == "203.0.113.7"));
}

#[test]
fn without_nodelay_the_burst_is_delayed_nginx_style() {
    let policy = policy(r#"{"limits":[{"zone":"ip","rate":"10r/s","burst":3}]}"#);
    let host = FrozenHost::default();
    let req = request("/", &[]);
    let edits: Vec<RequestEdits> = (0..4)
        .map(|_| match policy.on_request(&req, &host) {
            RequestAction::Continue(edits) => edits,
            RequestAction::Respond(resp) => panic!("rejected with {}", resp.status),
        })
        .collect();
    let delays: Vec<u32> = edits.iter().map(|e| e.delay_ms).collect();
    assert_eq!(delays, vec![0, 100, 200, 300]);
    assert_eq!(edits[0].vars, vec![Var::new(STATUS_VAR, "PASSED")]);
    assert_eq!(
        edits[2].vars,
        vec![Var::new(STATUS_VAR, "DELAYED"), Var::new(ZONE_VAR, "ip")]
    );
    assert!(matches!(
        policy.on_request(&req, &host),
        RequestAction::Respond(_)
    ));
    let logs = host.logs.borrow();
    assert_eq!(logs.len(), 4, "3 delays and 1 rejection are logged");
    assert_eq!(
        logs[0],
        (
            LogLevel::Info,
            "delaying request by zone \"ip\" (delay 100 ms)".to_owned()
        )
    );
    assert_eq!(logs[3].0, LogLevel::Warn);
}

#[test]
fn delay_threshold_serves_the_first_part_of_the_burst_at_once() {
    let policy = policy(r#"{"limits":[{"zone":"ip","rate":"10r/s","burst":4,"delay":2}]}"#);
    let host = FrozenHost::default();
    let got = outcomes(&policy, &host, &request("/", &[]), 6);
    assert_eq!(
        got,
        vec!["PASSED", "PASSED", "PASSED", "DELAYED", "DELAYED", "REJECTED"]
    );
}

#[test]
fn several_limits_each_with_its_own_key_and_path() {
    let policy = policy(
        r#"{"limits":[
            {"zone":"general","rate":"10r/s","burst":100,"nodelay":true},
            {"zone":"login","rate":"1r/s","burst":1,"nodelay":true,"path":"^/user/login$","methods":["POST"]},
            {"zone":"api","rate":"5r/s","key":"header:x-api-key","path":"^/api/"}
        ]}"#,
    );
    let host = FrozenHost::default();
    let mut login = request("/user/login", &[]);
    login.method = tailgate_plugin_sdk::Method::from_name("POST");
    assert_eq!(
        outcomes(&policy, &host, &login, 3),
        vec!["PASSED", "PASSED", "REJECTED"]
    );
    // A GET of the login page only meets the general limit.
    assert_eq!(
        outcomes(&policy, &host, &request("/user/login", &[]), 1),
        vec!["PASSED"]
    );
    // API without a key: the api limit does not apply (empty key).
    let api = request("/api/items", &[]);
    assert_eq!(outcomes(&policy, &host, &api, 3), vec!["PASSED"; 3]);
    // With a key: one bucket per key.
    let a = request("/api/items", &[("x-api-key", b"A")]);
    let b = request("/api/items", &[("x-api-key", b"B")]);
    assert_eq!(outcomes(&policy, &host, &a, 2), vec!["PASSED", "REJECTED"]);
    assert_eq!(outcomes(&policy, &host, &b, 1), vec!["PASSED"]);
    let checks = host.checks.borrow();
    assert!(checks.contains(&("api".to_owned(), "A".to_owned(), false)));
    assert!(!checks
        .iter()
        .any(|(zone, key, _)| zone == "api" && key.is_empty()));
}

#[test]
fn a_rejecting_limit_stops_the_later_ones() {
    let policy = policy(
        r#"{"limits":[
            {"zone":"strict","rate":"1r/s"},
            {"zone":"loose","rate":"100r/s","burst":100}
        ]}"#,
    );
    let host = FrozenHost::default();
    let req = request("/", &[]);
    assert_eq!(
        outcomes(&policy, &host, &req, 2),
        vec!["PASSED", "REJECTED"]
    );
    let zones: Vec<String> = host.checks.borrow().iter().map(|c| c.0.clone()).collect();
    assert_eq!(zones, vec!["strict", "loose", "strict"]);
}

#[test]
fn the_longest_delay_wins_across_limits() {
    let policy = policy(
        r#"{"limits":[
            {"zone":"a","rate":"10r/s","burst":5},
            {"zone":"b","rate":"2r/s","burst":5}
        ]}"#,
    );
    let host = FrozenHost::default();
    let req = request("/", &[]);
    policy.on_request(&req, &host);
    let RequestAction::Continue(edits) = policy.on_request(&req, &host) else {
        panic!("rejected");
    };
    // a: 100 ms, b: 500 ms.
    assert_eq!(edits.delay_ms, 500);
    assert_eq!(
        edits.vars,
        vec![Var::new(STATUS_VAR, "DELAYED"), Var::new(ZONE_VAR, "b")]
    );
}

#[test]
fn dry_run_reports_what_it_would_do_and_does_nothing() {
    let policy = policy(r#"{"dry_run":true,"limits":[{"zone":"ip","rate":"10r/s","burst":1}]}"#);
    let host = FrozenHost::default();
    let req = request("/", &[]);
    let actions: Vec<RequestAction> = (0..3).map(|_| policy.on_request(&req, &host)).collect();
    let got: Vec<&str> = actions.iter().filter_map(status_var).collect();
    assert_eq!(got, vec!["PASSED", "DELAYED_DRY_RUN", "REJECTED_DRY_RUN"]);
    for action in &actions {
        let RequestAction::Continue(edits) = action else {
            panic!("dry run answered the request");
        };
        assert_eq!(edits.delay_ms, 0);
    }
    assert!(host.checks.borrow().iter().all(|(_, _, dry_run)| *dry_run));
    let logs = host.logs.borrow();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].0, LogLevel::Info);
    assert!(
        logs[0]
            .1
            .starts_with("delaying request, dry run, by zone \"ip\""),
        "{}",
        logs[0].1
    );
    assert_eq!(logs[1].0, LogLevel::Warn);
    assert_eq!(
        logs[1].1,
        "limiting requests, dry run, by zone \"ip\" (retry after 100 ms)"
    );
}

#[test]
fn one_limit_may_run_dry_beside_an_enforced_one() {
    let policy = policy(
        r#"{"limits":[
            {"zone":"new","rate":"1r/s","dry_run":true},
            {"zone":"old","rate":"1r/s","burst":1,"nodelay":true}
        ]}"#,
    );
    let host = FrozenHost::default();
    let req = request("/", &[]);
    assert_eq!(
        outcomes(&policy, &host, &req, 3),
        vec!["PASSED", "REJECTED_DRY_RUN", "REJECTED"]
    );
}

#[test]
fn status_body_and_log_level_are_configurable() {
    let policy = policy(
        r#"{"status":503,"body":"slow down\n","log_level":"error",
            "limits":[{"zone":"g","rate":"1r/m","key":"global"},
                      {"zone":"h","rate":"1r/m","key":"header:x-k","status":429}]}"#,
    );
    let host = FrozenHost::default();
    let req = request("/", &[]);
    policy.on_request(&req, &host);
    let RequestAction::Respond(resp) = policy.on_request(&request("/other", &[]), &host) else {
        panic!("global bucket not shared");
    };
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body, b"slow down\n");
    // 1r/m = 16 milli-requests/s: one request leaks in 62.5 s.
    assert_eq!(resp.headers[0], Header::new("retry-after", "63"));
    assert_eq!(host.logs.borrow()[0].0, LogLevel::Error);
    assert_eq!(host.checks.borrow()[0].1, "global");
}

#[test]
fn default_body_follows_each_limits_status() {
    let policy = policy(r#"{"limits":[{"zone":"a","rate":"1r/s","status":503}]}"#);
    let host = FrozenHost::default();
    let req = request("/", &[]);
    policy.on_request(&req, &host);
    let RequestAction::Respond(resp) = policy.on_request(&req, &host) else {
        panic!("not rejected");
    };
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (503, &b"Service Unavailable\n"[..])
    );
}

#[test]
fn only_the_limits_that_apply_are_checked() {
    let policy = policy(
        r#"{"limits":[{"zone":"a","rate":"1r/s"},{"zone":"b","rate":"1r/s","path":"^/b"}]}"#,
    );
    let host = FrozenHost::default();
    policy.on_request(&request("/", &[]), &host);
    policy.on_request(&request("/", &[]), &host);
    let zones: Vec<String> = host.checks.borrow().iter().map(|c| c.0.clone()).collect();
    assert_eq!(zones, ["a", "a"]);
}

#[test]
fn no_applicable_limit_sets_no_var() {
    let policy = policy(r#"{"limits":[{"zone":"a","rate":"1r/s","path":"^/login"}]}"#);
    let host = FrozenHost::default();
    assert_eq!(
        policy.on_request(&request("/", &[]), &host),
        RequestAction::proceed()
    );
    assert!(host.checks.borrow().is_empty());
}

#[test]
fn config_errors_name_the_key() {
    assert_eq!(rejected("{}"), "missing field `limits`");
    assert!(rejected(r#"{"limits":[]}"#).starts_with("limits: give at least one limit"));
    assert_eq!(
        rejected(r#"{"limits":[{"zone":"a","rate":"1r/s","brust":3}]}"#),
        "limits[0].brust: unknown field `brust`, expected one of `zone`, `rate`, `burst`, \
         `nodelay`, `delay`, `key`, `path`, `methods`, `status`, `dry_run`"
    );
    assert_eq!(
        rejected(r#"{"limits":[{"zone":"a"}]}"#),
        "limits[0].rate: required: give the limit a rate, or define zone `a` in `zones` \
         (e.g. under [plugins.rate-limit] config, for every route)"
    );
    assert_eq!(
        rejected(r#"{"limits":[{"zone":"a","rate":"1r/s"},{"zone":"a","rate":"2r/s"}]}"#),
        "limits[1].zone: `a` is already used by limits[0]; give each limit of a route its own zone"
    );
    assert_eq!(
        rejected(r#"{"status":302,"limits":[{"zone":"a","rate":"1r/s"}]}"#),
        "status: 302 is not an error status (400-599)"
    );
    assert_eq!(
        rejected(r#"{"log_level":"notice","limits":[{"zone":"a","rate":"1r/s"}]}"#),
        "log_level: unknown variant `notice`, expected one of `info`, `warn`, `error`"
    );
    assert_eq!(
        rejected(r#"{"limits":[{"zone":"a","rate":"1r/s","burst":-1}]}"#),
        "limits[0].burst: invalid value: integer `-1`, expected u32"
    );
    let many: Vec<String> = (0..17)
        .map(|i| format!(r#"{{"zone":"z{i}","rate":"1r/s"}}"#))
        .collect();
    assert_eq!(
        rejected(&format!(r#"{{"limits":[{}]}}"#, many.join(","))),
        "limits: 17 limits; at most 16 per route"
    );
}

#[test]
fn the_documented_examples_are_accepted() {
    let doc = repo_file(env!("CARGO_MANIFEST_DIR"), "docs/rate-limit.md");
    let tables = documented_configs(&doc, "rate-limit");
    assert!(tables.len() >= 3, "the doc shows rate-limit configs");
    for json in &tables {
        let policy = RateLimitPolicy::from_config(&Config::new(json.as_str()))
            .unwrap_or_else(|err| panic!("documented config rejected: {err}\n{json}"));
        assert_reads_only_what_it_declares(&policy, json);
    }
}

#[test]
fn the_host_is_asked_only_for_the_headers_the_keys_read() {
    let by_ip = policy(r#"{"limits":[{"zone":"ip","rate":"1r/s"}]}"#);
    assert_eq!(by_ip.request_headers(), HeaderFilter::none());
    let by_headers = policy(
        r#"{"limits":[{"zone":"a","rate":"1r/s","key":"header:X-API-Key"},
                      {"zone":"b","rate":"1r/s","key":"{http_x_tenant}:{host}","path":"^/api/"},
                      {"zone":"c","rate":"1r/s","key":"global","methods":["POST"]}]}"#,
    );
    assert_eq!(
        by_headers.request_headers(),
        HeaderFilter::only(["x-api-key", "x-tenant"])
    );
}

/// A kind of request: method, path, headers.
type Kind = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static [u8])],
);

/// Requests that meet the documented limits' filters and keys, each kind
/// from its own client, sent often enough to be delayed and rejected.
fn request_sequence() -> Vec<RequestHead> {
    let kinds: [Kind; 6] = [
        ("GET", "/", &[]),
        ("POST", "/user/login", &[]),
        ("GET", "/v1/items", &[("x-api-key", b"k1")]),
        ("GET", "/api/items", &[("x-api-key", b"k2")]),
        ("POST", "/checkout/pay", &[]),
        ("DELETE", "/admin", &[("x-tenant", b"t")]),
    ];
    let mut out = Vec::new();
    for (i, (method, path, headers)) in kinds.into_iter().enumerate() {
        let mut req = request(path, headers);
        req.method = tailgate_plugin_sdk::Method::from_name(method);
        req.client_ip = std::net::IpAddr::from([198, 51, 100, i as u8]);
        out.extend(std::iter::repeat_n(req, 25));
    }
    out
}

/// What the policy does with the sequence (answers, host calls, logs), each field outside `fields` and each header field outside
/// the declared filter left out the way the host leaves it out.
fn run(policy: &RateLimitPolicy, fields: RequestFieldSet) -> String {
    let host = FrozenHost::default();
    let headers = policy.request_headers();
    let answers: Vec<RequestAction> = request_sequence()
        .iter()
        .map(|full| policy.on_request(&narrowed_request(full, fields, &headers), &host))
        .collect();
    format!(
        "{answers:?}\n{:?}\n{:?}",
        host.checks.borrow(),
        host.logs.borrow()
    )
}

/// The hook does the same from only the declared fields as from all
/// of them, and every declared field changes what it does.
fn assert_reads_only_what_it_declares(policy: &RateLimitPolicy, json: &str) {
    assert_reads_exactly(
        policy.request_fields(),
        RequestFieldSet::all(),
        |fields| run(policy, fields),
        json,
    );
}

#[test]
fn the_host_is_asked_only_for_the_fields_the_limits_read() {
    // The log lines name none: the host adds the request to them.
    let cases = [
        (
            // The client address always comes.
            r#"{"limits":[{"zone":"ip","rate":"1r/s"}]}"#,
            RequestFieldSet::empty(),
        ),
        (
            r#"{"limits":[{"zone":"g","rate":"1r/s","key":"global"}]}"#,
            RequestFieldSet::empty(),
        ),
        (
            r#"{"limits":[{"zone":"a","rate":"1r/s","key":"header:x-api-key","path":"^/api/"}]}"#,
            RequestFieldSet::PATH,
        ),
        (
            r#"{"limits":[{"zone":"t","rate":"1r/s","key":"{http_x_tenant}:{scheme}:{route}"},
                          {"zone":"q","rate":"1r/s","key":"{query}","methods":["DELETE"]}]}"#,
            // (The method and the scheme always come.)
            RequestFieldSet::ROUTE | RequestFieldSet::QUERY,
        ),
        (
            r#"{"limits":[{"zone":"u","rate":"1r/s","key":"{uri}"}]}"#,
            RequestFieldSet::PATH | RequestFieldSet::QUERY,
        ),
    ];
    for (json, expected) in cases {
        let policy = policy(json);
        assert_eq!(policy.request_fields(), expected, "{json}");
        assert_reads_only_what_it_declares(&policy, json);
    }
}

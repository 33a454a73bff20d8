//! Config parsing and validation, natively (the hooks call the host; the
//! harness tests in `tests/harness.rs` run them on the real one).

use tailgate_plugin_sdk::testing::{
    documented_configs, plugin_configs, repo_file, request_with_headers,
};

use super::*;

fn request(path: &str, headers: &[(&str, &[u8])]) -> RequestHead {
    request_with_headers("POST", path, headers)
}

fn policy(json: &str) -> BanPolicy {
    BanPolicy::from_config(&Config::new(json)).unwrap_or_else(|err| panic!("{json}: {err}"))
}

fn refused(json: &str) -> String {
    BanPolicy::from_config(&Config::new(json))
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn defaults_are_fail2bans_with_the_stacks_answer() {
    let p = policy(r#"{"jails":[{"name":"login"}]}"#);
    let jail = &p.jails[0];
    assert_eq!(jail.max_retry, 5);
    assert_eq!(jail.find_time_ms, 600_000);
    assert_eq!(jail.ban_time_ms, 3_600_000);
    assert_eq!((jail.increment_factor, jail.max_ban_ms), (1.0, 0));
    assert!(!jail.dry_run);
    assert!(jail.fails(401) && jail.fails(403) && !jail.fails(404));
    assert_eq!(
        jail.action,
        Action::Status {
            status: 403,
            body: "Temporarily blocked. Try again later.\n".to_owned()
        }
    );
    assert_eq!(jail.key(&request("/", &[])).as_deref(), Some("203.0.113.7"));
    assert_eq!(p.request_headers(), HeaderFilter::none());
    assert_eq!(p.request_fields(), RequestFieldSet::empty());
}

#[test]
fn every_setting_is_read() {
    let p = policy(
        r#"{"jails":[{"name":"api","statuses":[401],"path":"^/v1/","methods":["post"],
            "max_retry":3,"find_time":"30s","ban_time":"500ms",
            "ban_time_increment":{"factor":3.0,"max":"1w"},"key":"header:X-Api-Key",
            "ignore":["10.0.0.0/8","::1"],"dry_run":true,"action":"close"}]}"#,
    );
    let jail = &p.jails[0];
    assert_eq!(
        (jail.max_retry, jail.find_time_ms, jail.ban_time_ms),
        (3, 30_000, 500)
    );
    assert_eq!(
        (jail.increment_factor, jail.max_ban_ms),
        (3.0, 7 * 24 * 3_600_000)
    );
    assert!(jail.dry_run);
    assert_eq!(jail.action, Action::Close);
    assert!(jail.ignores("10.2.3.4".parse().expect("ip")));
    assert!(jail.ignores("::1".parse().expect("ip")));
    assert!(!jail.ignores("203.0.113.7".parse().expect("ip")));
    assert_eq!(p.request_headers(), HeaderFilter::only(["x-api-key"]));
    assert_eq!(p.request_fields(), RequestFieldSet::PATH);
    let mut req = request("/v1/items", &[]);
    assert!(jail.watches(&req));
    req.method = tailgate_plugin_sdk::Method::Get;
    assert!(!jail.watches(&req), "GET is not watched");
    req.method = tailgate_plugin_sdk::Method::Post;
    req.path = "/v2/items".into();
    assert!(!jail.watches(&req));
    // An increment without a factor doubles, without a max grows unbounded.
    let p = policy(r#"{"jails":[{"name":"a","ban_time_increment":{}}]}"#);
    assert_eq!(
        (p.jails[0].increment_factor, p.jails[0].max_ban_ms),
        (2.0, 0)
    );
}

#[test]
fn a_jail_takes_its_shared_definition_then_the_defaults() {
    let p = policy(
        r#"{"defaults":{"max_retry":7,"ignore":["127.0.0.1"],"status":429},
            "shared_jails":{"auth":{"path":"^/user/","ban_time":"2h","max_retry":4}},
            "jails":[{"name":"auth","ban_time":"3h"},{"name":"other"}]}"#,
    );
    let (auth, other) = (&p.jails[0], &p.jails[1]);
    assert_eq!((auth.max_retry, auth.ban_time_ms), (4, 3 * 3_600_000));
    assert!(auth.watches(&request("/user/login", &[])));
    assert!(auth.ignores("127.0.0.1".parse().expect("ip")));
    assert_eq!(other.max_retry, 7);
    assert!(matches!(other.action, Action::Status { status: 429, .. }));
}

#[test]
fn mistakes_name_the_key_where_they_were_written() {
    let cases = [
        (r#"{}"#, "jails: give at least one jail"),
        (r#"{"jails":[{}]}"#, "jails[0].name: required"),
        (
            r#"{"jails":[{"name":"a b"}]}"#,
            "jails[0].name: `a b`: use letters",
        ),
        (
            r#"{"jails":[{"name":"a"},{"name":"a"}]}"#,
            "jails[1].name: `a` is already jails[0]",
        ),
        (
            r#"{"jails":[{"name":"a","statuses":[]}]}"#,
            "jails[0].statuses: must not be empty",
        ),
        (
            r#"{"jails":[{"name":"a","statuses":[40]}]}"#,
            "jails[0].statuses: 40 is not an HTTP status",
        ),
        (
            r#"{"jails":[{"name":"a","path":"("}]}"#,
            "jails[0].path: regex parse error",
        ),
        (
            r#"{"jails":[{"name":"a","methods":["PO ST"]}]}"#,
            "jails[0].methods[0]: `PO ST` is not a valid HTTP method",
        ),
        (
            r#"{"jails":[{"name":"a","max_retry":0}]}"#,
            "jails[0].max_retry: 0: give 1 to 1024",
        ),
        (
            r#"{"jails":[{"name":"a","max_retry":1025}]}"#,
            "jails[0].max_retry: 1025: give 1 to 1024",
        ),
        (
            r#"{"jails":[{"name":"a","find_time":"10"}]}"#,
            "jails[0].find_time: invalid duration \"10\"",
        ),
        (
            r#"{"jails":[{"name":"a","ban_time":"0s"}]}"#,
            "jails[0].ban_time: invalid duration \"0s\": must be greater than zero",
        ),
        (
            r#"{"jails":[{"name":"a","ban_time_increment":{"factor":0.5}}]}"#,
            "jails[0].ban_time_increment.factor: 0.5: give a number from 1.0",
        ),
        (
            r#"{"jails":[{"name":"a","ban_time":"2h","ban_time_increment":{"max":"1h"}}]}"#,
            "jails[0].ban_time_increment.max: \"1h\" is shorter than ban_time",
        ),
        (
            r#"{"jails":[{"name":"a","ban_time_increment":{"maximum":"1h"}}]}"#,
            "unknown field `maximum`",
        ),
        (
            r#"{"jails":[{"name":"a","key":"ip"}]}"#,
            "jails[0].key: `ip` is not a key",
        ),
        (
            r#"{"jails":[{"name":"a","key":"global"}]}"#,
            "jails[0].key: \"global\" would ban every client",
        ),
        (
            r#"{"jails":[{"name":"a","ignore":["10.0.0.0/40"]}]}"#,
            "jails[0].ignore[0]: `10.0.0.0/40`: the prefix length must be 0 to 32",
        ),
        (
            r#"{"jails":[{"name":"a","action":"drop"}]}"#,
            "unknown variant `drop`, expected `status` or `close`",
        ),
        (
            r#"{"jails":[{"name":"a","action":"close","status":403}]}"#,
            "jails[0].status: action = \"close\" sends no answer",
        ),
        (
            r#"{"jails":[{"name":"a","status":444}]}"#,
            "jails[0].status: 444 is not sent: write action = \"close\"",
        ),
        (
            r#"{"jails":[{"name":"a","status":200}]}"#,
            "jails[0].status: 200 is not an error status",
        ),
        (
            r#"{"jails":[{"name":"a","max_retries":3}]}"#,
            "unknown field `max_retries`",
        ),
        (
            r#"{"defaults":{"name":"x"},"jails":[{"name":"a"}]}"#,
            "defaults.name: a name belongs to each jail",
        ),
        (
            r#"{"shared_jails":{"s":{"name":"s"}},"jails":[{"name":"a"}]}"#,
            "shared_jails.s.name: the table's key is the jail's name",
        ),
        (
            r#"{"shared_jails":{"s":{"max_retry":0}},"jails":[{"name":"s"}]}"#,
            "shared_jails.s.max_retry: 0: give 1 to 1024",
        ),
        (
            r#"{"defaults":{"find_time":"1y"},"jails":[{"name":"a"}]}"#,
            "defaults.find_time: invalid duration \"1y\"",
        ),
    ];
    for (json, want) in cases {
        let got = refused(json);
        assert!(got.contains(want), "{json}:\n  got  {got}\n  want {want}");
    }
    let many: Vec<String> = (0..=MAX_JAILS)
        .map(|i| format!(r#"{{"name":"j{i}"}}"#))
        .collect();
    assert_eq!(
        refused(&format!(r#"{{"jails":[{}]}}"#, many.join(","))),
        "jails: 17 jails; at most 16 per route"
    );
}

#[test]
fn every_config_the_docs_and_the_fly_config_show_is_accepted() {
    let docs = documented_configs(&repo_file(env!("CARGO_MANIFEST_DIR"), "docs/ban.md"), "ban");
    assert!(
        docs.len() >= 3,
        "docs/ban.md shows {} ban configs",
        docs.len()
    );
    let fly = plugin_configs(
        &repo_file(env!("CARGO_MANIFEST_DIR"), "fly/config.toml"),
        "ban",
    );
    assert_eq!(fly.len(), 1, "fly/config.toml has the forge's jail");
    for json in docs.iter().chain(&fly) {
        policy(json);
    }
}

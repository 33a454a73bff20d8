//! The ban plugin through the real binary: failures answered by a real
//! upstream ban the client, whose next request is refused before the
//! upstream while other clients pass (and only a banned client's requests
//! enter the plugin's request hook, and only failures its log hook); a
//! parallel burst of failures bans once; the ban shows in `GET /bans` and
//! `DELETE` lifts it; the plugin and log-shape on one route both do their
//! job; 10,000 attacking keys do not
//! push a ban out; a ban survives `kill -9` and a restart; with short
//! times on the real clock, the window slides, a ban ends on time, a
//! repeat offender is banned longer, and ignored networks are never banned.
//!
//! The test upstream answers `/status/N` with status N, so the jails watch
//! `^/status/40[13]$` (standing in for the forge's `/user/login`). Clients
//! are told apart by `Fly-Client-IP`, believed from the loopback peer.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tailgate_e2e::client::{get_with, send, Reply};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config, eventually, plugin_wasm};

const ATTACKER: &str = "198.51.100.1";
const OTHER: &str = "198.51.100.2";
const FAILURE: &str = "/status/401";
const LOGIN_JAIL: &str = r#"jails = [{ name = "login", statuses = [401, 403], path = "^/status/40[13]$", max_retry = 5, find_time = "10m", ban_time = "1h" }]"#;

/// Route `app` with the ban plugin configured by `ban_config` (TOML lines
/// of `[routes.plugins.config]`) and then `more` (further plugin tables);
/// the ban list kept in `state`, with `state_extra` under `[state]`.
fn config(
    up: &TestUpstream,
    state: &Path,
    state_extra: &str,
    ban_config: &str,
    more: &str,
) -> String {
    format!(
        r#"{base}ban = "{ban}"

[state]
dir = "{state}"
{state_extra}
{app}
[[routes.plugins]]
plugin = "ban"
[routes.plugins.config]
{ban_config}
{more}"#,
        base = base_config(
            "client_ip_header = \"Fly-Client-IP\"\ntrusted_proxies = [\"127.0.0.0/8\"]"
        ),
        ban = plugin_wasm("ban").display(),
        state = state.display(),
        app = app_route(&up.url()),
    )
}

async fn from(tg: &Tailgate, ip: &str, path: &str) -> Reply {
    get_with(tg.addr(), "app.test", path, &[("Fly-Client-IP", ip)]).await
}

async fn admin(tg: &Tailgate, method: Method, path: &str) -> (u16, String) {
    let reply = send(tg.admin_addr(), method, "admin", path, &[], Bytes::new())
        .await
        .expect("admin call");
    (reply.status.as_u16(), reply.text())
}

async fn bans(tg: &Tailgate) -> Vec<serde_json::Value> {
    let (status, body) = admin(tg, Method::GET, "/bans").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("bans json")
}

/// Waits until `key` is banned in `jail` (the log phase that bans runs as
/// the exchange ends, a moment after the client has its answer).
async fn wait_banned(tg: &Tailgate, jail: &str, key: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let listed = bans(tg).await;
        if let Some(ban) = listed.iter().find(|b| b["jail"] == jail && b["key"] == key) {
            return ban.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never banned in {jail}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn fail_times(tg: &Tailgate, ip: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(from(tg, ip, FAILURE).await.status, 401);
    }
}

async fn metric(tg: &Tailgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&scrape(tg.admin_addr()).await, name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_block_the_client_before_the_upstream_and_others_pass() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-five");
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", LOGIN_JAIL, ""));
    fail_times(&tg, ATTACKER, 4).await;
    assert!(bans(&tg).await.is_empty(), "four failures do not ban");
    fail_times(&tg, ATTACKER, 1).await;
    let ban = wait_banned(&tg, "login", ATTACKER).await;
    assert_eq!(ban["failures"], 5);

    let served = up.requests();
    for path in [FAILURE, "/anything"] {
        let blocked = from(&tg, ATTACKER, path).await;
        assert_eq!(blocked.status, 403);
        assert_eq!(blocked.text(), "Temporarily blocked. Try again later.\n");
        let retry: u64 = blocked
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((3_590..=3_600).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        up.requests(),
        served,
        "a banned client never reaches the upstream"
    );

    assert_eq!(from(&tg, OTHER, "/anything").await.status, 200);
    assert_eq!(from(&tg, OTHER, FAILURE).await.status, 401);
    assert_eq!(up.requests(), served + 2, "another client passes");

    let labels = [("jail", "login")];
    assert_eq!(metric(&tg, "tailgate_plugin_bans", &labels).await, 1.0);
    assert_eq!(
        metric(&tg, "tailgate_plugin_ban_blocked", &labels).await,
        2.0
    );
    assert_eq!(metric(&tg, "tailgate_bans_active", &labels).await, 1.0);
    // The host looks the client up in the jail itself (a request check):
    // the plugin's request hook was entered only for the two blocked
    // requests, not for the nine that passed.
    let request_calls = [("plugin", "ban"), ("hook", "request")];
    assert_eq!(
        metric(&tg, "tailgate_plugin_calls_total", &request_calls).await,
        2.0
    );
    let warning = tg.stderr.wait_for(Duration::from_secs(5), |l| {
        l.contains("banned 198.51.100.1 in jail") && l.contains("5 failures within 10m, for 1h")
    });
    assert!(warning.is_some(), "{}", tg.stderr.snapshot().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_statuses_a_jail_counts_enter_the_log_hook() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-log-gate");
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", LOGIN_JAIL, ""));
    // Twenty successes, then one failure: the log thread takes the records
    // in order, so once the failure's call is counted every success's
    // record has been through the log phase too, and none entered the
    // plugin's log hook (its log gate is the jail's 401 and 403).
    for _ in 0..20 {
        assert_eq!(from(&tg, OTHER, "/anything").await.status, 200);
    }
    assert_eq!(from(&tg, OTHER, FAILURE).await.status, 401);
    let log_calls = [("plugin", "ban"), ("hook", "log")];
    let counted = eventually(Duration::from_secs(5), || async {
        metric(&tg, "tailgate_plugin_calls_total", &log_calls).await >= 1.0
    })
    .await;
    assert!(counted, "the failure entered the log hook");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&tg, "tailgate_plugin_calls_total", &log_calls).await,
        1.0,
        "only the failure's record entered the log hook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_of_failures_bans_once() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-burst");
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", LOGIN_JAIL, ""));
    let addr = tg.addr();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                get_with(addr, "app.test", FAILURE, &[("Fly-Client-IP", ATTACKER)])
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("request"));
    }
    let failed = statuses.iter().filter(|s| **s == 401).count();
    let blocked = statuses.iter().filter(|s| **s == 403).count();
    assert_eq!(failed + blocked, 40, "{statuses:?}");
    assert!(failed >= 5, "{statuses:?}");
    assert_eq!(
        up.requests(),
        failed as u64,
        "blocked requests never reach the upstream"
    );

    wait_banned(&tg, "login", ATTACKER).await;
    // Failures still in flight when the ban came are logged after it:
    // give them time, then there is still one ban, one count, one line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bans(&tg).await.len(), 1);
    let labels = [("jail", "login")];
    assert_eq!(metric(&tg, "tailgate_plugin_bans", &labels).await, 1.0);
    assert_eq!(metric(&tg, "tailgate_bans_total", &labels).await, 1.0);
    let lines = tg
        .stderr
        .snapshot()
        .into_iter()
        .filter(|l| l.contains("banned 198.51.100.1 in jail"))
        .count();
    assert_eq!(lines, 1, "{}", tg.stderr.snapshot().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ban_is_listed_and_delete_lifts_it() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-admin");
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", LOGIN_JAIL, ""));
    fail_times(&tg, ATTACKER, 5).await;
    let ban = wait_banned(&tg, "login", ATTACKER).await;
    assert_eq!(ban["offences"], 1);
    assert!(
        ban["remaining_seconds"].as_u64().is_some_and(|s| s > 3_500),
        "{ban}"
    );
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 403);

    let (status, body) = admin(&tg, Method::DELETE, "/bans/login/198.51.100.1").await;
    assert_eq!(status, 204, "{body}");
    assert!(bans(&tg).await.is_empty());
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_and_log_shape_on_one_route_both_work() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-shape");
    let shape = r#"
[[routes.plugins]]
plugin = "log-shape"
[routes.plugins.config]
fields = ["request_uri", "status", "client_ip", "var:ban", "var:ban_jail"]
"#;
    let tg = Tailgate::start(&config(
        &up,
        &dir.path().join("state"),
        "",
        LOGIN_JAIL,
        shape,
    ));
    fail_times(&tg, ATTACKER, 5).await;
    wait_banned(&tg, "login", ATTACKER).await;
    assert_eq!(from(&tg, ATTACKER, "/after").await.status, 403);

    // The shaped line of each failure is written (the ban's log hook keeps
    // the line, log-shape's shapes it) ...
    let failures = eventually(Duration::from_secs(5), || async {
        tg.access_log()
            .iter()
            .filter(|l| l["request_uri"] == FAILURE && l["status"] == 401)
            .count()
            == 5
    })
    .await;
    assert!(failures, "{:?}", tg.access_log());
    // ... and the blocked request's too, with the ban's vars.
    let blocked = tg.wait_log("request_uri", "/after");
    assert_eq!(blocked["status"], 403);
    assert_eq!(blocked["client_ip"], ATTACKER);
    assert_eq!(blocked["var:ban"], "BLOCKED");
    assert_eq!(blocked["var:ban_jail"], "login");
    // Only log-shape's lines: no default line beside them.
    assert!(tg
        .access_log()
        .iter()
        .all(|l| l.get("request_method").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_attacking_keys_do_not_evict_a_ban() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-flood");
    let jail = r#"jails = [{ name = "users", key = "header:x-user", statuses = [401], max_retry = 5, find_time = "10m", ban_time = "1h" }]"#;
    let tg = Tailgate::start(&config(
        &up,
        &dir.path().join("state"),
        "max_windows = 100\nmax_bans = 1000",
        jail,
        "",
    ));
    let addr = tg.addr();
    let user = |name: String| async move {
        get_with(addr, "app.test", FAILURE, &[("x-user", name.as_str())])
            .await
            .status
            .as_u16()
    };
    for _ in 0..5 {
        assert_eq!(user("victim".to_owned()).await, 401);
    }
    wait_banned(&tg, "users", "victim").await;

    // 10,000 distinct keys failing once each: every new key takes a
    // window, so the 100 windows are churned ~9,900 times.
    for chunk in 0..(10_000 / 50) {
        let tasks: Vec<_> = (0..50)
            .map(|i| tokio::spawn(user(format!("attacker-{}", chunk * 50 + i))))
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("request"), 401);
        }
    }
    let evicted = eventually(Duration::from_secs(10), || async {
        metric(
            &tg,
            "tailgate_state_evictions_total",
            &[("store", "windows")],
        )
        .await
            >= 9_000.0
    })
    .await;
    assert!(evicted, "the windows were churned");
    assert_eq!(user("victim".to_owned()).await, 403, "the ban holds");
    let listed = bans(&tg).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        metric(&tg, "tailgate_state_evictions_total", &[("store", "bans")]).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_survives_kill_9_and_a_restart() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-kill");
    let state = dir.path().join("state");
    let config = config(&up, &state, "", LOGIN_JAIL, "");
    let tg = Tailgate::start(&config);
    fail_times(&tg, ATTACKER, 5).await;
    wait_banned(&tg, "login", ATTACKER).await;
    tg.kill_9_once_written(&state.join("bans.json"), ATTACKER)
        .await;

    let tg = Tailgate::start(&config);
    let served = up.requests();
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 403);
    assert_eq!(up.requests(), served);
    assert_eq!(from(&tg, OTHER, "/").await.status, 200);
    let listed = bans(&tg).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["failures"], 5);
}

/// A jail with short times, so the real clock can be waited out.
fn short_jail(find_time: &str, ban_time: &str, extra: &str) -> String {
    format!(
        r#"jails = [{{ name = "login", statuses = [401], path = "^/status/401$", max_retry = 3, find_time = "{find_time}", ban_time = "{ban_time}"{extra} }}]"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_slides_and_a_ban_ends_on_time() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-window");
    let jail = short_jail("1500ms", "2s", "");
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", &jail, ""));
    // Two failures, then a third after the first two have left the 1.5 s
    // window: a sliding count never reaches 3.
    fail_times(&tg, ATTACKER, 2).await;
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    fail_times(&tg, ATTACKER, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        bans(&tg).await.is_empty(),
        "failures 1.7 s apart in a 1.5 s window ban"
    );
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 200);
    // Three within the window ban; the ban ends after ban_time.
    fail_times(&tg, ATTACKER, 2).await;
    let ban = wait_banned(&tg, "login", ATTACKER).await;
    let length = ban["expires_unix_ms"].as_u64().expect("expires")
        - ban["since_unix_ms"].as_u64().expect("since");
    assert_eq!(length, 2_000, "{ban}");
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 403);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 200, "the ban ended");
    assert!(bans(&tg).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_offender_is_banned_longer() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-increment");
    let jail = short_jail(
        "10m",
        "1s",
        r#", ban_time_increment = { factor = 3.0, max = "1h" }"#,
    );
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", &jail, ""));
    let length = |ban: &serde_json::Value| {
        ban["expires_unix_ms"].as_u64().expect("expires")
            - ban["since_unix_ms"].as_u64().expect("since")
    };
    fail_times(&tg, ATTACKER, 3).await;
    let first = wait_banned(&tg, "login", ATTACKER).await;
    assert_eq!(
        (length(&first), first["offences"].as_u64()),
        (1_000, Some(1))
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    fail_times(&tg, ATTACKER, 3).await;
    let second = wait_banned(&tg, "login", ATTACKER).await;
    assert_eq!(
        (length(&second), second["offences"].as_u64()),
        (3_000, Some(2)),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_network_is_never_banned() {
    let up = TestUpstream::start();
    let dir = TempDir::new("ban-ignore");
    let jail = short_jail("10m", "1h", r#", ignore = ["198.51.100.0/24"]"#);
    let tg = Tailgate::start(&config(&up, &dir.path().join("state"), "", &jail, ""));
    fail_times(&tg, ATTACKER, 6).await;
    fail_times(&tg, "203.0.113.9", 3).await;
    wait_banned(&tg, "login", "203.0.113.9").await;
    let listed = bans(&tg).await;
    assert_eq!(
        listed.len(),
        1,
        "only the address outside the network: {listed:?}"
    );
    assert_eq!(from(&tg, ATTACKER, "/").await.status, 200);
}

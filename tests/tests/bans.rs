//! The ban list through the real binary: the admin API (`GET`/`POST
//! /bans`, `DELETE /bans/JAIL/KEY`) and `tailgate bans`; bans kept in
//! `[state] dir`'s `bans.json` survive a `kill -9` and a restart, and an
//! expired one is dropped when the file is loaded.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use tailgate_e2e::app_route;
use tailgate_e2e::client::send;
use tailgate_e2e::process::{tailgate_bin, test_cache_dir, Tailgate, TempDir};

/// A config without plugins whose state lives in `state_dir`.
fn config(state_dir: &Path) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
workers = 1

[admin]
listen = "127.0.0.1:0"

[plugin_runtime]
cache_dir = "{cache}"

[state]
dir = "{state}"
{app}"#,
        cache = test_cache_dir().display(),
        state = state_dir.display(),
        app = app_route("http://127.0.0.1:9"),
    )
}

async fn admin(tg: &Tailgate, method: Method, path: &str, body: &str) -> (u16, String) {
    let reply = send(
        tg.admin_addr(),
        method,
        "admin",
        path,
        &[],
        Bytes::from(body.to_owned()),
    )
    .await
    .expect("admin call");
    (reply.status.as_u16(), reply.text())
}

async fn listed(tg: &Tailgate) -> Vec<serde_json::Value> {
    let (status, body) = admin(tg, Method::GET, "/bans", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("bans json")
}

fn keys(bans: &[serde_json::Value]) -> Vec<String> {
    bans.iter()
        .map(|b| {
            format!(
                "{}/{}",
                b["jail"].as_str().unwrap_or(""),
                b["key"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// `tailgate bans --admin ADDR ARGS...`: (success, stdout, stderr).
fn cli(tg: &Tailgate, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tailgate_bin())
        .arg("bans")
        .arg("--admin")
        .arg(tg.admin_addr().to_string())
        .args(args)
        .output()
        .expect("run tailgate bans");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_bans_and_lifts_them() {
    let dir = TempDir::new("bans-api");
    let tg = Tailgate::start(&config(&dir.path().join("state")));
    assert!(listed(&tg).await.is_empty());

    let order = r#"{"jail": "ssh", "key": "192.0.2.7", "duration": "1h", "reason": "e2e"}"#;
    let (status, body) = admin(&tg, Method::POST, "/bans", order).await;
    assert_eq!(status, 201, "{body}");
    let ban: serde_json::Value = serde_json::from_str(&body).expect("ban");
    assert_eq!(ban["offences"], 1);
    let remaining = ban["remaining_seconds"].as_u64().expect("remaining");
    assert!((3_590..=3_600).contains(&remaining), "{ban}");
    assert!(
        ban["expires"].as_str().expect("expires").ends_with('Z'),
        "{ban}"
    );
    assert_eq!(admin(&tg, Method::POST, "/bans", order).await.0, 409);

    let (status, body) = admin(
        &tg,
        Method::POST,
        "/bans",
        r#"{"jail": "web", "key": "a b/c", "duration": 60}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(keys(&listed(&tg).await), ["ssh/192.0.2.7", "web/a b/c"]);

    assert_eq!(
        admin(&tg, Method::DELETE, "/bans/web/a%20b%2Fc", "")
            .await
            .0,
        204
    );
    assert_eq!(
        admin(&tg, Method::DELETE, "/bans/web/a%20b%2Fc", "")
            .await
            .0,
        404
    );
    assert_eq!(keys(&listed(&tg).await), ["ssh/192.0.2.7"]);
    let (status, _) = admin(&tg, Method::POST, "/bans", r#"{"jail": "ssh"}"#).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_bans_lists_and_unbans() {
    let dir = TempDir::new("bans-cli");
    let tg = Tailgate::start(&config(&dir.path().join("state")));

    let (ok, out, err) = cli(&tg, &["ban", "ssh", "2001:db8::1", "--duration", "30m"]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("banned 2001:db8::1 in ssh until "), "{out}");
    let (ok, _, err) = cli(&tg, &["ban", "ssh", "2001:db8::1", "--duration", "30m"]);
    assert!(!ok);
    assert!(err.contains("banned in ssh already"), "{err}");

    let (ok, out, err) = cli(&tg, &["list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("JAIL  KEY"), "{out}");
    assert!(lines[1].starts_with("ssh   2001:db8::1"), "{out}");
    assert!(
        lines[1].contains("29m") || lines[1].contains("30m"),
        "{out}"
    );
    let (ok, out, _) = cli(&tg, &["list", "--json"]);
    assert!(ok);
    let json: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(keys(&json), ["ssh/2001:db8::1"]);

    let (ok, out, err) = cli(&tg, &["unban", "ssh", "2001:db8::1"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = cli(&tg, &["unban", "ssh", "2001:db8::1"]);
    assert!(!ok);
    assert!(err.contains("no active ban"), "{err}");
    let (ok, out, _) = cli(&tg, &["list"]);
    assert!(ok);
    assert_eq!(out, "no active bans\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_survive_kill_9_and_a_restart() {
    let dir = TempDir::new("bans-kill");
    let state = dir.path().join("state");
    let tg = Tailgate::start(&config(&state));
    let order = r#"{"jail": "ssh", "key": "198.51.100.4", "duration": "2h"}"#;
    assert_eq!(admin(&tg, Method::POST, "/bans", order).await.0, 201);
    tg.kill_9_once_written(&state.join("bans.json"), "198.51.100.4")
        .await;

    let tg = Tailgate::start(&config(&state));
    let bans = listed(&tg).await;
    assert_eq!(keys(&bans), ["ssh/198.51.100.4"]);
    assert_eq!(bans[0]["offences"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ban_is_dropped_at_load() {
    let dir = TempDir::new("bans-expired");
    let state = dir.path().join("state");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ban = |key: &str, expires: u64| {
        serde_json::json!({
            "jail": "ssh", "key": key, "since_unix_ms": now - 7_200_000,
            "expires_unix_ms": expires, "failures": 3, "offences": 1,
        })
    };
    let file = serde_json::json!({
        "version": 1,
        "saved_unix_ms": now,
        "bans": [ban("gone", now - 1_000), ban("kept", now + 3_600_000)],
        "offences": [],
    });
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("bans.json"), file.to_string()).expect("bans.json");

    let tg = Tailgate::start(&config(&state));
    let bans = listed(&tg).await;
    assert_eq!(keys(&bans), ["ssh/kept"]);
    assert_eq!(bans[0]["failures"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_state_file_is_set_aside_with_a_warning() {
    let dir = TempDir::new("bans-broken");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("bans.json"), "{ not json").expect("bans.json");

    let tg = Tailgate::start(&config(&state));
    assert!(listed(&tg).await.is_empty());
    let warning = tg
        .stderr
        .wait_for(Duration::from_secs(5), |l| l.contains("moved it to"));
    assert!(warning.is_some(), "{}", tg.stderr.snapshot().join("\n"));
    let aside = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("bans.json.broken-")
        });
    assert!(aside);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_bans_and_says_state_caps_need_a_restart() {
    let dir = TempDir::new("bans-reload");
    let state = dir.path().join("state");
    let tg = Tailgate::start(&config(&state));
    let order = r#"{"jail": "ssh", "key": "203.0.113.9", "duration": "1h"}"#;
    assert_eq!(admin(&tg, Method::POST, "/bans", order).await.0, 201);

    let changed = config(&state).replace("[state]\n", "[state]\nmax_bans = 10\n");
    std::fs::write(&tg.config_path, changed).expect("rewrite config");
    let (status, answer) = tailgate_e2e::client::admin_reload(&tg).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["outcome"]["needs_restart"],
        serde_json::json!(["state.max_bans"]),
        "{answer}"
    );
    assert_eq!(keys(&listed(&tg).await), ["ssh/203.0.113.9"]);
}

//! Hot reload through the real binary: 50 reloads under continuous load
//! (no failed request, no response mixing two configs), rejected configs and
//! plugins (old config keeps serving; the error in `/reload`, in the log and
//! in `tailgate check`), a plugin file replaced on disk, rate-limit state
//! across an unrelated reload, `SIGHUP`, and listener changes that keep
//! open connections.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tailgate_e2e::client::{admin_reload, get, keep_alive_get, send, Reply};
use tailgate_e2e::process::{tailgate_bin, Tailgate};
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config, eventually};
use tokio::net::TcpStream;

/// Replace `path` the way editors save: write a new file, rename it over.
fn write_by_rename(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-save");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// A route to `upstream_url` whose header-rewrite plugin marks the request
/// (upstream sees `X-Config`) and the response (`X-Config`) with `tag`.
fn tagged_config(tag: &str, upstream_url: &str) -> String {
    base_config("")
        + &app_route(upstream_url)
        + &format!(
            r#"
[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
request.set = {{ "X-Config" = "{tag}" }}
response.set = {{ "X-Config" = "{tag}" }}
"#
        )
}

/// Which config produced a response, by each of its three marks: the
/// upstream it reached (the path prefix), the request hook's header and
/// the response hook's header. `None` when they disagree or one is missing.
fn config_of(reply: &Reply) -> Option<String> {
    let uri = reply.json()["uri"].as_str()?.to_string();
    let by_upstream = uri
        .trim_start_matches('/')
        .split('/')
        .next()?
        .to_uppercase();
    let by_request = reply.echoed_header("x-config")?;
    let by_response = reply.header("x-config")?;
    (by_upstream == by_request && by_request == by_response).then_some(by_request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_reloads_under_load_fail_nothing_and_never_mix_two_configs() {
    let (up_a, up_b) = (TestUpstream::start(), TestUpstream::start());
    let config_a = tagged_config("A", &format!("{}/a", up_a.url()));
    let config_b = tagged_config("B", &format!("{}/b", up_b.url()));
    let tg = Tailgate::start(&config_a);
    let addr = tg.addr();

    let stop = Arc::new(AtomicBool::new(false));
    let (seen_a, seen_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..4u64 {
        let (stop, seen_a, seen_b) = (stop.clone(), seen_a.clone(), seen_b.clone());
        clients.spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0u64;
            // Bounded: the reload loop below ends in well under a minute.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                // Requests of 0-40 ms, so many are in flight across a swap.
                let path = format!("/load?delay_ms={}", (n * 7 + client * 13) % 41);
                n += 1;
                match send(addr, Method::GET, "app.test", &path, &[], Bytes::new()).await {
                    Ok(reply) if reply.status == 200 => match config_of(&reply).as_deref() {
                        Some("A") => seen_a.fetch_add(1, Ordering::SeqCst),
                        Some("B") => seen_b.fetch_add(1, Ordering::SeqCst),
                        _ => {
                            failures.push(format!(
                                "mixed configs: {:?} {}",
                                reply.headers,
                                reply.text()
                            ));
                            0
                        }
                    },
                    Ok(reply) => {
                        failures.push(format!("status {}: {}", reply.status, reply.text()));
                        0
                    }
                    Err(e) => {
                        failures.push(format!("transport: {e}"));
                        0
                    }
                };
            }
            failures
        });
    }

    let mut generations = Vec::new();
    for i in 0..50 {
        let next = if i % 2 == 0 { &config_b } else { &config_a };
        write_by_rename(&tg.config_path, next.as_bytes());
        let (status, body) = admin_reload(&tg).await;
        assert_eq!(status, 200, "reload {i}: {body}");
        assert_eq!(body["status"], "ok", "reload {i}: {body}");
        generations.push(body["outcome"]["generation"].as_u64().expect("generation"));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    while let Some(done) = clients.join_next().await {
        failures.extend(done.expect("client task"));
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        generations.windows(2).all(|w| w[1] > w[0]),
        "{generations:?}"
    );
    let (a, b) = (seen_a.load(Ordering::SeqCst), seen_b.load(Ordering::SeqCst));
    assert!(
        a > 20 && b > 20,
        "both configs served under load: A {a}, B {b}"
    );
    // The last reload (i = 49) swapped config A in.
    let last = get(addr, "app.test", "/after").await;
    assert_eq!(config_of(&last).as_deref(), Some("A"));
}

/// `tailgate check PATH`: (success, stderr).
fn tailgate_check(path: &Path) -> (bool, String) {
    let out = std::process::Command::new(tailgate_bin())
        .arg("check")
        .arg(path)
        .output()
        .expect("run tailgate check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Write `config` and reload: the reload must be rejected (422) with the
/// same error `tailgate check` prints for the file. The `/reload` body.
async fn expect_rejected(tg: &Tailgate, config: &str) -> serde_json::Value {
    std::fs::write(&tg.config_path, config).expect("write");
    let (status, body) = admin_reload(tg).await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().expect("error text");
    let (ok, check) = tailgate_check(&tg.config_path);
    assert!(!ok);
    assert!(
        check.contains(error),
        "check says the same:\n{check}\nvs\n{error}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_and_trapping_plugins_are_rejected_and_the_old_config_serves_on() {
    let up = TestUpstream::start();
    let good = tagged_config("A", &format!("{}/a", up.url()));
    let tg = Tailgate::start(&good);
    let addr = tg.addr();
    assert_eq!(
        config_of(&get(addr, "app.test", "/").await).as_deref(),
        Some("A")
    );

    // 1. A config error: an unknown key in the route, with its position.
    let typo = good.replace("path = \"/\"\n", "path = \"/\"\npaht = \"/x\"\n");
    let body = expect_rejected(&tg, &typo).await;
    assert_eq!(body["status"], "error");
    let error = body["error"].as_str().expect("error text").to_string();
    let line = typo
        .lines()
        .position(|l| l.starts_with("paht"))
        .expect("line")
        + 1;
    assert!(
        error.contains(&format!("config.toml:{line}:1")) && error.contains("paht"),
        "{error}"
    );
    assert!(
        error.contains("route `app`") || error.contains("app"),
        "{error}"
    );
    assert_eq!(
        config_of(&get(addr, "app.test", "/").await).as_deref(),
        Some("A")
    );

    // 2. A plugin that traps while configuring.
    let trapping = good.clone()
        + r#"
[[routes]]
name = "trap"
hosts = ["trap.test"]
path = "/"
upstream = "app"
[[routes.plugins]]
plugin = "fault-injector"
[routes.plugins.config]
mode = "trap"
hook = "configure"
"#;
    let body = expect_rejected(&tg, &trapping).await;
    let error = body["error"].as_str().expect("error text").to_string();
    assert!(
        error.contains("loading plugins")
            && error.contains("fault-injector")
            && error.contains("trap"),
        "{error}"
    );
    assert!(
        body["failed_reloads"].as_u64().expect("count") >= 2,
        "{body}"
    );
    assert_eq!(
        config_of(&get(addr, "app.test", "/").await).as_deref(),
        Some("A")
    );
    assert_eq!(
        get(addr, "trap.test", "/").await.status,
        404,
        "the trap route never went live"
    );

    // Logged with the error text, too.
    assert!(tg
        .stderr
        .wait_for(Duration::from_secs(5), |l| l
            .contains("config reload rejected")
            && l.contains("fault-injector"))
        .is_some());

    // 3. The metric counts the rejections (on the admin API's /metrics).
    let metrics = send(
        tg.admin_addr(),
        Method::GET,
        "admin",
        "/metrics",
        &[],
        Bytes::new(),
    )
    .await
    .expect("GET /metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let rejected: f64 = metrics
        .text()
        .lines()
        .filter(|l| {
            l.starts_with("tailgate_config_reloads_total") && l.contains("outcome=\"error\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(rejected >= 2.0, "{}", metrics.text());

    // 4. Fixing the file makes the next reload succeed.
    std::fs::write(
        &tg.config_path,
        good.replace("\"A\"", "\"C\"").replace("/a\"", "/c\""),
    )
    .expect("write");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        config_of(&get(addr, "app.test", "/").await).as_deref(),
        Some("C")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_file_replaced_on_disk_takes_effect_without_a_restart() {
    let up = TestUpstream::start();
    let dir = tailgate_e2e::process::TempDir::new("plugin-swap");
    let plugin = dir.path().join("swappable.wasm");
    let header_rewrite = std::fs::read(tailgate_e2e::plugin_wasm("header_rewrite")).expect("read");
    let fault_injector = std::fs::read(tailgate_e2e::plugin_wasm("fault_injector")).expect("read");
    std::fs::write(&plugin, &header_rewrite).expect("write plugin");
    let config = base_config("")
        + &format!(
            r#"swappable = "{plugin}"

{app}[[routes.plugins]]
plugin = "swappable"
"#,
            plugin = plugin.display(),
            app = app_route(&up.url())
        );
    let mut tg = Tailgate::start(&config);
    let addr = tg.addr();
    // header-rewrite with no rules: the request goes up untouched.
    assert_eq!(
        get(addr, "app.test", "/")
            .await
            .echoed_header("x-fault-injector"),
        None
    );

    // Replace the file (as a deploy would); no reload is asked for.
    write_by_rename(&plugin, &fault_injector);
    let swapped = eventually(Duration::from_secs(20), || async {
        get(addr, "app.test", "/")
            .await
            .echoed_header("x-fault-injector")
            .as_deref()
            == Some("ok")
    })
    .await;
    assert!(
        swapped,
        "the new plugin never served; stderr:\n{}",
        tg.stderr.snapshot().join("\n")
    );
    assert!(tg.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_state_survives_an_unrelated_reload_from_a_config_saved_by_rename() {
    let up = TestUpstream::start();
    let limited = base_config("")
        + &format!(
            r#"
{app}[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
limits = [{{ zone = "per_ip", rate = "1r/m", burst = 2, nodelay = true }}]
"#,
            app = app_route(&up.url())
        );
    let tg = Tailgate::start(&limited);
    let addr = tg.addr();
    let statuses = |n| async move {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(get(addr, "app.test", "/").await.status.as_u16());
        }
        out
    };
    assert_eq!(statuses(4).await, vec![200, 200, 200, 429]);

    // An unrelated change: a second route. Saved by rename, picked up by
    // the file watcher.
    let with_other_route = limited.clone()
        + r#"
[[routes]]
name = "other"
hosts = ["other.test"]
path = "/"
upstream = "app"
"#;
    write_by_rename(&tg.config_path, with_other_route.as_bytes());
    let reloaded = eventually(Duration::from_secs(20), || async {
        get(addr, "other.test", "/").await.status == 200
    })
    .await;
    assert!(reloaded, "stderr:\n{}", tg.stderr.snapshot().join("\n"));
    // The bucket is the one from before the reload: still empty.
    assert_eq!(statuses(2).await, vec![429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&tagged_config("A", &format!("{}/a", up.url())));
    tg.signal("HUP");
    let line = tg
        .stderr
        .wait_for(Duration::from_secs(20), |l| l.contains("config reloaded"))
        .unwrap_or_else(|| panic!("stderr:\n{}", tg.stderr.snapshot().join("\n")));
    assert!(line.contains("sighup"), "{line}");
    assert_eq!(
        config_of(&get(tg.addr(), "app.test", "/").await).as_deref(),
        Some("A")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_changes_apply_without_dropping_connections_on_addresses_that_stay() {
    let up = TestUpstream::start();
    let config = tagged_config("A", &format!("{}/a", up.url()));
    let tg = Tailgate::start(&config);
    let first = tg.addr();
    let mut kept = TcpStream::connect(first).await.expect("connect");
    assert_eq!(keep_alive_get(&mut kept, "app.test").await, 200);

    // Add a second listener.
    let two = config.replacen(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]",
        1,
    );
    std::fs::write(&tg.config_path, &two).expect("write");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 200, "{body}");
    let added: Vec<SocketAddr> = body["outcome"]["listeners_added"]
        .as_array()
        .expect("listeners_added")
        .iter()
        .map(|a| {
            a.as_str()
                .expect("address")
                .parse()
                .expect("socket address")
        })
        .collect();
    assert_eq!(added.len(), 1, "{body}");
    let second = added[0];
    assert_eq!(get(second, "app.test", "/").await.status, 200);
    assert_eq!(
        keep_alive_get(&mut kept, "app.test").await,
        200,
        "kept across the reload"
    );

    // Remove it again: it refuses new connections, the first keeps serving
    // the connection opened before both reloads.
    std::fs::write(&tg.config_path, &config).expect("write");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["outcome"]["listeners_removed"][0],
        second.to_string(),
        "{body}"
    );
    assert!(
        TcpStream::connect(second).await.is_err(),
        "removed listener refuses"
    );
    assert_eq!(keep_alive_get(&mut kept, "app.test").await, 200);
    assert_eq!(get(first, "app.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_responses_survive_a_reload_and_purge_still_reaches_the_cache() {
    let up = TestUpstream::start();
    let cached = base_config("")
        + &format!(
            r#"
{app}cache = {{ key = "{{host}}{{path}}", valid = {{ 200 = "1h" }}, status_header = "X-Cache-Status" }}
"#,
            app = app_route(&up.url())
        );
    let tg = Tailgate::start(&cached);
    let addr = tg.addr();
    let status = |path: &'static str| async move {
        get(addr, "app.test", path)
            .await
            .header("x-cache-status")
            .unwrap_or_default()
    };
    assert_eq!(status("/page").await, "MISS");
    assert_eq!(status("/page").await, "HIT");

    let with_other_route = cached.clone()
        + r#"
[[routes]]
name = "other"
hosts = ["other.test"]
path = "/"
upstream = "app"
"#;
    std::fs::write(&tg.config_path, &with_other_route).expect("write");
    let (code, body) = admin_reload(&tg).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(addr, "other.test", "/").await.status, 200);
    assert_eq!(
        status("/page").await,
        "HIT",
        "the entry outlived the reload"
    );
    let upstream_hits = up.requests();

    // The admin purge acts on the cache the reloaded config serves from.
    let purge = send(
        tg.admin_addr(),
        Method::POST,
        "admin",
        "/cache/purge?all=true",
        &[],
        Bytes::new(),
    )
    .await
    .expect("POST /cache/purge");
    assert_eq!(purge.status, 200, "{}", purge.text());
    assert_eq!(status("/page").await, "MISS", "purged");
    assert_eq!(up.requests(), upstream_hits + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_seen_truncated_mid_save_is_not_loaded() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&tagged_config("A", &format!("{}/a", up.url())));
    // What a loaded machine can show the watcher between a save's truncate
    // and its write: an empty file, for longer than the settle time.
    std::fs::write(&tg.config_path, "").expect("truncate");
    tg.stderr
        .wait_for(Duration::from_secs(20), |l| {
            l.contains("config file is empty")
        })
        .unwrap_or_else(|| panic!("stderr:\n{}", tg.stderr.snapshot().join("\n")));
    assert_eq!(
        config_of(&get(tg.addr(), "app.test", "/").await).as_deref(),
        Some("A"),
        "an empty config was loaded: every route gone"
    );
    // The save's write comes next, and is loaded.
    std::fs::write(
        &tg.config_path,
        tagged_config("B", &format!("{}/b", up.url())),
    )
    .expect("write");
    let reloaded = eventually(Duration::from_secs(20), || async {
        config_of(&get(tg.addr(), "app.test", "/").await).as_deref() == Some("B")
    })
    .await;
    assert!(reloaded, "stderr:\n{}", tg.stderr.snapshot().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_reads_an_empty_config_file_is_refused() {
    // The file watcher's own look at the file is not enough: a save can
    // truncate it between that look and the reload's read (seen in CI: a
    // watcher reload read the next save's truncation, and served the
    // defaults until the next reload). So the reload itself refuses an
    // empty file, whoever started it.
    let up = TestUpstream::start();
    let tg = Tailgate::start(&tagged_config("A", &format!("{}/a", up.url())));
    std::fs::write(&tg.config_path, "\n").expect("truncate");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("the config file is empty"), "{body}");
    assert_eq!(
        config_of(&get(tg.addr(), "app.test", "/").await).as_deref(),
        Some("A"),
        "the running config serves on"
    );
}

//! The command line through the real binary: the default `config.toml` serves
//! the README's tour (cache, rate limit, header rewrite, shaped log line); `tailgate check` accepts a good
//! config and reports a bad one with file, line and column.

use std::process::Command;

use tailgate_e2e::client::get;
use tailgate_e2e::process::{tailgate_bin, test_cache_dir, Tailgate, TempDir};
use tailgate_e2e::repo_root;

/// The repository's default config, moved to a free port (its `origin`
/// upstream is Tailgate itself, so the listener's port and the upstream's
/// move together; the admin API's default port may be taken by a Tailgate
/// the user runs) and to absolute paths.
fn default_config_on_free_port() -> String {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("config.toml")).expect("read config.toml");
    assert!(
        !text.contains("[admin]"),
        "config.toml gained an [admin] section: move it to a free port here"
    );
    assert!(
        text.contains("url = \"http://127.0.0.1:8080\""),
        "config.toml's origin upstream is no longer Tailgate itself: update this test"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let text = text + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    text.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace(
            "cache_dir = \".tailgate/cache\"",
            &format!("cache_dir = \"{}\"", test_cache_dir().display()),
        )
        .replace("= \"plugins/", &format!("= \"{}/plugins/", root.display()))
        .replace(
            "static = \"www\"",
            &format!("static = \"{}/www\"", root.display()),
        )
        .replace("\"www/", &format!("\"{}/www/", root.display()))
}

/// The README's tour, through the real binary on the default config: the
/// cache, each of the three plugins, and the shaped access-log line.
#[tokio::test(flavor = "multi_thread")]
async fn default_config_serves_the_readme_tour() {
    for plugin in ["rate_limit", "header_rewrite", "log_shape"] {
        tailgate_e2e::plugin_wasm(plugin);
    }
    let tg = Tailgate::start(&default_config_on_free_port());
    let host = format!("127.0.0.1:{}", tg.addr().port());

    // The page from the origin, through the cache: MISS, then HIT.
    let r = get(tg.addr(), &host, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Tailgate is running"));
    assert_eq!(r.header("x-cache-status").as_deref(), Some("MISS"));
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(r.header("server").is_none());
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    let r = get(tg.addr(), &host, "/").await;
    assert_eq!(r.header("x-cache-status").as_deref(), Some("HIT"));

    // header-rewrite: the deny rule, and a redirect that keeps the port.
    assert_eq!(get(tg.addr(), &host, "/.env").await.status, 403);
    let r = get(tg.addr(), &host, "/old/index.html").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("http://{host}/index.html"))
    );
    assert_eq!(get(tg.addr(), &host, "/../Cargo.toml").await.status, 400);

    // The shaped line: nginx's fields plus the route and the limit outcome.
    let line = tg.wait_log("request_uri", "/.env");
    assert_eq!(line["route"], "site");
    assert_eq!(line["status"], 403);
    assert_eq!(line["limit_req_status"], "PASSED");
    assert_eq!(line["http_host"], host.as_str());
    assert!(line["request_id"].as_str().is_some_and(|id| !id.is_empty()));

    // rate-limit: 5 r/s with a burst of 10; a quick run of 15 gets 429s,
    // dressed in the route's page for 429, with Retry-After.
    let mut statuses = Vec::new();
    let mut rejection = None;
    for _ in 0..15 {
        let r = get(tg.addr(), &host, "/").await;
        statuses.push(r.status);
        if r.status == http::StatusCode::TOO_MANY_REQUESTS && rejection.is_none() {
            rejection = Some(r);
        }
    }
    let r = rejection.unwrap_or_else(|| panic!("no 429 after the burst: {statuses:?}"));
    assert!(r.text().contains("Too many requests"), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let rejected = tg.wait_log("limit_req_status", "REJECTED");
    assert_eq!(rejected["status"], 429);
    // The pages' own URLs are internal.
    assert_eq!(get(tg.addr(), &host, "/50x.html").await.status, 404);

    // A line no route took is shaped too (the nginx preset's fields).
    assert_eq!(get(tg.addr(), "nobody.test", "/").await.status, 404);
    let line = tg.wait_log("http_host", "nobody.test");
    assert_eq!(line["status"], 404);
    assert!(line.get("upstream_cache_status").is_some(), "{line}");
}

#[test]
fn check_accepts_the_default_config() {
    let dir = TempDir::new("check");
    let cfg = dir.write("config.toml", &default_config_on_free_port());
    let out = Command::new(tailgate_bin())
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("ok"), "{all}");
}

#[test]
fn check_reports_a_bad_config_with_its_location_and_exits_1() {
    let dir = TempDir::new("check");
    let bad = default_config_on_free_port()
        .replace("max_body_size = \"1MiB\"", "max_body_size = \"1 parsec\"");
    let cfg = dir.write("config.toml", &bad);
    let out = Command::new(tailgate_bin())
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let line = bad
        .lines()
        .position(|l| l.contains("1 parsec"))
        .expect("line")
        + 1;
    assert!(
        err.contains(&format!("config.toml:{line}:")),
        "error lacks file:line: {err}"
    );
    assert!(err.contains("site"), "error lacks the route name: {err}");

    // A plugin that rejects its route config fails the check too.
    let bad = default_config_on_free_port()
        .replace("response.always = true", "response.always = \"yes\"");
    let cfg = dir.write("config2.toml", &bad);
    let out = Command::new(tailgate_bin())
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("header-rewrite") && err.contains("site"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_shows_compile_progress_only_for_plugins_not_cached_yet() {
    let cache = TempDir::new("fresh-cache");
    let config = default_config_on_free_port().replace(
        &format!("cache_dir = \"{}\"", test_cache_dir().display()),
        &format!("cache_dir = \"{}\"", cache.path().display()),
    );
    let first = Tailgate::start(&config);
    let lines = first.stderr.snapshot();
    let compiling = lines
        .iter()
        .position(|l| l.contains("compiling plugin") && l.contains("header-rewrite"))
        .unwrap_or_else(|| panic!("no compile progress line:\n{}", lines.join("\n")));
    let listening = lines
        .iter()
        .position(|l| l.contains("listening on http://"))
        .expect("listening line");
    assert!(compiling < listening, "progress must come before serving");
    drop(first);

    // A restart loads the compiled plugin from the cache: no compiling.
    let second = Tailgate::start(&config);
    let lines = second.stderr.snapshot();
    assert!(
        !lines.iter().any(|l| l.contains("compiling plugin")),
        "a cached plugin was compiled again:\n{}",
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_go_to_the_configured_file() {
    let dir = TempDir::new("access-file");
    let file = dir.path().join("access.log");
    let config = default_config_on_free_port().replacen(
        "[access_log]\n",
        &format!(
            "[access_log]\nstdout = false\nfile = \"{}\"\n",
            file.display()
        ),
        1,
    );
    assert!(
        config.contains("stdout = false"),
        "config.toml has no [access_log]"
    );
    let tg = Tailgate::start(&config);
    for path in ["/", "/index.html", "/.env"] {
        get(tg.addr(), "localhost", path).await;
    }
    // The site's lines (the origin route, Tailgate itself, logs its own).
    let site_lines = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .filter(|l: &serde_json::Value| l["route"] == "site")
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let lines = loop {
        let lines = site_lines(&std::fs::read_to_string(&file).unwrap_or_default());
        if lines.len() >= 3 || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let uris: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["request_uri"].as_str())
        .collect();
    assert_eq!(uris, ["/", "/index.html", "/.env"]);
    assert_eq!(lines[2]["status"].as_u64(), Some(403));
    assert!(
        tg.access_log().is_empty(),
        "stdout = false must keep lines off STDOUT"
    );
}

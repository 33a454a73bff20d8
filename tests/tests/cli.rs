//! The command line through the real binary: the default `config.toml` serves
//! the landing page with the plugin at work; `tailgate check` accepts a good
//! config and reports a bad one with file, line and column.

use std::process::Command;

use tailgate_e2e::client::get;
use tailgate_e2e::process::{tailgate_bin, test_cache_dir, Tailgate, TempDir};
use tailgate_e2e::repo_root;

/// The repository's default config, moved to free ports (the admin API's
/// default port may be taken by a Tailgate the user runs) and absolute paths.
fn default_config_on_free_port() -> String {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("config.toml")).expect("read config.toml");
    assert!(
        !text.contains("[admin]"),
        "config.toml gained an [admin] section: move it to a free port here"
    );
    let text = text + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    text.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:0\"]",
    )
    .replace(
        "cache_dir = \".tailgate/cache\"",
        &format!("cache_dir = \"{}\"", test_cache_dir().display()),
    )
    .replace("= \"plugins/", &format!("= \"{}/plugins/", root.display()))
    .replace(
        "static = \"www\"",
        &format!("static = \"{}/www\"", root.display()),
    )
    .replace(
        "\"www/50x.html\"",
        &format!("\"{}/www/50x.html\"", root.display()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn default_config_serves_the_landing_page_through_the_plugin() {
    tailgate_e2e::plugin_wasm("header_rewrite");
    let tg = Tailgate::start(&default_config_on_free_port());
    let r = get(tg.addr(), "localhost", "/").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Tailgate is running"));
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert_eq!(get(tg.addr(), "localhost", "/.env").await.status, 403);
    let r = get(tg.addr(), "localhost", "/old/index.html").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("http://localhost/index.html")
    );
    assert_eq!(
        get(tg.addr(), "localhost", "/../Cargo.toml").await.status,
        404
    );
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
    let config = format!(
        "[access_log]\nstdout = false\nfile = \"{}\"\n\n{}",
        file.display(),
        default_config_on_free_port()
    );
    let tg = Tailgate::start(&config);
    for path in ["/", "/index.html", "/.env"] {
        get(tg.addr(), "localhost", path).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
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

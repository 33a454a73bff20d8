//! The lines of requests no route took (unknown host, no path, a path that
//! cannot be normalised), through the
//! real binary: `[access_log] plugins` shape them as a route's log-shape
//! shapes its own — fields on stdout, labels on the Loki push stand-in
//! (`tailgate_e2e::loki_standin`) — a reload changes or removes that chain
//! without restarting the log writer, and a plugin with no log hook is
//! refused there.

use std::collections::BTreeMap;
use std::time::Duration;

use tailgate_e2e::base_config;
use tailgate_e2e::client::{admin_reload, get, raw_exchange};
use tailgate_e2e::loki_standin::{LokiStandin, StoredLine};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;

/// Loki at `loki`, `[access_log]` given by `access_log` (TOML lines), and
/// one route `app.test` for `/app/` only, shaped by log-shape with the same
/// labels the unrouted lines are given here.
fn config(up: &TestUpstream, loki: &LokiStandin, access_log: &str) -> String {
    base_config("")
        + &format!(
            r#"
[telemetry]
labels = {{ instance = "test-proxy" }}

[telemetry.loki]
url = "{loki}"
batch_wait = "100ms"

[access_log]
{access_log}

[upstreams.app]
url = "{up}"

[[routes]]
name = "app"
hosts = ["app.test"]
path = "/app/"
upstream = "app"

[[routes.plugins]]
plugin = "log-shape"
[routes.plugins.config]
labels = {{ host = "{{host}}", status = "{{status}}", method = "{{request_method}}" }}
"#,
            loki = loki.push_url(),
            up = up.url(),
        )
}

/// The unrouted lines' chain: the nginx preset with the route's labels.
const SHAPED: &str = r#"plugins = [
  { plugin = "log-shape", config = { preset = "nginx", labels = { host = "{host}", status = "{status}", method = "{request_method}" } } },
]"#;

/// Wait for the stdout line of a request to `uri`, parsed.
fn line_of(tg: &Tailgate, uri: &str) -> serde_json::Value {
    let line = tg
        .stdout
        .wait_for(Duration::from_secs(10), |l| {
            l.contains(&format!("\"request_uri\":\"{uri}\""))
        })
        .unwrap_or_else(|| panic!("no line for {uri}: {:?}", tg.stdout.snapshot()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The object's keys, sorted.
fn keys(line: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = line.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The Loki line whose text names `uri`.
fn stored(loki: &LokiStandin, uri: &str) -> StoredLine {
    let needle = format!("\"request_uri\":\"{uri}\"");
    assert!(
        loki.wait_until(Duration::from_secs(10), |lines| lines
            .iter()
            .any(|l| l.line.contains(&needle))),
        "no Loki line for {uri}: {:?}",
        loki.lines()
    );
    loki.lines()
        .into_iter()
        .find(|l| l.line.contains(&needle))
        .expect("found")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unrouted_lines_are_shaped_by_the_access_log_chain_and_reload_changes_it() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let tg = Tailgate::start(&config(&up, &loki, SHAPED));

    let routed = get(tg.addr(), "app.test", "/app/ok").await;
    assert_eq!(routed.status, 200);
    let unknown = get(tg.addr(), "nowhere.test", "/unknown-host").await;
    assert_eq!(unknown.status, 404);
    let no_path = get(tg.addr(), "app.test", "/no-path").await;
    assert_eq!(no_path.status, 404);
    // A path that cannot be normalised is refused before routing.
    let raw = raw_exchange(
        tg.addr(),
        b"GET /app/%zz HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("exchange");
    assert!(
        raw.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // The unrouted lines have the route's shape: the nginx preset's fields
    // (`upstream_cache_status` among them, which the default line lacks
    // without a cache) ...
    let routed_line = line_of(&tg, "/app/ok");
    for (uri, status) in [("/unknown-host", 404), ("/no-path", 404), ("/app/%zz", 400)] {
        let line = line_of(&tg, uri);
        assert_eq!(keys(&line), keys(&routed_line), "{line}");
        assert_eq!(line["upstream_cache_status"], "", "{line}");
        assert_eq!(line["status"], status, "{line}");
    }
    // ... and its Loki labels.
    assert_eq!(
        stored(&loki, "/app/ok").labels,
        labels(&[
            ("host", "app.test"),
            ("instance", "test-proxy"),
            ("job", "tailgate"),
            ("method", "GET"),
            ("status", "200")
        ])
    );
    assert_eq!(
        stored(&loki, "/unknown-host").labels,
        labels(&[
            ("host", "nowhere.test"),
            ("instance", "test-proxy"),
            ("job", "tailgate"),
            ("method", "GET"),
            ("status", "404")
        ])
    );
    assert_eq!(
        stored(&loki, "/no-path").labels,
        labels(&[
            ("host", "app.test"),
            ("instance", "test-proxy"),
            ("job", "tailgate"),
            ("method", "GET"),
            ("status", "404")
        ])
    );

    // A reload changes the chain; the writer stays (only its plugins changed).
    let fields = r#"plugins = [
  { plugin = "log-shape", config = { fields = ["request_uri", "status", "host"], labels = { unrouted = "yes" } } },
]"#;
    std::fs::write(&tg.config_path, config(&up, &loki, fields)).expect("write config");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body["outcome"]["restarted"]
            .as_array()
            .is_some_and(|r| r.iter().any(|s| s == "access_log")),
        "{body}"
    );
    let r = get(tg.addr(), "nowhere.test", "/after-reload").await;
    assert_eq!(r.status, 404);
    let line = line_of(&tg, "/after-reload");
    assert_eq!(keys(&line), ["host", "request_uri", "status"], "{line}");
    assert_eq!(line["host"], "nowhere.test");
    assert_eq!(
        stored(&loki, "/after-reload").labels,
        labels(&[
            ("instance", "test-proxy"),
            ("job", "tailgate"),
            ("unrouted", "yes")
        ])
    );

    // Without `plugins`, the default line again.
    std::fs::write(&tg.config_path, config(&up, &loki, "")).expect("write config");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 200, "{body}");
    let r = get(tg.addr(), "nowhere.test", "/default-again").await;
    assert_eq!(r.status, 404);
    let line = line_of(&tg, "/default-again");
    assert_eq!(line["route"], "", "the default line: {line}");
    assert!(line.get("upstream_cache_status").is_none(), "{line}");
    assert_eq!(
        stored(&loki, "/default-again").labels,
        labels(&[("instance", "test-proxy"), ("job", "tailgate")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_log_plugin_without_a_log_hook_is_refused() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let config = config(
        &up,
        &loki,
        r#"plugins = [{ plugin = "rate-limit", config = { limits = [{ zone = "z", rate = "1r/s" }] } }]"#,
    );
    let err = Tailgate::try_start(&config).err().expect("refused");
    assert!(
        err.contains("[access_log] plugin rate-limit: it has no log hook"),
        "{err}"
    );
}

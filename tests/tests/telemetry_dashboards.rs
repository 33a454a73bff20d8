//! The shipped Grafana dashboards (`dashboards/*.json`) against a real
//! Prometheus fed by Tailgate's remote_write: every PromQL expression of
//! every panel (and every template variable query) is run with Grafana's
//! variables filled in, and must return data. The logs panel's LogQL stream
//! selector must match a stream Tailgate pushed to the Loki stand-in.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tailgate_e2e::base_config;
use tailgate_e2e::client::{get, send};
use tailgate_e2e::loki_standin::{Failure, LokiStandin};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::prometheus::Prometheus;
use tailgate_e2e::repo_root;
use tailgate_e2e::upstream::TestUpstream;

const PREFIX: &str = "flyio_nginx";

/// Grafana's variables as a dashboard user would have them (All selected).
fn fill(expr: &str) -> String {
    expr.replace("${prefix}", PREFIX)
        .replace("$prefix", PREFIX)
        .replace("$__rate_interval", "30s")
        .replace("$__range", "5m")
        .replace("$__interval", "15s")
        .replace("$host", ".*")
        .replace("$instance", ".*")
}

/// Every (title, datasource type, expr) of a dashboard's panels.
fn targets(dashboard: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let ds = target["datasource"]["type"]
                .as_str()
                .or(panel["datasource"]["type"].as_str())
                .unwrap_or("?")
                .to_owned();
            let expr = target["expr"].as_str().expect("target expr").to_owned();
            out.push((title.clone(), ds, expr));
        }
    }
    out
}

/// `{a="x", b=~"re"}` of a LogQL query: (name, op, value) matchers.
fn stream_selector(logql: &str) -> Vec<(String, String, String)> {
    let body = logql
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.split_once('}'))
        .map(|(b, _)| b)
        .expect("a LogQL query starts with a stream selector");
    body.split(',')
        .map(|m| {
            let m = m.trim();
            let op_at = m.find(['=', '!']).expect("matcher op");
            let (name, rest) = m.split_at(op_at);
            let op_len =
                if rest.starts_with("=~") || rest.starts_with("!=") || rest.starts_with("!~") {
                    2
                } else {
                    1
                };
            let value = rest[op_len..].trim().trim_matches('"');
            (
                name.trim().to_owned(),
                rest[..op_len].to_owned(),
                value.to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_a_prometheus_fed_by_tailgate() {
    let prom = Prometheus::start();
    let loki = LokiStandin::start();
    let up = TestUpstream::start();
    let config = base_config("")
        + &format!(
            r#"
[telemetry]
metrics_prefix = "{PREFIX}"
labels = {{ instance = "dash" }}

[telemetry.remote_write]
url = "{write}"
interval = "1s"

[telemetry.loki]
url = "{loki}"
batch_wait = "100ms"
min_backoff = "100ms"
max_backoff = "300ms"

[upstreams.app]
url = "{up}"

[[routes]]
name = "web"
hosts = ["web.test"]
path = "/"
upstream = "app"
cache = {{ valid = {{ 200 = "1h" }} }}

[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
limits = [{{ zone = "per_ip", rate = "1000r/s", burst = 1000, nodelay = true }}]

[[routes]]
name = "api"
hosts = ["api.test"]
path = "/"
upstream = "app"
plugin_failure = "open"

[[routes.plugins]]
plugin = "fault-injector"
config = {{ mode = "trap", hook = "request" }}
"#,
            write = prom.write_url(),
            loki = loki.push_url(),
            up = up.url(),
        );
    let tg = Tailgate::start(&config);
    let admin = tg.admin_addr();

    // Traffic for every panel: two services, errors, cache hits and misses,
    // rate-limit outcomes, plugin calls and faults, a reload, and a Loki
    // batch refused (so the pusher-health panels have drops and refusals).
    for _ in 0..10 {
        assert_eq!(get(tg.addr(), "web.test", "/page").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(tg.addr(), "web.test", "/status/500").await.status, 500);
    }
    for _ in 0..5 {
        assert_eq!(get(tg.addr(), "api.test", "/v1").await.status, 200);
    }
    let reload = send(
        admin,
        Method::POST,
        "localhost",
        "/reload",
        &[],
        Bytes::new(),
    )
    .await
    .expect("reload");
    assert_eq!(reload.status, 200, "{}", reload.text());
    loki.set_failure(Failure::Status(400));
    assert_eq!(get(tg.addr(), "api.test", "/refused").await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !loki.attempts().iter().any(|a| a.status == 400) {
        assert!(Instant::now() < deadline, "no push refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loki.set_failure(Failure::None);
    for _ in 0..3 {
        assert_eq!(get(tg.addr(), "web.test", "/page").await.status, 200);
    }
    assert!(loki.wait_until(Duration::from_secs(10), |l| !l.is_empty()));
    // Several snapshots after the traffic, so rate() has two samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom
        .value(&format!(
            "count_over_time(sum({PREFIX}_http_requests_total)[1m:1s])"
        ))
        .await
        .unwrap_or(0.0)
        < 4.0
    {
        assert!(Instant::now() < deadline, "no samples:\n{}", prom.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut dashboards: Vec<_> = std::fs::read_dir(repo_root().join("dashboards"))
        .expect("dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(dashboards.len() >= 2, "{dashboards:?}");
    let mut checked = 0;
    let mut empty = Vec::new();
    for path in &dashboards {
        let text = std::fs::read_to_string(path).expect("read dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // Template variables: label_values(selector, label).
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(def) = var["definition"].as_str() else {
                continue;
            };
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .expect("label_values(...)");
            let (selector, label) = inner.rsplit_once(',').expect("label_values(sel, label)");
            let q = fill(&format!("count by ({}) ({selector})", label.trim()));
            if prom.query(&q).await.is_empty() {
                empty.push(format!("{name}: variable {}: {q}", var["name"]));
            }
            checked += 1;
        }
        for (title, ds, expr) in targets(&dashboard) {
            match ds.as_str() {
                "prometheus" => {
                    let q = fill(&expr);
                    if prom.query(&q).await.is_empty() {
                        empty.push(format!("{name}: {title}: {q}"));
                    }
                }
                "loki" => {
                    let matchers = stream_selector(&fill(&expr));
                    let lines = loki.lines();
                    let matched = lines.iter().any(|l| {
                        matchers.iter().all(|(n, op, v)| {
                            let got = l.labels.get(n).map(String::as_str).unwrap_or("");
                            match op.as_str() {
                                "=" => got == v,
                                "!=" => got != v,
                                "=~" => v == ".*" || v == ".+" && !got.is_empty() || got == v,
                                other => panic!("{name}: {title}: matcher {other} not checked"),
                            }
                        })
                    });
                    if !matched {
                        empty.push(format!("{name}: {title}: no pushed stream matches {expr}"));
                    }
                }
                other => panic!("{name}: {title}: unexpected datasource {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} queries found");
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
}

//! The Loki pusher through the real binary, against the Loki push stand-in
//! (`tailgate_e2e::loki_standin`, not a real Loki): lines with the config's
//! and the log-shape plugin's labels, protobuf + snappy and JSON, tenant and
//! auth headers; Loki failing with 500, then 429 (`Retry-After` honoured),
//! then recovering with no line lost; 400 dropping the batch, counted, with
//! no retry; Loki down then up; and an outage longer than the buffer, which
//! drops the oldest lines and counts them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tailgate_e2e::client::get;
use tailgate_e2e::loki_standin::{Failure, LokiStandin, StoredLine};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

/// Routes `app.test` (log-shape with labels) and `plain.test` (default
/// line), with `[telemetry.loki]` given by `loki` (TOML lines).
fn config(up: &TestUpstream, loki: &str) -> String {
    base_config("")
        + &format!(
            r#"
[telemetry]
labels = {{ instance = "test-proxy" }}

[telemetry.loki]
{loki}

{app}
[[routes.plugins]]
plugin = "log-shape"
[routes.plugins.config]
labels = {{ host = "{{host}}", status_class = "{{status_class}}" }}

[[routes]]
name = "plain"
hosts = ["plain.test"]
path = "/"
upstream = "app"
"#,
            app = app_route(&up.url())
        )
}

/// Settings that make failures quick to recover from in a test.
fn fast(loki: &LokiStandin, extra: &str) -> String {
    format!(
        "url = \"{}\"\nbatch_wait = \"100ms\"\nmin_backoff = \"100ms\"\nmax_backoff = \"400ms\"\nmax_retries = 1000\n{extra}",
        loki.push_url()
    )
}

/// The `request_uri` of a stored (JSON) line.
fn uri(line: &StoredLine) -> String {
    let v: serde_json::Value = serde_json::from_str(&line.line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", line.line));
    v["request_uri"].as_str().unwrap_or_default().to_owned()
}

/// How many stored lines each request_uri has.
fn uri_counts(lines: &[StoredLine]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in lines {
        *counts.entry(uri(l)).or_default() += 1;
    }
    counts
}

async fn requests(tg: &Tailgate, host: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let r = get(tg.addr(), host, &format!("{prefix}/{i}")).await;
        assert_eq!(r.status, 200);
    }
}

/// Every `{prefix}/{i}` for i < n appears exactly once.
fn assert_each_once(lines: &[StoredLine], prefix: &str, n: usize) {
    let counts = uri_counts(lines);
    for i in 0..n {
        let path = format!("{prefix}/{i}");
        assert_eq!(
            counts.get(&path),
            Some(&1),
            "{path} stored {:?} times; all: {counts:?}",
            counts.get(&path)
        );
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_arrive_as_protobuf_with_config_and_plugin_labels_tenant_and_auth() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let extra = r#"tenant = "team-a"
basic_auth = { username = "loki", password = "${TEST_LOKI_PASSWORD}" }"#;
    let tg = Tailgate::start_with_env(
        &config(&up, &fast(&loki, extra)),
        &[("TEST_LOKI_PASSWORD", "s3cret")],
    );
    requests(&tg, "app.test", "/r", 20).await;
    requests(&tg, "plain.test", "/p", 3).await;
    assert!(
        loki.wait_until(Duration::from_secs(10), |l| l.len() >= 23),
        "stored {} of 23 lines",
        loki.lines().len()
    );
    let lines = loki.lines();
    assert_eq!(lines.len(), 23);
    assert!(loki.refused().is_empty(), "{:?}", loki.refused());
    assert_each_once(&lines, "/r", 20);
    assert_each_once(&lines, "/p", 3);

    let shaped = labels(&[
        ("host", "app.test"),
        ("instance", "test-proxy"),
        ("job", "tailgate"),
        ("status_class", "2xx"),
    ]);
    let plain = labels(&[("instance", "test-proxy"), ("job", "tailgate")]);
    for line in &lines {
        let want = if uri(line).starts_with("/r/") {
            &shaped
        } else {
            &plain
        };
        assert_eq!(&line.labels, want, "{line:?}");
    }
    // The same text as the stdout access log.
    let stdout = tg.stdout.snapshot();
    for line in &lines {
        assert!(stdout.contains(&line.line), "not on stdout: {}", line.line);
    }
    // Time order within each stream (the stand-in refuses otherwise too).
    for stream in [&shaped, &plain] {
        let ts: Vec<i64> = lines
            .iter()
            .filter(|l| &l.labels == stream)
            .map(|l| l.timestamp_ns)
            .collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
    }

    let attempts = loki.attempts();
    assert!(
        attempts.len() < 23,
        "lines are batched: {} pushes",
        attempts.len()
    );
    for a in &attempts {
        assert_eq!(a.status, 204);
        assert_eq!(a.content_type, "application/x-protobuf");
        assert_eq!(a.tenant.as_deref(), Some("team-a"));
        assert_eq!(a.authorization.as_deref(), Some("Basic bG9raTpzM2NyZXQ="));
    }
    let samples = scrape(tg.admin_addr()).await;
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_sent_total",
            &[("sink", "loki")]
        ),
        23.0
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_dropped_total",
            &[("sink", "loki")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_encoding_with_a_bearer_token() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let extra = "encoding = \"json\"\nbearer_token = \"tok-123\"\nlabels = { job = \"edge\", app = \"tailgate\" }";
    let tg = Tailgate::start(&config(&up, &fast(&loki, extra)));
    requests(&tg, "plain.test", "/j", 5).await;
    assert!(loki.wait_until(Duration::from_secs(10), |l| l.len() >= 5));
    let lines = loki.lines();
    assert_each_once(&lines, "/j", 5);
    for line in &lines {
        assert_eq!(line.labels, labels(&[("app", "tailgate"), ("job", "edge")]));
    }
    for a in loki.attempts() {
        assert_eq!(a.content_type, "application/json");
        assert_eq!(a.authorization.as_deref(), Some("Bearer tok-123"));
        assert_eq!(a.tenant, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loki_failing_with_500_then_429_then_recovering_loses_no_line() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let tg = Tailgate::start(&config(&up, &fast(&loki, "")));

    loki.set_failure(Failure::Status(500));
    requests(&tg, "app.test", "/a", 30).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while loki.attempts().iter().filter(|a| a.status == 500).count() < 3 {
        assert!(Instant::now() < deadline, "no retries after a 500");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    loki.set_failure(Failure::TooManyRequests {
        retry_after_secs: Some(1),
    });
    requests(&tg, "app.test", "/b", 30).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let during_429: Vec<_> = loki
        .attempts()
        .into_iter()
        .filter(|a| a.status == 429)
        .collect();
    assert!(during_429.len() >= 2, "{during_429:?}");
    for pair in during_429.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "Retry-After: 1 not honoured: retried after {gap:?}"
        );
    }
    assert!(loki.lines().is_empty(), "nothing is stored while failing");

    loki.set_failure(Failure::None);
    assert!(
        loki.wait_until(Duration::from_secs(15), |l| l.len() >= 60),
        "stored {} of 60 lines after recovery",
        loki.lines().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = loki.lines();
    assert_eq!(lines.len(), 60, "no line lost, none twice");
    assert_each_once(&lines, "/a", 30);
    assert_each_once(&lines, "/b", 30);
    assert!(loki.refused().is_empty(), "{:?}", loki.refused());

    let samples = scrape(tg.admin_addr()).await;
    let failed = loki.attempts().iter().filter(|a| a.status != 204).count() as f64;
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_push_requests_total",
            &[("sink", "loki"), ("result", "retry")]
        ),
        failed
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_dropped_total",
            &[("sink", "loki")]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_sent_total",
            &[("sink", "loki")]
        ),
        60.0
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_queue_length",
            &[("sink", "loki")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_drops_the_batch_counts_it_and_is_not_retried() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let tg = Tailgate::start(&config(&up, &fast(&loki, "")));
    loki.set_failure(Failure::Status(400));
    requests(&tg, "app.test", "/x", 10).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while loki.attempts().iter().map(|a| a.entries).sum::<usize>() < 10 {
        assert!(Instant::now() < deadline, "lines not pushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well past several backoff periods: no batch is sent twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = loki.attempts();
    assert!(attempts.iter().all(|a| a.status == 400));
    assert_eq!(
        attempts.iter().map(|a| a.entries).sum::<usize>(),
        10,
        "every line sent once, none retried: {attempts:?}"
    );
    let samples = scrape(tg.admin_addr()).await;
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_dropped_total",
            &[("sink", "loki"), ("reason", "rejected")]
        ),
        10.0
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_push_requests_total",
            &[("sink", "loki"), ("result", "rejected")]
        ),
        attempts.len() as f64
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_telemetry_push_requests_total",
            &[("sink", "loki"), ("result", "retry")]
        ),
        0.0
    );

    // The next lines go through once Loki accepts again.
    loki.set_failure(Failure::None);
    requests(&tg, "app.test", "/y", 3).await;
    assert!(loki.wait_until(Duration::from_secs(10), |l| l.len() >= 3));
    assert_each_once(&loki.lines(), "/y", 3);
    assert_eq!(loki.lines().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn loki_down_then_up_loses_no_line() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let tg = Tailgate::start(&config(&up, &fast(&loki, "")));
    // A first push opens a keep-alive connection, which going down closes.
    requests(&tg, "app.test", "/warm", 1).await;
    assert!(loki.wait_until(Duration::from_secs(10), |l| l.len() == 1));

    loki.set_failure(Failure::Down);
    requests(&tg, "app.test", "/d", 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(loki.lines().len(), 1);
    let retried = sum(
        &scrape(tg.admin_addr()).await,
        "tailgate_telemetry_push_requests_total",
        &[("sink", "loki"), ("result", "retry")],
    );
    assert!(retried >= 2.0, "connection errors are retried: {retried}");

    loki.set_failure(Failure::None);
    assert!(
        loki.wait_until(Duration::from_secs(15), |l| l.len() >= 21),
        "stored {} of 21",
        loki.lines().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(loki.lines().len(), 21);
    assert_each_once(&loki.lines(), "/d", 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_the_buffer_drops_the_oldest_lines_and_counts_them() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    let tg = Tailgate::start(&config(
        &up,
        &fast(&loki, "buffer_size = \"8KiB\"\nbatch_size = \"2KiB\""),
    ));
    loki.set_failure(Failure::Down);
    requests(&tg, "app.test", "/o", 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = scrape(tg.admin_addr()).await;
    let dropped = sum(
        &samples,
        "tailgate_telemetry_dropped_total",
        &[("sink", "loki"), ("reason", "buffer_full")],
    );
    assert!(
        dropped >= 50.0,
        "8KiB holds ~20 lines of 100: dropped {dropped}"
    );
    let queued_bytes = sum(
        &samples,
        "tailgate_telemetry_queue_bytes",
        &[("sink", "loki")],
    );
    assert!(queued_bytes <= 8192.0, "buffer bounded: {queued_bytes}");

    loki.set_failure(Failure::None);
    let expected = 100 - dropped as usize;
    assert!(
        loki.wait_until(Duration::from_secs(15), |l| l.len() >= expected),
        "stored {} of {expected}",
        loki.lines().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = loki.lines();
    assert_eq!(lines.len(), expected, "kept + dropped = every line");
    let counts = uri_counts(&lines);
    assert!(counts.values().all(|&n| n == 1));
    assert_eq!(counts.get("/o/99"), Some(&1), "the newest line is kept");
    // Apart from the batch in flight when Loki went away, what is kept is
    // the newest lines: a contiguous run ending at the last request.
    let mut kept: Vec<usize> = counts
        .keys()
        .filter_map(|k| k.strip_prefix("/o/")?.parse().ok())
        .collect();
    kept.sort_unstable();
    let tail_start = kept
        .iter()
        .rev()
        .zip((0..100).rev())
        .take_while(|(k, i)| *k == i)
        .last()
        .map_or(100, |(k, _)| *k);
    assert!(tail_start >= 50, "the newest lines survive: kept {kept:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_pushes_the_lines_still_buffered() {
    let up = TestUpstream::start();
    let loki = LokiStandin::start();
    // A batch would wait a minute: only the shutdown flush can send it.
    let loki_config = format!("url = \"{}\"\nbatch_wait = \"1m\"", loki.push_url());
    let mut tg = Tailgate::start(&config(&up, &loki_config));
    requests(&tg, "app.test", "/s", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        loki.lines().is_empty(),
        "nothing sent before the batch is due"
    );
    tg.signal("TERM");
    let status = tg
        .wait_exit(Duration::from_secs(20))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert_eq!(loki.lines().len(), 5);
    assert_each_once(&loki.lines(), "/s", 5);
}

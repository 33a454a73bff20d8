//! remote_write through the real binary into a real Prometheus (the Debian
//! `prometheus`, started with `--web.enable-remote-write-receiver`), read
//! back with PromQL: for a known request mix, rates by host and status, the
//! error ratio, the cache hit ratio and `histogram_quantile` over the
//! duration histogram; `up` pushed every interval; Prometheus down then
//! up — the queue stays bounded (drops counted) and the queued samples
//! arrive after recovery, older timestamps first; a receiver answering 503
//! and 429 (retried, `Retry-After` honoured) and 404 (dropped, not retried);
//! and a last snapshot pushed on SIGTERM.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tailgate_e2e::base_config;
use tailgate_e2e::client::get;
use tailgate_e2e::loki_standin::{Failure, LokiStandin};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::prometheus::{free_port, Prometheus};
use tailgate_e2e::upstream::TestUpstream;

fn config(up: &TestUpstream, telemetry: &str) -> String {
    base_config("")
        + telemetry
        + &format!(
            r#"
[upstreams.app]
url = "{up}"

[[routes]]
name = "a"
hosts = ["a.test"]
path = "/"
upstream = "app"

[[routes]]
name = "b"
hosts = ["b.test"]
path = "/"
upstream = "app"

[[routes]]
name = "c"
hosts = ["c.test"]
path = "/"
upstream = "app"
cache = {{ valid = {{ 200 = "1h" }} }}
"#,
            up = up.url()
        )
}

async fn hit(tg: &Tailgate, host: &str, path: &str, n: usize, status: u16) {
    for _ in 0..n {
        let r = get(tg.addr(), host, path).await;
        assert_eq!(r.status, status, "{host}{path}");
    }
}

/// Latest sample time (Unix seconds, ms precision) of a one-series query.
async fn latest_timestamp(prom: &Prometheus, expr: &str) -> f64 {
    prom.value(&format!("timestamp({expr})"))
        .await
        .unwrap_or_else(|| panic!("no data for {expr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn promql_over_the_pushed_series_matches_a_known_request_mix() {
    let prom = Prometheus::start();
    let up = TestUpstream::start();
    let telemetry = format!(
        r#"
[telemetry]
metrics_prefix = "flyio_nginx"
labels = {{ instance = "flyio-proxy" }}

[telemetry.remote_write]
url = "{}"
interval = "1s"
"#,
        prom.write_url()
    );
    let tg = Tailgate::start(&config(&up, &telemetry));

    // Warm-up: one request per series the mix touches, so that every
    // series has a sample before the mix (rate() needs two).
    hit(&tg, "a.test", "/", 1, 200).await;
    hit(&tg, "a.test", "/status/500", 1, 500).await;
    hit(&tg, "b.test", "/", 1, 200).await;
    hit(&tg, "b.test", "/status/404", 1, 404).await;
    hit(&tg, "c.test", "/cached", 2, 200).await; // MISS, then HIT
    let warm_total = 6.0;
    let total = "sum(flyio_nginx_http_requests_total)";
    let ready = prom
        .wait_for(
            "count_over_time(flyio_nginx_http_requests_total{host=\"c.test\"}[1m])",
            Duration::from_secs(30),
            |r| {
                r.len() == 1
                    && r[0]["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        >= Some(2.0)
            },
        )
        .await;
    assert_eq!(
        ready.len(),
        1,
        "warm-up samples never arrived:\n{}",
        prom.log()
    );
    assert_eq!(prom.value(total).await, Some(warm_total));
    let t0 = latest_timestamp(&prom, "up").await;

    // The mix.
    hit(&tg, "a.test", "/", 30, 200).await;
    hit(&tg, "a.test", "/status/500", 10, 500).await;
    hit(&tg, "b.test", "/delay/300", 10, 200).await;
    hit(&tg, "b.test", "/", 10, 200).await;
    hit(&tg, "b.test", "/status/404", 10, 404).await;
    hit(&tg, "c.test", "/cached", 10, 200).await; // HIT x10
    hit(&tg, "c.test", "/new", 10, 200).await; // MISS, HIT x9
    let mix_total = 90.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.value(total).await != Some(warm_total + mix_total) {
        assert!(Instant::now() < deadline, "the mix never arrived");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t1 = latest_timestamp(&prom, "up").await;
    let range_ms = ((t1 - t0) * 1000.0).round() as i64;
    let window = format!("[{range_ms}ms] @ {t1:.3}");
    let seconds = range_ms as f64 / 1000.0;

    // Rates by host and status: exactly the mix (samples sit on both ends
    // of the window, so nothing is extrapolated).
    let by = prom
        .query(&format!(
            "sum by (host, status) (rate(flyio_nginx_http_requests_total{window}))"
        ))
        .await;
    let mut got = BTreeMap::new();
    for s in &by {
        let key = (
            s["metric"]["host"].as_str().unwrap_or_default().to_owned(),
            s["metric"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let rate: f64 = s["value"][1]
            .as_str()
            .unwrap_or("NaN")
            .parse()
            .unwrap_or(f64::NAN);
        got.insert(key, (rate * seconds * 1000.0).round() / 1000.0);
    }
    let want: BTreeMap<(String, String), f64> = [
        (("a.test", "200"), 30.0),
        (("a.test", "500"), 10.0),
        (("b.test", "200"), 20.0),
        (("b.test", "404"), 10.0),
        (("c.test", "200"), 20.0),
    ]
    .into_iter()
    .map(|((h, s), n)| ((h.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(got, want, "rate x window by host and status");

    let close = |what: &str, got: Option<f64>, want: f64| {
        let got = got.unwrap_or_else(|| panic!("{what}: no data"));
        assert!((got - want).abs() < 1e-6, "{what}: {got} != {want}");
    };
    close(
        "request rate of a.test",
        prom.value(&format!(
            "sum(rate(flyio_nginx_http_requests_total{{host=\"a.test\"}}{window}))"
        ))
        .await,
        40.0 / seconds,
    );
    close(
        "error ratio",
        prom.value(&format!(
            "sum(rate(flyio_nginx_http_requests_total{{status=~\"5..\"}}{window})) / sum(rate(flyio_nginx_http_requests_total{window}))"
        ))
        .await,
        10.0 / 90.0,
    );
    close(
        "cache hit ratio",
        prom.value(&format!(
            "sum(rate(flyio_nginx_cache_requests_total{{cache_status=\"HIT\"}}{window})) / sum(rate(flyio_nginx_cache_requests_total{window}))"
        ))
        .await,
        19.0 / 20.0,
    );
    // b.test: 10 of 30 took 300 ms, 20 were quick.
    let quantile = |q: f64| {
        format!(
            "histogram_quantile({q}, sum by (le) (rate(flyio_nginx_http_request_duration_seconds_bucket{{host=\"b.test\"}}{window})))"
        )
    };
    let p50 = prom.value(&quantile(0.5)).await.expect("p50");
    let p90 = prom.value(&quantile(0.9)).await.expect("p90");
    assert!(p50 <= 0.25, "p50 {p50}: the quick two thirds");
    assert!(
        p90 > 0.25 && p90 <= 0.5,
        "p90 {p90}: in the 300 ms requests' bucket"
    );
    close(
        "histogram count",
        prom.value(&format!(
            "sum(increase(flyio_nginx_http_request_duration_seconds_count{{host=\"b.test\"}}{window}))"
        ))
        .await,
        30.0,
    );

    // `up` is pushed every interval with the instance label.
    let up_series = prom.query("up").await;
    assert_eq!(up_series.len(), 1, "{up_series:?}");
    assert_eq!(up_series[0]["metric"]["instance"], "flyio-proxy");
    assert_eq!(up_series[0]["metric"]["job"], "tailgate");
    assert_eq!(up_series[0]["value"][1], "1");
    let ups = prom.value("count_over_time(up[1m])").await.unwrap_or(0.0);
    assert!(ups >= 3.0, "one up sample per interval: {ups}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_down_then_up_keeps_a_bounded_queue_and_delivers_after_recovery() {
    let port = free_port();
    let up = TestUpstream::start();
    let telemetry = format!(
        r#"
[telemetry.remote_write]
url = "http://127.0.0.1:{port}/api/v1/write"
interval = "200ms"
queue_size = 5
min_backoff = "50ms"
max_backoff = "200ms"
max_retries = 1000
"#
    );
    let tg = Tailgate::start(&config(&up, &telemetry));
    hit(&tg, "a.test", "/", 3, 200).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let samples = scrape(tg.admin_addr()).await;
    let series_per_snapshot = samples.len() as f64 + 1.0; // + up
    let queued = sum(
        &samples,
        "tailgate_telemetry_queue_length",
        &[("sink", "remote_write")],
    );
    assert!(queued > 0.0, "snapshots wait while Prometheus is down");
    assert!(
        queued <= 5.0 * (series_per_snapshot + 5.0),
        "queue bounded to 5 snapshots: {queued} samples, {series_per_snapshot} series each"
    );
    let dropped = sum(
        &samples,
        "tailgate_telemetry_dropped_total",
        &[("sink", "remote_write"), ("reason", "queue_full")],
    );
    assert!(
        dropped > 0.0,
        "the oldest snapshots were dropped and counted"
    );
    let retries = sum(
        &samples,
        "tailgate_telemetry_push_requests_total",
        &[("sink", "remote_write"), ("result", "retry")],
    );
    assert!(retries >= 2.0, "connection errors are retried: {retries}");

    let before_start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as f64;
    let prom = Prometheus::start_on(port);
    let arrived = prom
        .wait_for(
            "sum(tailgate_http_requests_total)",
            Duration::from_secs(30),
            |r| r.len() == 1 && r[0]["value"][1] == "3",
        )
        .await;
    assert_eq!(arrived.len(), 1, "samples never arrived:\n{}", prom.log());

    // The queued snapshots came too: `up` samples older than Prometheus.
    let raw = prom.query("up[2m]").await;
    assert_eq!(raw.len(), 1, "{raw:?}");
    let times: Vec<f64> = raw[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v[0].as_f64().expect("timestamp") * 1000.0)
        .collect();
    let older = times.iter().filter(|&&t| t < before_start_ms).count();
    assert!(
        older >= 5,
        "queued samples from the outage: {older} of {}",
        times.len()
    );
    assert!(times.windows(2).all(|w| w[0] < w[1]));

    // And the queue drains.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(tg.admin_addr()).await;
        let queued = sum(
            &samples,
            "tailgate_telemetry_queue_length",
            &[("sink", "remote_write")],
        );
        if queued <= series_per_snapshot * 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue not drained: {queued}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_pushes_a_last_snapshot() {
    let prom = Prometheus::start();
    let up = TestUpstream::start();
    // The first snapshot is taken at start; the next would be in an hour.
    let telemetry = format!(
        "\n[telemetry.remote_write]\nurl = \"{}\"\ninterval = \"1h\"\n",
        prom.write_url()
    );
    let mut tg = Tailgate::start(&config(&up, &telemetry));
    hit(&tg, "a.test", "/", 4, 200).await;
    tg.signal("TERM");
    let status = tg
        .wait_exit(Duration::from_secs(20))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert_eq!(
        prom.value("sum(tailgate_http_requests_total)").await,
        Some(4.0),
        "the counts made it out before exit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_write_retries_5xx_and_429_after_retry_after_and_drops_on_other_4xx() {
    // The Loki stand-in, told to fail, plays a failing receiver; healthy,
    // it answers this path 404 (a 4xx that must not be retried).
    let receiver = LokiStandin::start();
    let up = TestUpstream::start();
    let telemetry = format!(
        r#"
[telemetry.remote_write]
url = "http://{}/api/v1/write"
interval = "200ms"
min_backoff = "50ms"
max_backoff = "100ms"
max_retries = 1000
"#,
        receiver.addr
    );
    receiver.set_failure(Failure::Status(503));
    let tg = Tailgate::start(&config(&up, &telemetry));
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.attempts().len() < 3 {
        assert!(Instant::now() < deadline, "no retries after a 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for a in receiver.attempts() {
        assert_eq!(a.path, "/api/v1/write");
        assert_eq!(a.content_type, "application/x-protobuf");
    }

    receiver.set_failure(Failure::TooManyRequests {
        retry_after_secs: Some(1),
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let throttled: Vec<_> = receiver
        .attempts()
        .into_iter()
        .filter(|a| a.status == 429)
        .collect();
    assert!(throttled.len() >= 2, "{throttled:?}");
    for pair in throttled.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "Retry-After: 1 not honoured: {gap:?}"
        );
    }

    // 404: each request is refused once and dropped, never retried.
    let healthy = Instant::now();
    receiver.set_failure(Failure::None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let samples = scrape(tg.admin_addr()).await;
    let attempts = receiver.attempts();
    let window = healthy.elapsed().as_secs_f64();
    let refused = attempts.iter().filter(|a| a.status == 404).count() as f64;
    let retried = attempts
        .iter()
        .filter(|a| a.status == 503 || a.status == 429)
        .count() as f64;
    assert!(refused >= 2.0, "snapshots keep coming: {refused}");
    // One request per 200 ms tick over the window, plus the 429 retry
    // that was waiting out its Retry-After, the snapshots queued behind it
    // (sent as one request) and a tick at the window's edge. A retry
    // storm (min_backoff 50 ms) would be about four times as many.
    assert!(
        refused <= window / 0.2 + 3.0,
        "one request per snapshot, no retry storm: {refused} in {window:.2} s at 200 ms"
    );
    let counted = |result: &str| {
        sum(
            &samples,
            "tailgate_telemetry_push_requests_total",
            &[("sink", "remote_write"), ("result", result)],
        )
    };
    // The scrape may race one push either way.
    assert!(
        (counted("rejected") - refused).abs() <= 1.0,
        "{} vs {refused}",
        counted("rejected")
    );
    assert!(
        (counted("retry") - retried).abs() <= 1.0,
        "{} vs {retried}",
        counted("retry")
    );
    assert!(
        sum(
            &samples,
            "tailgate_telemetry_dropped_total",
            &[("sink", "remote_write"), ("reason", "rejected")]
        ) > 0.0
    );
}

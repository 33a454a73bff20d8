//! A burst of 100 000 requests through the real binary with both pushers on
//! (remote_write into a real Prometheus, Loki into the push stand-in, which
//! is down for the whole burst): the process's memory stays bounded — the
//! Loki buffer drops its oldest lines at its configured size, counted — and
//! every request is still counted and logged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tailgate_e2e::base_config;
use tailgate_e2e::loki_standin::{Failure, LokiStandin};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::prometheus::Prometheus;

const BURST: usize = 100_000;
const CLIENTS: usize = 16;

/// `n` GETs of `/` with Host `site.test`, over `CLIENTS` keep-alive connections.
async fn burst(tg: &Tailgate, n: usize) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let uri: http::Uri = format!("{}/", tg.url()).parse().expect("uri");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, next, uri) = (client.clone(), next.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let req = http::Request::get(uri.clone())
                    .header("host", "site.test")
                    .body(Empty::new())
                    .expect("request");
                let resp = client.request(req).await.expect("response");
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("body");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100k_requests_with_telemetry_on_keeps_memory_bounded() {
    let prom = Prometheus::start();
    let loki = LokiStandin::start();
    let site = TempDir::new("burst-site");
    site.write("index.html", "<h1>hello</h1>\n");
    let config = base_config("")
        + &format!(
            r#"
[telemetry]
labels = {{ instance = "burst" }}

[telemetry.remote_write]
url = "{write}"
interval = "1s"

[telemetry.loki]
url = "{loki}"
buffer_size = "4MiB"
min_backoff = "100ms"
max_backoff = "500ms"
max_retries = 1000

[upstreams.site]
static = "{site}"

[[routes]]
name = "site"
hosts = ["site.test"]
path = "/"
upstream = "site"
"#,
            write = prom.write_url(),
            loki = loki.push_url(),
            site = site.path().display(),
        );
    let tg = Tailgate::start(&config);
    // Baseline after a warm-up (pools, caches, first snapshots).
    burst(&tg, 2_000).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let baseline = tg.rss();

    loki.set_failure(Failure::Down);
    let started = Instant::now();
    burst(&tg, BURST).await;
    let took = started.elapsed();
    let peak = tg.peak_rss();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "burst: {BURST} requests in {took:?}; rss baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    // The Loki buffer (4 MiB of lines) and the batch in flight are the
    // only telemetry that grows with traffic; allow the allocator its slack.
    assert!(
        growth < 32 << 20,
        "memory grew by {} MiB during the burst (baseline {} MiB, peak {} MiB)",
        growth >> 20,
        baseline >> 20,
        peak >> 20
    );

    let samples = scrape(tg.admin_addr()).await;
    let queued_bytes = sum(
        &samples,
        "tailgate_telemetry_queue_bytes",
        &[("sink", "loki")],
    );
    assert!(queued_bytes <= (4 << 20) as f64, "{queued_bytes}");
    let dropped = sum(
        &samples,
        "tailgate_telemetry_dropped_total",
        &[("sink", "loki"), ("reason", "buffer_full")],
    );
    assert!(dropped > 0.0, "a 4 MiB buffer cannot hold 100k lines");
    let total = (BURST + 2_000) as f64;
    assert_eq!(
        sum(
            &samples,
            "tailgate_http_requests_total",
            &[("host", "site.test")]
        ),
        total
    );

    // Loki back: what was kept arrives; kept + dropped = every line.
    loki.set_failure(Failure::None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let samples = scrape(tg.admin_addr()).await;
        let sent = sum(
            &samples,
            "tailgate_telemetry_sent_total",
            &[("sink", "loki")],
        );
        let dropped = sum(
            &samples,
            "tailgate_telemetry_dropped_total",
            &[("sink", "loki")],
        );
        if sent + dropped == total {
            assert_eq!(loki.lines().len() as f64, sent);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "loki: sent {sent} + dropped {dropped} != {total}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(loki.refused().is_empty(), "{:?}", &loki.refused()[..1]);

    // And Prometheus got the count.
    let counted = prom
        .wait_for(
            "sum(tailgate_http_requests_total{host=\"site.test\"})",
            Duration::from_secs(15),
            |r| r.len() == 1 && r[0]["value"][1] == total.to_string().as_str(),
        )
        .await;
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0]["value"][1], total.to_string().as_str());
}

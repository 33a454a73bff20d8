//! The response cache through the real binary, against an upstream whose
//! caching headers each request controls (`/cache/NAME?...`, see
//! `tailgate_e2e::cache_upstream`): every cache status in the situation that
//! produces it, the cache lock, stale answers on upstream down / timeout /
//! 502, background update, 304 revalidation, key templates, ignored
//! headers, `valid`, Vary, Authorization, bypass / no-store conditions, the
//! byte bound with LRU eviction, `inactive`, the entry size limit, HEAD from
//! a GET entry, and purge on the admin listener.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tailgate_e2e::base_config;
use tailgate_e2e::cache_upstream::encode;
use tailgate_e2e::client::{get_with, send, Reply};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;

#[path = "cache/keys.rs"]
mod keys;
#[path = "cache/stale.rs"]
mod stale;
#[path = "cache/storage.rs"]
mod storage;

const STATUS: &str = "x-cache-status";

/// A config with one upstream and a route per behaviour under test.
fn config(upstream: &str, cache_section: &str) -> String {
    base_config("")
        + &format!(
            r#"
[cache]
{cache_section}

[upstreams.app]
url = "{upstream}"
response_timeout = "400ms"

[[routes]]
name = "plain"
hosts = ["plain.test"]
path = "/"
upstream = "app"
cache = {{ status_header = "X-Cache-Status" }}

[[routes]]
name = "uncached"
hosts = ["uncached.test"]
path = "/"
upstream = "app"

[[routes]]
name = "pathkey"
hosts = ["pathkey.test"]
path = "/"
upstream = "app"
cache = {{ key = "{{host}}{{path}}", status_header = "X-Cache-Status" }}

[[routes]]
name = "ignore"
hosts = ["ignore.test"]
path = "/"
upstream = "app"
cache = {{ ignore_headers = ["Cache-Control", "Set-Cookie"], valid = {{ 200 = "1h" }}, status_header = "X-Cache-Status" }}

[[routes]]
name = "valid"
hosts = ["valid.test"]
path = "/"
upstream = "app"
cache = {{ valid = {{ 200 = "1h", 404 = "1s" }}, status_header = "X-Cache-Status" }}

[[routes]]
name = "background"
hosts = ["bg.test"]
path = "/"
upstream = "app"
cache = {{ background_update = true, status_header = "X-Cache-Status" }}

[[routes]]
name = "strict"
hosts = ["strict.test"]
path = "/"
upstream = "app"
cache = {{ use_stale = ["off"], status_header = "X-Cache-Status" }}

[[routes]]
name = "conditions"
hosts = ["cond.test"]
path = "/"
upstream = "app"
cache = {{ bypass = ["header:X-Refresh"], no_store = ["cookie:session"], status_header = "X-Cache-Status" }}

[[routes]]
name = "small"
hosts = ["small.test"]
path = "/"
upstream = "app"
cache = {{ max_entry_size = "1KiB", status_header = "X-Cache-Status" }}
"#
        )
}

fn start(upstream: &TestUpstream, cache_section: &str) -> Tailgate {
    Tailgate::start(&config(&upstream.url(), cache_section))
}

async fn get_h(tg: &Tailgate, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    get_with(tg.addr(), host, path, headers).await
}

async fn get(tg: &Tailgate, host: &str, path: &str) -> Reply {
    get_h(tg, host, path, &[]).await
}

fn status(reply: &Reply) -> String {
    reply.header(STATUS).unwrap_or_default()
}

/// `/cache/NAME?cc=<Cache-Control>` plus more query text.
fn path(name: &str, cache_control: &str, more: &str) -> String {
    let mut p = format!("/cache/{name}?cc={}", encode(cache_control));
    if !more.is_empty() {
        p.push('&');
        p.push_str(more);
    }
    p
}

/// Wait past a `max-age=1` response's freshness.
async fn let_expire() {
    tokio::time::sleep(Duration::from_millis(1300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hit_miss_expired_revalidated_bypass_and_the_log() {
    let up = TestUpstream::start();
    let tg = start(&up, "");

    let p = path("a", "max-age=1", "");
    let first = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (first.status.as_u16(), status(&first), first.text()),
        (200, "MISS".into(), "a #1".into())
    );
    let second = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&second), second.text()),
        ("HIT".into(), "a #1".into())
    );
    assert!(second.header("age").is_some(), "a hit carries Age");
    assert_eq!(up.path_requests("/cache/a"), 1);
    let_expire().await;
    let third = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&third), third.text()),
        ("EXPIRED".into(), "a #2".into())
    );

    // An expired entry with a validator is revalidated: 304 -> REVALIDATED.
    let p = path("r", "max-age=1", "etag=v1");
    assert_eq!(status(&get(&tg, "plain.test", &p).await), "MISS");
    let_expire().await;
    let revalidated = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (
            revalidated.status.as_u16(),
            status(&revalidated),
            revalidated.text()
        ),
        (200, "REVALIDATED".into(), "r #1".into())
    );
    assert_eq!(
        up.path_requests("/cache/r"),
        2,
        "one fill, one conditional request"
    );
    let after = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&after), after.text()),
        ("HIT".into(), "r #1".into())
    );
    // ... and with Last-Modified only.
    let p = path("lm", "max-age=1", "lm=3600");
    assert_eq!(status(&get(&tg, "plain.test", &p).await), "MISS");
    let_expire().await;
    let revalidated = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&revalidated), revalidated.text()),
        ("REVALIDATED".into(), "lm #1".into())
    );

    // The client's own conditional request is answered from the cache.
    let p = path("etag", "max-age=60", "etag=e1");
    get(&tg, "plain.test", &p).await;
    let conditional = get_h(&tg, "plain.test", &p, &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(
        (conditional.status.as_u16(), status(&conditional)),
        (304, "HIT".into())
    );

    // Methods not cached pass through as BYPASS.
    let posted = send(
        tg.addr(),
        Method::POST,
        "plain.test",
        &path("a", "max-age=60", ""),
        &[],
        Bytes::from_static(b"x"),
    )
    .await
    .expect("POST");
    assert_eq!(status(&posted), "BYPASS");

    // A route without a cache: no header, no cache status in the log.
    let plain = get(&tg, "uncached.test", &path("u", "max-age=60", "")).await;
    assert_eq!(plain.header(STATUS), None);
    let again = get(&tg, "uncached.test", &path("u", "max-age=60", "")).await;
    assert_eq!(again.text(), "u #2", "nothing cached");

    let logged = tg.wait_log("upstream_cache_status", "REVALIDATED");
    assert_eq!(logged["route"], "plain");
    let line = tg.wait_log("route", "uncached");
    assert!(line.get("upstream_cache_status").is_none(), "{line}");
    for wanted in ["HIT", "MISS", "EXPIRED", "BYPASS"] {
        tg.wait_log("upstream_cache_status", wanted);
    }

    // `/metrics` counts each request once, by host and status; a route
    // without a cache has no series.
    let samples = scrape(tg.admin_addr()).await;
    let count = |host: &str, status: &str| {
        let labels = [("host", host), ("cache_status", status)];
        sum(&samples, "tailgate_cache_requests_total", &labels)
    };
    assert_eq!(
        ["MISS", "HIT", "EXPIRED", "REVALIDATED", "BYPASS"].map(|s| count("plain.test", s)),
        [4.0, 3.0, 1.0, 2.0, 1.0]
    );
    assert_eq!(
        sum(
            &samples,
            "tailgate_cache_requests_total",
            &[("host", "uncached.test")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn head_is_answered_from_the_get_entry() {
    let up = TestUpstream::start();
    let tg = start(&up, "");
    let p = path("h", "max-age=60", "");
    let head = send(tg.addr(), Method::HEAD, "plain.test", &p, &[], Bytes::new())
        .await
        .expect("HEAD");
    assert_eq!((head.status.as_u16(), status(&head)), (200, "MISS".into()));
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length").as_deref(), Some("4"));
    // The HEAD filled the entry with the GET body.
    let got = wait_for_status(&tg, "plain.test", &p, "HIT").await;
    assert_eq!(got.text(), "h #1");
    let head = send(tg.addr(), Method::HEAD, "plain.test", &p, &[], Bytes::new())
        .await
        .expect("HEAD");
    assert_eq!(
        (status(&head), head.header("content-length")),
        ("HIT".into(), Some("4".into()))
    );
    assert_eq!(up.path_requests("/cache/h"), 1);
}

/// GET until the cache status is `wanted` (background work), up to 5 s.
async fn wait_for_status(tg: &Tailgate, host: &str, p: &str, wanted: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get(tg, host, p).await;
        if status(&reply) == wanted || Instant::now() > deadline {
            assert_eq!(status(&reply), wanted, "{p}: {}", reply.text());
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_hundred_concurrent_misses_send_one_request_upstream() {
    let up = TestUpstream::start();
    let tg = start(&up, "");
    let addr = tg.addr();
    let p = path("slow", "max-age=60", "delay=300");
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { get_with(addr, "plain.test", &p, &[]).await })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for request in requests {
        let reply = request.await.expect("join");
        assert_eq!(
            (reply.status.as_u16(), reply.text()),
            (200, "slow #1".into())
        );
        *statuses.entry(status(&reply)).or_insert(0) += 1;
    }
    assert_eq!(
        up.path_requests("/cache/slow"),
        1,
        "the cache lock let one request through"
    );
    assert_eq!(statuses.get("MISS"), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get("HIT"), Some(&99), "{statuses:?}");
}

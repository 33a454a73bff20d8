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

#[tokio::test(flavor = "multi_thread")]
async fn stale_is_served_on_502_and_timeout_unless_forbidden() {
    let up = TestUpstream::start();
    let tg = start(&up, "");
    for (name, failure) in [("s502", "status=502"), ("slowdown", "delay=1500")] {
        let p = path(name, "max-age=1", "");
        assert_eq!(status(&get(&tg, "plain.test", &p).await), "MISS");
        let_expire().await;
        let stale = get_h(&tg, "plain.test", &p, &[("x-upstream", failure)]).await;
        assert_eq!(
            (stale.status.as_u16(), status(&stale), stale.text()),
            (200, "STALE".into(), format!("{name} #1")),
            "{failure}"
        );
    }
    // `use_stale = ["off"]`: the error goes through.
    let p = path("strict", "max-age=1", "");
    get(&tg, "strict.test", &p).await;
    let_expire().await;
    let failed = get_h(&tg, "strict.test", &p, &[("x-upstream", "status=502")]).await;
    assert_eq!(
        (failed.status.as_u16(), status(&failed)),
        (502, "EXPIRED".into())
    );
    // `must-revalidate` forbids stale answers even where use_stale allows them.
    let p = path("mr", "max-age=1, must-revalidate", "");
    get(&tg, "plain.test", &p).await;
    let_expire().await;
    let failed = get_h(&tg, "plain.test", &p, &[("x-upstream", "delay=1500")]).await;
    assert_eq!(
        (failed.status.as_u16(), status(&failed)),
        (504, "EXPIRED".into())
    );
    // `stale-if-error` from the upstream allows it on a strict route.
    let p = path("sie", "max-age=1, stale-if-error=60", "");
    get(&tg, "strict.test", &p).await;
    let_expire().await;
    let stale = get_h(&tg, "strict.test", &p, &[("x-upstream", "status=503")]).await;
    assert_eq!(
        (stale.status.as_u16(), status(&stale)),
        (200, "STALE".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_page_beats_the_error_when_the_upstream_is_down() {
    let up = TestUpstream::start();
    let tg = start(&up, "");
    let p = path("down", "max-age=1", "");
    assert_eq!(get(&tg, "plain.test", &p).await.text(), "down #1");
    drop(up);
    let_expire().await;
    let stale = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (stale.status.as_u16(), status(&stale), stale.text()),
        (200, "STALE".into(), "down #1".into())
    );
    // Nothing stored: the error goes through.
    let never = get(&tg, "plain.test", &path("never", "max-age=1", "")).await;
    assert_eq!(
        (never.status.as_u16(), status(&never)),
        (502, "MISS".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn updating_and_background_update() {
    let up = TestUpstream::start();
    let tg = start(&up, "");

    // background_update: the client gets the stale copy at once; the entry
    // is refreshed behind it.
    let p = path("bg", "max-age=1", "");
    get(&tg, "bg.test", &p).await;
    let_expire().await;
    let started = Instant::now();
    let updating = get_h(&tg, "bg.test", &p, &[("x-upstream", "delay=300")]).await;
    assert_eq!(
        (status(&updating), updating.text()),
        ("UPDATING".into(), "bg #1".into())
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "not held up by the refresh"
    );
    let refreshed = wait_for_status(&tg, "bg.test", &p, "HIT").await;
    assert_eq!(refreshed.text(), "bg #2");

    // Without background update, while one request refreshes, the others
    // get the stale copy (use_stale "updating").
    let p = path("u", "max-age=1", "");
    get(&tg, "plain.test", &p).await;
    let_expire().await;
    let addr = tg.addr();
    let refreshing = {
        let p = p.clone();
        tokio::spawn(async move {
            get_with(addr, "plain.test", &p, &[("x-upstream", "delay=300")]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let meanwhile = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&meanwhile), meanwhile.text()),
        ("UPDATING".into(), "u #1".into())
    );
    let refreshed = refreshing.await.expect("join");
    assert_eq!(
        (status(&refreshed), refreshed.text()),
        ("EXPIRED".into(), "u #2".into())
    );

    // The upstream's stale-while-revalidate: served stale, refreshed behind.
    let p = path("swr", "max-age=1, stale-while-revalidate=60", "");
    get(&tg, "plain.test", &p).await;
    let_expire().await;
    let stale = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&stale), stale.text()),
        ("UPDATING".into(), "swr #1".into())
    );
    assert_eq!(
        wait_for_status(&tg, "plain.test", &p, "HIT").await.text(),
        "swr #2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_templates_ignored_headers_and_valid() {
    let up = TestUpstream::start();
    let tg = start(&up, "");

    // {host}{path}: the query string does not bust the cache.
    let miss = get(&tg, "pathkey.test", &path("k", "max-age=60", "v=1")).await;
    let hit = get(&tg, "pathkey.test", &path("k", "max-age=60", "v=2")).await;
    assert_eq!(
        (status(&miss), status(&hit), hit.text()),
        ("MISS".into(), "HIT".into(), "k #1".into())
    );
    // The default key keeps it.
    get(&tg, "plain.test", &path("q", "max-age=60", "v=1")).await;
    let other = get(&tg, "plain.test", &path("q", "max-age=60", "v=2")).await;
    assert_eq!(
        (status(&other), other.text()),
        ("MISS".into(), "q #2".into())
    );

    // Cache-Control and Set-Cookie ignored: stored for `valid` 200 = 1h,
    // without the cookie in the stored copy.
    let p = path("i", "no-store, private", "cookie=1");
    let first = get(&tg, "ignore.test", &p).await;
    assert_eq!(status(&first), "MISS");
    assert!(
        first.header("set-cookie").is_some(),
        "the filling client gets its cookie"
    );
    let second = get(&tg, "ignore.test", &p).await;
    assert_eq!(
        (status(&second), second.text()),
        ("HIT".into(), "i #1".into())
    );
    assert_eq!(second.header("set-cookie"), None);
    // Not ignored: neither is stored.
    for (p, name) in [
        (path("nostore", "no-store", ""), "nostore"),
        (path("cookie", "max-age=60", "cookie=1"), "cookie"),
    ] {
        get(&tg, "plain.test", &p).await;
        let again = get(&tg, "plain.test", &p).await;
        assert_eq!(
            (status(&again), again.text()),
            ("MISS".into(), format!("{name} #2"))
        );
    }

    // `valid` gives freshness when the upstream gives none; per status.
    get(&tg, "valid.test", "/cache/v").await;
    let hit = get(&tg, "valid.test", "/cache/v").await;
    assert_eq!((status(&hit), hit.text()), ("HIT".into(), "v #1".into()));
    let p = "/cache/nf?status=404";
    get(&tg, "valid.test", p).await;
    let hit = get(&tg, "valid.test", p).await;
    assert_eq!((hit.status.as_u16(), status(&hit)), (404, "HIT".into()));
    let_expire().await;
    assert_eq!(status(&get(&tg, "valid.test", p).await), "EXPIRED");
    // Without `valid` and without freshness or validators: not stored.
    get(&tg, "plain.test", "/cache/bare").await;
    assert_eq!(status(&get(&tg, "plain.test", "/cache/bare").await), "MISS");
    // Heuristic freshness from Last-Modified (10% of its age).
    get(&tg, "plain.test", "/cache/old?lm=864000").await;
    assert_eq!(
        status(&get(&tg, "plain.test", "/cache/old?lm=864000").await),
        "HIT"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_authorization_and_request_conditions() {
    let up = TestUpstream::start();
    let tg = start(&up, "");

    let p = path("lang", "max-age=60", "vary=Accept-Language");
    let fr = get_h(&tg, "plain.test", &p, &[("accept-language", "fr")]).await;
    let de = get_h(&tg, "plain.test", &p, &[("accept-language", "de")]).await;
    let fr_again = get_h(&tg, "plain.test", &p, &[("accept-language", "fr")]).await;
    let de_again = get_h(&tg, "plain.test", &p, &[("accept-language", "de")]).await;
    assert_eq!((status(&fr), status(&de)), ("MISS".into(), "MISS".into()));
    assert_eq!(
        (status(&fr_again), fr_again.text()),
        ("HIT".into(), "lang #1 Accept-Language=fr".into())
    );
    assert_eq!(
        (status(&de_again), de_again.text()),
        ("HIT".into(), "lang #2 Accept-Language=de".into())
    );

    // Authorization: not stored unless the upstream says public.
    let auth = [("authorization", "Bearer secret")];
    let p = path("auth", "max-age=60", "");
    get_h(&tg, "plain.test", &p, &auth).await;
    let again = get_h(&tg, "plain.test", &p, &auth).await;
    assert_eq!(
        (status(&again), again.text()),
        ("MISS".into(), "auth #2".into())
    );
    let p = path("pub", "public, max-age=60", "");
    get_h(&tg, "plain.test", &p, &auth).await;
    assert_eq!(status(&get_h(&tg, "plain.test", &p, &auth).await), "HIT");

    // bypass: skips the lookup, but the answer refreshes the entry.
    let p = path("c", "max-age=60", "");
    let bypassed = get_h(&tg, "cond.test", &p, &[("x-refresh", "1")]).await;
    assert_eq!(
        (status(&bypassed), bypassed.text()),
        ("BYPASS".into(), "c #1".into())
    );
    assert_eq!(get(&tg, "cond.test", &p).await.text(), "c #1");
    let bypassed = get_h(&tg, "cond.test", &p, &[("x-refresh", "1")]).await;
    assert_eq!(bypassed.text(), "c #2");
    let hit = get(&tg, "cond.test", &p).await;
    assert_eq!((status(&hit), hit.text()), ("HIT".into(), "c #2".into()));
    // "0" does not count.
    assert_eq!(
        status(&get_h(&tg, "cond.test", &p, &[("x-refresh", "0")]).await),
        "HIT"
    );

    // no_store: answered, not stored.
    let p = path("n", "max-age=60", "");
    let first = get_h(&tg, "cond.test", &p, &[("cookie", "session=1")]).await;
    assert_eq!(status(&first), "MISS");
    assert_eq!(status(&get(&tg, "cond.test", &p).await), "MISS");
    assert_eq!(status(&get(&tg, "cond.test", &p).await), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_bound_evicts_least_recently_used_and_big_bodies_stream_uncached() {
    let up = TestUpstream::start();
    // Each entry is ~10.7 KB (10,000-byte body, headers, key, bookkeeping):
    // five fit in 60 KiB, six do not.
    let tg = start(&up, "max_size = \"60KiB\"");
    let entry = |i: usize| path(&format!("e{i}"), "max-age=600", "size=10000");
    for i in 0..5 {
        assert_eq!(status(&get(&tg, "plain.test", &entry(i)).await), "MISS");
    }
    assert_eq!(status(&get(&tg, "plain.test", &entry(0)).await), "HIT");
    // e1 is now the least recently used: the sixth entry evicts it.
    assert_eq!(status(&get(&tg, "plain.test", &entry(5)).await), "MISS");
    for i in [0, 2, 3, 4, 5] {
        assert_eq!(
            status(&get(&tg, "plain.test", &entry(i)).await),
            "HIT",
            "e{i}"
        );
    }
    assert_eq!(
        status(&get(&tg, "plain.test", &entry(1)).await),
        "MISS",
        "e1 was evicted"
    );

    // A working set twice the cache cycles through it: every pass misses.
    for _ in 0..2 {
        for i in 10..20 {
            let reply = get(&tg, "plain.test", &entry(i)).await;
            assert_eq!((status(&reply), reply.body.len()), ("MISS".into(), 10_000));
        }
    }

    // Bodies over max_entry_size (1 KiB here) are served whole, never stored,
    // whether announced by Content-Length or streamed chunked.
    for more in ["size=5000", "size=5000&chunked=1"] {
        let p = path("big", "max-age=60", more);
        for _ in 0..2 {
            let reply = get(&tg, "small.test", &p).await;
            assert_eq!(
                (status(&reply), reply.body.len()),
                ("MISS".into(), 5000),
                "{more}"
            );
        }
    }
    let p = path("fits", "max-age=60", "size=500&chunked=1");
    get(&tg, "small.test", &p).await;
    let hit = get(&tg, "small.test", &p).await;
    assert_eq!((status(&hit), hit.body.len()), ("HIT".into(), 500));

    // A large body streams to the client while it is stored.
    let p = path("large", "max-age=60", "size=3000000");
    let first = get(&tg, "plain.test", &p).await;
    let tg_big = start(&up, "max_size = \"16MiB\"");
    let first_big = get(&tg_big, "plain.test", &p).await;
    let second_big = get(&tg_big, "plain.test", &p).await;
    assert_eq!(
        first.body.len(),
        3_000_000,
        "larger than the cache: passed through"
    );
    assert_eq!(
        (status(&first_big), status(&second_big)),
        ("MISS".into(), "HIT".into())
    );
    assert_eq!(second_big.body.len(), 3_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn inactive_entries_are_dropped_even_when_fresh() {
    let up = TestUpstream::start();
    let tg = start(&up, "inactive = \"1s\"");
    let p = path("idle", "max-age=3600", "");
    assert_eq!(status(&get(&tg, "plain.test", &p).await), "MISS");
    assert_eq!(status(&get(&tg, "plain.test", &p).await), "HIT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = get(&tg, "plain.test", &p).await;
    assert_eq!(
        (status(&reply), reply.text()),
        ("MISS".into(), "idle #2".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_one_key_a_prefix_or_everything() {
    let up = TestUpstream::start();
    let tg = start(&up, "");
    let admin = tg.admin_addr();
    let purge = |query: String| async move {
        let reply = send(
            admin,
            Method::POST,
            "localhost",
            &format!("/cache/purge?{query}"),
            &[],
            Bytes::new(),
        )
        .await
        .expect("purge");
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
        reply.json()["purged"].as_u64().expect("purged count")
    };
    let paths: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| path(&format!("docs-{n}"), "max-age=600", ""))
        .collect();
    for p in &paths {
        get(&tg, "plain.test", p).await;
    }
    let other = path("other", "max-age=600", "");
    get(&tg, "plain.test", &other).await;

    let key = format!("http://plain.test{}", paths[0]);
    assert_eq!(purge(format!("key={}", encode(&key))).await, 1);
    assert_eq!(status(&get(&tg, "plain.test", &paths[0]).await), "MISS");
    assert_eq!(status(&get(&tg, "plain.test", &paths[1]).await), "HIT");

    assert_eq!(
        purge(format!(
            "prefix={}",
            encode("http://plain.test/cache/docs-")
        ))
        .await,
        3
    );
    assert_eq!(status(&get(&tg, "plain.test", &paths[2]).await), "MISS");
    assert_eq!(status(&get(&tg, "plain.test", &other).await), "HIT");

    assert!(purge("all=true".into()).await >= 2);
    assert_eq!(status(&get(&tg, "plain.test", &other).await), "MISS");

    let bad = send(
        admin,
        Method::POST,
        "localhost",
        "/cache/purge",
        &[],
        Bytes::new(),
    )
    .await
    .expect("purge");
    assert_eq!(bad.status.as_u16(), 400);
    // Not on the public listener.
    let public = send(
        tg.addr(),
        Method::POST,
        "plain.test",
        "/cache/purge?all=true",
        &[],
        Bytes::new(),
    )
    .await
    .expect("post");
    assert_eq!(status(&public), "BYPASS");
}

//! The cache's storage: the byte bound with LRU eviction, bodies too big to
//! cache, `inactive`, and purge on the admin listener.

use super::*;

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

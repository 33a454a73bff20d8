//! What a cache entry is keyed and stored by: key templates, ignored headers,
//! `valid`, Vary, Authorization and the request conditions that bypass it.

use super::*;

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

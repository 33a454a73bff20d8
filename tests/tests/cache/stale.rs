//! Stale answers (on 502, timeouts and a dead upstream, unless forbidden),
//! UPDATING and the background update.

use super::*;

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

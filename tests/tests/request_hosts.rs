//! The request's host, through the real binary: HTTP/1.1 without a Host is
//! 400 (not a 404 from routing), two Host headers are 400, and a Host with
//! userinfo (`evil@app.test`) is refused rather than routed as `app.test`
//! and sent upstream as it came.

use tailgate_e2e::client::raw_exchange;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

async fn status_of(tg: &Tailgate, request: &str) -> u16 {
    let bytes = raw_exchange(tg.addr(), request.as_bytes())
        .await
        .expect("exchange");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {request:?}: {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_hosts_are_400_and_never_reach_the_upstream() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &app_route(&up.url())));
    let cases = [
        ("no Host", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
        (
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "userinfo",
            "GET / HTTP/1.1\r\nHost: evil@app.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "a path in Host",
            "GET / HTTP/1.1\r\nHost: app.test/x\r\nConnection: close\r\n\r\n",
        ),
        (
            "userinfo in an absolute-form target",
            "GET http://evil@app.test/ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        assert_eq!(status_of(&tg, request).await, 400, "{what}");
    }
    assert_eq!(up.requests(), 0, "a bad host reached the upstream");

    // The good forms still route.
    let ok = [
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: APP.test:8080\r\nConnection: close\r\n\r\n",
    ];
    for request in ok {
        assert_eq!(status_of(&tg, request).await, 200, "{request:?}");
    }
    // HTTP/1.0 may omit Host: it is an unknown host (404), not a 400.
    assert_eq!(status_of(&tg, "GET / HTTP/1.0\r\n\r\n").await, 404);
}

//! Client IP and forwarding headers through the real binary: the client-IP
//! header is believed only from trusted peers; X-Forwarded-For, -Proto and
//! X-Real-IP are set; hop-by-hop headers are stripped.

use tailgate_e2e::client::get_with;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

fn config(up: &TestUpstream, trusted: &str) -> String {
    base_config(&format!(
        "client_ip_header = \"Fly-Client-IP\"\ntrusted_proxies = [\"{trusted}\"]"
    )) + &app_route(&up.url())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_ip_header_is_trusted_only_from_trusted_peers() {
    let up = TestUpstream::start();
    // The test client connects from 127.0.0.1: trusted here.
    let trusted = Tailgate::start(&config(&up, "127.0.0.0/8"));
    let r = get_with(
        trusted.addr(),
        "app.test",
        "/t",
        &[
            ("fly-client-ip", "203.0.113.7"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(r.echoed_header("x-real-ip").as_deref(), Some("203.0.113.7"));
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    let rec = trusted.wait_log("request_uri", "/t");
    assert_eq!(rec["client_ip"].as_str(), Some("203.0.113.7"));
    assert_eq!(
        rec["remote_addr"]
            .as_str()
            .map(|a| a.starts_with("127.0.0.1")),
        Some(true)
    );

    // Not trusted: the header and any forwarded chain are ignored.
    let untrusted = Tailgate::start(&config(&up, "10.0.0.0/8"));
    let r = get_with(
        untrusted.addr(),
        "app.test",
        "/u",
        &[
            ("fly-client-ip", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(r.echoed_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    let rec = untrusted.wait_log("request_uri", "/u");
    assert_eq!(rec["client_ip"].as_str(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_are_stripped_and_a_request_id_is_sent() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, "10.0.0.0/8"));
    let r = get_with(
        tg.addr(),
        "app.test",
        "/h",
        &[
            ("connection", "x-custom-hop"),
            ("x-custom-hop", "1"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "trailers"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(r.echoed_header("x-custom-hop"), None);
    assert_eq!(r.echoed_header("proxy-authorization"), None);
    assert_eq!(r.echoed_header("te"), None);
    assert_eq!(r.echoed_header("x-end-to-end").as_deref(), Some("kept"));
    let id = r
        .echoed_header("x-request-id")
        .expect("request id sent upstream");
    assert!(id.len() >= 16, "request id {id:?} too short");
    // Response hop-by-hop headers are stripped too.
    let r = get_with(
        tg.addr(),
        "app.test",
        "/headers/keep-alive=timeout=5,x-kept=yes",
        &[],
    )
    .await;
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-kept").as_deref(), Some("yes"));
}

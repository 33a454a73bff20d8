//! `Upgrade` through the real binary: only the protocols a route allows go
//! upstream as an upgrade (`websocket` by default). `Upgrade: h2c` never
//! does: its tunnel would carry requests to paths the route denies past the
//! route's plugins. A refused upgrade goes upstream as a plain request.

use std::process::Command;

use tailgate_e2e::client::raw_exchange;
use tailgate_e2e::process::{tailgate_bin, Tailgate, TempDir};
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

/// The echoed request's header names, from a raw exchange.
async fn echoed_header_names(tg: &Tailgate, request: &str) -> Vec<String> {
    let bytes = raw_exchange(tg.addr(), request.as_bytes())
        .await
        .expect("exchange");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    let echoed: serde_json::Value = serde_json::from_str(body).expect("echo json");
    echoed["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h[0].as_str().expect("name").to_string())
        .collect()
}

const H2C: &str = "GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                   Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n";

const WEBSOCKET: &str = "GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\n\
                         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn h2c_is_never_forwarded_as_an_upgrade() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &app_route(&up.url())));
    let names = echoed_header_names(&tg, H2C).await;
    for dropped in ["upgrade", "http2-settings"] {
        assert!(
            !names.iter().any(|n| n == dropped),
            "{dropped} reached the upstream: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_without_websocket_in_its_upgrades_sends_a_plain_request() {
    let up = TestUpstream::start();
    let config = base_config("") + &app_route(&up.url()) + "upgrades = []\n";
    let tg = Tailgate::start(&config);
    let names = echoed_header_names(
        &tg,
        &WEBSOCKET.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        !names.iter().any(|n| n == "upgrade"),
        "the upgrade reached the upstream: {names:?}"
    );
}

#[test]
fn h2c_in_a_routes_upgrades_is_refused_at_load() {
    let up_config = base_config("")
        + &app_route("http://127.0.0.1:9")
        + "upgrades = [\"websocket\", \"h2c\"]\n";
    let dir = TempDir::new("upgrades-h2c");
    let cfg = dir.write("config.toml", &up_config);
    let out = Command::new(tailgate_bin())
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("h2c is never forwarded"), "{err}");
}

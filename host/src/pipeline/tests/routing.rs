//! Routing, host-made answers for unrouted requests, and config swaps.

use super::*;

// === routing and host-made answers ===

#[tokio::test]
async fn healthz_answers_before_routing_and_is_not_logged() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let a = h.get("nobody.test", "/healthz").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"ok"[..]));
    h.no_line().await;
}

#[tokio::test]
async fn unknown_host_gets_the_configured_status_and_is_logged() {
    let up = echo_upstream().await;
    let cfg = config(
        up,
        r#"unknown_host = { action = "status", status = 421 }"#,
        "",
    );
    let mut h = harness(&cfg, vec![]);
    let a = h.get("nobody.test", "/x").await;
    assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST);
    let rec = h.next_log().await;
    assert_eq!(rec["status"], 421);
    assert_eq!(rec["route"], "");
    assert_eq!(rec["http_host"], "nobody.test");
}

#[tokio::test]
async fn unknown_host_close_gives_no_response_but_a_444_line() {
    let up = echo_upstream().await;
    let cfg = config(up, r#"unknown_host = { action = "close" }"#, "");
    let mut h = harness(&cfg, vec![]);
    let peer: SocketAddr = CLIENT.parse().expect("peer");
    let result = h.proxy.handle(request("nobody.test", "/"), peer).await;
    assert!(result.is_err());
    assert_eq!(h.next_log().await["status"], 444);
}

#[tokio::test]
async fn known_host_without_matching_path_is_404() {
    let up = echo_upstream().await;
    let routes = r#"
[[routes]]
name = "api"
hosts = ["api.test"]
path = "/v1/"
upstream = "echo"
"#;
    let mut h = harness(&config(up, "", routes), vec![]);
    assert_eq!(
        h.get("api.test", "/v2/x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.next_log().await["route"], "");
    assert_eq!(h.get("api.test", "/v1/x").await.status, StatusCode::OK);
    assert_eq!(h.next_log().await["route"], "api");
}

#[tokio::test]
async fn swapping_the_active_config_changes_routing_for_new_requests() {
    let up = echo_upstream().await;
    let h = harness(&config(up, "", ""), vec![]);
    assert_eq!(h.get("app.test", "/").await.status, StatusCode::OK);
    let routes = r#"
[[routes]]
name = "other"
hosts = ["other.test"]
path = "/"
upstream = "echo"
"#;
    let next_cfg =
        config(up, "", routes).replace("hosts = [\"app.test\"]", "hosts = [\"renamed.test\"]");
    let next = crate::config::parse(&next_cfg, &h.dir.join("config.toml")).expect("config");
    let next = ActiveConfig::new(
        Arc::new(next),
        Arc::new(PluginChains::from_chains(vec![])),
        h.proxy.active().access_log.clone(),
    )
    .expect("upstreams");
    let previous = h.proxy.swap(next);
    assert_eq!(previous.config.routes[0].name.as_str(), "app");
    assert_eq!(h.get("app.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("renamed.test", "/").await.status, StatusCode::OK);
}

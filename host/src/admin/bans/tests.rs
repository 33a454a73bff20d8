//! The ban endpoints driven through the admin router, on a runtime with a
//! manual clock.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use tailgate_runtime::{ManualClock, Runtime, RuntimeConfig};

use super::*;
use crate::admin::AdminRouter;

const START_MS: u64 = 1_765_000_000_000;

fn setup() -> (AdminRouter, Runtime, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::with_clock(
        RuntimeConfig::new(cache.path()),
        Arc::new(ManualClock::new(START_MS)),
    )
    .expect("runtime");
    let endpoints = endpoints(runtime.bans(), 64);
    let router = AdminRouter::new()
        .route(Method::GET, BANS_PATH, endpoints.list)
        .route(Method::POST, BANS_PATH, endpoints.add)
        .route_prefix(Method::DELETE, BAN_PREFIX, endpoints.remove);
    (router, runtime, cache)
}

async fn call(router: &AdminRouter, method: Method, path: &str, body: &str) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = router.dispatch(req).await;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn post_lists_and_deletes_a_ban() {
    let (router, _runtime, _dir) = setup();
    let (status, body) = call(
        &router,
        Method::POST,
        "/bans",
        r#"{"jail": "ssh", "key": "2001:db8::1/64", "duration": "1h", "reason": "test"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ban: BanJson = serde_json::from_str(&body).expect("ban json");
    assert_eq!(ban.key, "2001:db8::1/64");
    assert_eq!(ban.expires_unix_ms - ban.since_unix_ms, 3_600_000);
    assert_eq!(ban.remaining_seconds, 3_600);
    assert_eq!(ban.since, "2025-12-06T05:46:40Z");
    assert_eq!(ban.offences, 1);

    let (status, body) = call(
        &router,
        Method::POST,
        "/bans",
        r#"{"jail": "ssh", "key": "2001:db8::1/64", "duration": 60}"#,
    )
    .await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = call(&router, Method::GET, "/bans", "").await;
    assert_eq!(status, 200);
    let listed: Vec<BanJson> = serde_json::from_str(&body).expect("list json");
    assert_eq!(listed, vec![ban]);

    let path = "/bans/ssh/2001%3Adb8%3A%3A1%2F64";
    assert_eq!(call(&router, Method::DELETE, path, "").await.0, 204);
    assert_eq!(call(&router, Method::DELETE, path, "").await.0, 404);
    assert_eq!(call(&router, Method::GET, "/bans", "").await.1, "[]\n");
}

#[tokio::test]
async fn bad_orders_are_400_with_the_reason() {
    let (router, _runtime, _dir) = setup();
    let cases = [
        (
            r#"{"jail": "", "key": "k", "duration": 5}"#,
            "`jail` must not be empty",
        ),
        (
            r#"{"jail": "j", "key": "k", "duration": 0}"#,
            "duration: 0 seconds",
        ),
        (
            r#"{"jail": "j", "key": "k", "duration": "1 day"}"#,
            "duration: invalid duration",
        ),
        (r#"{"jail": "j", "key": "k"}"#, "missing field `duration`"),
    ];
    for (body, reason) in cases {
        let (status, answer) = call(&router, Method::POST, "/bans", body).await;
        assert_eq!(status, 400, "{body}");
        assert!(answer.contains(reason), "{body}: {answer}");
    }
    let long = format!(
        r#"{{"jail": "j", "key": "{}", "duration": 5}}"#,
        "k".repeat(65)
    );
    let (status, answer) = call(&router, Method::POST, "/bans", &long).await;
    assert_eq!(status, 400);
    assert!(answer.contains("over the 64-byte key limit"), "{answer}");
    for path in ["/bans/only-jail", "/bans/j/k/extra", "/bans//k"] {
        assert_eq!(
            call(&router, Method::DELETE, path, "").await.0,
            400,
            "{path}"
        );
    }
}

#[test]
fn times_are_rfc3339_utc_and_clamped() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
}

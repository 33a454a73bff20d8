//! The cors plugin through the real binary: preflights answered here,
//! CORS headers for allowed origins only, the upstream's own removed, and
//! the host entering the plugin only for the requests that need it (its
//! hook gates: most requests carry no `Origin` and cost no plugin call).

use bytes::Bytes;
use http::Method;
use tailgate_e2e::client::{get_with, send};
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::plugin_wasm;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

const APP: &str = "https://app.example.com";

fn config(up: &TestUpstream) -> String {
    // base_config ends inside its [plugins] table.
    base_config("")
        + &format!(
            r#"cors = "{cors}"
{app}
[[routes.plugins]]
plugin = "cors"
[routes.plugins.config]
allow_origins = ["{APP}", "https://*.example.org"]
allow_methods = ["GET", "POST", "DELETE"]
allow_headers = ["Content-Type"]
expose_headers = ["X-Request-Id"]
allow_credentials = true
max_age = 600
"#,
            cors = plugin_wasm("cors").display(),
            app = app_route(&up.url()),
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_headers_for_allowed_origins_and_plugin_calls_only_where_needed() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up));
    // The upstream sends its own wildcard CORS header on every answer.
    let path = "/headers/access-control-allow-origin=*";

    // No Origin (same-origin or not a browser): the upstream's CORS header
    // is removed, `Vary: Origin` added; neither hook is entered.
    let plain = get_with(tg.addr(), "app.test", path, &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("access-control-allow-origin"), None);
    assert_eq!(plain.header("vary").as_deref(), Some("Origin"));

    // An allowed origin gets itself back, with credentials and the exposed
    // headers.
    let allowed = get_with(tg.addr(), "app.test", path, &[("origin", APP)]).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        allowed
            .header("access-control-allow-credentials")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        allowed.header("access-control-expose-headers").as_deref(),
        Some("x-request-id")
    );

    // A refused origin gets none, not even the upstream's.
    let refused = get_with(
        tg.addr(),
        "app.test",
        path,
        &[("origin", "https://evil.test")],
    )
    .await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.header("access-control-allow-origin"), None);

    // A preflight is answered here; the upstream never sees it.
    let before = up.requests();
    let preflight = send(
        tg.addr(),
        Method::OPTIONS,
        "app.test",
        "/api/items",
        &[
            ("origin", "https://shop.example.org"),
            ("access-control-request-method", "DELETE"),
        ],
        Bytes::new(),
    )
    .await
    .expect("preflight");
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some("https://shop.example.org")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods").as_deref(),
        Some("GET, POST, DELETE")
    );
    assert_eq!(up.requests(), before);

    // The plugin was entered for the preflight's request hook and for the
    // three responses to requests with an Origin, never for the plain one.
    let samples = scrape(tg.admin_addr()).await;
    let calls = |hook: &str| {
        sum(
            &samples,
            "tailgate_plugin_calls_total",
            &[("plugin", "cors"), ("route", "app"), ("hook", hook)],
        )
    };
    assert_eq!(calls("request"), 1.0);
    assert_eq!(calls("response"), 3.0);
}

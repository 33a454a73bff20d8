//! The cors plugin's harness tests: the built component (`cargo build
//! --release` first) on the proxy's own plugin runtime. Run with
//! `cargo test --target <your host triple> -p cors` from `plugins/`.

use tailgate_harness::{
    built_plugin, header_str, var, Harness, HeaderEditsExt, Request, Response, TestPlugin,
};

/// The docs' example (docs/cors.md), shared with the unit tests.
const SITE: &str = include_str!("site.json");

fn configured<'h>(harness: &'h Harness, config: &str) -> TestPlugin<'h> {
    let wasm = built_plugin(env!("CARGO_MANIFEST_DIR")).expect("built plugin");
    let plugin = harness.load(&wasm).expect("load");
    harness.configure(&plugin, config).expect("configure")
}

fn preflight(origin: &str, method: &str, headers: &str) -> Request {
    let req = Request::new("OPTIONS", "/api/items")
        .header("origin", origin)
        .header("access-control-request-method", method);
    if headers.is_empty() {
        req
    } else {
        req.header("access-control-request-headers", headers)
    }
}

#[test]
fn an_allowed_preflight_is_answered_204_here() {
    let harness = Harness::new().expect("harness");
    let cors = configured(&harness, SITE);
    let outcome = cors.on_request(preflight(
        "https://app.example.com",
        "DELETE",
        "content-type, Authorization",
    ));
    let answer = outcome.expect_status(204);
    let h = |name| header_str(&answer.headers, name);
    assert_eq!(
        h("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(h("access-control-allow-methods"), Some("GET, POST, DELETE"));
    assert_eq!(
        h("access-control-allow-headers"),
        Some("content-type, authorization")
    );
    assert_eq!(h("access-control-allow-credentials"), Some("true"));
    assert_eq!(h("access-control-max-age"), Some("600"));
    assert!(h("vary").is_some_and(|v| v.starts_with("Origin")));
    assert_eq!(var(&answer.vars, "cors"), Some("preflight"));
    // A subdomain of the wildcard origin is allowed too.
    cors.on_request(preflight("https://a.b.example.org", "GET", ""))
        .expect_status(204);
}

#[test]
fn refused_preflights_say_why_and_carry_no_cors_headers() {
    let harness = Harness::new().expect("harness");
    let cors = configured(&harness, SITE);
    for (req, reason) in [
        (
            preflight("https://evil.test", "GET", ""),
            "origin not allowed",
        ),
        (
            preflight("https://example.org", "GET", ""),
            "origin not allowed",
        ),
        (
            preflight("https://app.example.com", "PUT", ""),
            "method not allowed",
        ),
        (
            preflight("https://app.example.com", "POST", "x-secret"),
            "header `x-secret` not allowed",
        ),
    ] {
        let outcome = cors.on_request(req);
        let answer = outcome.expect_status(403);
        assert_eq!(
            answer.body,
            format!("CORS preflight refused: {reason}\n").as_bytes()
        );
        assert_eq!(
            header_str(&answer.headers, "access-control-allow-origin"),
            None
        );
    }
}

#[test]
fn actual_requests_go_on_and_their_responses_get_the_headers() {
    let harness = Harness::new().expect("harness");
    let cors = configured(&harness, SITE);
    let req = || Request::get("/api/items").header("origin", "https://app.example.com");
    cors.on_request(req()).expect_continue();
    // An OPTIONS without Access-Control-Request-Method is not a preflight.
    cors.on_request(Request::new("OPTIONS", "/").header("origin", "https://app.example.com"))
        .expect_continue();
    let edits = cors
        .on_response(req(), Response::new(200))
        .expect_edits()
        .clone();
    assert_eq!(
        edits.headers.set_value("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        edits.headers.set_value("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        edits.headers.set_value("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(edits.headers.appended("vary"), ["Origin"]);
}

#[test]
fn a_refused_origin_gets_no_cors_headers_even_from_the_upstream() {
    let harness = Harness::new().expect("harness");
    let cors = configured(&harness, SITE);
    let edits = cors
        .on_response(
            Request::get("/").header("origin", "https://evil.test"),
            Response::new(200).header("access-control-allow-origin", "*"),
        )
        .expect_edits()
        .clone();
    assert!(edits.headers.removes("access-control-allow-origin"));
    assert_eq!(edits.headers.set_value("access-control-allow-origin"), None);
}

#[test]
fn any_origin_answers_star_without_vary() {
    let harness = Harness::new().expect("harness");
    let cors = configured(&harness, r#"{"allow_origins": ["*"]}"#);
    let edits = cors
        .on_response(
            Request::get("/").header("origin", "https://anyone.test"),
            Response::new(200),
        )
        .expect_edits()
        .clone();
    assert_eq!(
        edits.headers.set_value("access-control-allow-origin"),
        Some("*")
    );
    assert!(edits.headers.appended("vary").is_empty());
}

/// The calls the runtime counted for cors's `hook` (`request`, `response`).
fn hook_calls(harness: &Harness, hook: &str) -> u64 {
    harness.metrics().counter(
        "tailgate_plugin_calls_total",
        &[("plugin", "cors"), ("hook", hook)],
    )
}

#[test]
fn only_preflights_and_requests_with_an_origin_enter_the_plugin() {
    let harness = Harness::new().expect("harness");
    let cors = configured(&harness, SITE);
    // Most requests carry no Origin: neither hook is entered, and the
    // response still loses the upstream's CORS headers (fixed edits).
    cors.on_request(Request::get("/api/items"))
        .expect_continue();
    let edits = cors
        .on_response(
            Request::get("/api/items"),
            Response::new(200).header("access-control-allow-origin", "*"),
        )
        .expect_edits()
        .clone();
    assert!(edits.headers.removes("access-control-allow-origin"));
    assert_eq!(edits.headers.appended("vary"), ["Origin"]);
    assert_eq!(
        (
            hook_calls(&harness, "request"),
            hook_calls(&harness, "response")
        ),
        (0, 0)
    );
    // A cross-origin GET enters the response hook only.
    let req = || Request::get("/api/items").header("origin", "https://app.example.com");
    cors.on_request(req()).expect_continue();
    cors.on_response(req(), Response::new(200)).expect_edits();
    assert_eq!(
        (
            hook_calls(&harness, "request"),
            hook_calls(&harness, "response")
        ),
        (0, 1)
    );
    // A preflight enters the request hook.
    cors.on_request(preflight("https://app.example.com", "GET", ""))
        .expect_status(204);
    assert_eq!(hook_calls(&harness, "request"), 1);
}

#[test]
fn unsafe_configs_are_refused_naming_the_key() {
    let harness = Harness::new().expect("harness");
    let wasm = built_plugin(env!("CARGO_MANIFEST_DIR")).expect("built plugin");
    let plugin = harness.load(&wasm).expect("load");
    let rejection = |config: &str| {
        harness
            .configure(&plugin, config)
            .err()
            .and_then(|e| e.rejection().map(str::to_owned))
            .unwrap_or_default()
    };
    assert_eq!(
        rejection(r#"{"allow_origins": ["*"], "allow_credentials": true}"#),
        "allow_credentials: browsers refuse credentials with `Access-Control-Allow-Origin: *`; list the origins"
    );
    assert_eq!(
        rejection(r#"{"allow_origins": ["https://a.example.com/app"]}"#),
        "allow_origins[0]: `https://a.example.com/app`: an origin has no path (browsers send `https://a.example.com`)"
    );
    assert_eq!(
        rejection(r#"{"allow_origins": []}"#),
        "allow_origins: list at least one origin (or \"*\")"
    );
    assert!(rejection(r#"{}"#).contains("missing field `allow_origins`"));
    assert!(rejection(r#"{"allow_origins": ["*"], "max_age": 100000}"#).starts_with("max_age:"));
}

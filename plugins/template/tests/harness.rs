//! `plugin-template`'s harness tests: the built component (`cargo build --release`
//! first) on the proxy's own plugin runtime, no proxy and no network. Run
//! with `cargo test --target <your host triple>` (the workspace's default
//! target is wasm32-wasip2, where tests cannot run).

use tailgate_harness::{built_plugin, Harness, HeaderEditsExt, Request, TestPlugin};

fn configured<'h>(harness: &'h Harness, config: &str) -> TestPlugin<'h> {
    let wasm = built_plugin(env!("CARGO_MANIFEST_DIR")).expect("built plugin");
    let plugin = harness.load(&wasm).expect("load");
    harness.configure(&plugin, config).expect("configure")
}

#[test]
fn requests_go_on_with_the_header_set() {
    let harness = Harness::new().expect("harness");
    let plugin = configured(&harness, r#"{"header": "X-Hello", "value": "world"}"#);
    let edits = plugin
        .on_request(Request::get("/"))
        .expect_continue()
        .clone();
    assert_eq!(edits.headers.set_value("x-hello"), Some("world"));
    assert_eq!(edits.headers.len(), 1);
}

#[test]
fn blocked_prefixes_are_answered_403_counted_and_logged() {
    let harness = Harness::new().expect("harness");
    let plugin = configured(&harness, r#"{"block": ["/admin"]}"#);
    let outcome = plugin.on_request(Request::get("/admin/users"));
    let answer = outcome.expect_status(403);
    assert_eq!(answer.body, b"Forbidden\n");
    outcome.expect_logged("blocked /admin/users");
    plugin.on_request(Request::get("/public")).expect_continue();
    let metrics = harness.metrics();
    assert_eq!(
        metrics.plugin_counter("blocked_requests", &[("prefix", "/admin")]),
        1
    );
}

#[test]
fn a_bad_config_is_rejected_with_the_key() {
    let harness = Harness::new().expect("harness");
    let wasm = built_plugin(env!("CARGO_MANIFEST_DIR")).expect("built plugin");
    let plugin = harness.load(&wasm).expect("load");
    let err = harness
        .configure(&plugin, r#"{"block": ["admin"]}"#)
        .err()
        .expect("rejected");
    assert_eq!(
        err.rejection(),
        Some("block[0]: `admin` is not a path prefix (it must start with `/`)")
    );
}

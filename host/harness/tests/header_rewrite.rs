//! The shipped `header-rewrite` plugin through the harness: request and
//! response header edits with templates, deny and redirect answers with the
//! var naming the rule, host-generated responses left alone unless
//! `response.always`, and config errors naming the key.

mod common;

use tailgate_harness::{header_str, var, Harness, HeaderEditsExt, PluginConfig, Request, Response};

const CONFIG: &str = r#"
request.set = { "X-Real-IP" = "{client_ip}", "X-Original-URI" = "{uri}" }
request.append = { "X-Forwarded-Host" = "{host}" }
request.remove = ["Cookie"]
response.set = { "X-Frame-Options" = "DENY", "X-Request-Id" = "{request_id}" }
response.remove = ["Server"]
deny = [{ path = "^/\\.(git|env)", status = 403, body = "Forbidden\n" }]
redirect = [{ path = "^/old/(.*)$", status = 301, location = "{scheme}://{host}/new/$1" }]
"#;

fn configured<'h>(harness: &'h Harness, config: &str) -> tailgate_harness::TestPlugin<'h> {
    let plugin = harness.load(common::wasm("header_rewrite")).expect("load");
    let config = PluginConfig::toml(config).expect("toml");
    harness.configure(&plugin, config).expect("configure")
}

#[test]
fn request_edits_render_templates_in_remove_set_append_order() {
    let harness = common::harness();
    let hr = configured(&harness, CONFIG);
    let edits = hr
        .on_request(
            Request::get("/a?b=1")
                .client_ip("198.51.100.4")
                .header("cookie", "s=1"),
        )
        .expect_continue()
        .clone();
    assert_eq!(edits.headers.set_value("x-real-ip"), Some("198.51.100.4"));
    assert_eq!(edits.headers.set_value("x-original-uri"), Some("/a?b=1"));
    assert_eq!(edits.headers.appended("x-forwarded-host"), ["example.com"]);
    assert!(edits.headers.removes("cookie"));
    let order: Vec<_> = edits.headers.iter().map(|e| e.op).collect();
    let first_set = order
        .iter()
        .position(|op| *op == tailgate_harness::HeaderOp::Set);
    assert!(
        order[..first_set.unwrap_or(0)]
            .iter()
            .all(|op| *op == tailgate_harness::HeaderOp::Remove),
        "{:?}",
        order
    );
}

#[test]
fn deny_and_redirect_rules_answer_with_the_rule_named() {
    let harness = common::harness();
    let hr = configured(&harness, CONFIG);
    let denied = hr.on_request(Request::get("/.git/config"));
    let answer = denied.expect_status(403);
    assert_eq!(answer.body, b"Forbidden\n");
    assert_eq!(var(&answer.vars, "header_rewrite_rule"), Some("deny[0]"));

    let moved = hr.on_request(Request::get("/old/post/1"));
    let answer = moved.expect_status(301);
    assert_eq!(
        header_str(&answer.headers, "location"),
        Some("https://example.com/new/post/1")
    );
    assert_eq!(
        var(&answer.vars, "header_rewrite_rule"),
        Some("redirect[0]")
    );
}

#[test]
fn response_edits_skip_host_generated_responses_unless_always() {
    let harness = common::harness();
    let hr = configured(&harness, CONFIG);
    let req = || Request::get("/").request_id("01HZX");
    let edits = hr
        .on_response(req(), Response::new(200).header("server", "nginx"))
        .expect_edits()
        .clone();
    assert_eq!(edits.headers.set_value("x-frame-options"), Some("DENY"));
    assert_eq!(edits.headers.set_value("x-request-id"), Some("01HZX"));
    assert!(edits.headers.removes("server"));
    let edits = hr
        .on_response(req(), Response::new(502).host_generated())
        .expect_edits()
        .clone();
    assert!(edits.headers.is_empty(), "{edits:?}");

    let always = configured(&harness, &format!("{CONFIG}\nresponse.always = true\n"));
    let edits = always
        .on_response(req(), Response::new(502).host_generated())
        .expect_edits()
        .clone();
    assert_eq!(edits.headers.set_value("x-frame-options"), Some("DENY"));
}

#[test]
fn config_errors_name_the_key() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("header_rewrite")).expect("load");
    let rejected = |toml: &str| {
        let config = PluginConfig::toml(toml).expect("toml");
        harness
            .configure(&plugin, config)
            .err()
            .and_then(|e| e.rejection().map(str::to_owned))
            .unwrap_or_default()
    };
    assert!(rejected("request.set = { \"X-A\" = \"{hots}\" }")
        .starts_with("request.set.X-A: unknown placeholder `{hots}`"),);
    assert!(rejected("response.alway = true").starts_with("response.alway: unknown field"));
    assert_eq!(
        rejected("redirect = [{ path = \"^/(a)$\", location = \"/$2\" }]"),
        "redirect[0].location: uses `$2` but the path regex has 1 capture group"
    );
}

//! `Rules` on real configs: the documented examples and the repository's
//! `config.toml`, which hooks and fixed edits a config needs, host-made
//! responses, deny and redirect answers, and the fields the rules read.

use tailgate_plugin_sdk::testing::{
    self, assert_reads_exactly, documented_configs, narrowed_request, plugin_configs,
};
use tailgate_plugin_sdk::{
    Header, HeaderEdit, HeaderOp, ImmediateResponse, RequestEdits, ResponseHead, ValuePart, Var,
};

use super::*;
use crate::answer_rules::RULE_VAR;
use crate::template::tests::request;

fn rules(json: &str) -> Rules {
    Rules::from_config(&Config::new(json)).expect("valid config")
}

/// What the host does with the rules for a request: the fixed request
/// edits, then the hook's (when the rules ask for the hook), as the chain
/// applies them; an answered request gets none of them.
fn request_as_host(rules: &Rules, req: &RequestHead) -> RequestAction {
    let action = if rules.hooks().contains(HookSet::REQUEST) {
        rules.on_request(req)
    } else {
        RequestAction::Continue(RequestEdits::new())
    };
    match action {
        RequestAction::Continue(mut edits) => {
            let mut headers = testing::rendered_fixed(&rules.fixed_edits().request, req);
            headers.append(&mut edits.headers);
            edits.headers = headers;
            RequestAction::Continue(edits)
        }
        answered => answered,
    }
}

/// The response edits the host makes with the rules: the fixed ones, on a
/// host-made response only with `always`.
fn response_as_host(rules: &Rules, req: &RequestHead, resp: &ResponseHead) -> Vec<HeaderEdit> {
    let fixed = rules.fixed_edits();
    if !resp.host_generated || fixed.response_always {
        testing::rendered_fixed(&fixed.response, req)
    } else {
        Vec::new()
    }
}

fn rejected(json: &str) -> String {
    Rules::from_config(&Config::new(json))
        .expect_err("config should be rejected")
        .to_string()
}

fn response(status: u16, host_generated: bool) -> ResponseHead {
    ResponseHead {
        status,
        headers: vec![Header::new("server", "nginx")],
        host_generated,
    }
}

fn repo_file(path: &str) -> String {
    testing::repo_file(env!("CARGO_MANIFEST_DIR"), path)
}

/// The header-rewrite tables of the repository's default `config.toml`.
fn default_config_tables() -> Vec<String> {
    plugin_configs(&repo_file("config.toml"), "header-rewrite")
}

#[test]
fn the_documented_examples_are_accepted() {
    let tables: Vec<String> = ["docs/writing-a-plugin.md", "docs/header-rewrite.md"]
        .into_iter()
        .flat_map(|doc| documented_configs(&repo_file(doc), "header-rewrite"))
        .collect();
    assert!(tables.len() >= 2, "the doc shows header-rewrite configs");
    for json in &tables {
        let rules = Rules::from_config(&Config::new(json.as_str()))
            .unwrap_or_else(|err| panic!("documented config rejected: {err}\n{json}"));
        assert_reads_only_what_it_declares(&rules, json);
    }
    // The full example behaves as the doc says.
    let full = tables
        .iter()
        .map(|json| rules(json))
        .find(|rules| !rules.deny.is_empty())
        .expect("an example with deny rules");
    let RequestAction::Respond(trace) = request_as_host(&full, &request("TRACE", "/", None)) else {
        panic!("TRACE was not denied");
    };
    assert_eq!((trace.status, trace.body.len()), (405, 0));
    let RequestAction::Respond(swagger) =
        request_as_host(&full, &request("GET", "/swagger/ui", None))
    else {
        panic!("/swagger was not denied");
    };
    assert_eq!(swagger.status, 403);
    let RequestAction::Respond(blog) =
        request_as_host(&full, &request("GET", "/blog", Some("p=2")))
    else {
        panic!("/blog was not redirected");
    };
    assert_eq!(
        (blog.status, blog.headers),
        (
            308,
            vec![Header::new("location", "https://blog.example.com/blog?p=2")]
        )
    );
}

#[test]
fn the_default_config_toml_is_accepted_and_behaves() {
    let tables = default_config_tables();
    assert!(!tables.is_empty(), "config.toml uses header-rewrite");
    for json in tables {
        let rules = rules(&json);
        // The response edits are the host's (`X-Request-Id: {request_id}`
        // too); the hook runs for the deny and redirect rules.
        assert_eq!(rules.hooks(), HookSet::REQUEST);
        assert_reads_only_what_it_declares(&rules, &json);
        // The redirect reads `{http_host}`: the Host header, and the routed
        // host when the request named none. (The scheme always comes.)
        assert_eq!(
            rules.request_fields(),
            RequestFieldSet::PATH | RequestFieldSet::HOST
        );
        assert_eq!(rules.request_headers(), HeaderFilter::only(["host"]));

        let RequestAction::Continue(edits) = request_as_host(&rules, &request("GET", "/", None))
        else {
            panic!("/ was answered by the plugin");
        };
        assert_eq!(
            edits.headers,
            vec![HeaderEdit::set("x-tailgate-route", "site")]
        );

        let RequestAction::Respond(denied) =
            request_as_host(&rules, &request("GET", "/.git/HEAD", None))
        else {
            panic!("/.git/HEAD was not denied");
        };
        assert_eq!(
            (denied.status, denied.body.as_slice()),
            (403, &b"Forbidden\n"[..])
        );

        let RequestAction::Respond(moved) =
            request_as_host(&rules, &request("GET", "/old/a/b", None))
        else {
            panic!("/old/a/b was not redirected");
        };
        assert_eq!(moved.status, 301);
        assert_eq!(
            moved.headers,
            vec![Header::new("location", "https://example.com/a/b")]
        );
        // The port the client used is kept (`make run` listens on 8080).
        let RequestAction::Respond(moved) = request_as_host(
            &rules,
            &with_host_header(request("GET", "/old/index.html", None), "127.0.0.1:8080"),
        ) else {
            panic!("/old/index.html was not redirected");
        };
        assert_eq!(
            moved.headers,
            vec![Header::new("location", "https://127.0.0.1:8080/index.html")]
        );

        let edits = response_as_host(&rules, &request("GET", "/", None), &response(502, true));
        assert_eq!(
            edits,
            vec![
                HeaderEdit::remove("server"),
                HeaderEdit::set("x-content-type-options", "nosniff"),
                HeaderEdit::set("x-frame-options", "DENY"),
                HeaderEdit::set("x-request-id", "01HZX"),
            ]
        );
    }
}

#[test]
fn empty_config_needs_no_hooks_and_changes_nothing() {
    let rules = rules("{}");
    assert_eq!(rules.hooks(), HookSet::empty());
    assert_eq!(
        request_as_host(&rules, &request("GET", "/", None)),
        RequestAction::Continue(RequestEdits::new())
    );
}

#[test]
fn hooks_follow_what_the_config_uses() {
    // Header edits, templated or not, are fixed edits: no hook.
    for json in [
        r#"{"response":{"set":{"x-id":"{request_id}"}}}"#,
        r#"{"request":{"set":{"x-real-ip":"{client_ip}"}}}"#,
        r#"{"request":{"remove":["cookie"]},"response":{"remove":["server"]}}"#,
        // `always` alone edits nothing.
        r#"{"response":{"always":true}}"#,
    ] {
        assert_eq!(rules(json).hooks(), HookSet::empty(), "{json}");
    }
    assert_eq!(
        rules(r#"{"deny":[{"methods":["TRACE"]}]}"#).hooks(),
        HookSet::REQUEST
    );
    assert_eq!(
        rules(r#"{"redirect":[{"path":"^/a$","location":"/b"}]}"#).hooks(),
        HookSet::REQUEST
    );
}

#[test]
fn every_header_edit_is_given_once_as_a_fixed_edit() {
    let plain = rules(
        r#"{"request":{"set":{"X-Route":"bench"},"remove":["cookie"]},
            "response":{"append":{"X-Frame-Options":"DENY"},"always":true}}"#,
    );
    let fixed = plain.fixed_edits();
    assert_eq!(
        fixed.request,
        vec![
            FixedEdit::remove("cookie"),
            FixedEdit::text(HeaderOp::Set, "x-route", "bench")
        ]
    );
    assert_eq!(
        fixed.response,
        vec![FixedEdit::text(HeaderOp::Append, "x-frame-options", "DENY")]
    );
    assert!(fixed.response_always);

    // A templated value crosses as parts for the host to fill in.
    let mixed = rules(
        r#"{"request":{"set":{"x-real-ip":"{client_ip}","x-route":"a"}},
            "response":{"set":{"x-frame-options":"DENY"}}}"#,
    );
    assert_eq!(mixed.hooks(), HookSet::empty());
    let fixed = mixed.fixed_edits();
    assert_eq!(
        fixed.request,
        vec![
            FixedEdit {
                op: HeaderOp::Set,
                name: "x-real-ip".into(),
                value: vec![ValuePart::ClientIp],
            },
            FixedEdit::text(HeaderOp::Set, "x-route", "a"),
        ]
    );
    assert!(!fixed.response_always);
    let req = request("GET", "/", None);
    assert_eq!(
        request_as_host(&mixed, &req),
        RequestAction::Continue(
            RequestEdits::new()
                .set_header("x-real-ip", "203.0.113.7")
                .set_header("x-route", "a")
        )
    );

    // Deny and redirect rules keep the request hook; the edits are still
    // fixed (the host makes them only on requests that go on).
    let guarded = rules(r#"{"deny":[{"methods":["TRACE"]}],"request":{"set":{"x-a":"1"}}}"#);
    assert_eq!(guarded.hooks(), HookSet::REQUEST);
    assert_eq!(
        guarded.fixed_edits().request,
        vec![FixedEdit::text(HeaderOp::Set, "x-a", "1")]
    );
    assert_eq!(guarded.on_request(&req), RequestAction::proceed());
}

#[test]
fn host_generated_responses_are_left_alone_unless_always() {
    let json = r#"{"response":{"set":{"X-Frame-Options":"DENY"}}}"#;
    let plain = rules(json);
    let req = request("GET", "/", None);
    assert!(response_as_host(&plain, &req, &response(502, true)).is_empty());
    assert_eq!(
        response_as_host(&plain, &req, &response(404, false)),
        vec![HeaderEdit::set("x-frame-options", "DENY")]
    );

    let always = rules(r#"{"response":{"set":{"X-Frame-Options":"DENY"},"always":true}}"#);
    assert_eq!(
        response_as_host(&always, &req, &response(502, true)),
        vec![HeaderEdit::set("x-frame-options", "DENY")]
    );
}

#[test]
fn request_edits_apply_remove_then_set_then_append_with_templates() {
    let rules = rules(
        r#"{"request":{
            "append":{"X-Forwarded-For":"{client_ip}"},
            "set":{"X-Real-IP":"{client_ip}","X-Original-URI":"{uri}","X-UA":"{http_user_agent}"},
            "remove":["Cookie"]
        }}"#,
    );
    let RequestAction::Continue(edits) =
        request_as_host(&rules, &request("GET", "/p", Some("q=1")))
    else {
        panic!("request was answered");
    };
    assert_eq!(
        edits,
        RequestEdits::new()
            .remove_header("cookie")
            .set_header("x-original-uri", "/p?q=1")
            .set_header("x-real-ip", "203.0.113.7")
            .set_header("x-ua", "curl/8.5")
            .append_header("x-forwarded-for", "203.0.113.7")
    );
}

#[test]
fn deny_is_checked_before_redirect_and_first_match_wins() {
    let rules = rules(
        r#"{
            "deny":[
                {"path":"^/admin","status":404},
                {"path":"^/admin/special","status":410,"body":"gone"}
            ],
            "redirect":[
                {"path":"^/admin/(.*)","status":301,"location":"/x/$1"},
                {"path":"^/a(.*)","status":302,"location":"/first$1"},
                {"path":"^/a(.*)","status":307,"location":"/second$1"}
            ]
        }"#,
    );
    assert_eq!(
        request_as_host(&rules, &request("GET", "/admin/special", None)),
        RequestAction::Respond(ImmediateResponse {
            status: 404,
            headers: Vec::new(),
            body: Vec::new(),
            vars: vec![Var::new(RULE_VAR, "deny[0]")],
        })
    );
    let RequestAction::Respond(resp) = request_as_host(&rules, &request("GET", "/abc", None))
    else {
        panic!("not redirected");
    };
    assert_eq!(resp.status, 302);
    assert_eq!(resp.headers, vec![Header::new("location", "/firstbc")]);
    assert_eq!(resp.vars, vec![Var::new(RULE_VAR, "redirect[1]")]);
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_eq!(
        rejected(r#"{"respones":{}}"#),
        "respones: unknown field `respones`, expected one of `request`, `response`, `deny`, `redirect`"
    );
    assert_eq!(
        rejected(r#"{"request":{"always":true}}"#),
        "request.always: unknown field `always`, expected one of `set`, `append`, `remove`"
    );
    assert_eq!(
        rejected(r#"{"deny":[{"path":"x","stauts":403}]}"#),
        "deny[0].stauts: unknown field `stauts`, expected one of `path`, `methods`, `status`, `body`, `content_type`"
    );
}

#[test]
fn wrong_types_and_missing_fields_are_rejected_with_their_path() {
    assert_eq!(
        rejected(r#"{"response":{"always":"yes"}}"#),
        "response.always: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        rejected(r#"{"redirect":[{"path":"^/a","status":301}]}"#),
        "redirect[0]: missing field `location`"
    );
    assert_eq!(
        rejected(r#"{"deny":[{"path":"^/a","status":70000}]}"#),
        "deny[0].status: invalid value: integer `70000`, expected u16"
    );
    assert_eq!(
        rejected(r#"{"request":{"set":{"x-a":1}}}"#),
        "request.set.x-a: invalid type: integer `1`, expected a string"
    );
}

#[test]
fn validation_errors_name_the_offending_entry() {
    assert!(rejected(r#"{"deny":[{"methods":["GET"]},{"path":"("}]}"#)
        .starts_with("deny[1].path: regex parse error:"));
    assert_eq!(
        rejected(r#"{"redirect":[{"path":"^/a","status":200,"location":"/b"}]}"#),
        "redirect[0].status: 200 is not a redirect status (301, 302, 303, 307, 308)"
    );
    assert!(rejected(r#"{"response":{"set":{"x-a":"{hots}"}}}"#)
        .starts_with("response.set.x-a: unknown placeholder `{hots}`"));
    assert_eq!(
        rejected(r#"{"response":{"remove":["bad name"]}}"#),
        "response.remove[0]: `bad name` is not a valid header name"
    );
}

#[test]
fn the_host_is_asked_only_for_the_headers_the_templates_read() {
    let fixed = rules(
        r#"{"request":{"set":{"X-Bench-Route":"bench"}},
            "response":{"append":{"X-Frame-Options":"DENY"},"always":true},
            "deny":[{"path":"^/admin","status":403}]}"#,
    );
    assert_eq!(fixed.request_headers(), HeaderFilter::none());
    let templated = rules(
        r#"{"request":{"set":{"X-Client":"{http_user_agent} {client_ip}"}},
            "response":{"set":{"X-Echo":"{http_x_trace}"}},
            "redirect":[{"path":"^/old/(.*)","location":"https://{http_x_forwarded_host}/$1"}]}"#,
    );
    // The host renders the edits' templates from the whole request: the
    // hook is asked only for what the redirect's location reads.
    assert_eq!(
        templated.request_headers(),
        HeaderFilter::only(["x-forwarded-host"])
    );
}

/// Requests that meet every kind of rule the documented configs have.
fn sample_requests() -> Vec<RequestHead> {
    [
        ("GET", "/", None),
        ("GET", "/a/b", Some("x=1")),
        ("POST", "/.env", None),
        ("GET", "/.git/HEAD", None),
        ("GET", "/swagger/ui", None),
        ("TRACE", "/", None),
        ("TRACK", "/x", Some("y")),
        ("GET", "/blog", Some("p=2")),
        ("GET", "/old/a/b", Some("q=1")),
        ("DELETE", "/admin/x", None),
    ]
    .into_iter()
    .map(|(method, path, query)| request(method, path, query))
    .chain([with_host_header(
        request("GET", "/old/c", None),
        "example.com:8443",
    )])
    .collect()
}

/// `req` with a `Host` header as a client sent it (the sample requests
/// have none: the host then hands `{http_host}` the routed host).
fn with_host_header(mut req: RequestHead, host: &str) -> RequestHead {
    req.headers.push(Header::new("host", host));
    req
}

/// What the hook makes of every sample request, each field outside
/// `fields` and each header field outside the declared filter left out
/// the way the host leaves it out.
fn answers(rules: &Rules, fields: RequestFieldSet) -> Vec<String> {
    let headers = rules.request_headers();
    sample_requests()
        .iter()
        .map(|full| {
            let req = narrowed_request(full, fields, &headers);
            format!("{:?}", rules.on_request(&req))
        })
        .collect()
}

/// The hook does the same from only the declared fields as from all
/// of them, and every declared field changes what it does.
fn assert_reads_only_what_it_declares(rules: &Rules, json: &str) {
    assert_reads_exactly(
        rules.request_fields(),
        RequestFieldSet::all(),
        |fields| answers(rules, fields),
        json,
    );
}

#[test]
fn the_host_is_asked_only_for_the_fields_the_rules_read() {
    let cases = [
        ("{}", RequestFieldSet::empty()),
        (
            r#"{"request":{"set":{"X-Bench-Route":"bench"}},
                "response":{"append":{"X-Frame-Options":"DENY"},"always":true}}"#,
            RequestFieldSet::empty(),
        ),
        (r#"{"deny":[{"path":"^/admin"}]}"#, RequestFieldSet::PATH),
        // The method always comes: a method rule asks for no field.
        (
            r#"{"deny":[{"methods":["TRACE"]}]}"#,
            RequestFieldSet::empty(),
        ),
        (
            r#"{"redirect":[{"path":"^/old/(.*)","location":"/new/$1"}]}"#,
            RequestFieldSet::PATH,
        ),
        (
            r#"{"redirect":[{"path":"^/blog$","location":"https://{host}{uri}"}]}"#,
            RequestFieldSet::PATH | RequestFieldSet::HOST | RequestFieldSet::QUERY,
        ),
        // The host renders the edits' templates itself.
        (
            r#"{"request":{"set":{"X-Real-IP":"{client_ip}","X-UA":"{http_user_agent}"}},
                "response":{"set":{"X-Request-Id":"{request_id}","X-Route":"{route} {method}"}}}"#,
            RequestFieldSet::empty(),
        ),
        (
            r#"{"response":{"set":{"X-Q":"{query}"}},"deny":[{"path":"^/admin","methods":["DELETE"]}]}"#,
            RequestFieldSet::PATH,
        ),
    ];
    for (json, expected) in cases {
        let rules = rules(json);
        assert_eq!(rules.request_fields(), expected, "{json}");
        assert_reads_only_what_it_declares(&rules, json);
    }
}

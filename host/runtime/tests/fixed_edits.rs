//! A plugin's fixed edits (`plugin-info.fixed-edits`) on the real
//! fault-injector: given once by `configure`, returned by the request and
//! response methods without entering the guest when the plugin left the
//! hook out, put before the hook's own edits when it has it (and lost with
//! them when the hook fails), and kept off host-made responses unless
//! `response-always`.

mod common;

use common::*;
use tailgate_runtime::{Hook, HookSet, ResponseHead};

fn response(host_generated: bool) -> ResponseHead {
    ResponseHead {
        status: if host_generated { 502 } else { 200 },
        headers: Some(vec![]),
        host_generated,
    }
}

fn names(edits: &[tailgate_runtime::HeaderEdit]) -> Vec<&str> {
    edits.iter().map(|e| e.name.as_str()).collect()
}

#[test]
fn fixed_edits_without_a_hook_are_made_without_a_call() {
    let metrics = metrics_of(|| {
        let runtime = runtime();
        // Its request and response hooks would trap, but it declares only
        // on-log: the fixed edits must come without entering the guest.
        let plugin = configured(
            &runtime,
            "fixed",
            r#"{"mode":"trap","hook":"request","hooks":["log"],
                "fixed_request":{"X-Route":"bench"},
                "fixed_response":{"X-Frame-Options":"DENY"}}"#,
        );
        assert!(!plugin.implements(Hook::Request));
        assert!(!plugin.implements(Hook::Response));
        assert_eq!(plugin.phases(), HookSet::all());

        let mut req = request("fixed", "/", "198.51.100.1");
        let edits = continue_edits(plugin.on_request(&mut req).expect("no call, no trap"));
        // Names come lower case, as the host's header lists are.
        assert_eq!(names(&edits.headers), ["x-route"]);
        assert_eq!(edit(&edits.headers, "x-route"), Some("bench"));
        assert_eq!((edits.path, edits.delay_ms), (None, 0));
        let resp = plugin
            .on_response(&mut req, &mut response(false))
            .expect("no call");
        assert_eq!(edit(&resp.headers, "x-frame-options"), Some("DENY"));
    });
    for hook in ["request", "response"] {
        let labels = [
            ("plugin", "fault-injector"),
            ("route", "fixed"),
            ("hook", hook),
        ];
        assert_eq!(
            metrics.counter("tailgate_plugin_calls_total", &labels),
            0,
            "{hook}"
        );
    }
}

#[test]
fn fixed_edits_come_before_the_hooks_own() {
    let runtime = runtime();
    let plugin = configured(
        &runtime,
        "both",
        r#"{"mode":"ok","hooks":["request","response"],
            "fixed_request":{"x-route":"bench"},
            "fixed_response":{"x-frame-options":"DENY"}}"#,
    );
    let mut req = request("both", "/", "198.51.100.1");
    let edits = continue_edits(plugin.on_request(&mut req).expect("on_request"));
    assert_eq!(edits.headers[0].name, "x-route");
    // The hook ran too, on the request without the fixed edit.
    assert_eq!(edit(&edits.headers, "x-fault-injector"), Some("ok"));
    assert_eq!(edit(&edits.headers, "x-seen-headers"), Some("3"));

    let resp = plugin
        .on_response(&mut req, &mut response(false))
        .expect("on_response");
    assert_eq!(resp.headers[0].name, "x-frame-options");
    assert_eq!(edit(&resp.headers, "x-fault-injector"), Some("ok 200"));
}

#[test]
fn host_made_responses_get_fixed_edits_only_with_always() {
    let runtime = runtime();
    let config = |always: bool| {
        format!(
            r#"{{"hooks":[],"fixed_response":{{"x-frame-options":"DENY"}},
                "fixed_response_always":{always}}}"#
        )
    };
    let sometimes = configured(&runtime, "sometimes", &config(false));
    let always = configured(&runtime, "always", &config(true));
    let mut req = request("r", "/", "198.51.100.1");
    let on = |plugin: &tailgate_runtime::ConfiguredPlugin, host_generated: bool| {
        plugin
            .on_response(&mut req.clone(), &mut response(host_generated))
            .expect("no call")
            .headers
    };
    assert_eq!(names(&on(&sometimes, false)), ["x-frame-options"]);
    assert!(on(&sometimes, true).is_empty());
    assert_eq!(names(&on(&always, true)), ["x-frame-options"]);
    // No request side: the request goes on unchanged.
    let edits = continue_edits(sometimes.on_request(&mut req).expect("no call"));
    assert!(edits.headers.is_empty());
    assert_eq!(sometimes.phases(), HookSet::RESPONSE);
}

#[test]
fn a_failing_hook_takes_the_fixed_edits_with_it() {
    let runtime = runtime();
    let plugin = configured(
        &runtime,
        "trapping",
        r#"{"mode":"trap","hook":"request","hooks":["request"],
            "fixed_request":{"x-route":"bench"}}"#,
    );
    let mut req = request("trapping", "/", "198.51.100.1");
    // The call fails as a whole: no edit comes back, not even the fixed
    // one, so a fail-open chain skips all of the plugin's edits.
    assert!(plugin.on_request(&mut req).is_err());
}

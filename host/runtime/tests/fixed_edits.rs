//! A plugin's fixed edits (`plugin-info.fixed-edits`) on the real
//! fault-injector, through `ChainedPlugin` (the phases the proxy's chain and
//! the harness run): given once by `configure`, made without entering the
//! guest when the plugin left the hook out, put before the hook's own edits
//! when it has it (and lost with them when the hook fails), and kept off
//! host-made responses unless `response-always`.

mod common;

use tailgate_runtime::block_on;

use common::*;
use tailgate_runtime::{
    ChainedPlugin, ConfiguredPlugin, HeaderEdit, Hook, HookFault, HookSet, RequestHead,
    RequestStep, ResponseHead, WireEdit,
};

fn chained(plugin: ConfiguredPlugin) -> ChainedPlugin<ConfiguredPlugin> {
    ChainedPlugin::new(plugin).expect("fixed edits fit the wire")
}

/// The request phase's header edits, the fixed ones first.
fn request_phase(
    plugin: &ChainedPlugin<ConfiguredPlugin>,
    req: &mut RequestHead,
) -> Result<Vec<HeaderEdit>, HookFault> {
    let mut applied = Vec::new();
    match block_on(plugin.request_phase(req, &mut applied))? {
        RequestStep::Continue(edits) => assert_eq!((edits.path, edits.delay_ms), (None, 0)),
        RequestStep::Respond(resp) => panic!("unexpected respond: {}", resp.status),
    }
    Ok(applied.iter().map(WireEdit::to_header_edit).collect())
}

/// The response phase's header edits, the fixed ones that apply first.
fn response_phase(
    plugin: &ChainedPlugin<ConfiguredPlugin>,
    req: &mut RequestHead,
    resp: &mut ResponseHead,
) -> Vec<HeaderEdit> {
    let mut applied = Vec::new();
    block_on(plugin.response_phase(req, resp, false, &mut applied)).expect("response phase");
    applied.iter().map(WireEdit::to_header_edit).collect()
}

fn response(host_generated: bool) -> ResponseHead {
    ResponseHead {
        status: if host_generated { 502 } else { 200 },
        headers: Some(vec![]),
        host_generated,
    }
}

fn names(edits: &[HeaderEdit]) -> Vec<&str> {
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
        let plugin = chained(plugin);
        assert_eq!(plugin.phases(), HookSet::all());

        let mut req = request("fixed", "/", "198.51.100.1");
        // (The path and delay are checked to be none in `request_phase`.)
        let edits = request_phase(&plugin, &mut req).expect("no call, no trap");
        // Names come lower case, as the host's header lists are.
        assert_eq!(names(&edits), ["x-route"]);
        assert_eq!(edit(&edits, "x-route"), Some("bench"));
        // The next plugin sees the head with it.
        assert_eq!(edit_of_head(&req, "x-route"), Some("bench".to_owned()));
        let resp = response_phase(&plugin, &mut req, &mut response(false));
        assert_eq!(edit(&resp, "x-frame-options"), Some("DENY"));
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
    let plugin = chained(plugin);
    let mut req = request("both", "/", "198.51.100.1");
    let edits = request_phase(&plugin, &mut req).expect("on_request");
    assert_eq!(edits[0].name, "x-route");
    // The hook ran too, on the request without the fixed edit.
    assert_eq!(edit(&edits, "x-fault-injector"), Some("ok"));
    assert_eq!(edit(&edits, "x-seen-headers"), Some("3"));

    let resp = response_phase(&plugin, &mut req, &mut response(false));
    assert_eq!(resp[0].name, "x-frame-options");
    assert_eq!(edit(&resp, "x-fault-injector"), Some("ok 200"));
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
    let sometimes = chained(configured(&runtime, "sometimes", &config(false)));
    let always = chained(configured(&runtime, "always", &config(true)));
    let mut req = request("r", "/", "198.51.100.1");
    let on = |plugin: &ChainedPlugin<ConfiguredPlugin>, host_generated: bool| {
        response_phase(plugin, &mut req.clone(), &mut response(host_generated))
    };
    assert_eq!(names(&on(&sometimes, false)), ["x-frame-options"]);
    assert!(on(&sometimes, true).is_empty());
    assert_eq!(names(&on(&always, true)), ["x-frame-options"]);
    // No request side: the request goes on unchanged.
    let edits = request_phase(&sometimes, &mut req).expect("no call");
    assert!(edits.is_empty());
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
    let plugin = chained(plugin);
    let mut req = request("trapping", "/", "198.51.100.1");
    // The call fails as a whole: no edit comes back, not even the fixed
    // one, so a fail-open chain skips all of the plugin's edits.
    let mut applied = Vec::new();
    assert!(block_on(plugin.request_phase(&mut req, &mut applied)).is_err());
    assert!(applied.is_empty());
    assert_eq!(edit_of_head(&req, "x-route"), None);
}

/// The first value of `name` in the head's header list, as text.
fn edit_of_head(req: &RequestHead, name: &str) -> Option<String> {
    req.headers
        .iter()
        .flatten()
        .find(|h| h.name == name)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

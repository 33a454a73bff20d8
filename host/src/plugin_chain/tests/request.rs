//! The request side of the chain: order, edits between plugins, immediate
//! responses, request faults and their policies, invalid output, skipping.

use super::*;

#[test]
fn request_hooks_run_in_order_and_each_sees_the_previous_edits() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("first", HookSet::all(), &c)
            .on_request(|_| {
                Ok(RequestAction::Continue(RequestEdits {
                    headers: vec![set("X-Tag", "one")],
                    path: Some("/rewritten".into()),
                    delay_ms: 100,
                    vars: vec![var("a", "1")],
                }))
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("second", HookSet::all(), &c)
            .on_request(|_| {
                Ok(RequestAction::Continue(RequestEdits {
                    headers: vec![HeaderEdit {
                        op: HeaderOp::Append,
                        name: "x-tag".into(),
                        value: b"two".to_vec(),
                    }],
                    path: None,
                    delay_ms: 50,
                    vars: vec![var("b", "2")],
                }))
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("third", HookSet::all(), &c).entry(FailurePolicy::Closed),
    ]);
    let mut req = head();
    let RequestDecision::Continue {
        delay_ms,
        vars,
        header_edits,
    } = chain.on_request(&mut req).ready()
    else {
        panic!("expected Continue");
    };
    assert_eq!(delay_ms, 150);
    // Every applied edit, in order, for the map the pipeline forwards.
    let edited: Vec<(&str, Option<&[u8]>)> = header_edits
        .iter()
        .map(|e| (e.name().as_str(), e.value().map(|v| v.as_bytes())))
        .collect();
    assert_eq!(
        edited,
        [("x-tag", Some(&b"one"[..])), ("x-tag", Some(&b"two"[..]))]
    );
    assert_eq!(
        vars.iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect::<Vec<_>>(),
        [("a", "1"), ("b", "2")]
    );
    assert_eq!(
        calls(&c),
        [
            "first:request path=/a x-tag=[]",
            "second:request path=/rewritten x-tag=[\"one\"]",
            "third:request path=/rewritten x-tag=[\"one\", \"two\"]",
        ]
    );
    assert_eq!(req.path(), "/rewritten");
    assert_eq!(req.query.as_deref(), Some("q=1"));
    assert_eq!(header_values(req.headers(), "x-tag"), ["one", "two"]);
    assert_eq!(header_values(req.headers(), "accept"), ["*/*"]);
}

#[test]
fn a_respond_stops_the_chain_and_carries_every_var() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("limiter", HookSet::all(), &c)
            .on_request(|_| {
                Ok(RequestAction::Continue(RequestEdits {
                    headers: vec![],
                    path: None,
                    delay_ms: 0,
                    vars: vec![var("limit_req_status", "PASSED")],
                }))
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("deny", HookSet::all(), &c)
            .on_request(|_| {
                Ok(RequestAction::Respond(ImmediateResponse {
                    status: 403,
                    headers: vec![Header {
                        name: "Content-Type".into(),
                        value: b"text/plain".to_vec(),
                    }],
                    body: b"Forbidden\n".to_vec(),
                    vars: vec![var("denied", "yes")],
                }))
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("never", HookSet::all(), &c).entry(FailurePolicy::Closed),
    ]);
    let RequestDecision::Respond(resp, vars) = chain.on_request(&mut head()).ready() else {
        panic!("expected Respond");
    };
    assert_eq!(resp.status, 403);
    assert_eq!(resp.body, b"Forbidden\n");
    assert_eq!(resp.headers[0].name, "content-type");
    assert!(resp.vars.is_empty());
    assert_eq!(
        vars.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["limit_req_status", "denied"]
    );
    assert_eq!(calls(&c).len(), 2, "{:?}", calls(&c));
}

fn trap(_: &RequestHead) -> Result<RequestAction, PluginFault> {
    Err(PluginFault::Trap("unreachable executed".into()))
}

#[test]
fn a_fail_closed_request_fault_fails_the_request_with_the_plugin_named() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("broken", HookSet::all(), &c)
            .on_request(trap)
            .entry(FailurePolicy::Closed),
        Scripted::new("after", HookSet::all(), &c).entry(FailurePolicy::Closed),
    ]);
    match chain.on_request(&mut head()).ready() {
        RequestDecision::Failed { plugin, fault } => {
            assert_eq!(plugin, "broken");
            assert_eq!(fault.to_string(), "trapped: unreachable executed");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(calls(&c).len(), 1);
}

#[test]
fn a_fail_open_request_fault_skips_only_that_plugin() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("slow", HookSet::all(), &c)
            .on_request(|_| Err(PluginFault::Timeout(Duration::from_millis(50))))
            .entry(FailurePolicy::Open),
        Scripted::new("after", HookSet::all(), &c)
            .on_request(|_| Ok(RequestAction::Continue(edits(vec![set("x-tag", "after")]))))
            .entry(FailurePolicy::Closed),
    ]);
    let mut req = head();
    assert!(matches!(
        chain.on_request(&mut req).ready(),
        RequestDecision::Continue { delay_ms: 0, .. }
    ));
    assert_eq!(header_values(req.headers(), "x-tag"), ["after"]);
    assert_eq!(calls(&c).len(), 2);
}

#[test]
fn invalid_request_output_is_a_fault_and_is_not_applied() {
    let c = Calls::default();
    let bad_header = |_: &RequestHead| {
        Ok(RequestAction::Continue(RequestEdits {
            headers: vec![set("x-tag", "ok"), set("x-evil", "a\r\nInjected: 1")],
            path: Some("/changed".into()),
            delay_ms: 1000,
            vars: vec![var("lost", "1")],
        }))
    };
    let open = chain(vec![Scripted::new("bad", HookSet::all(), &c)
        .on_request(bad_header)
        .entry(FailurePolicy::Open)]);
    let mut req = head();
    let RequestDecision::Continue {
        delay_ms,
        vars,
        header_edits,
    } = open.on_request(&mut req).ready()
    else {
        panic!("expected Continue");
    };
    assert_eq!((delay_ms, vars.len(), header_edits.len()), (0, 0, 0));
    assert_eq!(req.path(), "/a");
    assert!(header_values(req.headers(), "x-tag").is_empty());

    let closed = chain(vec![Scripted::new("bad", HookSet::all(), &c)
        .on_request(|_| {
            Ok(RequestAction::Respond(ImmediateResponse {
                status: 1000,
                headers: vec![],
                body: vec![],
                vars: vec![],
            }))
        })
        .entry(FailurePolicy::Closed)]);
    match closed.on_request(&mut head()).ready() {
        RequestDecision::Failed { plugin, fault } => {
            assert_eq!(plugin, "bad");
            assert_eq!(
                fault.to_string(),
                "returned invalid status 1000 for an immediate response"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn plugins_without_a_hook_are_not_called_for_it() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("log-only", HookSet::LOG, &c)
            .on_request(trap)
            .entry(FailurePolicy::Closed),
        Scripted::new("request-only", HookSet::REQUEST, &c).entry(FailurePolicy::Closed),
    ]);
    assert!(matches!(
        chain.on_request(&mut head()).ready(),
        RequestDecision::Continue { .. }
    ));
    chain
        .on_response(&mut head(), &mut response())
        .ready()
        .unwrap();
    assert_eq!(calls(&c), ["request-only:request path=/a x-tag=[]"]);
    assert!(chain.has_hook(HookSet::LOG));
    assert!(!chain.has_hook(HookSet::RESPONSE));
}

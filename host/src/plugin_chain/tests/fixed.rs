//! Fixed edits in the chain: made at the plugin's place without a call,
//! before its hook's edits, dropped with them when the hook faults, kept off
//! host-made responses unless `response-always`, refused at load when they
//! cannot go on the wire.

use super::*;

fn fixed(request: Vec<HeaderEdit>, response: Vec<HeaderEdit>, always: bool) -> FixedEdits {
    let text = |edits: Vec<HeaderEdit>| {
        edits
            .into_iter()
            .map(|e| FixedEdit::text(e.op, &e.name, &e.value))
            .collect()
    };
    FixedEdits {
        request: text(request),
        response: text(response),
        response_always: always,
    }
}

fn templated(name: &str, value: Vec<ValuePart>) -> FixedEdit {
    FixedEdit {
        op: HeaderOp::Set,
        name: name.to_owned(),
        value,
    }
}

fn wire_values(edits: &[WireEdit]) -> Vec<(String, String)> {
    edits
        .iter()
        .map(|e| {
            let value = e.value().map_or("", |v| v.to_str().expect("text"));
            (e.name().to_string(), value.to_owned())
        })
        .collect()
}

fn host_made(host_generated: bool) -> ResponseHead {
    ResponseHead {
        status: 502,
        headers: Some(vec![]),
        host_generated,
    }
}

#[test]
fn fixed_edits_alone_run_the_phase_without_a_call_or_a_field_read() {
    let c = Calls::default();
    let entry = Scripted::new("fixed", HookSet::empty(), &c)
        .with_fixed(fixed(
            vec![set("X-Route", "site")],
            vec![set("X-Frame-Options", "DENY")],
            false,
        ))
        .entry(FailurePolicy::Open);
    let chain = chain(vec![entry]);
    assert!(chain.has_hook(HookSet::RESPONSE));
    assert!(chain.has_hook(HookSet::REQUEST));
    assert_eq!(chain.response_fields(), &HeaderFilter::none());

    let mut req = head();
    let RequestDecision::Continue { header_edits, .. } = chain.on_request(&mut req).ready() else {
        panic!("expected Continue");
    };
    assert_eq!(header_edits, [wire_set("x-route", "site")]);
    assert_eq!(header_values(req.headers(), "x-route"), ["site"]);
    let applied = chain
        .on_response(&mut req, &mut response())
        .ready()
        .expect("edits");
    assert_eq!(applied, [wire_set("x-frame-options", "DENY")]);
    assert!(calls(&c).is_empty(), "no hook was entered: {:?}", calls(&c));
}

#[test]
fn fixed_edits_come_before_the_hooks_and_the_next_plugin_sees_both() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("first", HookSet::REQUEST, &c)
            .with_fixed(fixed(vec![set("x-tag", "fixed")], vec![], false))
            .on_request(|req| {
                // The hook does not see its own fixed edits.
                assert!(header_values(req.headers(), "x-tag").is_empty());
                Ok(RequestAction::Continue(edits(vec![HeaderEdit {
                    op: HeaderOp::Append,
                    name: "x-tag".into(),
                    value: b"hook".to_vec(),
                }])))
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("second", HookSet::REQUEST, &c).entry(FailurePolicy::Closed),
    ]);
    let RequestDecision::Continue { header_edits, .. } = chain.on_request(&mut head()).ready()
    else {
        panic!("expected Continue");
    };
    assert_eq!(
        wire_values(&header_edits),
        [
            ("x-tag".into(), "fixed".into()),
            ("x-tag".into(), "hook".into())
        ]
    );
    assert_eq!(
        calls(&c),
        [
            "first:request path=/a x-tag=[]",
            "second:request path=/a x-tag=[\"fixed\", \"hook\"]"
        ]
    );
}

#[test]
fn request_values_in_fixed_edits_are_rendered_as_the_plugin_would_see_them() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("first", HookSet::REQUEST, &c)
            .on_request(|_| {
                Ok(RequestAction::Continue(edits(vec![set(
                    "x-tag",
                    "from-first",
                )])))
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("second", HookSet::empty(), &c)
            .with_fixed(FixedEdits {
                request: vec![
                    templated(
                        "X-Seen",
                        vec![
                            ValuePart::Header("x-tag".into()),
                            ValuePart::Text(b" ".to_vec()),
                            ValuePart::Uri,
                        ],
                    ),
                    // Its own edit above does not show to its own values.
                    templated("X-Own", vec![ValuePart::Header("x-seen".into())]),
                ],
                response: vec![templated("X-Served-Path", vec![ValuePart::Path])],
                response_always: false,
            })
            .entry(FailurePolicy::Closed),
    ]);
    let mut req = head();
    let RequestDecision::Continue { header_edits, .. } = chain.on_request(&mut req).ready() else {
        panic!("expected Continue");
    };
    assert_eq!(
        wire_values(&header_edits),
        [
            ("x-tag".into(), "from-first".into()),
            ("x-seen".into(), "from-first /a?q=1".into()),
            ("x-own".into(), "".into()),
        ]
    );
    assert_eq!(
        header_values(req.headers(), "x-seen"),
        ["from-first /a?q=1"]
    );
    let applied = chain
        .on_response(&mut req, &mut response())
        .ready()
        .expect("edits");
    assert_eq!(applied, [wire_set("x-served-path", "/a")]);
    assert_eq!(calls(&c), ["first:request path=/a x-tag=[]"]);
}

#[test]
fn a_faulting_hook_drops_its_fixed_edits_with_its_own() {
    let c = Calls::default();
    let chain = chain(vec![Scripted::new("faulty", HookSet::all(), &c)
        .with_fixed(fixed(
            vec![set("x-fixed", "1")],
            vec![set("x-fixed", "1")],
            true,
        ))
        .on_request(|_| Err(PluginFault::Timeout(Duration::from_millis(50))))
        .on_response(|_| Err(PluginFault::Trap("unreachable".into())))
        .entry(FailurePolicy::Open)]);
    let mut req = head();
    let RequestDecision::Continue { header_edits, .. } = chain.on_request(&mut req).ready() else {
        panic!("fail-open goes on");
    };
    assert!(header_edits.is_empty());
    assert!(header_values(req.headers(), "x-fixed").is_empty());
    let applied = chain
        .on_response(&mut req, &mut response())
        .ready()
        .expect("open");
    assert!(applied.is_empty());
}

#[test]
fn an_answer_gets_no_fixed_request_edits() {
    let c = Calls::default();
    let chain = chain(vec![Scripted::new("deny", HookSet::REQUEST, &c)
        .with_fixed(fixed(vec![set("x-fixed", "1")], vec![], false))
        .on_request(|_| {
            Ok(RequestAction::Respond(ImmediateResponse {
                status: 403,
                headers: vec![],
                body: b"no".to_vec(),
                vars: vec![],
            }))
        })
        .entry(FailurePolicy::Closed)]);
    let mut req = head();
    let RequestDecision::Respond(answer, _) = chain.on_request(&mut req).ready() else {
        panic!("expected the plugin's answer");
    };
    assert_eq!(answer.status, 403);
    assert!(header_values(req.headers(), "x-fixed").is_empty());
}

#[test]
fn host_made_responses_get_fixed_edits_only_when_always() {
    let c = Calls::default();
    let entry = |always| {
        Scripted::new("headers", HookSet::empty(), &c)
            .with_fixed(fixed(vec![], vec![set("x-frame-options", "DENY")], always))
            .entry(FailurePolicy::Closed)
    };
    let sometimes = chain(vec![entry(false)]);
    let always = chain(vec![entry(true)]);
    for (chain, host_generated, expected) in [
        (&sometimes, false, 1),
        (&sometimes, true, 0),
        (&always, true, 1),
    ] {
        let applied = chain
            .on_response(&mut head(), &mut host_made(host_generated))
            .ready()
            .expect("edits");
        assert_eq!(applied.len(), expected, "host_generated={host_generated}");
    }
}

#[test]
fn an_earlier_response_hook_sees_a_later_plugins_fixed_edits() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("reader", HookSet::RESPONSE, &c)
            .on_response(|resp| {
                assert_eq!(header_values(resp.headers(), "x-frame-options"), ["DENY"]);
                Ok(ResponseEdits { headers: vec![] })
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("headers", HookSet::empty(), &c)
            .with_fixed(fixed(vec![], vec![set("X-Frame-Options", "DENY")], false))
            .entry(FailurePolicy::Closed),
    ]);
    chain
        .on_response(&mut head(), &mut response())
        .ready()
        .expect("edits");
    assert_eq!(calls(&c), ["reader:response headers=2"]);
}

#[test]
fn fixed_edits_that_cannot_go_on_the_wire_refuse_the_entry() {
    let c = Calls::default();
    let bad_name = Scripted::new("bad", HookSet::empty(), &c).with_fixed(fixed(
        vec![set("bad name", "1")],
        vec![],
        false,
    ));
    let Err(err) = ChainEntry::new(Box::new(bad_name), FailurePolicy::Closed) else {
        panic!("a name with a space was taken");
    };
    assert_eq!(err, InvalidOutput::HeaderName("bad name".into()));
    let bad_value = Scripted::new("bad", HookSet::empty(), &c).with_fixed(fixed(
        vec![],
        vec![set("x-a", "line\r\nInjected: yes")],
        false,
    ));
    let Err(err) = ChainEntry::new(Box::new(bad_value), FailurePolicy::Closed) else {
        panic!("a value with CRLF was taken");
    };
    assert_eq!(err, InvalidOutput::HeaderValue("x-a".into()));
}

//! The response and log sides of the chain: reverse order, response
//! faults, the log decision, routes' chains.

use super::*;

#[test]
fn response_hooks_run_in_reverse_order_on_the_edited_response() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("outer", HookSet::all(), &c)
            .on_response(|resp| {
                // Sees the inner plugin's edit.
                assert_eq!(header_values(resp.headers(), "x-inner"), ["1"]);
                Ok(ResponseEdits {
                    headers: vec![
                        set("X-Frame-Options", "DENY"),
                        HeaderEdit {
                            op: HeaderOp::Remove,
                            name: "Server".into(),
                            value: vec![],
                        },
                    ],
                })
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("inner", HookSet::all(), &c)
            .on_response(|_| {
                Ok(ResponseEdits {
                    headers: vec![set("x-inner", "1")],
                })
            })
            .entry(FailurePolicy::Closed),
    ]);
    let mut resp = response();
    let applied = chain.on_response(&mut head(), &mut resp).ready().unwrap();
    assert_eq!(
        calls(&c),
        ["inner:response headers=1", "outer:response headers=2"]
    );
    // Every edit, in order, for the response's map (the outer plugin's
    // only there: no hook reads the list after it).
    let mut map = http::HeaderMap::new();
    map.insert("server", http::HeaderValue::from_static("up"));
    crate::plugin_chain::apply_to_map(&mut map, &applied);
    assert_eq!(map.len(), 2);
    assert_eq!(map["x-inner"], "1");
    assert_eq!(map["x-frame-options"], "DENY");
}

#[test]
fn response_faults_follow_each_entrys_policy() {
    let c = Calls::default();
    let fault = |_: &ResponseHead| Err(PluginFault::MemoryLimit(16 << 20));
    let open = chain(vec![
        Scripted::new("a", HookSet::all(), &c)
            .on_response(|_| {
                Ok(ResponseEdits {
                    headers: vec![set("x-a", "1")],
                })
            })
            .entry(FailurePolicy::Closed),
        Scripted::new("b", HookSet::all(), &c)
            .on_response(fault)
            .entry(FailurePolicy::Open),
    ]);
    // b faulted fail-open: a's edit alone goes on.
    let applied = open
        .on_response(&mut head(), &mut response())
        .ready()
        .unwrap();
    assert_eq!(applied, [wire_set("x-a", "1")]);

    let closed = chain(vec![Scripted::new("b", HookSet::all(), &c)
        .on_response(fault)
        .entry(FailurePolicy::Closed)]);
    let err = closed
        .on_response(&mut head(), &mut response())
        .ready()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin b: exceeded its memory cap of 16777216 bytes"
    );
}

fn line(text: &str) -> LogLine {
    LogLine {
        line: text.into(),
        labels: vec![("job".into(), "tailgate".into())],
    }
}

#[test]
fn every_log_hook_runs_and_the_last_shape_decides() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("early", HookSet::LOG, &c)
            .on_log(Ok(LogVerdict::Shape(line("early"))))
            .entry(FailurePolicy::Closed),
        Scripted::new("observer", HookSet::LOG, &c).entry(FailurePolicy::Closed),
        Scripted::new("late", HookSet::LOG | HookSet::REQUEST, &c)
            .on_log(Ok(LogVerdict::Shape(line("late"))))
            .entry(FailurePolicy::Closed),
        Scripted::new("no-log", HookSet::REQUEST, &c).entry(FailurePolicy::Closed),
    ]);
    match chain.on_log(&mut log_record()).ready() {
        LogDecision::Line(l) => assert_eq!(l.line, "late"),
        other => panic!("expected Line, got {other:?}"),
    }
    assert_eq!(calls(&c), ["early:log", "observer:log", "late:log"]);
}

#[test]
fn an_observer_that_keeps_the_line_leaves_a_shaper_before_it_in_charge() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("shape", HookSet::LOG, &c)
            .on_log(Ok(LogVerdict::Shape(line("shaped"))))
            .entry(FailurePolicy::Closed),
        Scripted::new("ban", HookSet::LOG, &c)
            .on_log(Ok(LogVerdict::Keep))
            .entry(FailurePolicy::Closed),
    ]);
    match chain.on_log(&mut log_record()).ready() {
        LogDecision::Line(l) => assert_eq!(l.line, "shaped"),
        other => panic!("expected Line, got {other:?}"),
    }
    assert_eq!(calls(&c), ["shape:log", "ban:log"]);
}

#[test]
fn log_decisions_cover_drop_default_and_failure() {
    let c = Calls::default();
    let dropping = chain(vec![
        Scripted::new("s", HookSet::LOG, &c)
            .on_log(Ok(LogVerdict::Shape(line("s"))))
            .entry(FailurePolicy::Closed),
        Scripted::new("d", HookSet::LOG, &c)
            .on_log(Ok(LogVerdict::Drop))
            .entry(FailurePolicy::Closed),
    ]);
    assert!(matches!(
        dropping.on_log(&mut log_record()).ready(),
        LogDecision::Drop
    ));

    let none = chain(vec![
        Scripted::new("r", HookSet::REQUEST, &c).entry(FailurePolicy::Closed)
    ]);
    assert!(matches!(
        none.on_log(&mut log_record()).ready(),
        LogDecision::Default
    ));
    assert!(matches!(
        chain(vec![]).on_log(&mut log_record()).ready(),
        LogDecision::Default
    ));

    // Open or closed, a failed log hook counts as keep: the line is not
    // lost, and the other log hooks still run.
    for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
        let c = Calls::default();
        let failing = chain(vec![
            Scripted::new("f", HookSet::LOG, &c)
                .on_log(Err(PluginFault::Trap("boom".into())))
                .entry(policy),
            Scripted::new("after", HookSet::LOG, &c).entry(policy),
        ]);
        assert!(matches!(
            failing.on_log(&mut log_record()).ready(),
            LogDecision::Default
        ));
        assert_eq!(calls(&c), ["f:log", "after:log"]);
    }
}

#[test]
fn chains_are_found_by_route_name() {
    let chains = PluginChains::from_chains([chain(vec![])]);
    let found = chains
        .for_route(&RouteName("site".into()))
        .expect("site chain");
    assert!(found.is_empty());
    assert_eq!(found.route().as_str(), "site");
    assert!(chains.for_route(&RouteName("other".into())).is_none());
}

//! Chain semantics with scripted plugins: order, edits between plugins,
//! immediate responses, fail policies, hook skipping and log shaping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailgate_runtime::{
    Header, HeaderEdit, HeaderOp, HookSet, ImmediateResponse, LogLine, LogRecord, PluginFault,
    RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead, Var,
};

use super::*;

type Calls = Arc<Mutex<Vec<String>>>;
type RequestScript = Box<dyn Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync>;
type ResponseScript =
    Box<dyn Fn(&ResponseHead) -> Result<ResponseEdits, PluginFault> + Send + Sync>;

/// A plugin whose hooks do what the test says and record what they saw.
struct Scripted {
    name: &'static str,
    hooks: HookSet,
    /// `hooks` plus the sides of fixed edits the runtime would make.
    phases: HookSet,
    calls: Calls,
    request: RequestScript,
    response: ResponseScript,
    log: Result<Option<LogLine>, PluginFault>,
}

impl Scripted {
    fn new(name: &'static str, hooks: HookSet, calls: &Calls) -> Scripted {
        Scripted {
            name,
            hooks,
            phases: hooks,
            calls: calls.clone(),
            request: Box::new(|_| Ok(RequestAction::Continue(edits(vec![])))),
            response: Box::new(|_| Ok(ResponseEdits { headers: vec![] })),
            log: Ok(None),
        }
    }

    fn on_request(
        mut self,
        f: impl Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync + 'static,
    ) -> Self {
        self.request = Box::new(f);
        self
    }

    fn on_response(
        mut self,
        f: impl Fn(&ResponseHead) -> Result<ResponseEdits, PluginFault> + Send + Sync + 'static,
    ) -> Self {
        self.response = Box::new(f);
        self
    }

    fn with_phases(mut self, phases: HookSet) -> Self {
        self.phases = phases;
        self
    }

    fn on_log(mut self, result: Result<Option<LogLine>, PluginFault>) -> Self {
        self.log = result;
        self
    }

    fn entry(self, policy: FailurePolicy) -> ChainEntry {
        ChainEntry::new(Box::new(self), policy)
    }

    fn record(&self, what: String) {
        self.calls.lock().expect("calls lock").push(what);
    }
}

impl PluginHooks for Scripted {
    fn name(&self) -> &str {
        self.name
    }
    fn hooks(&self) -> HookSet {
        self.hooks
    }
    fn phases(&self) -> HookSet {
        self.phases
    }
    fn on_request(&self, req: &mut RequestHead) -> Result<RequestAction, PluginFault> {
        let tags: Vec<String> = req
            .headers()
            .iter()
            .filter(|h| h.name == "x-tag")
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())
            .collect();
        self.record(format!(
            "{}:request path={} x-tag={:?}",
            self.name,
            req.path(),
            tags
        ));
        (self.request)(req)
    }
    fn on_response(
        &self,
        _req: &mut RequestHead,
        resp: &mut ResponseHead,
    ) -> Result<ResponseEdits, PluginFault> {
        self.record(format!(
            "{}:response headers={}",
            self.name,
            resp.headers().len()
        ));
        (self.response)(resp)
    }
    fn on_log(&self, _rec: &mut LogRecord) -> Result<Option<LogLine>, PluginFault> {
        self.record(format!("{}:log", self.name));
        self.log.clone()
    }
}

fn edits(headers: Vec<HeaderEdit>) -> RequestEdits {
    RequestEdits {
        headers,
        path: None,
        delay_ms: 0,
        vars: vec![],
    }
}

fn set(name: &str, value: &str) -> HeaderEdit {
    HeaderEdit {
        op: HeaderOp::Set,
        name: name.into(),
        value: value.into(),
    }
}

fn var(name: &str, value: &str) -> Var {
    Var {
        name: name.into(),
        value: value.into(),
    }
}

fn head() -> RequestHead {
    RequestHead {
        method: Some("GET".into()),
        scheme: Some("https".into()),
        host: Some("example.com".into()),
        path: Some("/a".into()),
        query: Some("q=1".into()),
        headers: Some(vec![Header {
            name: "accept".into(),
            value: b"*/*".to_vec(),
        }]),
        client_ip: Some("192.0.2.1".into()),
        route: Some("site".into()),
        request_id: Some("req-1".into()),
    }
}

fn response() -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: Some(vec![Header {
            name: "server".into(),
            value: b"upstream".to_vec(),
        }]),
        host_generated: false,
    }
}

fn log_record() -> LogRecord {
    LogRecord {
        time: Some("2025-01-01T00:00:00.000Z".into()),
        time_unix_ms: 1_735_689_600_000,
        client_ip: Some("192.0.2.1".into()),
        peer_addr: Some("192.0.2.1:5000".into()),
        method: Some("GET".into()),
        scheme: Some("https".into()),
        host: Some("example.com".into()),
        uri: Some("/a?q=1".into()),
        protocol: Some("HTTP/1.1".into()),
        status: 200,
        bytes_sent: 10,
        bytes_received: 0,
        request_time: 0.01,
        upstream_response_time: Some(0.005),
        upstream_addr: Some("100.64.0.2:80".into()),
        cache_status: Some(String::new()),
        route: Some("site".into()),
        request_id: Some("req-1".into()),
        user_agent: Some("test".into()),
        referer: Some(String::new()),
        http_host: Some(String::new()),
        request_headers: Some(vec![]),
        response_headers: Some(vec![]),
        vars: Some(vec![]),
    }
}

fn chain(entries: Vec<ChainEntry>) -> RouteChain {
    RouteChain::new(RouteName("site".into()), entries)
}

fn calls(c: &Calls) -> Vec<String> {
    c.lock().expect("calls lock").clone()
}

fn header_values(headers: &[Header], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name == name)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .collect()
}

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
    } = chain.on_request(&mut req)
    else {
        panic!("expected Continue");
    };
    assert_eq!(delay_ms, 150);
    // Every applied edit, in order, for the map the pipeline forwards.
    let edited: Vec<(&str, &[u8])> = header_edits
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_slice()))
        .collect();
    assert_eq!(edited, [("X-Tag", &b"one"[..]), ("x-tag", &b"two"[..])]);
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
    let RequestDecision::Respond(resp, vars) = chain.on_request(&mut head()) else {
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
    match chain.on_request(&mut head()) {
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
        chain.on_request(&mut req),
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
    } = open.on_request(&mut req)
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
    match closed.on_request(&mut head()) {
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
        chain.on_request(&mut head()),
        RequestDecision::Continue { .. }
    ));
    chain.on_response(&mut head(), &mut response()).unwrap();
    assert_eq!(calls(&c), ["request-only:request path=/a x-tag=[]"]);
    assert!(chain.has_hook(HookSet::LOG));
    assert!(!chain.has_hook(HookSet::RESPONSE));
}

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
    let applied = chain.on_response(&mut head(), &mut resp).unwrap();
    assert_eq!(
        calls(&c),
        ["inner:response headers=1", "outer:response headers=2"]
    );
    assert_eq!(header_values(resp.headers(), "x-frame-options"), ["DENY"]);
    assert!(header_values(resp.headers(), "server").is_empty());
    // The same edits, in order, applied to the response's map give the
    // same fields.
    let mut map = http::HeaderMap::new();
    map.insert("server", http::HeaderValue::from_static("up"));
    crate::plugin_chain::apply_checked_edits(&mut map, &applied);
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
    let mut resp = response();
    open.on_response(&mut head(), &mut resp).unwrap();
    assert_eq!(header_values(resp.headers(), "x-a"), ["1"]);

    let closed = chain(vec![Scripted::new("b", HookSet::all(), &c)
        .on_response(fault)
        .entry(FailurePolicy::Closed)]);
    let err = closed
        .on_response(&mut head(), &mut response())
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
fn the_last_plugin_with_a_log_hook_shapes_the_line() {
    let c = Calls::default();
    let chain = chain(vec![
        Scripted::new("early", HookSet::LOG, &c)
            .on_log(Ok(Some(line("early"))))
            .entry(FailurePolicy::Closed),
        Scripted::new("late", HookSet::LOG | HookSet::REQUEST, &c)
            .on_log(Ok(Some(line("late"))))
            .entry(FailurePolicy::Closed),
        Scripted::new("no-log", HookSet::REQUEST, &c).entry(FailurePolicy::Closed),
    ]);
    match chain.on_log(&mut log_record()) {
        LogDecision::Line(l) => assert_eq!(l.line, "late"),
        other => panic!("expected Line, got {other:?}"),
    }
    assert_eq!(calls(&c), ["late:log"]);
}

#[test]
fn log_decisions_cover_drop_default_and_failure() {
    let c = Calls::default();
    let dropping = chain(vec![Scripted::new("d", HookSet::LOG, &c)
        .on_log(Ok(None))
        .entry(FailurePolicy::Closed)]);
    assert!(matches!(
        dropping.on_log(&mut log_record()),
        LogDecision::Drop
    ));

    let none = chain(vec![
        Scripted::new("r", HookSet::REQUEST, &c).entry(FailurePolicy::Closed)
    ]);
    assert!(matches!(
        none.on_log(&mut log_record()),
        LogDecision::Default
    ));
    assert!(matches!(
        chain(vec![]).on_log(&mut log_record()),
        LogDecision::Default
    ));

    // Open or closed, a failed log hook hands the raw record back.
    for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
        let failing = chain(vec![Scripted::new("f", HookSet::LOG, &c)
            .on_log(Err(PluginFault::Trap("boom".into())))
            .entry(policy)]);
        match failing.on_log(&mut log_record()) {
            LogDecision::Failed { plugin, fault } => {
                assert_eq!(plugin, "f");
                assert_eq!(fault.to_string(), "trapped: boom");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
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

#[test]
fn fixed_edits_alone_run_the_phase_but_ask_for_no_fields() {
    let c = Calls::default();
    // No response hook (so no field is read), fixed response edits.
    let fixed = Scripted::new("fixed", HookSet::empty(), &c)
        .with_phases(HookSet::RESPONSE)
        .on_response(|_| {
            Ok(ResponseEdits {
                headers: vec![set("x-frame-options", "DENY")],
            })
        });
    let chain = chain(vec![fixed.entry(FailurePolicy::Open)]);
    assert!(chain.has_hook(HookSet::RESPONSE));
    assert!(!chain.has_hook(HookSet::REQUEST));
    assert_eq!(chain.response_fields(), &HeaderFilter::none());
    let mut resp = ResponseHead {
        status: 200,
        headers: Some(vec![]),
        host_generated: false,
    };
    let applied = chain.on_response(&mut head(), &mut resp).expect("edits");
    assert_eq!(applied, vec![set("x-frame-options", "DENY")]);
}

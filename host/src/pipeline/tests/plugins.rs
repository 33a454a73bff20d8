//! Plugin chains in the pipeline: edits, delays, immediate answers, faults,
//! and what response and log hooks see.

use super::*;

// === plugins ===

type Seen = Arc<Mutex<Vec<String>>>;

type RequestScript = Box<dyn Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync>;

/// A plugin that does what the test says and notes what it saw.
struct Scripted {
    hooks: HookSet,
    seen: Seen,
    request: RequestScript,
    response_fails: bool,
    log: Option<String>,
}

impl PluginHooks for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn hooks(&self) -> HookSet {
        self.hooks
    }
    fn on_request<'a>(&'a self, req: &'a mut RequestHead) -> HookCall<'a, RequestAction> {
        self.seen.lock().expect("lock").push(format!(
            "request {} {}",
            req.path(),
            req.request_id()
        ));
        Box::pin(std::future::ready((self.request)(req)))
    }
    fn on_response<'a>(
        &'a self,
        _req: &'a mut RequestHead,
        resp: &'a mut ResponseHead,
    ) -> HookCall<'a, ResponseEdits> {
        Box::pin(std::future::ready(self.response(resp)))
    }
    fn on_log<'a>(&'a self, rec: &'a mut LogRecord) -> HookCall<'a, LogVerdict> {
        Box::pin(std::future::ready(self.log(rec)))
    }
}

impl Scripted {
    fn response(&self, resp: &ResponseHead) -> Result<ResponseEdits, PluginFault> {
        self.seen.lock().expect("lock").push(format!(
            "response {} host_generated={}",
            resp.status, resp.host_generated
        ));
        if self.response_fails {
            return Err(PluginFault::Trap("boom".into()));
        }
        Ok(ResponseEdits {
            headers: vec![HeaderEdit {
                op: HeaderOp::Set,
                name: "x-plugin".into(),
                value: b"yes".to_vec(),
            }],
        })
    }
    fn log(&self, rec: &LogRecord) -> Result<LogVerdict, PluginFault> {
        let vars: Vec<String> = rec
            .vars()
            .iter()
            .map(|v| format!("{}={}", v.name, v.value))
            .collect();
        Ok(match self.log.as_ref() {
            Some(prefix) => LogVerdict::Shape(LogLine {
                line: format!(
                    "{prefix} {} {} {} {}",
                    rec.status,
                    rec.bytes_sent,
                    rec.route(),
                    vars.join(",")
                ),
                labels: vec![],
            }),
            None => LogVerdict::Drop,
        })
    }
}

fn scripted(
    seen: &Seen,
    request: impl Fn(&RequestHead) -> Result<RequestAction, PluginFault> + Send + Sync + 'static,
) -> Scripted {
    Scripted {
        hooks: HookSet::REQUEST | HookSet::RESPONSE | HookSet::LOG,
        seen: seen.clone(),
        request: Box::new(request),
        response_fails: false,
        log: Some("custom".into()),
    }
}

fn chain(plugin: Scripted, policy: FailurePolicy) -> RouteChain {
    RouteChain::new(
        RouteName("app".into()),
        vec![ChainEntry::new(Box::new(plugin), policy).expect("entry")],
    )
}

fn continue_with(headers: Vec<HeaderEdit>, path: Option<&str>, delay_ms: u32) -> RequestAction {
    RequestAction::Continue(RequestEdits {
        headers,
        path: path.map(str::to_string),
        delay_ms,
        vars: vec![Var {
            name: "seen".into(),
            value: "1".into(),
        }],
    })
}

#[tokio::test]
async fn request_edits_reach_the_upstream_and_response_edits_the_client() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| {
        Ok(continue_with(
            vec![HeaderEdit {
                op: HeaderOp::Set,
                name: "x-added".into(),
                value: b"1".to_vec(),
            }],
            Some("/rewritten?q=2"),
            0,
        ))
    });
    let mut h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/orig").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["uri"], "/base/rewritten?q=2");
    assert_eq!(a.echoed("x-added").as_deref(), Some("1"));
    assert_eq!(a.headers["x-plugin"], "yes");
    let line = h.next_line().await;
    assert_eq!(line, format!("custom 200 {} app seen=1", a.body.len()));
    let seen = seen.lock().expect("lock").clone();
    assert!(seen[0].starts_with("request /orig "), "{seen:?}");
    assert_eq!(seen[1], "response 200 host_generated=false");
}

#[tokio::test]
async fn delay_is_honoured() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| Ok(continue_with(vec![], None, 150)));
    let h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let started = std::time::Instant::now();
    assert_eq!(h.get("app.test", "/").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_plugin_answer_skips_the_upstream_and_still_runs_response_and_log_hooks() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| {
        Ok(RequestAction::Respond(ImmediateResponse {
            status: 403,
            headers: vec![tailgate_runtime::Header {
                name: "content-type".into(),
                value: b"text/plain".to_vec(),
            }],
            body: b"denied\n".to_vec(),
            vars: vec![Var {
                name: "why".into(),
                value: "rule".into(),
            }],
        }))
    });
    let mut h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/secret").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::FORBIDDEN, &b"denied\n"[..])
    );
    assert_eq!(a.headers["x-plugin"], "yes");
    assert_eq!(h.next_line().await, "custom 403 7 app why=rule");
    assert_eq!(
        seen.lock().expect("lock")[1],
        "response 403 host_generated=false"
    );
}

#[tokio::test]
async fn error_pages_for_dresses_plugin_answers_keeping_status_and_headers() {
    let up = echo_upstream().await;
    let answer = |body: &[u8]| {
        let body = body.to_vec();
        move |_: &RequestHead| {
            Ok(RequestAction::Respond(ImmediateResponse {
                status: 503,
                headers: vec![
                    tailgate_runtime::Header {
                        name: "retry-after".into(),
                        value: b"7".to_vec(),
                    },
                    tailgate_runtime::Header {
                        name: "content-type".into(),
                        value: b"text/plain".to_vec(),
                    },
                ],
                body: body.clone(),
                vars: vec![],
            }))
        }
    };
    let cases: [(&str, &[u8], &[u8]); 4] = [
        // error_pages_for, the plugin's body, what the client gets
        ("upstream", b"", b""),
        ("bodiless", b"", b"<p>back soon</p>"),
        ("bodiless", b"busy\n", b"busy\n"),
        ("all", b"busy\n", b"<p>back soon</p>"),
    ];
    for (dress, body, expected) in cases {
        let seen = Seen::default();
        let routes =
            format!("error_pages = {{ 503 = \"50x.html\" }}\nerror_pages_for = \"{dress}\"");
        let mut h = harness(
            &config(up, "", &routes),
            vec![chain(scripted(&seen, answer(body)), FailurePolicy::Closed)],
        );
        let a = h.get("app.test", "/").await;
        let case = format!("{dress} with body {body:?}");
        assert_eq!(
            (a.status, &a.body[..]),
            (StatusCode::SERVICE_UNAVAILABLE, expected),
            "{case}"
        );
        assert_eq!(a.headers["retry-after"], "7", "{case}");
        let paged = expected == b"<p>back soon</p>";
        let content_type = if paged {
            "text/html; charset=utf-8"
        } else {
            "text/plain"
        };
        assert_eq!(a.headers["content-type"], content_type, "{case}");
        assert_eq!(a.headers["x-plugin"], "yes", "response hooks ran: {case}");
        assert_eq!(
            seen.lock().expect("lock")[1],
            "response 503 host_generated=false",
            "still the plugin's answer: {case}"
        );
        assert_eq!(
            h.next_line().await,
            format!("custom 503 {} app ", expected.len()),
            "{case}"
        );
    }
}

#[tokio::test]
async fn the_access_log_chain_shapes_lines_without_a_route() {
    let up = echo_upstream().await;
    let routes = "[[routes]]\nname = \"only\"\nhosts = [\"only.test\"]\npath = \"/only/\"\nupstream = \"echo\"";
    let mut h = harness(&config(up, "", routes), vec![]);
    let seen = Seen::default();
    let log_only = Scripted {
        hooks: HookSet::LOG,
        log: Some("unrouted".into()),
        ..scripted(&seen, |_| Ok(continue_with(vec![], None, 0)))
    };
    let active = h.proxy.active();
    let chains = PluginChains::from_chains(vec![]).with_unrouted(RouteChain::new(
        RouteName(crate::plugin_chain::UNROUTED_CHAIN.into()),
        vec![ChainEntry::new(Box::new(log_only), FailurePolicy::Open).expect("entry")],
    ));
    let next = ActiveConfig::new(
        active.config.clone(),
        Arc::new(chains),
        active.access_log.clone(),
    )
    .expect("upstreams");
    h.proxy.swap(next);

    // Unknown host, and a known host's path no route has: both shaped.
    let a = h.get("nowhere.test", "/x").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(h.next_line().await, "unrouted 404 14  ");
    let a = h.get("only.test", "/elsewhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(h.next_line().await, "unrouted 404 14  ");
    // A routed request is its route's (no chain here: the default line).
    let a = h.get("app.test", "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(h.next_log().await["route"], "app");
    assert!(
        seen.lock().expect("lock").is_empty(),
        "only the log hook ran"
    );
}

#[tokio::test]
async fn failing_plugins_give_host_made_500s_seen_as_host_generated() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let plugin = scripted(&seen, |_| Err(PluginFault::Trap("unreachable".into())));
    let mut h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            &b"500 Internal Server Error\n"[..]
        )
    );
    assert_eq!(
        seen.lock().expect("lock")[1],
        "response 500 host_generated=true"
    );
    assert_eq!(h.next_line().await, "custom 500 26 app ");

    // A failing response hook (fail-closed) replaces the answer with a 500.
    let seen = Seen::default();
    let mut plugin = scripted(&seen, |_| Ok(continue_with(vec![], None, 0)));
    plugin.response_fails = true;
    let h = harness(
        &config(up, "", ""),
        vec![chain(plugin, FailurePolicy::Closed)],
    );
    let a = h.get("app.test", "/").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!a.headers.contains_key("x-plugin"));
}

#[tokio::test]
async fn upstream_errors_are_seen_by_response_hooks_as_host_generated() {
    let up = echo_upstream().await;
    let seen = Seen::default();
    let mut plugin = scripted(&seen, |_| Ok(continue_with(vec![], None, 0)));
    plugin.log = None;
    let routes = "";
    let cfg = config(up, "", routes).replace("upstream = \"echo\"", "upstream = \"dead\"");
    let mut h = harness(&cfg, vec![chain(plugin, FailurePolicy::Closed)]);
    let a = h.get("app.test", "/").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.headers["x-plugin"], "yes");
    assert_eq!(
        seen.lock().expect("lock")[1],
        "response 502 host_generated=true"
    );
    // The log hook dropped the line.
    h.no_line().await;
}

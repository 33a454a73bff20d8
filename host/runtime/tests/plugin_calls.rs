//! Hook calls on the real fault-injector plugin: faults (trap, runaway loop,
//! memory bomb) and what follows them, config rejection, skipped hooks,
//! instance reuse, and the metrics and logs a fault leaves.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tailgate_runtime::{
    ConfigureError, Header, Hook, Limits, LogRecord, PluginFault, ResponseHead,
};

fn response_head() -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: Some(vec![]),
        host_generated: false,
    }
}

fn log_record() -> LogRecord {
    let ip = |text: &str| text.parse::<std::net::IpAddr>().expect("ip").into();
    LogRecord {
        time_unix_ms: 1_704_067_200_000,
        client_ip: ip("198.51.100.1"),
        peer_ip: ip("198.51.100.1"),
        peer_port: 5000,
        method: tailgate_runtime::Method::Get,
        scheme: tailgate_runtime::Scheme::Https,
        protocol: tailgate_runtime::Protocol::Http11,
        host: Some("example.com".into()),
        uri: Some("/a?b=c".into()),
        status: 204,
        bytes_sent: 0,
        bytes_received: 0,
        request_time: 0.001,
        upstream_response_time: None,
        upstream_addr: None,
        cache_status: None,
        route: Some("r".into()),
        request_id: Some("req-9".into()),
        user_agent: Some("ua".into()),
        referer: Some(String::new()),
        http_host: Some(String::new()),
        path: None,
        request_headers: Some(vec![]),
        response_headers: Some(vec![]),
        vars: Some(vec![tailgate_runtime::Var {
            name: "k".into(),
            value: "v".into(),
        }]),
    }
}

#[test]
fn ok_mode_runs_every_hook() {
    let runtime = runtime();
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    assert!(plugin.implements(Hook::Request));
    assert!(plugin.implements(Hook::Response));
    assert!(plugin.implements(Hook::Log));
    let mut req = request("r", "/", "198.51.100.1");
    let edits = continue_edits(plugin.on_request(&mut req).expect("on_request"));
    assert_eq!(edit(&edits.headers, "x-fault-injector"), Some("ok"));
    assert_eq!(edit(&edits.headers, "x-seen-headers"), Some("3"));
    assert_eq!(
        edit(&edits.headers, "x-seen-user-agent"),
        Some("runtime-tests/1.0")
    );
    let resp = plugin
        .on_response(&mut req, &mut response_head())
        .expect("on_response");
    assert_eq!(edit(&resp.headers, "x-fault-injector"), Some("ok 200"));
    let line = plugin
        .on_log(&mut log_record())
        .expect("on_log")
        .into_line()
        .expect("a line");
    assert_eq!(line.line, "GET /a?b=c 204 req-9 vars=k=v");
    assert_eq!(
        line.labels,
        vec![("plugin".to_string(), "fault-injector".to_string())]
    );
}

#[test]
fn trap_is_reported_with_the_guest_panic_message() {
    let runtime = runtime();
    let plugin = configured(&runtime, "r", r#"{"mode":"trap","hook":"request"}"#);
    let mut req = request("r", "/", "198.51.100.1");
    let (result, logs) = capture_logs(|| plugin.on_request(&mut req));
    match result {
        Err(PluginFault::Trap(message)) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                message.contains("fault-injector: trap in request"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // The fault is logged once, with plugin, route and hook.
    let fault_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("plugin fault; instance discarded"))
        .collect();
    assert_eq!(fault_lines.len(), 1, "{logs}");
    let line = fault_lines[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("plugin=fault-injector"), "{line}");
    assert!(line.contains("route=r"), "{line}");
    assert!(
        line.contains("hook=\"request\"") || line.contains("hook=request"),
        "{line}"
    );
    // The guest's panic message went to the log as stderr.
    assert!(
        logs.lines()
            .any(|l| l.contains("stderr") && l.contains("fault-injector: trap in request")),
        "{logs}"
    );
}

#[test]
fn the_call_after_a_fault_succeeds_on_a_new_instance() {
    let runtime = runtime();
    // Fault on the 2nd request only (shared call counter).
    let plugin = configured(
        &runtime,
        "r",
        r#"{"mode":"trap","hook":"request","after":2,"times":1,"counter":"after-fault"}"#,
    );
    let mut req = request("r", "/", "198.51.100.1");
    assert!(plugin.on_request(&mut req).is_ok());
    assert_eq!(plugin.idle_instances(), 1);
    let live_before = runtime.live_instances();
    assert!(matches!(
        plugin.on_request(&mut req),
        Err(PluginFault::Trap(_))
    ));
    // The trapped instance was thrown away, not pooled.
    assert_eq!(plugin.idle_instances(), 0);
    assert_eq!(runtime.live_instances(), live_before - 1);
    let edits = continue_edits(plugin.on_request(&mut req).expect("third call"));
    assert_eq!(edit(&edits.headers, "x-fault-injector"), Some("ok"));
    assert_eq!(plugin.idle_instances(), 1);
}

#[test]
fn runaway_loop_is_stopped_within_its_budget() {
    let runtime = runtime();
    let plugin_def = load(&runtime, "fault-injector");
    let budget = Duration::from_millis(100);
    let plugin = runtime
        .configure(
            &plugin_def,
            "r",
            r#"{"mode":"loop","hook":"response"}"#,
            Limits {
                hook_timeout: budget,
                memory_bytes: 8 << 20,
            },
        )
        .expect("configure");
    let mut req = request("r", "/", "198.51.100.1");
    let started = Instant::now();
    let result = plugin.on_response(&mut req, &mut response_head());
    let took = started.elapsed();
    match result {
        Err(PluginFault::Timeout(d)) => assert_eq!(d, budget),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took >= budget, "stopped early: {took:?}");
    // One 1 ms tick of slack, plus scheduling noise on a busy 2-core box
    // (the epoch thread competes with builds for the CPU).
    assert!(took < budget + Duration::from_millis(100), "took {took:?}");
    // And the plugin still serves the other hooks.
    assert!(plugin.on_request(&mut req).is_ok());
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_cap() {
    let runtime = runtime();
    let plugin_def = load(&runtime, "fault-injector");
    let cap = 8 << 20;
    let plugin = runtime
        .configure(
            &plugin_def,
            "r",
            r#"{"mode":"alloc","hook":"log"}"#,
            Limits {
                hook_timeout: Duration::from_secs(5),
                memory_bytes: cap,
            },
        )
        .expect("configure");
    match plugin.on_log(&mut log_record()) {
        Err(PluginFault::MemoryLimit(bytes)) => assert_eq!(bytes, cap),
        other => panic!("expected the memory cap, got {other:?}"),
    }
    assert!(plugin
        .on_request(&mut request("r", "/", "198.51.100.1"))
        .is_ok());
}

#[test]
fn rejected_config_carries_the_plugin_message() {
    let runtime = runtime();
    let plugin = load(&runtime, "fault-injector");
    let err = runtime
        .configure(
            &plugin,
            "login",
            r#"{"mode":"reject","message":"zone is required"}"#,
            limits(),
        )
        .err()
        .expect("rejected");
    match &err {
        ConfigureError::Rejected {
            route,
            plugin,
            message,
        } => {
            assert_eq!(route, "login");
            assert_eq!(plugin, "fault-injector");
            assert_eq!(message, "zone is required");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "route login, plugin fault-injector: config rejected: zone is required"
    );
    // Invalid JSON for the plugin is its rejection too.
    let err = runtime
        .configure(&plugin, "login", r#"{"mode":"sideways"}"#, limits())
        .err()
        .expect("rejected");
    assert!(
        matches!(&err, ConfigureError::Rejected { message, .. } if message.contains("invalid fault-injector config")),
        "{err}"
    );
}

#[test]
fn faults_in_configure_are_configure_faults() {
    let runtime = runtime();
    let plugin = load(&runtime, "fault-injector");
    let err = runtime
        .configure(
            &plugin,
            "r",
            r#"{"mode":"trap","hook":"configure"}"#,
            limits(),
        )
        .err()
        .expect("fault");
    assert!(
        matches!(&err, ConfigureError::Fault { fault: PluginFault::Trap(m), .. } if m.contains("trap in configure")),
        "{err}"
    );
    let err = runtime
        .configure(
            &plugin,
            "r",
            r#"{"mode":"loop","hook":"configure"}"#,
            limits(),
        )
        .err()
        .expect("fault");
    assert!(
        matches!(
            &err,
            ConfigureError::Fault {
                fault: PluginFault::Timeout(_),
                ..
            }
        ),
        "{err}"
    );
    // Nothing is left alive by failed configures.
    assert_eq!(runtime.live_instances(), 0);
}

#[test]
fn hooks_not_declared_are_skipped() {
    let runtime = runtime();
    // Would trap in on-response and on-log, but only declares on-request.
    let plugin = configured(
        &runtime,
        "r",
        r#"{"mode":"trap","hook":"response","hooks":["request"]}"#,
    );
    assert!(plugin.implements(Hook::Request));
    assert!(!plugin.implements(Hook::Response));
    assert!(!plugin.implements(Hook::Log));
    let mut req = request("r", "/", "198.51.100.1");
    let resp = plugin
        .on_response(&mut req, &mut response_head())
        .expect("skipped, not trapped");
    assert!(resp.headers.is_empty());
    assert_eq!(
        plugin.on_log(&mut log_record()).expect("skipped"),
        tailgate_runtime::LogVerdict::Keep
    );
    assert!(plugin.on_request(&mut req).is_ok());
}

#[test]
fn instances_are_reused_up_to_the_call_limit() {
    // Reuse: the one instance serves every call.
    let runtime = tailgate_runtime::Runtime::new(config(3)).expect("runtime");
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    let mut req = request("r", "/", "198.51.100.1");
    assert_eq!(runtime.live_instances(), 1);
    plugin.on_request(&mut req).expect("call 1");
    plugin.on_request(&mut req).expect("call 2");
    assert_eq!(plugin.idle_instances(), 1);
    // The third call uses it up: it is not kept.
    plugin.on_request(&mut req).expect("call 3");
    assert_eq!(plugin.idle_instances(), 0);
    assert_eq!(runtime.live_instances(), 0);
    plugin
        .on_request(&mut req)
        .expect("call 4 on a fresh instance");
    assert_eq!(plugin.idle_instances(), 1);

    // max_calls_per_instance = 1: a fresh instance for every call.
    let fresh = tailgate_runtime::Runtime::new(config(1)).expect("runtime");
    let plugin = configured(&fresh, "r", r#"{"mode":"ok"}"#);
    for _ in 0..3 {
        plugin.on_request(&mut req).expect("call");
        assert_eq!(plugin.idle_instances(), 0);
        assert_eq!(fresh.live_instances(), 0);
    }
}

#[test]
fn instance_limit_is_a_fault_not_a_hang() {
    let mut config = config(1000);
    config.max_instances = 1;
    let runtime = tailgate_runtime::Runtime::new(config).expect("runtime");
    let plugin = configured(&runtime, "a", r#"{"mode":"ok"}"#);
    // The one instance is idle in the first plugin's pool.
    let def = load(&runtime, "fault-injector");
    let err = runtime
        .configure(&def, "b", r#"{"mode":"ok"}"#, limits())
        .err()
        .expect("no instance left");
    assert!(
        matches!(&err, ConfigureError::Fault { fault: PluginFault::Instantiate(m), .. } if m.contains("in use")),
        "{err}"
    );
    drop(plugin);
    assert!(runtime
        .configure(&def, "b", r#"{"mode":"ok"}"#, limits())
        .is_ok());
}

#[test]
fn concurrent_calls_from_many_threads() {
    let runtime = runtime();
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let plugin = &plugin;
            scope.spawn(move || {
                let mut req = request("r", &format!("/t{t}"), "198.51.100.1");
                for _ in 0..50 {
                    plugin.on_request(&mut req).expect("call");
                }
            });
        }
    });
    assert!(plugin.idle_instances() >= 1);
}

#[test]
fn calls_and_faults_are_counted_by_hook_and_kind() {
    let metrics = metrics_of(|| {
        let runtime = runtime();
        let plugin = configured(
            &runtime,
            "metered",
            r#"{"mode":"trap","hook":"request","after":2,"times":1,"counter":"metered"}"#,
        );
        let mut req = request("metered", "/", "198.51.100.1");
        let _ = plugin.on_request(&mut req);
        let _ = plugin.on_request(&mut req);
        let _ = plugin.on_request(&mut req);
        let _ = plugin.on_response(&mut req, &mut response_head());
    });
    let base = [("plugin", "fault-injector"), ("route", "metered")];
    let with = |hook: &'static str| {
        let mut labels = base.to_vec();
        labels.push(("hook", hook));
        labels
    };
    assert_eq!(
        metrics.counter("tailgate_plugin_calls_total", &with("request")),
        3
    );
    assert_eq!(
        metrics.counter("tailgate_plugin_calls_total", &with("response")),
        1
    );
    // configure: once at configure time, once for the instance replacing
    // the trapped one.
    assert_eq!(
        metrics.counter("tailgate_plugin_calls_total", &with("configure")),
        2
    );
    let mut trap = with("request");
    trap.push(("kind", "trap"));
    assert_eq!(metrics.counter("tailgate_plugin_faults_total", &trap), 1);
    assert_eq!(metrics.counter("tailgate_plugin_faults_total", &base), 1);
    let durations = metrics.histogram("tailgate_plugin_call_duration_seconds", &with("request"));
    assert_eq!(durations.len(), 3);
    assert!(durations.iter().all(|v| *v > 0.0), "{durations:?}");
}

fn fields(names: &[&str]) -> Vec<Header> {
    names
        .iter()
        .map(|name| Header {
            name: (*name).to_string(),
            value: b"v".to_vec(),
        })
        .collect()
}

#[test]
fn hooks_see_only_the_header_fields_the_plugin_asked_for() {
    let runtime = runtime();
    let narrow = configured(
        &runtime,
        "r",
        r#"{"mode":"ok","request_headers":["User-Agent","x-absent"],
            "response_headers":["content-type"]}"#,
    );
    let mut req = request("r", "/", "198.51.100.1");
    let edits = continue_edits(narrow.on_request(&mut req).expect("on_request"));
    assert_eq!(
        edit(&edits.headers, "x-seen-header-names"),
        Some("user-agent")
    );
    assert_eq!(
        edit(&edits.headers, "x-seen-user-agent"),
        Some("runtime-tests/1.0")
    );
    // Whole again for the next plugin and the upstream.
    assert_eq!(req.headers().len(), 3);

    let mut resp = ResponseHead {
        status: 200,
        headers: Some(fields(&["server", "content-type", "etag", "content-type"])),
        host_generated: false,
    };
    let edits = narrow
        .on_response(&mut req, &mut resp)
        .expect("on_response");
    assert_eq!(
        edit(&edits.headers, "x-seen-response-header-names"),
        Some("content-type,content-type")
    );
    assert_eq!(resp.headers().len(), 4);

    let mut rec = log_record();
    rec.request_headers = Some(fields(&["host", "user-agent", "cookie"]));
    rec.response_headers = Some(fields(&["server", "content-type"]));
    let line = narrow
        .on_log(&mut rec)
        .expect("on_log")
        .into_line()
        .expect("a line");
    assert!(
        line.line.ends_with(" headers=user-agent/content-type"),
        "{}",
        line.line
    );
    assert_eq!(rec.request_headers().len(), 3);
    assert_eq!(rec.response_headers().len(), 2);

    // `[]` asks for none; no filter asks for every field.
    let none = configured(&runtime, "r", r#"{"mode":"ok","request_headers":[]}"#);
    let edits = continue_edits(none.on_request(&mut req).expect("on_request"));
    assert_eq!(edit(&edits.headers, "x-seen-headers"), Some("0"));
    let all = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    let edits = continue_edits(all.on_request(&mut req).expect("on_request"));
    assert_eq!(
        edit(&edits.headers, "x-seen-header-names"),
        Some("host,user-agent,accept")
    );
}

#[test]
fn hooks_see_only_the_record_fields_the_plugin_asked_for() {
    let runtime = runtime();
    let narrow = configured(
        &runtime,
        "r",
        r#"{"mode":"ok","request_headers":[],"request_fields":["path","route"],
            "log_fields":["uri","user_agent","vars"]}"#,
    );
    let mut req = request("r", "/a", "198.51.100.1");
    req.query = Some("q=1".into());
    let full = req.clone();
    let edits = continue_edits(narrow.on_request(&mut req).expect("on_request"));
    // The query is not asked for: it crosses as `none`, like the headers.
    assert_eq!(
        edit(&edits.headers, "x-seen-request-fields"),
        Some("path,route")
    );
    // Whole again for the next plugin and the upstream.
    assert_eq!(req, full);

    let mut rec = log_record();
    let full = rec.clone();
    let line = narrow
        .on_log(&mut rec)
        .expect("on_log")
        .into_line()
        .expect("a line");
    // The record's response header list is empty: it crosses as `none`
    // too, as an empty string would.
    assert!(
        line.line.ends_with(" fields=uri,user_agent,vars"),
        "{}",
        line.line
    );
    // The method always comes (a number); the request id was not asked
    // for: it crossed as `none`.
    assert!(line.line.starts_with("GET /a?b=c 204 - "), "{}", line.line);
    assert_eq!(rec, full);

    // No list asks for every field.
    let all = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    let edits = continue_edits(all.on_request(&mut req).expect("on_request"));
    assert_eq!(
        edit(&edits.headers, "x-seen-request-fields"),
        Some("host,path,query,headers,route,request_id")
    );
    let plugin = common::load(&runtime, "fault-injector");
    let refused = runtime.configure(
        &plugin,
        "r",
        r#"{"mode":"ok","request_fields":["cookie"]}"#,
        common::limits(),
    );
    assert!(refused.is_err());
}

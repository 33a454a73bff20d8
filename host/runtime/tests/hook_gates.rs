//! Hook gates (`plugin-info.request-gate`, `response-gate`, `log-gate`)
//! on the real fault-injector, through `ChainedPlugin` (the phases the
//! proxy's chain and the harness run) and the log thread's batch call: a
//! request outside a hook's gate does not enter the guest (a hook that
//! would trap goes on untouched, no call counted) and still gets the
//! plugin's fixed edits; one inside enters it; a record outside the log
//! gate is kept without a call while the batch's others get their own
//! verdicts; a gate naming something that is no header field, or no
//! status, rejects the config.

mod common;

use common::*;
use tailgate_runtime::{
    block_on, ChainedPlugin, ConfigureError, ConfiguredPlugin, Header, HookFault, LogRecord,
    LogVerdict, Method, PluginFault, RequestHead, RequestStep, ResponseHead, WireEdit,
};

/// Both hooks trap when entered; each is gated on a request header field,
/// the request hook on `OPTIONS` too; a fixed response header.
const GATED: &str = r#"{"mode":"trap","hook":"request","hooks":["request","response"],
    "request_gate":{"methods":["OPTIONS"],"with_headers":["X-Enter"]},
    "response_gate":{"with_headers":["x-enter"]},
    "fixed_response":{"x-fixed":"yes"}}"#;

fn with_header(mut req: RequestHead, name: &str) -> RequestHead {
    if let Some(headers) = req.headers.as_mut() {
        headers.push(Header {
            name: name.to_owned(),
            value: b"1".to_vec(),
        });
    }
    req
}

fn request_phase(
    plugin: &ChainedPlugin<ConfiguredPlugin>,
    mut req: RequestHead,
) -> Result<(), HookFault> {
    let mut applied = Vec::new();
    match block_on(plugin.request_phase(&mut req, &mut applied))? {
        RequestStep::Continue(edits) => {
            assert!(edits.vars.is_empty() && applied.is_empty(), "{edits:?}");
            Ok(())
        }
        RequestStep::Respond(resp) => panic!("unexpected respond: {}", resp.status),
    }
}

fn response_phase(
    plugin: &ChainedPlugin<ConfiguredPlugin>,
    mut req: RequestHead,
) -> Result<Vec<String>, HookFault> {
    let mut resp = ResponseHead {
        status: 200,
        headers: Some(Vec::new()),
        host_generated: false,
    };
    let mut applied = Vec::new();
    block_on(plugin.response_phase(&mut req, &mut resp, false, &mut applied))?;
    Ok(applied
        .iter()
        .map(WireEdit::to_header_edit)
        .map(|edit| edit.name)
        .collect())
}

fn is_trap(result: Result<impl std::fmt::Debug, HookFault>) -> bool {
    matches!(result, Err(HookFault::Plugin(PluginFault::Trap(_))))
}

#[test]
fn a_request_outside_a_hooks_gate_does_not_enter_it() {
    let metrics = metrics_of(|| {
        let runtime = runtime();
        let request_trap = ChainedPlugin::new(configured(&runtime, "gated", GATED)).expect("fits");
        let get = || request("gated", "/", "198.51.100.1");
        let options = || {
            let mut req = get();
            req.method = Method::Options;
            req
        };

        // The request hook: entered only for an OPTIONS with X-Enter.
        request_phase(&request_trap, get()).expect("GET: not entered");
        request_phase(&request_trap, options()).expect("no X-Enter: not entered");
        request_phase(&request_trap, with_header(get(), "x-enter")).expect("GET: not entered");
        assert!(is_trap(request_phase(
            &request_trap,
            with_header(options(), "x-enter")
        )));

        // The response hook (this config's traps in the request hook only,
        // so the response hook's edits show it was entered): without
        // X-Enter, the fixed edit alone; with it, the hook's too.
        let response_ok = ChainedPlugin::new(configured(
            &runtime,
            "gated",
            &GATED.replace(r#""mode":"trap""#, r#""mode":"ok""#),
        ))
        .expect("fits");
        assert_eq!(
            response_phase(&response_ok, get()).expect("ok"),
            ["x-fixed"]
        );
        let entered = response_phase(&response_ok, with_header(get(), "x-enter")).expect("ok");
        assert!(
            entered.len() > 1 && entered[0] == "x-fixed",
            "the hook's edits follow the fixed one: {entered:?}"
        );
    });
    let calls = |hook| {
        metrics.counter(
            "tailgate_plugin_calls_total",
            &[
                ("plugin", "fault-injector"),
                ("route", "gated"),
                ("hook", hook),
            ],
        )
    };
    assert_eq!(calls("request"), 1, "only the OPTIONS with X-Enter");
    assert_eq!(calls("response"), 1, "only the request with X-Enter");
}

#[test]
fn a_record_outside_the_log_gate_is_kept_without_a_call() {
    let statuses = [200, 401, 200, 403, 500, 401];
    let metrics = metrics_of(|| {
        let runtime = runtime();
        // The log hook shapes every record it is entered for ("GET /n 401
        // ..."); it would trap on /trap, which is outside the gate.
        let plugin = configured(
            &runtime,
            "log-gated",
            r#"{"mode":"trap","hook":"log","hooks":["log"],"only_path":"/trap",
                "log_gate":[401,403]}"#,
        );
        let record = |n: usize, status: u16| LogRecord {
            uri: Some(format!("/{n}")),
            status,
            ..LogRecord::default()
        };
        let mut records: Vec<LogRecord> = statuses
            .iter()
            .enumerate()
            .map(|(n, &status)| record(n, status))
            .collect();
        records.push(LogRecord {
            uri: Some("/trap".into()),
            status: 200,
            ..LogRecord::default()
        });
        let verdicts = block_on(plugin.log_batch_hook(&mut records));
        assert_eq!(verdicts.len(), records.len());
        for (n, (verdict, rec)) in verdicts.iter().zip(&records).enumerate() {
            if n < statuses.len() {
                assert_eq!(
                    rec.uri.as_deref(),
                    Some(format!("/{n}").as_str()),
                    "in place"
                );
            }
            match (rec.status, verdict) {
                (401 | 403, Ok(LogVerdict::Shape(line))) => assert!(
                    line.line.starts_with(&format!("GET /{n} {} ", rec.status)),
                    "record {n} got another's line: {}",
                    line.line
                ),
                (200 | 500, Ok(LogVerdict::Keep)) => {}
                other => panic!("record {n}: {other:?}"),
            }
        }
        // A batch with no record inside the gate makes no call.
        let mut outside = vec![record(0, 200), record(1, 502)];
        let verdicts = block_on(plugin.log_batch_hook(&mut outside));
        assert!(verdicts.iter().all(|v| matches!(v, Ok(LogVerdict::Keep))));
    });
    let calls = metrics.counter(
        "tailgate_plugin_calls_total",
        &[
            ("plugin", "fault-injector"),
            ("route", "log-gated"),
            ("hook", "log"),
        ],
    );
    assert_eq!(calls, 1, "one call, for the first batch's three failures");
}

#[test]
fn a_gate_naming_no_header_field_or_status_rejects_the_config() {
    let runtime = runtime();
    let plugin = load(&runtime, "fault-injector");
    let rejected = |config: &str| match runtime
        .configure(&plugin, "bad-gate", config, limits())
        .map(|_| ())
        .expect_err(config)
    {
        ConfigureError::Rejected { message, .. } => message,
        other => panic!("not a rejection: {other}"),
    };
    let message = rejected(r#"{"mode":"ok","response_gate":{"with_headers":["x enter"]}}"#);
    assert!(
        message.contains("plugin-info.response-gate.with-headers names \"x enter\""),
        "{message}"
    );
    let message = rejected(r#"{"mode":"ok","log_gate":[401,99]}"#);
    assert!(
        message.contains("plugin-info.log-gate.statuses names 99, which is not an HTTP status"),
        "{message}"
    );
}

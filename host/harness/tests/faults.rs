//! The harness's own behaviour on a misbehaving plugin (the real
//! fault-injector component): a trap, a hook past its time budget, memory
//! past the cap and a rejected config are reported as the proxy's runtime
//! classifies them, with the plugin's own output, and the `expect_*`
//! assertions fail with messages that say what happened.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use tailgate_harness::{FaultKind, HarnessError, HookFault, OutputSource, PluginFault, Request};

fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion should fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_trap_is_reported_with_the_guests_panic_message() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let trapping = harness
        .configure(&plugin, r#"{"mode": "trap", "hook": "request"}"#)
        .expect("configure");
    let outcome = trapping.on_request(Request::get("/boom"));
    let fault = outcome.expect_fault(FaultKind::Trap);
    assert!(
        fault
            .to_string()
            .contains("fault-injector: trap in request"),
        "{fault}"
    );
    // The panic message went to stderr, which the harness captured.
    assert!(
        outcome
            .logs()
            .iter()
            .any(|l| l.source == OutputSource::Stderr && l.message.contains("trap in request")),
        "{:?}",
        outcome.logs()
    );
    // Asserting a normal outcome fails with the fault and the plugin's log.
    let message = panic_message(|| {
        outcome.expect_continue();
    });
    assert!(
        message.contains("fault-injector (route test), on-request: expected continue, but it failed with a trap fault"),
        "{message}"
    );
    assert!(message.contains("[warn stderr]"), "{message}");
    // The runtime counted the fault, as the proxy's metrics would.
    let metrics = harness.metrics();
    assert_eq!(
        metrics.counter(
            "tailgate_plugin_faults_total",
            &[
                ("plugin", "fault-injector"),
                ("hook", "request"),
                ("kind", "trap")
            ]
        ),
        1
    );
    // A trapped instance is thrown away; the next call gets a fresh one.
    trapping
        .on_request(Request::get("/again"))
        .expect_fault(FaultKind::Trap);
}

#[test]
fn a_hook_past_its_time_budget_is_a_timeout_fault() {
    let harness = common::builder()
        .hook_timeout(Duration::from_millis(30))
        .build()
        .expect("harness");
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let looping = harness
        .configure(&plugin, r#"{"mode": "loop", "hook": "response"}"#)
        .expect("configure");
    let outcome = looping.on_response(Request::get("/"), tailgate_harness::Response::new(200));
    match outcome.expect_fault(FaultKind::Timeout) {
        HookFault::Plugin(PluginFault::Timeout(budget)) => {
            assert_eq!(*budget, Duration::from_millis(30))
        }
        other => panic!("{other}"),
    }
    let message = panic_message(|| {
        outcome.expect_edits();
    });
    assert!(
        message.contains("expected response edits, but it failed with a timeout fault: exceeded its time budget of 30ms"),
        "{message}"
    );
}

#[test]
fn memory_past_the_cap_is_a_memory_fault() {
    let harness = common::builder()
        .memory_bytes(4 << 20)
        .build()
        .expect("harness");
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let hungry = harness
        .configure(&plugin, r#"{"mode": "alloc", "hook": "log"}"#)
        .expect("configure");
    hungry
        .on_log(tailgate_harness::LogEntry::get("/"))
        .expect_fault(FaultKind::Memory);
}

#[test]
fn a_rejected_config_carries_the_plugins_message() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let err = harness
        .configure(&plugin, r#"{"mode": "reject", "message": "no such zone"}"#)
        .err()
        .expect("rejected");
    assert!(matches!(err, HarnessError::ConfigRejected { .. }), "{err}");
    assert_eq!(err.rejection(), Some("no such zone"));
    assert_eq!(
        err.to_string(),
        "plugin fault-injector: config rejected: no such zone"
    );
    // A config the plugin cannot even parse is rejected the same way.
    let err = harness
        .configure(&plugin, r#"{"mode": "sideways"}"#)
        .err()
        .expect("rejected");
    assert!(
        err.rejection()
            .is_some_and(|m| m.contains("unknown variant `sideways`")),
        "{err}"
    );
}

#[test]
fn a_trap_in_configure_is_a_configure_fault_not_a_rejection() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("fault_injector")).expect("load");
    let err = harness
        .configure(&plugin, r#"{"mode": "trap", "hook": "configure"}"#)
        .err()
        .expect("faulted");
    assert!(matches!(err, HarnessError::ConfigureFault { .. }), "{err}");
    assert_eq!(err.rejection(), None);
}

#[test]
fn a_file_that_is_not_a_component_is_refused_at_load() {
    let harness = common::harness();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("core.wasm");
    // A core module header (layer 0), the usual wasm32-wasip1 mistake.
    std::fs::write(&path, b"\0asm\x01\0\0\0").expect("write");
    let err = harness.load(&path).err().expect("refused");
    assert!(
        err.to_string()
            .contains("a core WebAssembly module, not a component"),
        "{err}"
    );
}

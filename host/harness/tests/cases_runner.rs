//! The cases runner (what `tailgate plugin test` prints): one line per
//! case, every mismatch and the plugin's log under a failing case, the
//! `N passed, N failed` summary, and clear errors for files that cannot run.

mod common;

use tailgate_harness::cases::{self, CasesError, CasesFile, Summary};

fn run(stem: &str, cases_toml: &str) -> (Result<Summary, CasesError>, String) {
    let file = CasesFile::parse(cases_toml).expect("cases parse");
    let mut out = Vec::new();
    let result = cases::run(&common::wasm(stem), &file, &mut out);
    (result, String::from_utf8(out).expect("utf-8"))
}

const LIMITER: &str = r#"
config = { limits = [{ zone = "z", rate = "1r/s", burst = 0 }] }

[[case]]
name = "first request passes"
[[case.step]]
request = {}
expect.continue = { vars = { limit_req_status = "PASSED" } }

[[case]]
name = "wrongly expects the second to pass"
[[case.step]]
request = {}
repeat = 2
expect.continue = {}

[[case]]
name = "wrongly expects a 503"
[[case.step]]
request = {}
[[case.step]]
request = {}
expect.respond = { status = 503, headers = { "retry-after" = "2" } }
"#;

#[test]
fn a_line_per_case_the_mismatches_with_the_plugin_log_and_a_summary() {
    let (result, out) = run("rate_limit", LIMITER);
    assert_eq!(
        result.expect("ran"),
        Summary {
            passed: 1,
            failed: 2
        }
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ok   first request passes");
    assert_eq!(lines[1], "FAIL wrongly expects the second to pass");
    assert!(
        lines[2].starts_with(
            "     - step 1: call 2 of 2: on-request: expected continue, got respond 429"
        ),
        "{out}"
    );
    assert!(out.contains("plugin log during the call:"), "{out}");
    assert!(
        out.contains("[warn] limiting requests by zone \"z\""),
        "{out}"
    );
    assert!(out.contains("FAIL wrongly expects a 503"), "{out}");
    assert!(
        out.contains("step 2: on-request: status: expected 503, got 429"),
        "{out}"
    );
    assert!(
        out.contains("step 2: on-request: header retry-after: expected \"2\", got \"1\""),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"1 passed, 2 failed"));
}

#[test]
fn config_expectations_pass_and_fail_with_the_message() {
    let (result, out) = run(
        "rate_limit",
        r#"
[[case]]
name = "refused as expected"
config = { limits = [] }
expect_config_error = "limits"

[[case]]
name = "refused, but not with that message"
config = { limits = [{ zone = "a", rate = "10" }] }
expect_config_error = "burst"

[[case]]
name = "accepted, but expected refused"
config = { limits = [{ zone = "a", rate = "10r/s" }] }
expect_config_error = "rate"

[[case]]
name = "refused unexpectedly"
config = { limits = [{ zone = "a" }] }
"#,
    );
    assert_eq!(
        result.expect("ran"),
        Summary {
            passed: 1,
            failed: 3
        }
    );
    assert!(
        out.contains("config rejected with \"limits[0].rate: `10` is not a rate"),
        "{out}"
    );
    assert!(
        out.contains("config accepted, expected it rejected with a message containing \"rate\""),
        "{out}"
    );
    assert!(
        out.contains(
            "plugin rate-limit: config rejected: limits[0].rate: required: give the limit a rate"
        ),
        "{out}"
    );
}

#[test]
fn faults_are_expectations_too() {
    let (result, out) = run(
        "fault_injector",
        r#"
hook_timeout = "30ms"

[[case]]
name = "a trap is expected"
config = { mode = "trap" }
[[case.step]]
request = {}
expect.fault = "trap"

[[case]]
name = "a loop is a timeout"
config = { mode = "loop", hook = "log" }
[[case.step]]
log = {}
expect.fault = "timeout"

[[case]]
name = "an unexpected trap fails the case with the panic message"
config = { mode = "trap", hook = "response" }
[[case.step]]
response = { status = 200 }
expect.edits = {}
"#,
    );
    assert_eq!(
        result.expect("ran"),
        Summary {
            passed: 2,
            failed: 1
        },
        "{out}"
    );
    assert!(
        out.contains("on-response: trap fault: trapped:")
            && out.contains("fault-injector: trap in response"),
        "{out}"
    );
}

#[test]
fn state_seeds_clock_steps_and_metrics_expectations() {
    let (result, out) = run(
        "fault_injector",
        r#"
plugin = "probe"
config = { mode = "state", ttl_ms = 1000 }

[[case]]
name = "seeded counter, then expiry on the fake clock"
[[case.step]]
seed = { counters = { hits = 41 }, kv = { "last-path" = "/seeded" } }
request = { uri = "/a" }
expect.continue = { set = { "x-primitives" = "window=1,counted=1,nx=true,cas=true/false/true,ttl=1000", "x-hits" = "42", "x-hits-read" = "42", "x-kv-prev" = "/seeded", "x-kv-deleted" = "true,false", "x-ratelimit" = "pass", "x-now-ms" = "1735689600000" }, vars = { hits = "42" } }
expect.state = { counters = { hits = 42 }, kv = { "last-path" = "/a" }, kv_absent = ["scratch"] }
expect.metrics = [
  { name = "tailgate_plugin_requests", labels = { plugin = "probe", route = "test" }, counter = 1 },
  { name = "tailgate_plugin_path_length", histogram_count = 1 },
]
[[case.step]]
advance = "1s"
expect.state = { counters = { hits = 0 }, kv_absent = ["last-path"] }
"#,
    );
    assert_eq!(
        result.expect("ran"),
        Summary {
            passed: 1,
            failed: 0
        },
        "{out}"
    );
}

#[test]
fn files_that_cannot_run_are_errors_not_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = common::wasm("rate_limit");
    let mut out = Vec::new();

    let missing = dir.path().join("missing.toml");
    let err = cases::run_file(&wasm, &missing, &mut out).expect_err("missing");
    assert!(matches!(err, CasesError::Read { .. }), "{err}");

    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[[case]]\nname = \"x\"\n[[case.step]]\nrequest = {}\nexpect.contine = {}\n",
    )
    .expect("write");
    let err = cases::run_file(&wasm, &typo, &mut out).expect_err("typo");
    let message = err.to_string();
    assert!(message.contains("unknown field `contine`"), "{message}");
    assert!(message.contains("line 5"), "{message}");

    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "config = {}\n").expect("write");
    let err = cases::run_file(&wasm, &empty, &mut out).expect_err("empty");
    assert!(err.to_string().contains("no cases"), "{err}");

    let too_short = dir.path().join("short.toml");
    std::fs::write(
        &too_short,
        "hook_timeout = \"5ms\"\n[[case]]\nname = \"x\"\n",
    )
    .expect("write");
    let err = cases::run_file(&wasm, &too_short, &mut out).expect_err("5 ms budget");
    assert!(
        err.to_string().contains(
            "hook_timeout = \"5ms\" is below 10ms: plugin hooks are stopped on a 10 ms clock"
        ),
        "{err}"
    );

    let cases_ok = dir.path().join("ok.toml");
    std::fs::write(&cases_ok, "[[case]]\nname = \"x\"\n").expect("write");
    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "hello").expect("write");
    let err = cases::run_file(&not_wasm, &cases_ok, &mut out).expect_err("not wasm");
    assert!(err.to_string().contains("not a WebAssembly file"), "{err}");

    let misfit = dir.path().join("misfit.toml");
    std::fs::write(&misfit, "config = { limits = [{ zone = \"a\", rate = \"1r/s\" }] }\n[[case]]\nname = \"m\"\n[[case.step]]\nrequest = {}\nexpect.line = \"x\"\n")
        .expect("write");
    let mut out = Vec::new();
    let summary = cases::run_file(&wasm, &misfit, &mut out).expect("ran");
    assert_eq!(summary.failed, 1);
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.contains("step 1: an on-request step (only `request`) can expect"),
        "{out}"
    );
}

#[test]
fn every_shipped_plugins_cases_file_passes() {
    for (stem, dir) in [
        ("header_rewrite", "header-rewrite"),
        ("rate_limit", "rate-limit"),
        ("log_shape", "log-shape"),
    ] {
        let mut out = Vec::new();
        let summary = cases::run_file(&common::wasm(stem), &common::cases_file(dir), &mut out)
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        let out = String::from_utf8(out).expect("utf-8");
        assert!(summary.all_passed() && summary.passed > 0, "{dir}:\n{out}");
    }
}

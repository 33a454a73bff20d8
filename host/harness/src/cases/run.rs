//! Running one case: a fresh [`Harness`] (fresh state, clock at the start),
//! the plugin configured, then each step: seed, advance the clock, call the
//! hook (`repeat` times), check. Produces a [`CaseResult`] with every
//! mismatch and the plugin's log lines of the failing step.

use std::path::Path;
use std::time::Duration;

use tailgate_runtime::StateLimits;

use super::check;
use super::file::{Case, CasesFile, Expect, HeaderValues, LogInput, RequestInput, Step};
use crate::harness::{name_from_path, Harness, PluginConfig};
use crate::inputs::{LogEntry, Request, Response};
use crate::inspect::{describe_action, describe_log_verdict, describe_response_edits, FaultKind};
use crate::outcome::CallContext;
use crate::plugin_logs::format_logs;
use crate::HarnessError;

/// How one case went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed; else what was wrong, one item per problem
    /// (multi-line items carry the plugin's log).
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Settings shared by every case of a file.
pub(crate) struct FileSettings {
    pub(crate) plugin: String,
    pub(crate) builder: crate::HarnessBuilder,
}

impl FileSettings {
    pub(crate) fn new(
        file: &CasesFile,
        wasm: &Path,
        cache_dir: &Path,
    ) -> Result<FileSettings, String> {
        let mut builder = Harness::builder().cache_dir(cache_dir);
        if let Some(route) = &file.route {
            builder = builder.route(route);
        }
        if let Some(timeout) = &file.hook_timeout {
            builder = builder.hook_timeout(parse_hook_timeout(timeout)?);
        }
        if let Some(memory) = &file.memory_limit {
            builder = builder.memory_bytes(parse_memory(memory)?);
        }
        if let Some(start) = file.clock_start_ms {
            builder = builder.start_ms(start);
        }
        if let Some(limits) = &file.state_limits {
            let d = StateLimits::default();
            builder = builder.state_limits(StateLimits {
                max_key_bytes: limits.max_key_bytes.unwrap_or(d.max_key_bytes),
                max_counters: limits.max_counters.unwrap_or(d.max_counters),
                max_kv_entries: limits.max_kv_entries.unwrap_or(d.max_kv_entries),
                max_kv_value_bytes: limits.max_kv_value_bytes.unwrap_or(d.max_kv_value_bytes),
                max_zones: limits.max_zones.unwrap_or(d.max_zones),
                max_keys_per_zone: limits.max_keys_per_zone.unwrap_or(d.max_keys_per_zone),
                ..d
            });
        }
        Ok(FileSettings {
            plugin: file.plugin.clone().unwrap_or_else(|| name_from_path(wasm)),
            builder,
        })
    }
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{key} = {text:?}: {e}"))
}

/// As the proxy's config: at least the runtime's 10 ms epoch tick.
fn parse_hook_timeout(text: &str) -> Result<Duration, String> {
    tailgate_runtime::check_hook_budget(parse_duration("hook_timeout", text)?)
        .map_err(|reason| format!("hook_timeout = {text:?} {reason}"))
}

fn parse_memory(size: &super::file::MemorySize) -> Result<usize, String> {
    use super::file::MemorySize;
    let bytes = match size {
        MemorySize::Bytes(n) => *n,
        MemorySize::Text(text) => {
            let t = text.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let number: u64 = number
                .parse()
                .map_err(|_| format!("memory_limit = {text:?}: expected e.g. \"16MiB\""))?;
            let scale: u64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                other => {
                    return Err(format!(
                        "memory_limit = {text:?}: unknown unit {other:?} (B, KiB, MiB, GiB)"
                    ))
                }
            };
            number.saturating_mul(scale)
        }
    };
    usize::try_from(bytes).map_err(|_| "memory_limit is too large".to_owned())
}

fn add_headers(
    mut req: Request,
    headers: &std::collections::BTreeMap<String, HeaderValues>,
) -> Request {
    for (name, values) in headers {
        for value in values.values() {
            req = req.header(name, value);
        }
    }
    req
}

fn request(input: &RequestInput) -> Request {
    let mut req = Request::new(
        input.method.as_deref().unwrap_or("GET"),
        input.uri.as_deref().unwrap_or("/"),
    );
    if let Some(scheme) = &input.scheme {
        req = req.scheme(scheme);
    }
    if let Some(host) = &input.host {
        req = req.host(host);
    }
    if let Some(ip) = &input.client_ip {
        req = req.client_ip(ip);
    }
    if let Some(route) = &input.route {
        req = req.route(route);
    }
    if let Some(id) = &input.request_id {
        req = req.request_id(id);
    }
    add_headers(req, &input.headers)
}

fn log_entry(input: &LogInput) -> LogEntry {
    let mut entry = LogEntry::new(
        input.method.as_deref().unwrap_or("GET"),
        input.uri.as_deref().unwrap_or("/"),
        input.status.unwrap_or(200),
    );
    if let Some(ip) = &input.client_ip {
        entry = entry.client_ip(ip);
    }
    if let Some(host) = &input.host {
        entry = entry.host(host);
    }
    if let Some(route) = &input.route {
        entry = entry.route(route);
    }
    if let Some(bytes) = input.bytes_sent {
        entry = entry.bytes_sent(bytes);
    }
    if let Some(seconds) = input.request_time {
        entry = entry.request_time(seconds);
    }
    if let Some(addr) = &input.upstream_addr {
        entry = entry.upstream(addr, input.upstream_response_time.unwrap_or(0.0));
    }
    if let Some(status) = &input.cache_status {
        entry = entry.cache_status(status);
    }
    if let Some(ms) = input.time_unix_ms {
        entry = entry.time_unix_ms(ms);
    }
    for (name, values) in &input.request_headers {
        for value in values.values() {
            entry = entry.request_header(name, value);
        }
    }
    for (name, values) in &input.response_headers {
        for value in values.values() {
            entry = entry.response_header(name, value);
        }
    }
    for (name, value) in &input.vars {
        entry = entry.var(name, value);
    }
    if let Some(scheme) = &input.scheme {
        entry = entry.scheme(scheme);
    }
    if let Some(id) = &input.request_id {
        entry = entry.request_id(id);
    }
    if let Some(protocol) = &input.protocol {
        entry = entry.protocol(protocol);
    }
    if let Some(bytes) = input.bytes_received {
        entry = entry.bytes_received(bytes);
    }
    entry
}

/// Runs `case` of `file` against the wasm at `wasm`.
pub(crate) fn run_case(
    settings: &FileSettings,
    file: &CasesFile,
    wasm: &Path,
    case: &Case,
) -> CaseResult {
    let failures = match run_steps(settings, file, wasm, case) {
        Ok(failures) => failures,
        Err(problem) => vec![problem],
    };
    CaseResult {
        name: case.name.clone(),
        failures,
    }
}

fn run_steps(
    settings: &FileSettings,
    file: &CasesFile,
    wasm: &Path,
    case: &Case,
) -> Result<Vec<String>, String> {
    let harness = settings
        .builder
        .clone()
        .build()
        .map_err(|e| e.to_string())?;
    let plugin = harness
        .load_as(&settings.plugin, wasm)
        .map_err(|e| e.to_string())?;
    let table = case.config.as_ref().or(file.config.as_ref());
    let config = match table {
        Some(table) => PluginConfig::from_table(table).map_err(|e| e.to_string())?,
        None => PluginConfig::empty(),
    };
    let configured = harness.configure(&plugin, config);
    let plugin_under_test = match (configured, &case.expect_config_error) {
        (Err(HarnessError::ConfigRejected { message, .. }), Some(want)) => {
            return Ok(if message.contains(want.as_str()) {
                Vec::new()
            } else {
                vec![format!(
                    "config rejected with {message:?}, expected a message containing {want:?}"
                )]
            });
        }
        (Ok(_), Some(want)) => {
            return Ok(vec![format!(
                "config accepted, expected it rejected with a message containing {want:?}"
            )]);
        }
        (Err(error), _) => {
            return Ok(vec![format!(
                "{error}\nplugin log:\n{}",
                format_logs(&harness.logs())
            )]);
        }
        (Ok(plugin), None) => plugin,
    };
    for (index, step) in case.steps.iter().enumerate() {
        let failures = run_step(&harness, &plugin_under_test, step)
            .map_err(|problem| format!("step {}: {problem}", index + 1))?;
        if !failures.is_empty() {
            return Ok(failures
                .into_iter()
                .map(|f| format!("step {}: {f}", index + 1))
                .collect());
        }
    }
    Ok(Vec::new())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The hook a step calls.
enum Call<'s> {
    Request(&'s RequestInput),
    Response(Option<&'s RequestInput>, &'s super::file::ResponseInput),
    Log(&'s LogInput),
}

fn run_step(
    harness: &Harness,
    plugin: &crate::TestPlugin<'_>,
    step: &Step,
) -> Result<Vec<String>, String> {
    let state = harness.state(plugin.name());
    if let Some(seed) = &step.seed {
        for (key, value) in &seed.counters {
            let now = state.counter(key);
            state.counter_incr(key, value - now, seed.ttl_ms);
        }
        for (key, value) in &seed.kv {
            state.kv_set(key, value.as_bytes().to_vec(), seed.ttl_ms);
        }
    }
    if let Some(advance) = &step.advance {
        harness.advance(parse_duration("advance", advance)?);
    }
    let call = match (&step.log, &step.response, &step.request) {
        (Some(log), None, None) => Some(Call::Log(log)),
        (Some(_), _, _) => return Err("a step calls one hook: give `log` alone".to_owned()),
        (None, Some(resp), req) => Some(Call::Response(req.as_ref(), resp)),
        (None, None, Some(req)) => Some(Call::Request(req)),
        (None, None, None) => None,
    };
    let expect = step.expect.clone().unwrap_or_default();
    check_fits(&expect, call.as_ref())?;
    let mut failures = Vec::new();
    if let Some(call) = &call {
        for round in 0..step.repeat.unwrap_or(1).max(1) {
            let mut found = one_call(plugin, call, &expect);
            if !found.is_empty() {
                if step.repeat.is_some() {
                    found = found
                        .into_iter()
                        .map(|f| format!("call {} of {}: {f}", round + 1, step.repeat.unwrap_or(1)))
                        .collect();
                }
                failures.extend(found);
                break;
            }
        }
    }
    if let Some(metrics) = &expect.metrics {
        let snapshot = harness.metrics();
        let found = check::metrics(metrics, &snapshot);
        if !found.is_empty() {
            failures.extend(found);
            failures.push(format!(
                "metrics recorded:\n{}",
                indent(&snapshot.describe())
            ));
        }
    }
    if let Some(want) = &expect.state {
        failures.extend(check::state(want, &state));
    }
    Ok(failures)
}

/// Refuses expectations the step's hook cannot meet (a cases-file mistake).
fn check_fits(expect: &Expect, call: Option<&Call<'_>>) -> Result<(), String> {
    let request = expect.proceed.is_some() || expect.respond.is_some();
    let response = expect.edits.is_some();
    let log = expect.line.is_some()
        || expect.line_contains.is_some()
        || expect.labels.is_some()
        || expect.dropped.is_some();
    let any = expect.fault.is_some() || expect.logs_contain.is_some();
    let misfit = match call {
        None if request || response || log || any => Some("a step without `request`, `response` or `log` calls no hook; expect only `metrics` and `state` there"),
        Some(Call::Request(_)) if response || log => Some("an on-request step (only `request`) can expect `continue`, `respond`, `fault`, `logs_contain`, `metrics`, `state`"),
        Some(Call::Response(..)) if request || log => Some("an on-response step (`response`) can expect `edits`, `fault`, `logs_contain`, `metrics`, `state`"),
        Some(Call::Log(_)) if request || response => Some("an on-log step (`log`) can expect `line`, `line_contains`, `labels`, `dropped`, `fault`, `logs_contain`, `metrics`, `state`"),
        _ => None,
    };
    if let Some(message) = misfit {
        return Err(message.to_owned());
    }
    if expect.proceed.is_some() && expect.respond.is_some() {
        return Err("expect either `continue` or `respond`, not both".to_owned());
    }
    if let Some(kind) = &expect.fault {
        if FaultKind::parse(kind).is_none() {
            return Err(format!(
                "fault = {kind:?}: expected \"trap\", \"timeout\", \"memory\", \"instantiate\" or \"invalid_output\""
            ));
        }
    }
    Ok(())
}

fn with_log(context: &CallContext, failures: Vec<String>) -> Vec<String> {
    if failures.is_empty() {
        return failures;
    }
    let mut failures: Vec<String> = failures
        .into_iter()
        .map(|f| format!("{}: {f}", context.hook))
        .collect();
    failures.push(format!(
        "plugin log during the call:\n{}",
        format_logs(&context.logs)
    ));
    failures
}

fn fault_check<T>(
    expect: &Expect,
    result: &Result<T, tailgate_runtime::HookFault>,
    describe: impl Fn(&T) -> String,
) -> Result<(), Vec<String>> {
    match (result, &expect.fault) {
        (Err(fault), Some(kind)) => {
            let got = FaultKind::of(fault);
            if got.as_str() == kind {
                Err(Vec::new())
            } else {
                Err(vec![format!(
                    "expected a {kind} fault, got a {} fault: {fault}",
                    got.as_str()
                )])
            }
        }
        (Err(fault), None) => Err(vec![format!(
            "{} fault: {fault}",
            FaultKind::of(fault).as_str()
        )]),
        (Ok(value), Some(kind)) => Err(vec![format!(
            "expected a {kind} fault, the hook returned {}",
            describe(value)
        )]),
        (Ok(_), None) => Ok(()),
    }
}

fn one_call(plugin: &crate::TestPlugin<'_>, call: &Call<'_>, expect: &Expect) -> Vec<String> {
    match call {
        Call::Request(input) => {
            let outcome = plugin.on_request(request(input));
            let failures = match fault_check(expect, outcome.result(), describe_action) {
                Err(failures) => failures,
                Ok(()) => {
                    let action = outcome.action().cloned();
                    let mut failures = Vec::new();
                    match (action, &expect.proceed, &expect.respond) {
                        (Some(tailgate_runtime::RequestAction::Continue(edits)), Some(want), _) => {
                            failures.extend(check::proceed(want, &edits));
                        }
                        (Some(tailgate_runtime::RequestAction::Respond(resp)), _, Some(want)) => {
                            failures.extend(check::respond(want, &resp));
                        }
                        (Some(action), Some(_), _) => failures.push(format!(
                            "expected continue, got {}",
                            describe_action(&action)
                        )),
                        (Some(action), _, Some(_)) => failures.push(format!(
                            "expected respond, got {}",
                            describe_action(&action)
                        )),
                        _ => {}
                    }
                    failures
                }
            };
            let mut failures = failures;
            failures.extend(logs_check(expect, outcome.logs()));
            with_log(outcome.context(), failures)
        }
        Call::Response(req, resp_input) => {
            let req = req.map(request).unwrap_or_else(|| Request::get("/"));
            let mut resp = Response::new(resp_input.status);
            for (name, values) in &resp_input.headers {
                for value in values.values() {
                    resp = resp.header(name, value);
                }
            }
            if resp_input.host_generated {
                resp = resp.host_generated();
            }
            let outcome = plugin.on_response(req, resp);
            let mut failures = match fault_check(expect, outcome.result(), describe_response_edits)
            {
                Err(failures) => failures,
                Ok(()) => match (&expect.edits, outcome.result()) {
                    (Some(want), Ok(edits)) => check::edits(want, &edits.headers),
                    _ => Vec::new(),
                },
            };
            failures.extend(logs_check(expect, outcome.logs()));
            with_log(outcome.context(), failures)
        }
        Call::Log(input) => {
            let outcome = plugin.on_log(log_entry(input));
            let mut failures = match fault_check(expect, outcome.result(), describe_log_verdict) {
                Err(failures) => failures,
                Ok(()) => match outcome.result() {
                    Ok(line) => check::log_line(
                        expect.line.as_ref(),
                        expect.line_contains.as_ref(),
                        expect.labels.as_ref(),
                        expect.dropped,
                        line,
                    ),
                    Err(_) => Vec::new(),
                },
            };
            failures.extend(logs_check(expect, outcome.logs()));
            with_log(outcome.context(), failures)
        }
    }
}

fn logs_check(expect: &Expect, logs: &[crate::PluginLog]) -> Vec<String> {
    expect
        .logs_contain
        .as_deref()
        .map(|want| check::logs_contain(want, logs))
        .unwrap_or_default()
}

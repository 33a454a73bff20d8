//! Comparing what a hook returned with a step's expectations. Each check
//! returns the mismatches as sentences (empty = as expected), so a failing
//! case lists everything that was off, not just the first thing.

use std::collections::BTreeMap;

use tailgate_runtime::{
    HeaderEdit, HeaderOp, ImmediateResponse, LogVerdict, PluginStateView, RequestEdits, Var,
};

use super::file::{ContinueExpect, EditsExpect, MetricExpect, RespondExpect, StateExpect};
use crate::inspect::{describe_edits, header_str, var};
use crate::metrics_capture::MetricsSnapshot;
use crate::plugin_logs::PluginLog;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Edits as comparable (op, lower-case name, value) triples, sorted.
fn normalized(edits: &[HeaderEdit]) -> Vec<(&'static str, String, String)> {
    let mut out: Vec<_> = edits
        .iter()
        .map(|e| {
            let (op, value) = match e.op {
                HeaderOp::Set => ("set", text(&e.value)),
                HeaderOp::Append => ("append", text(&e.value)),
                HeaderOp::Remove => ("remove", String::new()),
            };
            (op, e.name.to_ascii_lowercase(), value)
        })
        .collect();
    out.sort();
    out
}

pub(crate) fn edits(expect: &EditsExpect, got: &[HeaderEdit]) -> Vec<String> {
    if expect.set.is_none() && expect.append.is_none() && expect.remove.is_none() {
        return Vec::new();
    }
    let mut want = Vec::new();
    for (name, value) in expect.set.iter().flatten() {
        want.push(("set", name.to_ascii_lowercase(), value.clone()));
    }
    for (name, values) in expect.append.iter().flatten() {
        for value in values.values() {
            want.push(("append", name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    for name in expect.remove.iter().flatten() {
        want.push(("remove", name.to_ascii_lowercase(), String::new()));
    }
    want.sort();
    if want == normalized(got) {
        return Vec::new();
    }
    let describe = |edits: &[(&str, String, String)]| {
        if edits.is_empty() {
            return "no header edits".to_owned();
        }
        edits
            .iter()
            .map(|(op, name, value)| match *op {
                "remove" => format!("remove {name}"),
                _ => format!("{op} {name}: {value:?}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    vec![format!(
        "header edits: expected {}, got {}",
        describe(&want),
        describe_edits(got)
    )]
}

fn vars(expect: &Option<BTreeMap<String, String>>, got: &[Var]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in expect.iter().flatten() {
        match var(got, name) {
            Some(have) if have == value => {}
            Some(have) => out.push(format!("var {name}: expected {value:?}, got {have:?}")),
            None => out.push(format!("var {name}: expected {value:?}, not set")),
        }
    }
    out
}

pub(crate) fn proceed(expect: &ContinueExpect, got: &RequestEdits) -> Vec<String> {
    let mut out = edits(&expect.edits(), &got.headers);
    if let Some(path) = &expect.path {
        let have = got.path.as_deref().unwrap_or("");
        if have != path {
            out.push(format!("path: expected {path:?}, got {have:?}"));
        }
    }
    if let Some(delay) = expect.delay_ms {
        if got.delay_ms != delay {
            out.push(format!("delay_ms: expected {delay}, got {}", got.delay_ms));
        }
    }
    out.extend(vars(&expect.vars, &got.vars));
    out
}

pub(crate) fn respond(expect: &RespondExpect, got: &ImmediateResponse) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(status) = expect.status {
        if got.status != status {
            out.push(format!("status: expected {status}, got {}", got.status));
        }
    }
    for (name, value) in expect.headers.iter().flatten() {
        match header_str(&got.headers, name) {
            Some(have) if have == value => {}
            Some(have) => out.push(format!("header {name}: expected {value:?}, got {have:?}")),
            None => out.push(format!("header {name}: expected {value:?}, absent")),
        }
    }
    let body = text(&got.body);
    if let Some(want) = &expect.body {
        if &body != want {
            out.push(format!("body: expected {want:?}, got {body:?}"));
        }
    }
    if let Some(want) = &expect.body_contains {
        if !body.contains(want.as_str()) {
            out.push(format!("body: expected to contain {want:?}, got {body:?}"));
        }
    }
    out.extend(vars(&expect.vars, &got.vars));
    out
}

pub(crate) fn log_line(
    line: Option<&String>,
    contains: Option<&Vec<String>>,
    labels: Option<&BTreeMap<String, String>>,
    dropped: Option<bool>,
    got: &LogVerdict,
) -> Vec<String> {
    let mut out = Vec::new();
    let wants_line = line.is_some() || contains.is_some() || labels.is_some();
    let what = |verdict: &LogVerdict| match verdict {
        LogVerdict::Drop => "the plugin dropped it".to_owned(),
        LogVerdict::Keep => "the plugin kept the host's line".to_owned(),
        LogVerdict::Shape(line) => format!("got {:?}", line.line),
    };
    match (got, dropped) {
        (LogVerdict::Drop, Some(false)) => out.push(format!("expected a log line, {}", what(got))),
        (LogVerdict::Shape(_) | LogVerdict::Keep, Some(true)) => {
            out.push(format!("expected the line dropped, {}", what(got)))
        }
        (LogVerdict::Drop | LogVerdict::Keep, _) if wants_line => {
            out.push(format!("expected a shaped log line, {}", what(got)))
        }
        _ => {}
    }
    let LogVerdict::Shape(got) = got else {
        return out;
    };
    if let Some(want) = line {
        if &got.line != want {
            out.push(format!(
                "line: expected {want:?}\n        got      {:?}",
                got.line
            ));
        }
    }
    for want in contains.into_iter().flatten() {
        if !got.line.contains(want.as_str()) {
            out.push(format!(
                "line: expected to contain {want:?}, got {:?}",
                got.line
            ));
        }
    }
    if let Some(want) = labels {
        let have: BTreeMap<String, String> = got.labels.iter().cloned().collect();
        if &have != want {
            out.push(format!("labels: expected {want:?}, got {have:?}"));
        }
    }
    out
}

pub(crate) fn logs_contain(want: &[String], logs: &[PluginLog]) -> Vec<String> {
    want.iter()
        .filter(|w| !logs.iter().any(|l| l.message.contains(w.as_str())))
        .map(|w| format!("plugin log: expected a line containing {w:?}"))
        .collect()
}

pub(crate) fn metrics(want: &[MetricExpect], got: &MetricsSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    for m in want {
        let labels: Vec<(&str, &str)> = m
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let series = format!("{}{:?}", m.name, m.labels);
        if let Some(value) = m.counter {
            let have = got.counter(&m.name, &labels);
            if have != value {
                out.push(format!(
                    "metric {series}: expected counter {value}, got {have}"
                ));
            }
        }
        if let Some(value) = m.gauge {
            match got.gauge(&m.name, &labels) {
                Some(have) if (have - value).abs() < 1e-9 => {}
                have => out.push(format!(
                    "metric {series}: expected gauge {value}, got {have:?}"
                )),
            }
        }
        if let Some(count) = m.histogram_count {
            let have = got.histogram(&m.name, &labels).len();
            if have != count {
                out.push(format!(
                    "metric {series}: expected {count} histogram values, got {have}"
                ));
            }
        }
        if m.counter.is_none() && m.gauge.is_none() && m.histogram_count.is_none() {
            out.push(format!(
                "metric {series}: give `counter`, `gauge` or `histogram_count`"
            ));
        }
    }
    out
}

pub(crate) fn state(want: &StateExpect, got: &PluginStateView) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in want.counters.iter().flatten() {
        let have = got.counter(key);
        if have != *value {
            out.push(format!("counter {key:?}: expected {value}, got {have}"));
        }
    }
    for (key, value) in want.kv.iter().flatten() {
        match got.kv_get(key) {
            Some(have) if have == value.as_bytes() => {}
            Some(have) => out.push(format!(
                "kv {key:?}: expected {value:?}, got {:?}",
                text(&have)
            )),
            None => out.push(format!("kv {key:?}: expected {value:?}, absent")),
        }
    }
    for key in want.kv_absent.iter().flatten() {
        if let Some(have) = got.kv_get(key) {
            out.push(format!(
                "kv {key:?}: expected absent, got {:?}",
                text(&have)
            ));
        }
    }
    for (zone, keys) in want.rate_limit_keys.iter().flatten() {
        let have = got.rate_limit_zone(zone).map_or(0, |z| z.tracked_keys);
        if have != *keys {
            out.push(format!(
                "rate-limit zone {zone:?}: expected {keys} keys held, got {have}"
            ));
        }
    }
    out
}

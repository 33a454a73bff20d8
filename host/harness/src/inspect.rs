//! Reading what a hook returned: header edits by name and op, response
//! headers and vars, and one-line descriptions of actions, edits and log
//! lines for failure messages and the cases runner's report.

use tailgate_runtime::{
    Header, HeaderEdit, HeaderOp, HookFault, ImmediateResponse, LogVerdict, PluginFault,
    RequestAction, RequestEdits, ResponseEdits, Var,
};

/// Lookups on a hook's header edits (names compare case-insensitively).
pub trait HeaderEditsExt {
    /// The value a `set` edit gives `name`, as text.
    fn set_value(&self, name: &str) -> Option<&str>;
    /// The values `append` edits add to `name`, in order.
    fn appended(&self, name: &str) -> Vec<&str>;
    /// Whether an edit removes `name`.
    fn removes(&self, name: &str) -> bool;
}

impl HeaderEditsExt for [HeaderEdit] {
    fn set_value(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|e| e.op == HeaderOp::Set && e.name.eq_ignore_ascii_case(name))
            .and_then(|e| std::str::from_utf8(&e.value).ok())
    }

    fn appended(&self, name: &str) -> Vec<&str> {
        self.iter()
            .filter(|e| e.op == HeaderOp::Append && e.name.eq_ignore_ascii_case(name))
            .filter_map(|e| std::str::from_utf8(&e.value).ok())
            .collect()
    }

    fn removes(&self, name: &str) -> bool {
        self.iter()
            .any(|e| e.op == HeaderOp::Remove && e.name.eq_ignore_ascii_case(name))
    }
}

/// The first value of header `name` in `headers`, as text.
pub fn header_str<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// The value of var `name`.
pub fn var<'a>(vars: &'a [Var], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|v| v.name == name)
        .map(|v| v.value.as_str())
}

/// The kind of a hook's fault: a [`PluginFault`] as the runtime's metrics
/// name it, or output the chain refused to put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Trap,
    Timeout,
    Memory,
    Instantiate,
    /// An invalid header, path or status ([`HookFault::InvalidOutput`]).
    InvalidOutput,
    /// Not called: the plugin was tripped or at its bound of slow calls
    /// (never in the harness, whose plugins are unguarded).
    FailFast,
}

impl FaultKind {
    pub fn of(fault: &HookFault) -> FaultKind {
        match fault {
            HookFault::Plugin(PluginFault::Trap(_)) => FaultKind::Trap,
            HookFault::Plugin(PluginFault::Timeout(_)) => FaultKind::Timeout,
            HookFault::Plugin(PluginFault::MemoryLimit(_)) => FaultKind::Memory,
            HookFault::Plugin(PluginFault::Instantiate(_)) => FaultKind::Instantiate,
            HookFault::Plugin(PluginFault::Tripped(_) | PluginFault::Saturated(_)) => {
                FaultKind::FailFast
            }
            HookFault::InvalidOutput(_) => FaultKind::InvalidOutput,
        }
    }

    /// `trap`, `timeout`, `memory`, `instantiate`, `invalid_output`,
    /// `fail_fast`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::Memory => "memory",
            FaultKind::Instantiate => "instantiate",
            FaultKind::InvalidOutput => "invalid_output",
            FaultKind::FailFast => "fail_fast",
        }
    }

    pub fn parse(text: &str) -> Option<FaultKind> {
        Some(match text {
            "trap" => FaultKind::Trap,
            "timeout" => FaultKind::Timeout,
            "memory" => FaultKind::Memory,
            "instantiate" => FaultKind::Instantiate,
            "invalid_output" => FaultKind::InvalidOutput,
            "fail_fast" => FaultKind::FailFast,
            _ => return None,
        })
    }
}

fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("{bytes:?}"),
    }
}

/// `set x-a: "v"; remove cookie; append via: "t"`.
pub fn describe_edits(edits: &[HeaderEdit]) -> String {
    if edits.is_empty() {
        return "no header edits".to_owned();
    }
    edits
        .iter()
        .map(|e| match e.op {
            HeaderOp::Set => format!("set {}: {}", e.name, text(&e.value)),
            HeaderOp::Append => format!("append {}: {}", e.name, text(&e.value)),
            HeaderOp::Remove => format!("remove {}", e.name),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_vars(vars: &[Var]) -> String {
    vars.iter()
        .map(|v| format!("{}={:?}", v.name, v.value))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn describe_request_edits(edits: &RequestEdits) -> String {
    let mut parts = vec![describe_edits(&edits.headers)];
    if let Some(path) = &edits.path {
        parts.push(format!("path {path:?}"));
    }
    if edits.delay_ms != 0 {
        parts.push(format!("delay {} ms", edits.delay_ms));
    }
    if !edits.vars.is_empty() {
        parts.push(format!("vars {}", describe_vars(&edits.vars)));
    }
    parts.join("; ")
}

pub fn describe_response(resp: &ImmediateResponse) -> String {
    let headers: Vec<String> = resp
        .headers
        .iter()
        .map(|h| format!("{}: {}", h.name, text(&h.value)))
        .collect();
    let mut out = format!(
        "{} [{}] body {}",
        resp.status,
        headers.join("; "),
        text(&resp.body)
    );
    if !resp.vars.is_empty() {
        out.push_str(&format!("; vars {}", describe_vars(&resp.vars)));
    }
    out
}

pub fn describe_action(action: &RequestAction) -> String {
    match action {
        RequestAction::Continue(edits) => format!("continue ({})", describe_request_edits(edits)),
        RequestAction::Respond(resp) => format!("respond {}", describe_response(resp)),
    }
}

pub fn describe_response_edits(edits: &ResponseEdits) -> String {
    describe_edits(&edits.headers)
}

pub fn describe_log_verdict(verdict: &LogVerdict) -> String {
    match verdict {
        LogVerdict::Drop => "dropped the line".to_owned(),
        LogVerdict::Keep => "kept the line as it was".to_owned(),
        LogVerdict::Shape(line) => {
            let labels: Vec<String> = line
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            format!("line {:?} labels {{{}}}", line.line, labels.join(", "))
        }
    }
}

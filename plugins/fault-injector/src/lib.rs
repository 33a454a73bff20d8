//! fault-injector: a Tailgate test plugin that misbehaves on demand. It runs
//! in the plugin stage of the request pipeline like any plugin, and lets the
//! runtime's and the proxy's tests provoke every failure a guest can cause
//! (trap, runaway loop, memory bomb, config rejection) and observe the host
//! imports (`state` mode).
//!
//! Config (JSON, the route's `[routes.plugins.config]` table):
//! `{"mode": "ok"|"trap"|"loop"|"alloc"|"reject"|"state",
//!   "hook": "configure"|"request"|"response"|"log", "after": N,
//!   "times": N, "counter": "name", "hooks": ["request", "response", "log"],
//!   "message": "...", "ttl_ms": N,
//!   "rate_limit": {"zone", "rate_milli", "burst", "delay", "dry_run"},
//!   "configure_ms": N}` (and the field and edit options of `config.rs`)

mod config;
mod faults;
mod state_probe;

use std::sync::Mutex;

use config::{Config, Hook, Mode};
use exports::tailgate::plugin::hooks::Guest;
use tailgate::plugin::types::{
    Header, HeaderEdit, HeaderOp, LogLine, LogRecord, LogVerdict, Method, PluginInfo,
    RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead, Var,
};

wit_bindgen::generate!({
    world: "plugin",
    path: "../../wit",
});

/// This instance's config, set by `configure`.
static CONFIG: Mutex<Option<Config>> = Mutex::new(None);

fn current_config() -> Config {
    match CONFIG.lock() {
        Ok(guard) => guard
            .clone()
            .unwrap_or_else(|| panic!("fault-injector: hook called before configure")),
        Err(_) => panic!("fault-injector: config lock poisoned"),
    }
}

struct FaultInjector;

impl Guest for FaultInjector {
    fn configure(config: String) -> Result<PluginInfo, String> {
        let config = Config::parse(&config)?;
        if config.mode == Mode::Reject {
            return Err(config
                .message
                .clone()
                .unwrap_or_else(|| "rejected by fault-injector".to_string()));
        }
        faults::maybe_fault(&config, Hook::Configure, None);
        faults::busy_for(config.configure_ms);
        let info = config.plugin_info();
        if let Ok(mut slot) = CONFIG.lock() {
            *slot = Some(config);
        }
        Ok(info)
    }

    fn on_request(req: RequestHead) -> RequestAction {
        let config = current_config();
        faults::maybe_fault(&config, Hook::Request, req.path.as_deref());
        if config.mode == Mode::State {
            return state_probe::on_request(&config, &req);
        }
        // Ok mode: a realistic small edit that reads the headers.
        let headers = req.headers.as_deref().unwrap_or_default();
        let user_agent = headers
            .iter()
            .find(|h| h.name == "user-agent")
            .map(|h| h.value.clone())
            .unwrap_or_default();
        RequestAction::Continue(RequestEdits {
            headers: vec![
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-fault-injector".to_string(),
                    value: b"ok".to_vec(),
                },
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-seen-headers".to_string(),
                    value: headers.len().to_string().into_bytes(),
                },
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-seen-user-agent".to_string(),
                    value: user_agent,
                },
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-seen-header-names".to_string(),
                    value: names(headers).into_bytes(),
                },
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-seen-request-fields".to_string(),
                    value: request_fields(&req).into_bytes(),
                },
            ],
            path: None,
            delay_ms: 0,
            vars: vec![Var {
                name: "fault_injector".to_string(),
                value: "ok".to_string(),
            }],
        })
    }

    fn on_response(req: RequestHead, resp: ResponseHead) -> ResponseEdits {
        let config = current_config();
        faults::maybe_fault(&config, Hook::Response, req.path.as_deref());
        if config.mode == Mode::State {
            return state_probe::on_response();
        }
        ResponseEdits {
            headers: vec![
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-fault-injector".to_string(),
                    value: format!("ok {}", resp.status).into_bytes(),
                },
                HeaderEdit {
                    op: HeaderOp::Set,
                    name: "x-seen-response-header-names".to_string(),
                    value: names(resp.headers.as_deref().unwrap_or_default()).into_bytes(),
                },
            ],
        }
    }

    /// Each record as its own log call would be: a fault `after` N
    /// counts records, and faults the batch that holds the Nth.
    fn on_log(records: Vec<LogRecord>) -> Vec<LogVerdict> {
        records.into_iter().map(log_one).collect()
    }
}

fn log_one(rec: LogRecord) -> LogVerdict {
    let config = current_config();
    faults::maybe_fault(&config, Hook::Log, rec.uri.as_deref());
    let vars: Vec<String> = rec
        .vars
        .iter()
        .flatten()
        .map(|v| format!("{}={}", v.name, v.value))
        .collect();
    let request_headers = rec.request_headers.as_deref().unwrap_or_default();
    let response_headers = rec.response_headers.as_deref().unwrap_or_default();
    // The header fields the host let through, when there are any.
    let headers = if request_headers.is_empty() && response_headers.is_empty() {
        String::new()
    } else {
        format!(
            " headers={}/{}",
            names(request_headers),
            names(response_headers)
        )
    };
    // The optional fields the host sent, when the config narrows them.
    let fields = if config.log_fields.is_some() {
        format!(" fields={}", log_fields(&rec))
    } else {
        String::new()
    };
    let text = |field: &Option<String>| field.clone().unwrap_or_else(|| "-".to_string());
    LogVerdict::Shape(LogLine {
        line: format!(
            "{} {} {} {} vars={}{headers}{fields}",
            method_name(&rec.method),
            text(&rec.uri),
            rec.status,
            text(&rec.request_id),
            vars.join(",")
        ),
        labels: vec![("plugin".to_string(), "fault-injector".to_string())],
    })
}

/// The field names of a header list, in order, comma-separated: what the
/// host let through to this plugin.
fn names(headers: &[Header]) -> String {
    let names: Vec<&str> = headers.iter().map(|h| h.name.as_str()).collect();
    names.join(",")
}

/// The names of the request-head fields the host sent (`Some`).
fn request_fields(req: &RequestHead) -> String {
    let present = [
        ("host", req.host.is_some()),
        ("path", req.path.is_some()),
        ("query", req.query.is_some()),
        ("headers", req.headers.is_some()),
        ("route", req.route.is_some()),
        ("request_id", req.request_id.is_some()),
    ];
    present_names(&present)
}

/// The names of the optional log-record fields the host sent (`Some`).
fn log_fields(rec: &LogRecord) -> String {
    let present = [
        ("host", rec.host.is_some()),
        ("uri", rec.uri.is_some()),
        ("upstream_addr", rec.upstream_addr.is_some()),
        ("route", rec.route.is_some()),
        ("request_id", rec.request_id.is_some()),
        ("user_agent", rec.user_agent.is_some()),
        ("referer", rec.referer.is_some()),
        ("request_headers", rec.request_headers.is_some()),
        ("response_headers", rec.response_headers.is_some()),
        ("vars", rec.vars.is_some()),
    ];
    present_names(&present)
}

/// A method's name, e.g. "GET".
pub(crate) fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(name) => name,
    }
}

fn present_names(fields: &[(&str, bool)]) -> String {
    let names: Vec<&str> = fields
        .iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| *name)
        .collect();
    names.join(",")
}

export!(FaultInjector);

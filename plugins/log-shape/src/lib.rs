//! `log-shape`: Tailgate's access-log plugin (nginx `log_format
//! escape=json` + Grafana Alloy's pipeline, in one place). It implements only
//! `on-log`, the pipeline's last phase: from the finished exchange's
//! `log-record` it writes one line (JSON, logfmt or a template), redacted,
//! with its Loki labels — or drops it (drop rules, sampling). The logic lives
//! in [`shaper::LogShaper`]; this file only wires it to the SDK.

#![deny(unsafe_code)]

mod config;
mod decimal;
mod fields;
mod json;
mod labels;
mod line_filter;
mod line_format;
mod redact;
mod render;
mod shaper;
mod status_set;
mod template;
mod time_format;

use tailgate_plugin_sdk::{
    export_plugin, host, plugin, Config, HeaderFilter, LogFieldSet, LogRecord, LogVerdict, Plugin,
    RequestFieldSet,
};

use crate::line_filter::SampleCounter;
use crate::shaper::{LogShapeHost, LogShaper};

/// One route's log-shape plugin.
struct LogShape {
    shaper: LogShaper,
}

/// The real host imports.
struct Host;

impl SampleCounter for Host {
    fn next(&self, key: &str) -> i64 {
        // Shared by every instance and thread; never expires (one per route).
        host::counter_incr(key, 1, 0)
    }
}

impl LogShapeHost for Host {
    fn counter_add(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        host::counter_add(name, labels, value);
    }
}

#[plugin]
impl Plugin for LogShape {
    fn configure(config: &Config) -> Result<Self, String> {
        Ok(LogShape {
            shaper: LogShaper::from_config(config)?,
        })
    }

    fn request_headers(&self) -> HeaderFilter {
        self.shaper.request_headers()
    }

    fn response_headers(&self) -> HeaderFilter {
        self.shaper.response_headers()
    }

    /// No request hook: nothing of the request head.
    fn request_fields(&self) -> RequestFieldSet {
        RequestFieldSet::empty()
    }

    /// What the line, labels, drop rules and sampling read.
    fn log_fields(&self) -> LogFieldSet {
        self.shaper.log_fields()
    }

    fn on_log(&self, rec: &LogRecord) -> LogVerdict {
        self.shaper.on_log(rec, &Host).into()
    }
}

export_plugin!(LogShape);

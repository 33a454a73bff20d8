//! `header-rewrite`: Tailgate's nginx-style header plugin. Its request
//! (`request.*`) and response (`response.*`) header edits are given to the
//! host once, as fixed edits, templates and all: the host renders
//! `{client_ip}`, `{http_<name>}` ... per request without calling it. Its
//! one hook, `on-request`, answers requests that match a `deny` or
//! `redirect` rule, and runs only when the config has such rules. The
//! logic lives in [`rules::Rules`]; this file only wires it to the SDK.

#![deny(unsafe_code)]

mod answer_rules;
mod config;
mod header_plan;
mod rules;
mod template;

use tailgate_plugin_sdk::{
    export_plugin, plugin, Config, FixedEdits, HeaderFilter, HookSet, LogFieldSet, Plugin,
    RequestAction, RequestFieldSet, RequestHead,
};

use crate::rules::Rules;

/// One route's header-rewrite plugin.
struct HeaderRewrite {
    rules: Rules,
}

#[plugin]
impl Plugin for HeaderRewrite {
    fn configure(config: &Config) -> Result<Self, String> {
        Ok(HeaderRewrite {
            rules: Rules::from_config(config)?,
        })
    }

    fn hooks(&self) -> HookSet {
        self.rules.hooks()
    }

    fn fixed_edits(&self) -> FixedEdits {
        self.rules.fixed_edits()
    }

    fn request_headers(&self) -> HeaderFilter {
        self.rules.request_headers()
    }

    /// The hook reads no response.
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::none()
    }

    /// The fields the redirect templates name, the path for `path`
    /// regexes, the method for `methods` lists.
    fn request_fields(&self) -> RequestFieldSet {
        self.rules.request_fields()
    }

    /// No `on-log`.
    fn log_fields(&self) -> LogFieldSet {
        LogFieldSet::empty()
    }

    fn on_request(&self, req: &RequestHead) -> RequestAction {
        self.rules.on_request(req)
    }
}

export_plugin!(HeaderRewrite);

//! `cors`: Cross-Origin Resource Sharing for a route. In `on-request` it
//! answers preflights (`OPTIONS` + `Access-Control-Request-Method`) itself,
//! allowed or refused, so they never reach the upstream; in `on-response`
//! it adds `Access-Control-Allow-Origin` (credentials, exposed headers) for
//! allowed origins. The host enters the hooks only for the requests they
//! have work for (preflights; requests with an `Origin`) and makes the
//! edits that do not depend on the origin itself. The logic lives in
//! [`policy::CorsPolicy`]; this file wires it to the SDK. Started from
//! `tailgate plugin new cors`.

#![deny(unsafe_code)]

mod origin;
mod policy;

use tailgate_plugin_sdk::{
    export_plugin, plugin, Config, FixedEdits, HeaderFilter, HookGate, LogFieldSet, Plugin,
    RequestAction, RequestFieldSet, RequestHead, ResponseEdits, ResponseHead,
};

use crate::policy::CorsPolicy;

/// One route's CORS plugin.
struct Cors {
    policy: CorsPolicy,
}

#[plugin]
impl Plugin for Cors {
    fn configure(config: &Config) -> Result<Self, String> {
        Ok(Cors {
            policy: CorsPolicy::from_config(config)?,
        })
    }

    /// The request fields CORS reads: the origin and a preflight's two.
    fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::only([
            "origin",
            "access-control-request-method",
            "access-control-request-headers",
        ])
    }

    /// The response gets CORS headers set or removed; none is read.
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::none()
    }

    /// The method only (a preflight is an `OPTIONS`): path, host and the
    /// rest stay in the host.
    fn request_fields(&self) -> RequestFieldSet {
        self.policy.request_fields()
    }

    /// No `on-log`.
    fn log_fields(&self) -> LogFieldSet {
        LogFieldSet::empty()
    }

    /// `Vary: Origin` and the upstream's own CORS headers removed, on
    /// every response, by the host.
    fn fixed_edits(&self) -> FixedEdits {
        self.policy.fixed_edits()
    }

    /// Preflights only.
    fn request_gate(&self) -> HookGate {
        self.policy.request_gate()
    }

    /// Requests with an `Origin` only.
    fn response_gate(&self) -> HookGate {
        self.policy.response_gate()
    }

    fn on_request(&self, req: &RequestHead) -> RequestAction {
        self.policy.on_request(req)
    }

    fn on_response(&self, req: &RequestHead, resp: &ResponseHead) -> ResponseEdits {
        self.policy.on_response(req, resp)
    }
}

export_plugin!(Cors);

#[cfg(test)]
mod tests;

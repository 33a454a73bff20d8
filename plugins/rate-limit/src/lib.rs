//! `rate-limit`: Tailgate's nginx `limit_req` plugin. In `on-request` it
//! checks the route's limits against the host's shared leaky buckets (the
//! `rate-limit-check` import: exact across every thread and instance; the
//! plugin keeps no rate state) and rejects, delays or passes the request,
//! leaving `limit_req_status` for the log phase. Limits that check every
//! request by client address are declared as request checks too: the host
//! makes them before the hook and enters the plugin only for a request
//! that does not pass. The logic lives in [`policy::RateLimitPolicy`];
//! this file only wires it to the SDK.

#![deny(unsafe_code)]

mod config;
mod limit;
mod outcome;
mod policy;
mod rate;
mod zone;

use tailgate_plugin_sdk::key::RequestKey;
use tailgate_plugin_sdk::{
    export_plugin, host, plugin, Config, HeaderFilter, LogFieldSet, LogLevel, Plugin, RateDecision,
    RequestAction, RequestChecks, RequestFieldSet, RequestHead,
};

use crate::limit::Limit;
use crate::policy::{RateLimitHost, RateLimitPolicy};

/// One route's rate-limit plugin.
struct RateLimiter {
    policy: RateLimitPolicy,
}

/// The real host imports.
struct Host;

impl RateLimitHost for Host {
    fn rate_limit_check(&self, limit: &Limit, key: &RequestKey<'_>, dry_run: bool) -> RateDecision {
        host::rate_limit_check(limit.zone_use(), key.as_rate_key(), dry_run)
    }

    fn log(&self, level: LogLevel, message: &str) {
        host::log(level, message);
    }
}

#[plugin]
impl Plugin for RateLimiter {
    fn configure(config: &Config) -> Result<Self, String> {
        Ok(RateLimiter {
            policy: RateLimitPolicy::from_config(config)?.registered(host::rate_limit_zone),
        })
    }

    /// Only the headers the limits' keys name (none for `client_ip`).
    fn request_headers(&self) -> HeaderFilter {
        self.policy.request_headers()
    }

    /// The limits read no response.
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::none()
    }

    /// The fields the keys, the `path` / `methods` filters and the
    /// delay / rejection log line read.
    fn request_fields(&self) -> RequestFieldSet {
        self.policy.request_fields()
    }

    /// No `on-log`: the outcome reaches the log phase as a var.
    fn log_fields(&self) -> LogFieldSet {
        LogFieldSet::empty()
    }

    /// Limits of every request by client address are checked by the host
    /// first: a request they all pass does not enter the plugin.
    fn request_checks(&self) -> RequestChecks {
        self.policy.request_checks()
    }

    fn on_request(&self, req: &RequestHead) -> RequestAction {
        self.policy.on_request(req, &Host)
    }
}

export_plugin!(RateLimiter);

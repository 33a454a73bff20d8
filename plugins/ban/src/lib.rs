//! `ban`: fail2ban as a Tailgate plugin. Jails count failed exchanges
//! (status, path, method) per key in the host's sliding windows and ban a
//! key that fails `max_retry` times within `find_time` in the host's ban
//! list (shared by every thread, instance, plugin and route naming the
//! jail; kept in `[state] dir` across restarts); a banned key gets the
//! jail's answer before the upstream. Jails keyed by the client's address
//! cost a request no call into the plugin unless the client is banned:
//! the host checks the ban lists itself (request checks) and the log hook
//! counts from the record. The logic lives in
//! [`policy::BanPolicy`]; this file only wires it to the SDK.

#![deny(unsafe_code)]

mod config;
mod duration;
mod jail;
mod network;
mod policy;

use tailgate_plugin_sdk::{
    export_plugin, plugin, Config, HeaderFilter, LogFieldSet, LogGate, LogRecord, LogVerdict,
    Plugin, RequestAction, RequestChecks, RequestFieldSet, RequestHead,
};

use crate::policy::BanPolicy;

/// One route's ban plugin.
struct Ban {
    policy: BanPolicy,
}

#[plugin]
impl Plugin for Ban {
    fn configure(config: &Config) -> Result<Self, String> {
        Ok(Ban {
            policy: BanPolicy::from_config(config)?,
        })
    }

    /// Only the headers the jails' keys name (none for `client_ip`).
    fn request_headers(&self) -> HeaderFilter {
        self.policy.request_headers()
    }

    /// Failures are told by the status alone.
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::none()
    }

    /// The fields the keys and the `path` filters read.
    fn request_fields(&self) -> RequestFieldSet {
        self.policy.request_fields()
    }

    /// `on-log` reads the status, method and address (always sent), the
    /// vars (the keys `on-request` left, and whether it blocked), and the
    /// path for the `path` filters of jails keyed by the client.
    fn log_fields(&self) -> LogFieldSet {
        self.policy.log_fields()
    }

    /// When every jail is keyed by the client's address, the host looks it
    /// up in their ban lists itself and enters `on-request` only for a
    /// client banned in one.
    fn request_checks(&self) -> RequestChecks {
        self.policy.request_checks()
    }

    /// `on-log` counts failures: only the statuses the jails count enter.
    fn log_gate(&self) -> LogGate {
        self.policy.log_gate()
    }

    fn on_request(&self, req: &RequestHead) -> RequestAction {
        self.policy.on_request(req)
    }

    fn on_log(&self, rec: &LogRecord) -> LogVerdict {
        self.policy.on_log(rec)
    }
}

export_plugin!(Ban);

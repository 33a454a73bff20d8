//! `ban`: fail2ban as a Tailgate plugin. Jails count failed exchanges
//! (status, path, method) per key in the host's sliding windows and ban a
//! key that fails `max_retry` times within `find_time` in the host's ban
//! list (shared by every thread, instance, plugin and route naming the
//! jail; kept in `[state] dir` across restarts); a banned key gets the
//! jail's answer before the upstream. The logic lives in
//! [`policy::BanPolicy`]; this file only wires it to the SDK.

#![deny(unsafe_code)]

mod config;
mod duration;
mod jail;
mod network;
mod policy;

use tailgate_plugin_sdk::{
    export_plugin, plugin, Config, HeaderFilter, LogFieldSet, LogRecord, LogVerdict, Plugin,
    RequestAction, RequestFieldSet, RequestHead,
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

    /// `on-log` reads the status (always sent) and the keys `on-request`
    /// left as vars.
    fn log_fields(&self) -> LogFieldSet {
        LogFieldSet::VARS
    }

    fn on_request(&self, req: &RequestHead) -> RequestAction {
        self.policy.on_request(req)
    }

    fn on_log(&self, rec: &LogRecord) -> LogVerdict {
        self.policy.on_log(rec)
    }
}

export_plugin!(Ban);

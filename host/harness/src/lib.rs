//! Tailgate's plugin test harness: runs a built plugin component in
//! isolation (no proxy, no network) on the same runtime code as the proxy
//! (`tailgate-runtime`: same limits, same host imports), with a fake clock,
//! inspectable and pre-seedable shared state, and the plugin's logs and
//! metrics captured. It sits beside the request pipeline: it calls the hooks
//! the pipeline would (`configure`, `on-request`, `on-response`, `on-log`)
//! directly.
//!
//! ```no_run
//! use std::time::Duration;
//! use tailgate_harness::{built_plugin, Harness, Request};
//!
//! let harness = Harness::new().unwrap();
//! let wasm = built_plugin(env!("CARGO_MANIFEST_DIR")).unwrap();
//! let plugin = harness.load(&wasm).unwrap();
//! let limiter = harness
//!     .configure(&plugin, r#"{"limits":[{"zone":"login","rate":"1r/s","burst":0}]}"#)
//!     .unwrap();
//! limiter.on_request(Request::get("/login")).expect_continue();
//! limiter.on_request(Request::get("/login")).expect_status(429);
//! harness.advance(Duration::from_secs(1));
//! limiter.on_request(Request::get("/login")).expect_continue();
//! ```
//!
//! [`cases`] runs declarative cases files (`tailgate plugin test`).

pub mod cases;
mod error;
mod harness;
mod inputs;
mod inspect;
mod locate;
mod metrics_capture;
mod outcome;
mod plugin_logs;
mod test_plugin;

pub use error::HarnessError;
pub use harness::{
    name_from_path, Harness, HarnessBuilder, PluginConfig, PluginFile, DEFAULT_HOOK_TIMEOUT,
    DEFAULT_MEMORY_BYTES, DEFAULT_ROUTE, DEFAULT_START_MS,
};
pub use inputs::{rfc3339_millis, LogEntry, Request, Response, DEFAULT_CLIENT_IP, DEFAULT_HOST};
pub use inspect::{
    describe_action, describe_edits, describe_log_verdict, header_str, var, FaultKind,
    HeaderEditsExt,
};
pub use locate::built_plugin;
pub use metrics_capture::{plugin_metric_name, MetricValue, MetricsSnapshot, Recorded};
pub use outcome::{CallContext, LogOutcome, RequestOutcome, ResponseOutcome};
pub use plugin_logs::PluginLog;
pub use test_plugin::TestPlugin;

/// The runtime's types a test reads and builds (the ban list's among them:
/// `runtime().bans().add(jail, key, &BanRequest::fixed(ms))` bans by hand,
/// as the admin API does).
pub use tailgate_runtime::{
    BanEntry, BanList, BanOutcome, BanRequest, BanView, BucketState, CounterEntry, Header,
    HeaderEdit, HeaderOp, Hook, HookFault, HookSet, ImmediateResponse, InvalidOutput, KvEntry,
    LogLevel, LogLine, LogRecord, LogVerdict, OutputSource, PluginFault, PluginStateView,
    RateDecision, RateLimit, RateLimitZoneState, RequestAction, RequestEdits, RequestHead,
    ResponseEdits, ResponseHead, StateLimits, Var,
};
